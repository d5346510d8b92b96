"""The fused BPR epoch's kernels alone: serial vs threaded on 1 and 2 threads (CPU split).

Synthetic ml-latest-small-shaped tables (610 users, 9,724 items, 64 factors), 80,000 random
positives with 4 random negatives each, batches of 1,024, AdamW; 4 interleaved repetitions of
2 epochs. Prints per arm the median epoch wall, process CPU and main-thread CPU (the critical
path when the second thread has a core). ``thr1`` is the threaded algorithm on one thread: its
extra work over ``serial``.

Usage: ``PYTHONPATH=src nice -n 10 python benchmarks/bpr_kernel_split.py``
"""

from __future__ import annotations

import os
import time

import numpy as np

import recforge  # noqa: F401  (OMP_WAIT_POLICY=PASSIVE before OpenMP loads)
from recforge.train import _mf_kernels as K
from recforge.train.fused_mf import threaded_engine_usable

assert threaded_engine_usable()
rng = np.random.default_rng(0)
nu, ni, k, n, bs, nneg = 610, 9724, 64, 80000, 1024, 4


def tables():
    t = [
        rng.normal(0, 0.1, (nu, k)).astype(np.float32),
        rng.normal(0, 0.1, (ni, k)).astype(np.float32),
    ]
    z = np.zeros((1, 1), np.float32)
    return (
        [*t, z, z],
        [np.zeros_like(x) for x in t] + [z, z],
        [np.zeros_like(x) for x in t] + [z, z],
        [np.zeros_like(x) for x in t] + [z.copy(), z.copy()],
    )


users = rng.integers(0, nu, n).astype(np.int64)
items = rng.integers(0, ni, n).astype(np.int64)
negs = rng.integers(0, ni, (n, nneg)).astype(np.int64)
perm = rng.permutation(n).astype(np.int64)
nb = (n + bs - 1) // bs
lrs = np.full(nb, 1e-3)


#: The kernels' lazy-Adam arguments with lazy Adam off (lazy, coefs, clocks, directions).
DENSE = (
    0,
    np.zeros((5, 1)),
    np.zeros(1, np.int64),
    np.zeros(1, np.int64),
    tuple(np.zeros((1, 1), np.float32) for _ in range(4)),
)


def _state(p, m, v, g):
    """The four parameter arrays, the no-bias flag, Adam's moments and the gradients, in the
    kernels' argument order (shared by both kernels)."""
    return (*p, False, *(x for pair in zip(m, v, strict=True) for x in pair), *g)


def serial(p, m, v, g):
    return K.mf_epoch(
        *_state(p, m, v, g),
        users,
        items,
        np.zeros(1),
        negs,
        perm,
        bs,
        lrs,
        0,
        2,
        0.0,
        0.0,
        1.0,
        False,
        0.0,
        0.9,
        0.999,
        1e-8,
        0.01,
        True,
        0,
        nb,
        0.0,
        *DENSE,
    )


def threaded(p, m, v, g, npar):
    return K.sampled_epoch_threaded(
        *_state(p, m, v, g),
        users,
        items,
        negs,
        perm,
        bs,
        lrs,
        0,
        2,
        0.0,
        0.9,
        0.999,
        1e-8,
        0.01,
        True,
        0,
        nb,
        0.0,
        npar,
        *DENSE,
    )


arms = {
    "serial": lambda s: serial(*s),
    "thr1": lambda s: threaded(*s, 1),
    "thr2": lambda s: threaded(*s, 2),
}
for a in arms.values():
    a(tables())
res = {a: [] for a in arms}
for _rep in range(4):
    for name, f in arms.items():
        s = tables()
        w0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        for _ in range(2):
            f(s)
        res[name].append(
            (
                (time.perf_counter() - w0) / 2,
                (time.process_time() - c0) / 2,
                (time.thread_time() - m0) / 2,
            )
        )
for name, r in res.items():
    med = [float(np.median([x[i] for x in r])) for i in range(3)]
    print(
        f"{name}: epoch wall {med[0] * 1e3:.1f} ms, process CPU {med[1] * 1e3:.1f} ms, "
        f"main-thread CPU {med[2] * 1e3:.1f} ms"
    )
print(os.getloadavg())
