"""Where a threaded BPR epoch's time goes: each phase of the team kernel alone, 1 vs 2 threads.

Synthetic ml-latest-small-shaped tables (610 users × 9,724 items, 64 factors), 80,000 random
positives with 4 random negatives each, batches of 1,024 (79 a epoch), AdamW. The kernel below
is :func:`recforge.train._mf_kernels.sampled_epoch_part` reduced to its phases (pair
derivatives, owner gradients, dense Adam sweep) with each switched on alone, then all together;
the barriers stay in every variant. Each figure is the median of 5 epochs, in milliseconds.
A phase that halves on two threads splits well; ``all`` far above the sum of its phases on two
threads means the phases slow each other (cache lines moving between the cores).

Usage: ``PYTHONPATH=src python benchmarks/bpr_phases.py``
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numba
import numpy as np

from recforge.threads import run_team
from recforge.train import _mf_kernels as K
from recforge.train._numba_sync import barrier

rng = np.random.default_rng(0)
N_USERS, N_ITEMS, F, N, BS, N_NEG = 610, 9724, 64, 80_000, 1024, 4
users = rng.integers(0, N_USERS, N)
items = rng.integers(0, N_ITEMS, N)
negs = rng.integers(0, N_ITEMS, (N, N_NEG))
perm = rng.permutation(N)
N_BATCHES = -(-N // BS)


@numba.njit(nogil=True, error_model="numpy")
def _epoch(P: Any, Q: Any, m: Any, v: Any, g: Any, part: int, n_par: int, sync: Any,
           coef: Any, terms: Any, phases: Any) -> None:  # fmt: skip
    mP, mQ = m
    vP, vQ = v
    gP, gQ = g
    z = np.zeros((1, 1), dtype=np.float32)
    tmp = np.zeros(P.shape[1], dtype=np.float32)
    cells = P.size + Q.size
    for b in range(N_BATCHES):
        start = b * BS
        end = min(N, start + BS)
        rows = end - start
        inv_m = K._inv_pairs(negs, start, end, K.BPR)
        if phases[0]:
            lo, hi = start + rows * part // n_par, start + rows * (part + 1) // n_par
            K._pair_derivatives(P, Q, z, z, False, users, items, negs, perm, start, lo, hi,
                                0.0, K.BPR, inv_m, coef, terms)  # fmt: skip
        barrier(sync, n_par)
        if phases[1]:
            K._owner_gradients(P, Q, False, gP, gQ, z, z, users, items, negs, perm, start, end,
                               coef, tmp, part, n_par)  # fmt: skip
        barrier(sync, n_par)
        if phases[2]:
            K._sweep_part(P, mP, vP, gP, Q, mQ, vQ, gQ, z, z, z, z, z, z, z, z, False,
                          cells * part // n_par, cells * (part + 1) // n_par, 1e-3, b + 1.0,
                          0.9, 0.999, 1e-8, 0.01, True, 0)  # fmt: skip
        barrier(sync, n_par)


def _ms(n_par: int, phases: tuple[int, int, int]) -> float:
    P = rng.normal(0, 0.1, (N_USERS, F)).astype(np.float32)
    Q = rng.normal(0, 0.1, (N_ITEMS, F)).astype(np.float32)
    m, v, g = ((np.zeros_like(P), np.zeros_like(Q)) for _ in range(3))
    coef, terms = np.zeros((BS, N_NEG + 1)), np.zeros((BS, 2 * N_NEG + 2))
    sync, on = np.zeros(3, dtype=np.int64), np.array(phases, dtype=np.int64)
    t = time.perf_counter()
    run_team(lambda part: _epoch(P, Q, m, v, g, part, n_par, sync, coef, terms, on), n_par)
    return (time.perf_counter() - t) * 1000


VARIANTS = {
    "pair derivatives": (1, 0, 0),
    "owner gradients": (0, 1, 0),
    "Adam sweep": (0, 0, 1),
    "barriers only": (0, 0, 0),
    "all phases": (1, 1, 1),
}
for name, phases in VARIANTS.items():
    _ms(1, phases), _ms(2, phases)  # compile, warm
    one = statistics.median(_ms(1, phases) for _ in range(5))
    two = statistics.median(_ms(2, phases) for _ in range(5))
    print(f"{name:17s} 1 thread {one:6.1f} ms   2 threads {two:6.1f} ms   ratio {two / one:.2f}")
