"""Where a BPR batch's CPU goes on a large log: each phase of the fused serial epoch alone.

Tables of the speed suite's ``synthetic-10m`` shape (138,000 users × 27,000 items, 64 factors),
1,500 batches of 1,024 positives (uniform users, Zipf-skewed items) with 4 uniform negatives,
AdamW. Phases (:mod:`recforge.train._mf_kernels`): the lazy Adam(W) of the user side (mark,
catch-up, step), the pair derivatives, the owner gradients (one thread owns every row), the
dense Adam sweep of the items and, for comparison, the lazy step of the items instead. The
lazy users also run with a step-by-step catch-up (the sum over the skipped steps written out,
as before ``lazy_coefs``' closed form), to show what the O(1) catch-up saves. Milliseconds per
batch, median of 3 runs, one thread.

Usage: ``PYTHONPATH=src python benchmarks/bpr_lazy_phases.py``
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import numba
import numpy as np

from recforge.train import _mf_kernels as K

N_USERS, N_ITEMS, F, BS, N_BATCHES = 138_000, 27_000, 64, 1024, 1500
rng = np.random.default_rng(0)
N = BS * N_BATCHES
USERS = rng.integers(0, N_USERS, N)
ITEMS = (rng.zipf(1.3, N) % N_ITEMS).astype(np.int64)
NEGS = rng.integers(0, N_ITEMS, (N, 4))
PERM = rng.permutation(N)


@numba.njit(nogil=True, error_model="numpy")
def _stepwise_catch_up(p: Any, U: Any, seen: Any, tag: int, last: Any, T: int, coefs: Any) -> None:
    """The catch-up's sum over the skipped steps, one step at a time (the O(T − s) form)."""
    r_geo = 0.9 / math.sqrt(0.999)
    for r in range(p.shape[0]):
        if seen[r] != tag or last[r] >= T:
            continue
        alpha, beta, rk = 1.0, 0.0, 1.0
        j = last[r] + 1
        while j <= T:
            d = coefs[1, j]
            rk *= r_geo
            alpha *= d
            beta = beta * d + coefs[0, j] * rk
            j += 1
            if rk < 1e-20:
                break
        if j <= T:
            tail = math.exp(coefs[2, T] - coefs[2, j - 1])
            alpha *= tail
            beta *= tail
        for f in range(p.shape[1]):
            p[r, f] = alpha * p[r, f] - beta * U[r, f]


@numba.njit(nogil=True, error_model="numpy")
def _epoch(phase: int, t: Any, s: Any, coefs: Any, coef: Any, terms: Any) -> None:
    P, mP, vP, gP, Q, mQ, vQ, gQ, UP, UQ = t
    seen_u, seen_i, last_u, last_i = s
    z = np.zeros((1, 1), dtype=np.float32)
    tmp = np.zeros(F, dtype=np.float32)
    Us = (UP, UQ, z, z)
    for b in range(N_BATCHES):
        c = K._adam_consts(1e-3, b + 1.0, 0.9, 0.999, 1e-8, 0.1)
        start, end = b * BS, (b + 1) * BS
        side = 1 if phase in (0, 1) else 2
        if phase in (0, 1, 5):
            K._touch(USERS, ITEMS, NEGS, PERM, start, end, True, False, seen_u, seen_i, b + 1)
            if phase == 1:
                _stepwise_catch_up(P, UP, seen_u, b + 1, last_u, b, coefs)
            else:
                K._lazy_tables(P, mP, vP, gP, Q, mQ, vQ, gQ, z, z, z, z, z, z, z, z, False,
                               seen_u, seen_i, b + 1, 0, 1, last_u, last_i, Us, b, K.CATCH_UP,
                               coefs, c, True, side)  # fmt: skip
            K._lazy_tables(P, mP, vP, gP, Q, mQ, vQ, gQ, z, z, z, z, z, z, z, z, False, seen_u,
                           seen_i, b + 1, 0, 1, last_u, last_i, Us, b + 1, K.STEP, coefs, c,
                           True, side)  # fmt: skip
        inv_m = K._inv_pairs(NEGS, start, end, K.BPR)
        if phase in (2, 3):
            K._pair_derivatives(P, Q, z, z, False, USERS, ITEMS, NEGS, PERM, start, start, end,
                                0.0, K.BPR, inv_m, coef, terms)  # fmt: skip
        if phase == 3:
            K._owner_gradients(P, Q, False, gP, gQ, z, z, USERS, ITEMS, NEGS, PERM, start, end,
                               coef, tmp, 0, 1)  # fmt: skip
        if phase == 4:
            K._adam_sweep(Q.reshape(-1), mQ.reshape(-1), vQ.reshape(-1), gQ.reshape(-1), 1e-3,
                          b + 1.0, 0.9, 0.999, 1e-8, 0.1, True)  # fmt: skip


def _ms(phase: int) -> float:
    P = (rng.standard_normal((N_USERS, F)) * 0.1).astype(np.float32)
    Q = (rng.standard_normal((N_ITEMS, F)) * 0.1).astype(np.float32)
    moments_p = tuple(np.full_like(P, 1e-3) for _ in range(3))
    moments_q = tuple(np.full_like(Q, 1e-3) for _ in range(3))
    tables = (P, *moments_p, Q, *moments_q, np.zeros_like(P), np.zeros_like(Q))
    marks = (np.full(N_USERS, -1), np.full(N_ITEMS, -1), np.zeros(N_USERS, np.int64),
             np.zeros(N_ITEMS, np.int64))  # fmt: skip
    coefs = K.lazy_coefs(np.full(N_BATCHES, 1e-3), 0, 0.9, 0.999, 0.1, True)
    coef, terms = np.zeros((BS, 5)), np.zeros((BS, 10))
    start = time.perf_counter()
    _epoch(phase, tables, marks, coefs, coef, terms)
    return (time.perf_counter() - start) * 1000 / N_BATCHES


PHASES = {
    "lazy users, O(1) catch-up": 0,
    "lazy users, step-by-step catch-up": 1,
    "pair derivatives": 2,
    "pair derivatives + owner gradients": 3,
    "dense item sweep": 4,
    "lazy items (instead of the sweep)": 5,
}

if __name__ == "__main__":
    for name, phase in PHASES.items():
        _ms(phase)  # compile, warm
        print(f"{name:36s} {statistics.median(_ms(phase) for _ in range(3)):6.3f} ms/batch")
