"""Top-k recommendations for many users, in user chunks bounded by a memory budget.

Export (writing every user's list to the store), evaluation (full ranking) and offline use all
need "the top-k of every user". Scoring all users at once needs an ``n_users × n_items`` float
matrix, which for 100k × 50k items is 20 GB, so users are processed in chunks whose working set
fits a budget: ``chunk × n_items × 4 bytes × SCORE_OVERHEAD <= memory_budget_bytes``. The factor
covers the temporaries of one chunk (the model's score tensor and its numpy copy, the masked
copy, the negated copy and int64 ``argpartition`` indices): scoring 1,024 users × 40,000 items
with ``biased_mf`` raised peak RSS by 3.8× the float32 score matrix. Models also score in
sub-chunks of at most ``DEFAULT_SCORE_CHUNK`` (1,024) users, so a large budget never means a
larger matrix than that. ``--memory-budget 4GB`` on the CLI goes through
:func:`parse_memory_budget`.

Everything here speaks indices except :func:`recommend_all_frame`, which takes and returns raw ids.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from recforge.errors import ConfigError
from recforge.models.base import FloatArray, IndexArray, Recommender

#: Default bound on one chunk's scoring working set (bytes).
DEFAULT_MEMORY_BUDGET = 512 * 1024**2
#: Working set of one scored chunk as a multiple of its float32 score matrix (measured: 3.8).
SCORE_OVERHEAD = 4
#: Bytes of one score.
SCORE_BYTES = 4

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "SCORE_OVERHEAD",
    "chunk_size_for",
    "parse_memory_budget",
    "recommend_all",
    "recommend_all_frame",
]


def parse_memory_budget(value: str | int | None) -> int | None:
    """Bytes of a budget such as ``"4GB"``, ``"512MB"``, ``"1.5GiB"`` or ``1000000``; None passes.

    KB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024.

    Raises:
        ConfigError: not a positive size with a known unit.
    """
    if value is None:
        return None
    from recforge.models.ease import parse_bytes

    try:
        n = parse_bytes(value)
    except ValueError as exc:
        raise ConfigError(f"--memory-budget: {exc}") from None
    if n <= 0:
        raise ConfigError(f"--memory-budget must be positive, got {value!r}; write e.g. '4GB'")
    return n


def chunk_size_for(
    n_items: int,
    memory_budget_bytes: int | None = None,
    *,
    bytes_per_score: int = SCORE_BYTES,
    overhead: float = SCORE_OVERHEAD,
) -> int:
    """Users per chunk: ``budget // (n_items × bytes_per_score × overhead)``, at least 1.

    Args:
        n_items: scores per user (the catalogue size).
        memory_budget_bytes: bound on one chunk's working set (default 512 MiB).
        bytes_per_score: 4 for float32 scores.
        overhead: working set as a multiple of the score matrix (:data:`SCORE_OVERHEAD`).
    """
    budget = DEFAULT_MEMORY_BUDGET if memory_budget_bytes is None else int(memory_budget_bytes)
    if budget <= 0:
        raise ConfigError(f"memory_budget_bytes must be positive, got {memory_budget_bytes}")
    per_user = max(n_items, 1) * bytes_per_score * overhead
    return max(1, int(budget // per_user))


def _candidate_mask(
    model: Recommender, candidates: npt.ArrayLike | None
) -> npt.NDArray[np.bool_] | None:
    if candidates is None:
        return None
    cand = np.asarray(candidates)
    if cand.dtype == bool:
        if cand.shape != (model.n_items,):
            raise ConfigError(
                f"candidates mask has shape {cand.shape}; expected ({model.n_items},): one per item"
            )
        return cand
    idx = cand.astype(np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= model.n_items):
        raise ConfigError(
            f"candidate item indices must lie in [0, {model.n_items}); got {idx.min()}..{idx.max()}"
        )
    mask = np.zeros(model.n_items, dtype=bool)
    mask[idx] = True
    return mask


def recommend_all(
    model: Recommender,
    user_idx: npt.ArrayLike | None = None,
    k: int = 100,
    *,
    exclude_seen: bool = True,
    candidates: npt.ArrayLike | None = None,
    chunk_size: int | None = None,
    memory_budget_bytes: int | None = None,
    progress: bool = False,
) -> Iterator[tuple[IndexArray, IndexArray, FloatArray]]:
    """Yield ``(user_idx, item_idx, scores)`` per user chunk, via ``model.recommend_idx``.

    Args:
        model: a fitted recommender.
        user_idx: user indices to score (default: every user the model knows), in output order.
        k: list length; the arrays have ``min(k, n_items)`` columns. Cells that cannot be filled
            (every allowed item used) hold item -1 and score -inf.
        exclude_seen: drop each user's training items.
        candidates: restrict the ranking to these items: a boolean mask over the model's items or
            an array of item indices.
        chunk_size: users per chunk; derived from ``memory_budget_bytes`` when None.
        memory_budget_bytes: bound on one chunk's working set (default 512 MiB; see
            :func:`chunk_size_for`).
        progress: show a progress bar on stderr when it is a terminal.

    Yields:
        ``user_idx`` ``(b,)`` int64, ``item_idx`` ``(b, width)`` int64 and ``scores``
        ``(b, width)`` float32.
    """
    model.check_fitted()
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    users = (
        np.arange(model.n_users, dtype=np.int64)
        if user_idx is None
        else np.asarray(user_idx, dtype=np.int64).reshape(-1)
    )
    if users.size and (users.min() < 0 or users.max() >= model.n_users):
        raise ConfigError(
            f"user indices must lie in [0, {model.n_users}); got {users.min()}..{users.max()}"
        )
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    chunk = (
        chunk_size if chunk_size is not None else chunk_size_for(model.n_items, memory_budget_bytes)
    )
    mask = _candidate_mask(model, candidates)

    bar: Any = None
    task: Any = None
    from recforge.progress import Ticker

    # Off a terminal, in the CLI: a line per quarter of the users (see recforge.progress).
    ticker = Ticker(len(users), "scoring users", step=0.25, verbose=progress)
    if progress and sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("scoring users", total=len(users))
    try:
        for start in range(0, len(users), chunk):
            part = users[start : start + chunk]
            idx, val = model.recommend_idx(part, k, exclude_seen=exclude_seen, candidates=mask)
            if bar is not None:
                bar.advance(task, len(part))
            ticker.tick(len(part))
            yield part, idx, val
    finally:
        if bar is not None:
            bar.stop()


def recommend_all_frame(
    model: Recommender,
    user_ids: npt.ArrayLike | None = None,
    k: int = 10,
    *,
    exclude_seen: bool = True,
    candidates: npt.ArrayLike | None = None,
    chunk_size: int | None = None,
    memory_budget_bytes: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Top-``k`` of many users as one frame ``user_id, rank, item_id, score`` in raw ids.

    Args:
        model: a fitted recommender.
        user_ids: raw user ids (default: every user the model knows); unknown ids raise
            :class:`~recforge.errors.UnknownIdError`.
        k: list length; unfilled positions are dropped, so a user may get fewer than ``k`` rows.
        candidates: raw item ids to rank among (unknown ids are ignored).
        exclude_seen, chunk_size, memory_budget_bytes, progress: as in :func:`recommend_all`.

    Returns:
        One row per recommendation, users in input order, ``rank`` from 1.
    """
    model.check_fitted()
    if user_ids is None:
        users = np.arange(model.n_users, dtype=np.int64)
    else:
        users = model.users_.index(np.atleast_1d(np.asarray(user_ids)))
    cand = None
    if candidates is not None:
        ci = model.items_.index(np.atleast_1d(np.asarray(candidates)), missing="negative")
        cand = np.zeros(model.n_items, dtype=bool)
        cand[ci[ci >= 0]] = True
    frames_u: list[IndexArray] = []
    frames_r: list[IndexArray] = []
    frames_i: list[IndexArray] = []
    frames_s: list[FloatArray] = []
    for part, idx, val in recommend_all(
        model,
        users,
        k,
        exclude_seen=exclude_seen,
        candidates=cand,
        chunk_size=chunk_size,
        memory_budget_bytes=memory_budget_bytes,
        progress=progress,
    ):
        ok = idx >= 0
        rows, cols = np.nonzero(ok)  # row-major, so each user's ranks stay in order
        frames_u.append(part[rows])
        frames_r.append(cols.astype(np.int64) + 1)
        frames_i.append(idx[rows, cols])
        frames_s.append(val[rows, cols])
    if not frames_u:
        return pd.DataFrame(
            {
                "user_id": model.users_.lookup(np.zeros(0, np.int64)),
                "rank": np.zeros(0, np.int64),
                "item_id": model.items_.lookup(np.zeros(0, np.int64)),
                "score": np.zeros(0, np.float32),
            }
        )
    return pd.DataFrame(
        {
            "user_id": model.users_.lookup(np.concatenate(frames_u)),
            "rank": np.concatenate(frames_r),
            "item_id": model.items_.lookup(np.concatenate(frames_i)),
            "score": np.concatenate(frames_s),
        }
    )
