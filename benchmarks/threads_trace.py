"""Where two threads lose time on small problems: the traces behind docs/benchmarks/speed_picker.md
("Session 11").

Usage: ``RECFORGE_DATA_DIR=<data> python benchmarks/threads_trace.py ranges|probes|biased-mf``

- ``ranges``: an ML-100k ALS fit (64 factors, 15 iterations) with every half-step forced onto
  two threads; prints each numba CG range's seconds in the first half-steps (which thread ran
  it) and the fit's time on one and on two forced threads.
- ``probes``: 20 ml-latest-small item-kNN fits on two threads in one process; prints each fit's
  seconds and the thread counts the picker timed in it (``{2: 1, 1: 1}`` is an in-call probe).
- ``biased-mf``: 12 interleaved pairs of ml-latest-small biased MF fits on one and on two
  threads (it is single-threaded): the median 2-thread / 1-thread ratio.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from typing import Any

import recforge.models._als_kernels as als_kernels
import recforge.models.als as als_mod
import recforge.models.knn as knn_mod
import recforge.threads as th
from recforge.bench.speed import _all_threads, _create, load_speed_dataset
from recforge.eval.protocols import get_protocol


def _train(dataset: str, protocol: str = "temporal-user-80-20") -> Any:
    return get_protocol(protocol).split(load_speed_dataset(dataset)).train


def ranges() -> None:
    train = _train("ml-100k")
    real_cg, real_map = als_kernels.cg_half, als_mod.picked_map
    calls: list[tuple[int, int, str, float]] = []

    def cg_half(*args: Any) -> None:
        t = time.perf_counter()
        real_cg(*args)
        calls.append((args[-3], args[-2], threading.current_thread().name, time.perf_counter() - t))

    def forced(n: int) -> Any:
        def run(kernel: str, fn: Any, items: Any, *_: Any, **__: Any) -> Any:
            return th.map_in_threads(fn, items, n)

        return run

    als_kernels.cg_half = cg_half
    for n in (1, 2):
        als_mod.picked_map = forced(n)
        times = []
        for _ in range(8):
            calls.clear()
            with _all_threads(2):
                t = time.perf_counter()
                _create("als", n_factors=64, iterations=15, seed=0, num_threads=2).fit(train)
                times.append(time.perf_counter() - t)
        print(f"{n} forced thread(s): fit median {1e3 * statistics.median(times[1:]):.1f} ms")
        if n == 2:
            for lo, hi, who, s in calls[:16]:
                print(f"  rows {lo}-{hi} on {who}: {1e3 * s:.2f} ms")
    als_kernels.cg_half, als_mod.picked_map = real_cg, real_map


def probes() -> None:
    train = _train("ml-latest-small")
    real = knn_mod.picked_map

    def traced(kernel: str, fn: Any, items: Any, costs: Any, work_ms: float, *a: Any) -> Any:
        picker = th.thread_picker(kernel, work_ms, *a)
        before = dict(picker.seen)
        out = real(kernel, fn, items, costs, work_ms, *a)
        traced.last = {e: picker.seen[e] - before[e] for e in picker.seen}  # type: ignore[attr-defined]
        return out

    knn_mod.picked_map = traced
    with _all_threads(2):
        for i in range(20):
            model = _create("item_knn", k_neighbors=40, feedback="implicit", seed=0, num_threads=2)
            t = time.perf_counter()
            model.fit(train)
            print(f"fit {i}: {1e3 * (time.perf_counter() - t):.0f} ms, timed {traced.last}")  # type: ignore[attr-defined]
    knn_mod.picked_map = real


def biased_mf() -> None:
    train = _train("ml-latest-small", "random-80-20")
    res: dict[int, list[float]] = {1: [], 2: []}
    for i in range(12):
        for n in (1, 2) if i % 2 else (2, 1):
            with _all_threads(n):
                model = _create("biased_mf", seed=0, num_threads=n)
                t = time.perf_counter()
                model.fit(train)
                res[n].append(time.perf_counter() - t)
    ratios = [b / a for a, b in zip(res[1][1:], res[2][1:], strict=True)]
    print(f"2 thr / 1 thr, median of {len(ratios)} pairs: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    {"ranges": ranges, "probes": probes, "biased-mf": biased_mf}[sys.argv[1]]()
