"""The compiled uniform negative draw of a base commit against this checkout's (one process).

Usage: ``python benchmarks/uniform_draws_ab.py BASE_COMMIT DATASET... [--reps N]``: each
dataset's temporal-user-80-20 training part, 4 draws a training row in a shuffled order (one
BPR epoch's draws), the same random numbers for both; prints ns a draw (median of N, default 5,
interleaved), whether the items are identical, and the bucket index's size and build time.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

from recforge.bench.speed import load_speed_dataset
from recforge.eval.protocols import get_protocol
from recforge.train import _mf_kernels as new
from recforge.train.sampling import NegativeSampler

sys.path.insert(0, os.path.dirname(__file__))
from bpr_kernel_ab import _base_module


def main(commit: str, datasets: list[str], reps: int) -> None:
    base = _base_module(commit)
    print(f"load {os.getloadavg()}")
    for name in datasets:
        train = get_protocol("temporal-user-80-20").split(load_speed_dataset(name)).train
        u, i = train.user_idx.astype(np.int64), train.item_idx.astype(np.int64)
        s = NegativeSampler(u, i, train.n_users, train.n_items, seed=0)
        users = np.repeat(u[np.random.default_rng(0).permutation(len(u))], 4)
        rand = np.random.default_rng(1).random(len(users))
        args = (s._shifted, s._indptr, s._n_free, users, rand, s.n_items)
        t0 = time.perf_counter()
        index = new.uniform_buckets(s._shifted, s._indptr, s._n_free, s.n_items)
        built = time.perf_counter() - t0  # includes compilation on a cold cache
        same = np.array_equal(base.uniform_negatives(*args), new.uniform_negatives(*args, *index))
        times: dict[str, list[float]] = {"base": [], "new": []}
        for rep in range(reps):
            for arm in ("base", "new") if rep % 2 == 0 else ("new", "base"):
                t0 = time.perf_counter()
                if arm == "base":
                    base.uniform_negatives(*args)
                else:
                    new.uniform_negatives(*args, *index)
                times[arm].append((time.perf_counter() - t0) / len(users) * 1e9)
        b, n = (statistics.median(times[k]) for k in ("base", "new"))
        size = len(index[2])
        print(f"{name}: {len(users)} draws; base {b:.1f} ns, new {n:.1f} ns a draw ({n / b:.2f}); "
              f"identical: {same}; index {size} counts, built in {built:.3f} s")  # fmt: skip
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    argv = sys.argv[1:]
    n_reps = 5
    if "--reps" in argv:
        k = argv.index("--reps")
        n_reps = int(argv[k + 1])
        argv = argv[:k] + argv[k + 2 :]
    main(argv[0], argv[1:], n_reps)
