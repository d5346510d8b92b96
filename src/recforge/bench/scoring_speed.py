"""The speed suite's ``scoring`` row: every user's top-k against a plain numpy reference.

Exports and full-ranking evaluation spend their time turning ``users × items`` score blocks into
top-k lists. This row times :func:`recforge.batch.recommend_all` (the export / evaluation path:
memory-bounded chunks, seen items excluded, ties by lower index) against the simplest numpy
program doing the same work: per chunk of 1,024 users ``S = U Vᵀ``, seen cells set to ``-inf``,
``argpartition`` for the top k, then a sort of those k. Both run on the same fitted model (ALS,
64 factors, one sweep: the scores' values do not change the cost), the same users and the same
thread count, interleaved, after an untimed warm-up; each timed repetition repeats the call
until it lasts ~0.2 s (the same count for both sides) and reports the time per call. The
"quality" column is the share of users whose two lists hold the
same items (1.0 unless scores tie at the cut, where numpy keeps an arbitrary item).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recforge.data.interactions import Interactions

__all__ = ["numpy_topk", "run_scoring"]

#: Top-k length of the row (the export default).
SCORING_K = 100
#: Users scored per repetition (the first ones; per-user cost does not depend on which).
SCORING_USERS = 10_240
#: Users per chunk of the numpy reference (recforge's own default score chunk).
REFERENCE_CHUNK = 1024
#: A timed repetition repeats the call until it lasts about this long (seconds).
MIN_REP_SECONDS = 0.2


def numpy_topk(
    user_f: npt.NDArray[np.float32],
    item_f: npt.NDArray[np.float32],
    seen: sp.csr_matrix,
    users: npt.NDArray[np.int64],
    k: int,
    chunk: int = REFERENCE_CHUNK,
) -> npt.NDArray[np.int64]:
    """The reference: top-``k`` item indices per user, best first, seen items excluded."""
    out = np.empty((len(users), k), dtype=np.int64)
    for start in range(0, len(users), chunk):
        u = users[start : start + chunk]
        scores = user_f[u] @ item_f.T
        rows = seen[u]
        scores[np.repeat(np.arange(len(u)), np.diff(rows.indptr)), rows.indices] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(scores, part, axis=1)
        out[start : start + len(u)] = np.take_along_axis(part, np.argsort(-vals, axis=1), axis=1)
    return out


def _same_sets(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> float:
    return float(np.mean((np.sort(a, axis=1) == np.sort(b, axis=1)).all(axis=1)))


def run_scoring(
    data: Interactions,
    *,
    threads: Sequence[int],
    reps: int,
    all_threads: Callable[[int], Any],
    progress: Callable[[str], None] | None = None,
    dataset: str = "",
    n_users: int = SCORING_USERS,
    k: int = SCORING_K,
) -> dict[str, Any]:
    """The row (same layout as a pair's; see :func:`recforge.bench.speed.run_speed`)."""
    from recforge.batch import recommend_all
    from recforge.models.als import ALS

    with all_threads(max(threads)):
        model = ALS(n_factors=64, iterations=1, seed=0).fit(data)
    users = np.arange(min(n_users, model.n_users), dtype=np.int64)
    user_f, item_f, seen = model.user_factors_, model.item_factors_, model.seen_

    def ours() -> npt.NDArray[np.int64]:
        return np.concatenate([idx for _, idx, _ in recommend_all(model, users, k)])

    def peer() -> npt.NDArray[np.int64]:
        return numpy_topk(user_f, item_f, seen, users, k)

    # Untimed warm-up (library loads, compiled kernels from numba's cache), then enough calls
    # per timed repetition that one lasts ~0.2 s: a single ML-100k call takes ~20 ms, where a
    # scheduler hiccup on the shared machine is as long as the call.
    with all_threads(threads[0]):
        ours()
        t0 = time.perf_counter()
        peer()
        inner = max(1, math.ceil(MIN_REP_SECONDS / max(time.perf_counter() - t0, 1e-6)))
    seconds: dict[tuple[int, str], list[float]] = {}
    cpu: dict[tuple[int, str], list[float]] = {}
    agree: dict[int, list[float]] = {}
    for rep in range(reps):
        for t in threads:
            lists: dict[str, npt.NDArray[np.int64]] = {}
            for side in ("ours", "peer") if rep % 2 == 0 else ("peer", "ours"):
                if progress is not None:
                    progress(f"{dataset} · scoring · {side} · {t} thr · rep {rep + 1}")
                fn = ours if side == "ours" else peer
                with all_threads(t):
                    c0, t0 = time.process_time(), time.perf_counter()
                    for _ in range(inner):
                        lists[side] = fn()
                    seconds.setdefault((t, side), []).append((time.perf_counter() - t0) / inner)
                    cpu.setdefault((t, side), []).append((time.process_time() - c0) / inner)
            agree.setdefault(t, []).append(_same_sets(lists["ours"], lists["peer"]))
    row: dict[str, Any] = {
        "pair": "scoring",
        "dataset": dataset,
        "protocol": f"top-{k} of {len(users):,} users × {model.n_items:,} items, seen excluded",
        "metric": "same lists",
        "ours": f"recforge recommend_all (ALS 64 f, top-{k})",
        "peer": "numpy matmul + argpartition",
        "note": f"{len(users):,} users × {model.n_items:,} items, 64 factors, top-{k}, seen items "
        "excluded on both sides; 'same lists' is the share of users whose two top-k sets match; "
        f"times are per call, each repetition the mean of {inner} calls.",
    }
    return row | _timing_summary(seconds, cpu, agree, threads, len(users))


def _timing_summary(
    seconds: dict[tuple[int, str], list[float]],
    cpu: dict[tuple[int, str], list[float]],
    agree: dict[int, list[float]],
    threads: Sequence[int],
    n_users: int,
) -> dict[str, Any]:
    """``by_threads`` (each side's times and the lists' agreement, wall and CPU ratios) and,
    over several thread counts, ``ours_threads_ratio`` — a pair row's layout."""
    row: dict[str, Any] = {"by_threads": {}}
    for t in threads:
        cells = {}
        for side in ("ours", "peer"):
            secs = seconds[(t, side)]
            cells[side] = {
                "seconds_median": statistics.median(secs),
                "seconds_min": min(secs),
                "seconds_max": max(secs),
                "metric_median": statistics.median(agree[t]),
                "metric_min": min(agree[t]),
                "metric_max": max(agree[t]),
                "seconds": secs,
                "cpu_seconds": cpu[(t, side)],
                "metric": agree[t],
                "users_per_s": n_users / statistics.median(secs),
            }
        ratios = [a / b for a, b in zip(seconds[(t, "ours")], seconds[(t, "peer")], strict=True)]
        cpu_ratios = [a / b for a, b in zip(cpu[(t, "ours")], cpu[(t, "peer")], strict=True)]
        row["by_threads"][str(t)] = {
            **cells,
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "cpu_ratio_median": statistics.median(cpu_ratios),
        }
    if len(threads) > 1:
        base = seconds[(threads[0], "ours")]
        row["ours_threads_ratio"] = {
            str(t): statistics.median(
                [a / b for a, b in zip(seconds[(t, "ours")], base, strict=True)]
            )
            for t in threads[1:]
        }
    return row
