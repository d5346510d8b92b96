"""The item-kNN cosine kernel's cost per row, and the two-thread split it gives.

Usage: ``RECFORGE_DATA_DIR=/work/shared/data python benchmarks/knn_kernel_costs.py
ml-latest-small`` (the binary item × user matrix of the temporal-user-80-20 training part, k=40).

1. Times the kernel (``recforge.models._knn_kernels.cosine_topk``) over 40 consecutive row ranges
   (3 passes) and fits ``ms = α·products + β·min(products, n) + γ·rows``: a row pays for its
   accumulated products, for each row it touches (at most ``min(products, n)``) and a constant.
   ``β/α`` and ``γ/α`` are the product-unit weights of ``knn._KNN_TOUCHED_COST`` /
   ``knn._KNN_ROW_COST``.
2. Runs the kernel on two threads over 8 ranges of equal cost, by products alone and by the
   fitted row cost, against one thread (median of 7, interleaved).

For an A/B of two kernels, run it with each tree's ``src`` first on ``PYTHONPATH`` (alternate
them: the machine is shared); ``benchmarks/knn_fit_sections.py`` times the whole fit the same way.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from recforge.bench.speed import load_speed_dataset
from recforge.eval.protocols import get_protocol
from recforge.models import knn
from recforge.models._knn_kernels import cosine_topk
from recforge.threads import equal_cost_ranges, map_in_threads


def _ranges_sum(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(values, cuts[:-1])


def main(dataset: str) -> None:
    train = get_protocol("temporal-user-80-20").split(load_speed_dataset(dataset)).train
    x = train.csr("binary").T.tocsr().astype(np.float64)
    x.sort_indices()
    n = x.shape[0]
    t = x.T.tocsr()
    norms = np.sqrt(np.diff(x.indptr).astype(np.float64))
    args = (
        x.indptr.astype(np.int64), x.indices.astype(np.int32), x.data,
        t.indptr.astype(np.int64), t.indices.astype(np.int32), t.data,
        norms, 40, 0.0, 1, 0.0, True,
    )  # fmt: skip
    col_len = np.diff(t.indptr).astype(np.float64)
    row_of = np.repeat(np.arange(n), np.diff(x.indptr))
    products = np.bincount(row_of, weights=col_len[x.indices], minlength=n)

    def rows(bound: tuple[int, int]) -> Any:
        return cosine_topk(*args, np.zeros(n, dtype=np.int16), bound[0], bound[1])

    rows((0, n))  # compile / load the cache
    cuts = np.linspace(0, n, 41).astype(np.int64)
    ms = np.zeros(40)
    for _ in range(3):
        for j in range(40):
            start = time.perf_counter()
            rows((int(cuts[j]), int(cuts[j + 1])))
            ms[j] += (time.perf_counter() - start) * 1e3 / 3
    design = np.stack(
        [
            _ranges_sum(products, cuts),
            _ranges_sum(np.minimum(products, n), cuts),
            np.diff(cuts).astype(np.float64),
        ],
        axis=1,
    )
    scale = np.linalg.norm(design, axis=0)  # columns of very different sizes: solve scaled
    coef = np.linalg.lstsq(design / scale, ms, rcond=None)[0] / scale
    resid = np.abs(design @ coef - ms) / ms
    print(
        f"{dataset}: {n} rows, {products.sum():.0f} products, kernel {ms.sum():.1f} ms at 1 "
        f"thread; "
        f"fit: {coef[0] * 1e6:.2f} ns a product, {coef[1] * 1e6:.2f} ns a touched row, "
        f"{coef[2] * 1e3:.2f} µs a row (in products: {coef[1] / coef[0]:.1f} and "
        f"{coef[2] / coef[0]:.0f}); largest range residual {resid.max():.0%}"
    )
    splits = {
        "products": products + 1.0,
        "row cost": products + knn._KNN_TOUCHED_COST * np.minimum(products, n) + knn._KNN_ROW_COST,
    }
    times: dict[str, list[float]] = {"1 thread": [], **{k: [] for k in splits}}
    for _ in range(7):
        start = time.perf_counter()
        rows((0, n))
        times["1 thread"].append(time.perf_counter() - start)
        for name, cost in splits.items():
            bounds = equal_cost_ranges(cost, 8)
            start = time.perf_counter()
            map_in_threads(rows, bounds, 2)
            times[name].append(time.perf_counter() - start)
    one = float(np.median(times["1 thread"]))
    for name in splits:
        two = float(np.median(times[name]))
        print(
            f"  2 threads, 8 ranges of equal {name}: {two * 1e3:.1f} ms, "
            f"{two / one:.2f} of 1 thread ({one * 1e3:.1f} ms)"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ml-latest-small")
