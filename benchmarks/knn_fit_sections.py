"""item-kNN fit (cosine, k=40, implicit): its time inside and outside the cosine kernel.

Usage: ``PYTHONPATH=<src> RECFORGE_DATA_DIR=/work/shared/data nice -n 10 python
benchmarks/knn_fit_sections.py ml-100k 1`` (dataset, threads). 25 fits on the
temporal-user-80-20 training part, the first 5 dropped; prints the mean wall and main-thread CPU
of the fit and of ``knn._cosine_topk_compiled``, and their difference (the fit's serial part:
at 1 thread, the main thread's CPU is the fit's). Run with another tree's ``src`` first on the
path to compare (alternate the two a few times: the machine is shared).
"""

from __future__ import annotations

import functools
import sys
import time
from typing import Any

import recforge.models.knn as knn
from recforge.bench.speed import _all_threads, load_speed_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create


def main(dataset: str, n_threads: int) -> None:
    train = get_protocol("temporal-user-80-20").split(load_speed_dataset(dataset)).train
    kernel = [0.0, 0.0]
    real = knn._cosine_topk_compiled

    @functools.wraps(real)
    def timed(*args: Any, **kwargs: Any) -> Any:
        w, c = time.perf_counter(), time.thread_time()
        try:
            return real(*args, **kwargs)
        finally:
            kernel[0] += time.perf_counter() - w
            kernel[1] += time.thread_time() - c

    knn._cosine_topk_compiled = timed  # type: ignore[assignment]
    total = [0.0, 0.0]
    with _all_threads(n_threads):
        for i in range(25):
            if i == 5:
                kernel[:] = [0.0, 0.0]
            model = create(
                "item_knn", k_neighbors=40, feedback="implicit", seed=0, num_threads=n_threads
            )
            w, c = time.perf_counter(), time.thread_time()
            model.fit(train)
            if i >= 5:
                total[0] += time.perf_counter() - w
                total[1] += time.thread_time() - c
    fit = [x / 20 * 1e3 for x in total]
    ker = [x / 20 * 1e3 for x in kernel]
    print(
        f"{dataset} {n_threads} thr ({knn.__file__}): fit wall {fit[0]:.1f} ms, main CPU "
        f"{fit[1]:.1f} ms; kernel wall {ker[0]:.1f}, main CPU {ker[1]:.1f}; outside the kernel "
        f"main CPU {fit[1] - ker[1]:.1f} ms"
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)
