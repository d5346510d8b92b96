"""A software prefetch for numba kernels: ``prefetch(arr, row, col)`` (LLVM ``llvm.prefetch``).

The factor kernels (:mod:`recforge.train._mf_kernels`) walk rows of tables far larger than the
CPU's caches in an order the hardware prefetcher cannot guess (a shuffled list of ratings, the
rows a batch touched). Asking for the rows a few steps ahead lets their DRAM misses overlap the
current row's arithmetic instead of stalling it: a 2-epoch ``funk_svd`` fit on the 10M-event log
went from 7.3-7.5 s to 4.2-5.2 s, a ``biased_mf`` one from 21-31 s to 17-20 s (the same fits to
the last bit; docs/benchmarks/speed_funk_svd_10m.md). A prefetch is only a hint: the result
never depends on it, and targets without one compile it to nothing.
"""

from __future__ import annotations

from typing import Any

import numba
from llvmlite import ir  # type: ignore[import-untyped]
from numba.core import cgutils
from numba.extending import intrinsic

# numba's code-generation helpers are untyped; reached through Any so the module type-checks.
_cg: Any = cgutils


def _prefetch_signature(typingctx: Any, arr: Any, row: Any, col: Any) -> Any:
    """The typing of :func:`prefetch`: ``void(2-D array, int, int)`` and its code generator."""
    sig = numba.types.void(arr, row, col)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        shape = _cg.unpack_tuple(builder, ary.shape)
        strides = _cg.unpack_tuple(builder, ary.strides)
        ptr = _cg.get_item_pointer2(
            context, builder, ary.data, shape, strides, aryty.layout, [args[1], args[2]]
        )
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = _cg.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # (address, 1: for a write, 3: keep in every cache level, 1: the data cache)
        flags = [ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)]
        builder.call(fn, [builder.bitcast(ptr, i8p), *flags])
        return context.get_dummy_value()

    return sig, codegen


#: ``prefetch(arr, row, col)`` inside a numba kernel: fetch the cache line of ``arr[row, col]``
#: (a 2-D array) for writing, into every cache level.
prefetch: Any = intrinsic(_prefetch_signature)
