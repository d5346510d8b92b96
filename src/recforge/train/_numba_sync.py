"""A spin barrier for numba kernels that run as one team of threads (imported lazily).

The threaded BPR epoch (:func:`recforge.train._mf_kernels.sampled_epoch_part`) runs a whole
range of batches on ``n`` threads at once, each thread a nogil call of the same kernel on its
own part, and its phases meet at a barrier a few times a batch. numba's ``prange`` regions did
the same with one parallel region a phase, but waking the sleeping OpenMP workers of a region
costs tens of microseconds in a virtual machine (a 64k-parameter Adam sweep on 2 threads: 1.3 ns
a parameter against 0.43 on one; docs/benchmarks/speed_picker.md, session 12), three times a
batch of ~0.5 ms. The barrier here spins on an atomic counter instead (~0.1 µs when both threads
are on a core) and yields the core after :data:`SPINS` polls, so a thread whose partner the
scheduler parked gives the partner its core rather than burning it.

The state is an ``int64`` array ``[arrived, generation, abort]``, fresh for each team call:
``arrived`` counts the threads at the barrier, the last one resets it and bumps ``generation``
(sequentially consistent read-modify-writes: every write a thread made before the barrier is
seen by every thread after it), and a non-zero ``abort`` (set by the caller when a part failed)
releases every waiting thread with -1.
"""

from __future__ import annotations

from typing import Any

import numba
from llvmlite import ir  # type: ignore[import-untyped]
from numba import types
from numba.core import cgutils as _cgutils
from numba.extending import intrinsic

cgutils: Any = _cgutils  # untyped helpers of numba's code generation

#: Polls of the generation before each ``sched_yield`` (about a microsecond of spinning).
SPINS = 1000

ARRIVED, GENERATION, ABORT = 0, 1, 2


def _cell(context: Any, builder: Any, arr_type: Any, arr: Any, idx: Any) -> Any:
    ary = context.make_array(arr_type)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arr_type, ary, [idx])


def _atomic_add(typingctx: Any, arr: Any, idx: Any, val: Any) -> Any:
    """``arr[idx] += val`` atomically (sequentially consistent); returns the old value."""
    sig = types.int64(arr, idx, val)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = _cell(context, builder, sig.args[0], args[0], args[1])
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, value, "seq_cst")

    return sig, codegen


atomic_add: Any = intrinsic(_atomic_add)


def _atomic_load(typingctx: Any, arr: Any, idx: Any) -> Any:
    """``arr[idx]`` read atomically with acquire ordering (never hoisted out of a spin loop)."""
    sig = types.int64(arr, idx)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ptr = _cell(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


atomic_load: Any = intrinsic(_atomic_load)


def _sched_yield(typingctx: Any) -> Any:
    """libc's ``sched_yield()``: give the core to another runnable thread."""
    sig = types.int32()

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield"
        )
        return builder.call(fn, [])

    return sig, codegen


sched_yield: Any = intrinsic(_sched_yield)


def _barrier(state: Any, n: int) -> int:
    """Wait until all ``n`` threads of the team reached this barrier; -1 when aborted, else 0."""
    gen = atomic_load(state, GENERATION)
    if atomic_add(state, ARRIVED, 1) == n - 1:  # the last to arrive releases the others
        atomic_add(state, ARRIVED, -n)
        atomic_add(state, GENERATION, 1)
        return 0
    polls = 0
    while atomic_load(state, GENERATION) == gen:
        if atomic_load(state, ABORT) != 0:
            return -1
        polls += 1
        if polls >= SPINS:
            sched_yield()
            polls = 0
    return 0


barrier: Any = numba.njit(cache=True, nogil=True)(_barrier)
