"""Where a second thread starts to pay: the measurements behind ``recforge.threads.threads_for``.

Each parallel region recforge runs (EASE's Cholesky + inverse through torch's LAPACK, one ALS
CG half-step of the compiled kernel, a top-k block of the scoring path) is timed with one and
with two threads *forced* (the thread policy bypassed), interleaved per repetition in one
process, at sizes around the policy's cut. Beside each: the cost model's one-thread milliseconds
per region and the count ``threads_for`` picks at 2 requested threads. The policy is right where
it picks 2 exactly when the measured ``2 thr / 1 thr`` is below 1. (ALS half-steps and top-k
blocks now choose their count at run time, ``recforge.threads.picked_threads``; their rows here
show where the static policy would have been right.)

Usage (from the repository root):
    RECFORGE_DATA_DIR=../shared/data nice -n 10 .venv/bin/python benchmarks/threads_threshold.py \
        --reps 5 --out docs/benchmarks/speed_threads.json --md docs/benchmarks/speed_threads.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

# recforge before torch (imported by its modules): it makes idle OpenMP workers sleep.
import recforge.threads as threads_mod
from recforge.models import als as als_mod
from recforge.models import base as base_mod
from recforge.models import ease as ease_mod
from recforge.threads import MIN_MS_PER_THREAD, picked_threads, threads_for

_REAL_THREADS_FOR = threads_for
_REAL_PICKED = picked_threads


@contextlib.contextmanager
def forced(n: int) -> Iterator[None]:
    """torch at ``n`` threads and ``threads_for`` returning ``n`` everywhere (no policy)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)

    def always(work_ms: float, requested: int | None = None) -> int:
        return requested or 1

    @contextlib.contextmanager
    def all_picked(kernel: str, work_ms: float, requested: int | None = None, **_: Any) -> Any:
        yield torch.get_num_threads() if requested is None else requested

    threads_mod.threads_for = always  # type: ignore[assignment]  # capped() reads it here
    # Regions that pick their count at run time (ALS half-steps, top-k): all threads.
    threads_mod.picked_threads = all_picked  # type: ignore[assignment]
    als_mod.picked_threads = all_picked  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.set_num_threads(old)
        threads_mod.threads_for = _REAL_THREADS_FOR  # type: ignore[assignment]
        threads_mod.picked_threads = _REAL_PICKED  # type: ignore[assignment]
        als_mod.picked_threads = _REAL_PICKED  # type: ignore[assignment]


def ease_case(n: int) -> tuple[Callable[[], Any], float]:
    rng = np.random.default_rng(n)
    x = (rng.random((3000, n)) < 0.03).astype(np.float32)
    gram = x.T @ x
    gram[np.diag_indices(n)] += 300.0
    return (lambda: ease_mod.spd_inverse(gram.copy())), ease_mod.lapack_region_ms(n)


def als_case(rows: int, cols: int, per_row: int) -> tuple[Callable[[], Any], float]:
    rng = np.random.default_rng(rows)
    stride = cols // per_row  # distinct, sorted columns per row at a random offset
    indices = (np.arange(per_row) * stride)[None, :] + rng.integers(0, stride, rows)[:, None]
    indices = indices.ravel()
    indptr = np.arange(rows + 1, dtype=np.int64) * per_row
    mat = sp.csr_matrix(
        (np.ones(rows * per_row, np.float32), indices.astype(np.int32), indptr), (rows, cols)
    )
    model = als_mod.ALS(n_factors=64, backend="numba", cg_steps=3)
    model._native = als_mod._numba_cg()
    model._bounds = {}
    import torch

    current = torch.from_numpy(rng.normal(0, 0.01, (rows, 64)).astype(np.float32))
    other = torch.from_numpy(rng.normal(0, 0.01, (cols, 64)).astype(np.float32))
    return (lambda: model._numba_half(mat, current, other)), als_mod._cg_half_ms(mat, 64, 3)


def topk_case(rows: int, cols: int) -> tuple[Callable[[], Any], float]:
    scores = np.random.default_rng(cols).normal(size=(rows, cols)).astype(np.float32)
    return (lambda: base_mod.topk_rows(scores, 100)), scores.size * base_mod._TOPK_MS_PER_CELL


CASES: list[tuple[str, Callable[[], tuple[Callable[[], Any], float]]]] = [
    ("ease n=1,000", lambda: ease_case(1000)),
    ("ease n=1,682 (ML-100k)", lambda: ease_case(1682)),
    ("ease n=2,500", lambda: ease_case(2500)),
    ("ease n=3,500", lambda: ease_case(3500)),
    ("ease n=4,500", lambda: ease_case(4500)),
    ("als half-step 943 × 1,682, 85/row (ML-100k users)", lambda: als_case(943, 1682, 85)),
    ("als half-step 9,724 × 610, 8/row (ml-latest-small items)", lambda: als_case(9724, 610, 8)),
    ("als half-step 20,000 × 20,000, 20/row", lambda: als_case(20_000, 20_000, 20)),
    ("top-100 of 943 × 1,682 (ML-100k)", lambda: topk_case(943, 1682)),
    ("top-100 of 610 × 9,724 (ml-latest-small)", lambda: topk_case(610, 9724)),
    ("top-100 of 1,024 × 27,000 (ML-20M chunk)", lambda: topk_case(1024, 27_000)),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--md", type=Path, required=True)
    args = ap.parse_args()
    load0 = [round(v, 2) for v in os.getloadavg()]
    rows = []
    for label, make in CASES:
        fn, region_ms = make()
        for n in (1, 2):  # warm-up: compiled kernels, LAPACK workspaces
            with forced(n):
                fn()
        secs: dict[int, list[float]] = {1: [], 2: []}
        for rep in range(args.reps):
            for n in (1, 2) if rep % 2 == 0 else (2, 1):
                with forced(n):
                    t0 = time.perf_counter()
                    fn()
                    secs[n].append(time.perf_counter() - t0)
        ratio = statistics.median(a / b for a, b in zip(secs[2], secs[1], strict=True))
        rows.append(
            {
                "case": label,
                "region_ms_model": region_ms,
                "threads_for_2": threads_for(region_ms, 2),
                "one_thread_ms": 1e3 * statistics.median(secs[1]),
                "two_threads_ms": 1e3 * statistics.median(secs[2]),
                "ratio_2_over_1": ratio,
            }
        )
        print(rows[-1], flush=True)
    result = {
        "command": "python benchmarks/threads_threshold.py "
        f"--reps {args.reps} --out {args.out} --md {args.md}",
        "min_ms_per_thread": MIN_MS_PER_THREAD,
        "load_average_start": load0,
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Where a second thread pays: the measurements behind `threads_for`",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Load average {load0} at the start, {result['load_average_end']} at the end, on the "
        "shared 2-CPU machine. One and two threads forced (the policy bypassed), interleaved, "
        f"median of {args.reps}; `threads_for` gives a thread per {MIN_MS_PER_THREAD:g} ms of "
        "one-thread work in a parallel region (the cost model's estimate, second column).",
        "",
        "| region | model ms / region | threads_for(·, 2) | 1 thread ms | 2 threads ms "
        "| 2 thr / 1 thr |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['region_ms_model']:.1f} | {r['threads_for_2']} | "
            f"{r['one_thread_ms']:.1f} | {r['two_threads_ms']:.1f} | "
            f"**{r['ratio_2_over_1']:.2f}** |"
        )
    lines.append("")
    args.md.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
