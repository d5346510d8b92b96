"""BPR epoch kernels of a base commit against this checkout's, in one process, interleaved.

Usage: ``python benchmarks/bpr_kernel_ab.py BASE_COMMIT [USERS ITEMS EVENTS] [REPS]``
(defaults: ml-latest-small's training shape, 610 × 8,230 and 80,419 events; 64 factors,
4 uniform negatives, batches of 1,024, Zipf positives; seed 0). The base commit's
``src/recforge/train/_mf_kernels.py`` is read with ``git show`` and compiled beside this
checkout's. Arms: the serial kernel (base, new, new with lazy Adam on both sides) and the
threaded one on 2 threads (base, new). Prints ms per epoch (median over REPS after one warm-up)
and the paired ratio against the base serial kernel, and checks that the base and the new
dense kernels give the same tables to the last bit.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from recforge.train import _mf_kernels as new


@contextmanager
def _numba_threads(n: int) -> Iterator[None]:
    """numba's parallel regions on ``n`` threads within the block (a base commit's threaded
    kernel used ``prange``; since session 12 it runs a team of Python threads and ignores it)."""
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(min(n, int(numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(old)


DENSE = (0, np.zeros((5, 1)), np.zeros(1, np.int64), np.zeros(1, np.int64),
         tuple(np.zeros((1, 1), np.float32) for _ in range(4)))  # fmt: skip


def _base_module(commit: str) -> Any:
    text = subprocess.run(
        ["git", "show", f"{commit}:src/recforge/train/_mf_kernels.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "base_mf_kernels.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("base_mf_kernels", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(commit: str, n_users: int, n_items: int, n: int, reps: int) -> None:
    base = _base_module(commit)
    r = np.random.default_rng(0)
    f, bs = 64, 1024
    users, items = r.integers(0, n_users, n), r.zipf(1.3, n) % n_items
    negs, perm = r.integers(0, n_items, (n, 4)), r.permutation(n)
    nb = -(-n // bs)
    lrs = np.full(nb, 1e-3)

    def state() -> list[Any]:
        g = np.random.default_rng(1)
        p = (g.standard_normal((n_users, f)) * 0.1).astype(np.float32)
        q = (g.standard_normal((n_items, f)) * 0.1).astype(np.float32)
        z = np.zeros((1, 1), np.float32)
        zs = [z.copy() for _ in range(6)]
        return [p, q, z, z.copy(), False, np.zeros_like(p), np.zeros_like(p), np.zeros_like(q),
                np.zeros_like(q), *zs[:4], np.zeros_like(p), np.zeros_like(q), *zs[4:]]  # fmt: skip

    def lazy(st: list[Any], epoch: int) -> tuple[Any, ...]:
        coefs = new.lazy_coefs(lrs, epoch * nb, 0.9, 0.999, 0.1, True)
        dirs = (np.zeros_like(st[0]), np.zeros_like(st[1]), st[2].copy(), st[3].copy())
        for k, (m, v) in enumerate(((st[5], st[6]), (st[7], st[8]))):
            new.lazy_directions(m.reshape(-1), v.reshape(-1), dirs[k].reshape(-1), epoch * nb,
                                0.999, 1e-8)  # fmt: skip
        return 3, coefs, np.zeros(n_users, np.int64), np.zeros(n_items, np.int64), dirs

    adam = (0.9, 0.999, 1e-8, 0.1, True, 0, nb, 0.0)

    def serial(mod: Any, st: list[Any], epoch: int, tail: tuple[Any, ...]) -> None:
        mod.mf_epoch(*st, users, items, np.zeros(1), negs, perm, bs, lrs, epoch * nb, 2, 0.0,
                     0.0, 1.0, False, 0.0, *adam, *tail)  # fmt: skip

    def threaded(mod: Any, st: list[Any], epoch: int, tail: tuple[Any, ...]) -> None:
        with _numba_threads(2):
            mod.sampled_epoch_threaded(*st, users, items, negs, perm, bs, lrs, epoch * nb, 2,
                                       0.0, *adam, 2, *tail)  # fmt: skip

    arms: dict[str, Callable[[list[Any], int], None]] = {
        "base serial": lambda st, e: serial(base, st, e, ()),
        "new serial": lambda st, e: serial(new, st, e, DENSE),
        "new serial, lazy_adam": lambda st, e: serial(new, st, e, lazy(st, e)),
        "base threaded (2)": lambda st, e: threaded(base, st, e, ()),
        "new threaded (2)": lambda st, e: threaded(new, st, e, DENSE),
    }
    states = {k: state() for k in arms}
    print(f"{n_users} users × {n_items} items, {n} events; load {os.getloadavg()}")
    times: dict[str, list[float]] = {k: [] for k in arms}
    for rep in range(reps + 1):
        for k in list(arms) if rep % 2 == 0 else list(arms)[::-1]:
            t0 = time.perf_counter()
            arms[k](states[k], rep)
            if rep:
                times[k].append(time.perf_counter() - t0)
    first = times["base serial"]
    for k, v in times.items():
        ratio = statistics.median(a / b for a, b in zip(v, first, strict=True))
        ms = statistics.median(v) * 1e3
        print(f"{k:24s} {ms:8.1f} ms/epoch   paired vs base serial {ratio:.2f}")
    pairs = zip(states["base serial"], states["new serial"], strict=True)
    same = all(np.array_equal(a, b) for a, b in pairs if isinstance(a, np.ndarray))
    print(f"base and new dense serial tables identical: {same}; load {os.getloadavg()}")


if __name__ == "__main__":
    a = sys.argv[1:]
    shape = (int(a[1]), int(a[2]), int(a[3])) if len(a) >= 4 else (610, 8230, 80419)
    main(a[0] if a else "HEAD", *shape, int(a[4]) if len(a) >= 5 else 6)
