"""Evaluation metrics: small pure functions, with the definitions frozen in DESIGN.md §4.

Rating metrics compare two arrays of ratings. Ranking metrics score ONE ranked list (item ids or
indices, best first) against ONE relevant set; catalogue metrics look at many lists at once.

Conventions shared by every ranking metric (``k`` is the cut-off, ``R`` the relevant set):

* only the first ``k`` entries of the list count; items in a list are assumed distinct;
* a user with no relevant items (``|R| = 0``) scores NaN, so callers can exclude and count them;
* an empty recommendation list scores 0 (for every metric, AUC included);
* ``precision@k = hits / k`` (always divided by ``k``, even when the list is shorter);
* ``recall@k = hits / min(k, |R|)`` (so a perfect top-k reaches 1 even when ``|R| > k``);
* ``ndcg@k``: binary gains, discount ``1 / log2(rank + 1)`` (rank from 1), ideal DCG over the
  ``min(k, |R|)`` best positions;
* ``map@k`` (average precision) ``= sum(precision@i · rel_i for i <= k) / min(k, |R|)``;
* ``mrr@k = 1 / rank of the first hit`` (0 without a hit); ``hit_rate@k = 1`` if any hit.

The evaluator needs these for 100k users at once, so every metric also has a vectorised batch
form (:func:`ranking_metrics_batch`, :func:`auc_batch`, :func:`coverage_batch`,
:func:`novelty_batch`) over a ``(n_users, width)`` top-k index matrix padded with -1 and a CSR
relevance matrix. The pure and the batch forms share one kernel (:func:`_metrics_from_hits`),
which receives the binary hit matrix; the only thing that differs is how hits are found (a Python
set for one list, a sorted-key ``searchsorted`` over the CSR for a batch). Tests check they agree.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recforge.errors import ConfigError

FloatVec = npt.NDArray[np.float64]
IntMatrix = npt.NDArray[np.integer[Any]]

#: Names of the per-user ranking metrics produced by :func:`ranking_metrics_batch`, in order.
RANKING_METRICS = ("precision", "recall", "ndcg", "hit_rate", "mrr", "map")

__all__ = [
    "RANKING_METRICS",
    "auc",
    "auc_batch",
    "average_precision_at_k",
    "coverage_at_k",
    "coverage_batch",
    "hit_matrix",
    "hit_rate_at_k",
    "like_accuracy",
    "mae",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "novelty_batch",
    "precision_at_k",
    "ranking_metrics_batch",
    "recall_at_k",
    "rmse",
]


# ====================================================================== rating metrics
def _pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[FloatVec, FloatVec]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ConfigError(f"y_true has {t.size} values but y_pred has {p.size}; they must pair up")
    return t, p


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error ``sqrt(mean((y_pred - y_true)^2))``; NaN for empty input."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((p - t) ** 2))) if t.size else float("nan")


def mae(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute error ``mean(|y_pred - y_true|)``; NaN for empty input."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(p - t))) if t.size else float("nan")


def like_accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, threshold: float = 3.0) -> float:
    """Like/dislike accuracy: share of pairs where ``y_pred > t`` equals ``y_true > t``.

    ``t`` is ``threshold``; "like" means a rating strictly above it (the reference
    material's ``rating > 3``).
    NaN for empty input.
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean((t > threshold) == (p > threshold))) if t.size else float("nan")


# ====================================================================== shared ranking kernel
def _discounts(n: int) -> FloatVec:
    """``1 / log2(rank + 1)`` for ranks ``1..n``."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def _metrics_from_hits(
    hits: npt.NDArray[np.bool_], n_rel: npt.NDArray[np.integer[Any]], k: int
) -> dict[str, FloatVec]:
    """Every cut-off metric at ``k`` from a ``(n_users, width)`` binary hit matrix.

    ``hits[u, j]`` is True when the item at rank ``j + 1`` of user ``u``'s list is relevant (padding
    is False); ``n_rel[u] = |R_u|``. Columns beyond ``k`` are ignored; a list shorter than ``k``
    simply has fewer columns. Rows with ``n_rel == 0`` come out NaN.
    """
    h = hits[:, :k].astype(np.float64)
    n_users, width = h.shape
    n_rel = np.asarray(n_rel, dtype=np.int64)
    denom = np.minimum(k, n_rel)  # min(k, |R|): the best achievable number of hits
    valid = denom > 0
    safe = np.where(valid, denom, 1).astype(np.float64)

    n_hits = h.sum(axis=1)
    disc = _discounts(max(k, width))
    dcg = (h * disc[:width]).sum(axis=1)
    idcg = np.cumsum(disc)[np.maximum(denom, 1) - 1]
    any_hit = n_hits > 0
    first = np.argmax(h > 0, axis=1) if width else np.zeros(n_users, dtype=np.int64)
    rr = np.where(any_hit, 1.0 / (first + 1.0), 0.0)
    prec_at_i = np.cumsum(h, axis=1) / np.arange(1, width + 1, dtype=np.float64)
    ap = (prec_at_i * h).sum(axis=1) / safe

    out = {
        "precision": n_hits / k,
        "recall": n_hits / safe,
        "ndcg": dcg / idcg,
        "hit_rate": any_hit.astype(np.float64),
        "mrr": rr,
        "map": ap,
    }
    return {name: np.where(valid, val, np.nan) for name, val in out.items()}


def _hits_of_list(
    ranked: Sequence[Any] | npt.ArrayLike, relevant: Collection[Any], k: int
) -> npt.NDArray[np.bool_]:
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    rel = relevant if isinstance(relevant, set | frozenset) else set(_as_list(relevant))
    top = _as_list(ranked)[:k]
    return np.fromiter((x in rel for x in top), dtype=bool, count=len(top)).reshape(1, -1)


def _as_list(values: Any) -> list[Any]:
    if isinstance(values, np.ndarray):
        return list(values.reshape(-1).tolist())
    return list(values)


def _n_relevant(relevant: Collection[Any]) -> int:
    return len(relevant if isinstance(relevant, set | frozenset) else set(_as_list(relevant)))


def _one(name: str, ranked: Any, relevant: Collection[Any], k: int) -> float:
    hits = _hits_of_list(ranked, relevant, k)
    return float(_metrics_from_hits(hits, np.asarray([_n_relevant(relevant)]), k)[name][0])


# ====================================================================== one list, one relevant set
def precision_at_k(
    ranked: Sequence[Any] | npt.ArrayLike, relevant: Collection[Any], k: int
) -> float:
    """Precision@k = (relevant items among the first ``k``) / ``k``.

    Args:
        ranked: recommended item ids, best first.
        relevant: the user's relevant item ids.
        k: cut-off (>= 1). The denominator is always ``k``, even for a shorter list.

    Returns:
        A value in [0, 1]; NaN when ``relevant`` is empty; 0 for an empty list.
    """
    return _one("precision", ranked, relevant, k)


def recall_at_k(ranked: Sequence[Any] | npt.ArrayLike, relevant: Collection[Any], k: int) -> float:
    """Recall@k = (relevant items among the first ``k``) / ``min(k, |relevant|)``.

    Dividing by ``min(k, |relevant|)`` rather than ``|relevant|`` (DESIGN §4) means a perfect
    top-k list scores 1 even when the user has more than ``k`` relevant items.

    Returns:
        A value in [0, 1]; NaN when ``relevant`` is empty; 0 for an empty list.
    """
    return _one("recall", ranked, relevant, k)


def ndcg_at_k(ranked: Sequence[Any] | npt.ArrayLike, relevant: Collection[Any], k: int) -> float:
    """NDCG@k with binary gains: ``DCG / IDCG``.

    ``DCG = sum over ranks r <= k of rel_r / log2(r + 1)``; ``IDCG`` is the DCG of a list whose
    first ``min(k, |relevant|)`` entries are all relevant.

    Returns:
        A value in [0, 1]; NaN when ``relevant`` is empty; 0 for an empty list.
    """
    return _one("ndcg", ranked, relevant, k)


def hit_rate_at_k(
    ranked: Sequence[Any] | npt.ArrayLike, relevant: Collection[Any], k: int
) -> float:
    """HitRate@k: 1 if any of the first ``k`` items is relevant, else 0 (NaN without relevant)."""
    return _one("hit_rate", ranked, relevant, k)


def mrr_at_k(ranked: Sequence[Any] | npt.ArrayLike, relevant: Collection[Any], k: int) -> float:
    """Reciprocal rank of the first hit in the top ``k`` (0 if none; NaN if nothing is relevant)."""
    return _one("mrr", ranked, relevant, k)


def average_precision_at_k(
    ranked: Sequence[Any] | npt.ArrayLike, relevant: Collection[Any], k: int
) -> float:
    """AP@k = ``sum_{r<=k} precision@r · rel_r / min(k, |relevant|)``; MAP@k is its mean over users.

    Returns:
        A value in [0, 1]; NaN when ``relevant`` is empty; 0 for an empty list.
    """
    return _one("map", ranked, relevant, k)


def auc(
    ranked: Sequence[Any] | npt.ArrayLike, relevant: Collection[Any], n_candidates: int
) -> float:
    """Area under the ROC curve of one ranked list over a candidate set of ``n_candidates`` items.

    AUC is the fraction of (relevant, non-relevant) candidate pairs that the ranking orders
    correctly. Computed in one pass: ``n_pos = |relevant|``, ``n_neg = n_candidates - n_pos``; a
    relevant item at rank ``r`` with ``a`` non-relevant items above it wins ``n_neg - a`` pairs.
    Candidates missing from ``ranked`` (a truncated list) are treated as tied below every listed
    item: a missing relevant item loses to every listed non-relevant item and wins half a pair
    against each missing non-relevant one. Every relevant item is assumed to be a candidate.

    Args:
        ranked: item ids, best first (the full ranking, or a prefix of it).
        relevant: relevant item ids.
        n_candidates: size of the candidate set the ranking was drawn from.

    Returns:
        A value in [0, 1]; NaN when there is no relevant or no non-relevant candidate; 0 for an
        empty list (DESIGN §4's rule, even though "no ranking" would otherwise be a 0.5 tie).
    """
    n_pos = _n_relevant(relevant)
    hits = _hits_of_list(ranked, relevant, max(len(_as_list(ranked)), 1))
    return float(_auc_from_hits(hits, np.asarray([n_pos]), np.asarray([n_candidates]))[0])


def _auc_from_hits(
    hits: npt.NDArray[np.bool_],
    n_pos: npt.NDArray[np.integer[Any]],
    n_candidates: npt.NDArray[np.integer[Any]],
    listed: npt.NDArray[np.integer[Any]] | None = None,
) -> FloatVec:
    """AUC per row from a hit matrix; ``listed[u]`` is the list length (defaults to the width)."""
    h = hits.astype(bool)
    n_users, width = h.shape
    n_pos = np.asarray(n_pos, dtype=np.int64)
    n_neg = np.asarray(n_candidates, dtype=np.int64) - n_pos
    length = np.full(n_users, width, np.int64) if listed is None else np.asarray(listed, np.int64)
    # Non-relevant items strictly above each position (padding sits after the list, never counted).
    neg_above = np.cumsum(~h, axis=1) - (~h)
    listed_pos = h.sum(axis=1)
    listed_neg = length - listed_pos
    won_listed = np.where(h, n_neg[:, None] - neg_above, 0).sum(axis=1)
    missing_pos = n_pos - listed_pos
    won_missing = missing_pos * 0.5 * (n_neg - listed_neg)
    pairs = n_pos * n_neg
    valid = pairs > 0
    value = (won_listed + won_missing) / np.where(valid, pairs, 1)
    value = np.where(length > 0, value, 0.0)
    return np.where(valid, value, np.nan)


# ====================================================================== catalogue metrics
def _flatten_lists(lists: Iterable[Any]) -> list[list[Any]]:
    if isinstance(lists, np.ndarray) and lists.ndim == 2:
        # Index matrices pad with negative numbers; they are not items.
        return [[x for x in row.tolist() if x >= 0] for row in lists]
    return [_as_list(row) for row in lists]


def coverage_at_k(lists: Iterable[Any], n_items: int, k: int | None = None) -> float:
    """Catalogue coverage: distinct items recommended (first ``k`` of each list) / ``n_items``.

    Args:
        lists: one ranked list per user (a 2-D index array may pad with -1).
        n_items: catalogue size (the number of candidate items).
        k: cut-off; None uses whole lists.
    """
    if n_items <= 0:
        raise ConfigError(f"n_items must be >= 1, got {n_items}")
    seen: set[Any] = set()
    for row in _flatten_lists(lists):
        seen.update(row[:k] if k is not None else row)
    return len(seen) / n_items


def novelty(
    lists: Iterable[Any],
    item_popularity: Mapping[Any, float] | npt.ArrayLike,
    n_users: int,
    k: int | None = None,
) -> float:
    """Mean self-information ``-log2(pop_i / n_users)`` of recommended items.

    Each user's novelty is the mean over their (first ``k``) recommended items; the result is the
    mean over users with a non-empty list (NaN if there are none). ``pop_i`` is the number of
    training users who interacted with item ``i``; it is floored at 1 so an item nobody has seen
    gets the finite novelty ``log2(n_users)`` instead of infinity.

    Args:
        lists: one ranked list per user.
        item_popularity: a mapping item → count, or an array indexed by item index.
        n_users: number of training users.
        k: cut-off; None uses whole lists.
    """
    if n_users <= 0:
        raise ConfigError(f"n_users must be >= 1, got {n_users}")
    pop: Any = (
        item_popularity if isinstance(item_popularity, Mapping) else np.asarray(item_popularity)
    )
    per_user = []
    for row in _flatten_lists(lists):
        items = row[:k] if k is not None else row
        if not items:
            continue
        counts = np.maximum(np.asarray([pop[i] for i in items], dtype=np.float64), 1.0)
        per_user.append(float(np.mean(-np.log2(counts / n_users))))
    return float(np.mean(per_user)) if per_user else float("nan")


# ====================================================================== batch forms
def hit_matrix(
    topk_idx: IntMatrix, relevant: sp.csr_matrix | sp.csr_array
) -> npt.NDArray[np.bool_]:
    """``hits[u, j] = (topk_idx[u, j] >= 0) and relevant[u, topk_idx[u, j]] != 0``.

    Vectorised CSR membership: every stored relevant entry becomes the key ``u * n_items + i``; the
    keys are sorted once and each top-k cell is looked up with ``searchsorted``.
    """
    topk = np.asarray(topk_idx, dtype=np.int64)
    if topk.ndim != 2 or topk.shape[0] != relevant.shape[0]:
        raise ConfigError(
            f"topk_idx has shape {topk.shape} but relevant has {relevant.shape[0]} rows; "
            "they need one row per user"
        )
    rel = sp.csr_matrix(relevant)
    rel.eliminate_zeros()
    n_items = rel.shape[1]
    if topk.size and topk.max(initial=-1) >= n_items:
        raise ConfigError(
            f"topk_idx holds item index {topk.max()} but relevant has {n_items} columns"
        )
    rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    keys = np.sort(rows * n_items + rel.indices.astype(np.int64))
    query = np.arange(topk.shape[0], dtype=np.int64)[:, None] * n_items + topk
    pos = np.searchsorted(keys, query)
    found = np.zeros(topk.shape, dtype=bool)
    inside = pos < len(keys)
    found[inside] = keys[pos[inside]] == query[inside]
    return found & (topk >= 0)


def _relevant_counts(relevant: sp.csr_matrix | sp.csr_array) -> npt.NDArray[np.int64]:
    rel = sp.csr_matrix(relevant)
    rel.eliminate_zeros()
    return np.diff(rel.indptr).astype(np.int64)


def ranking_metrics_batch(
    topk_idx: IntMatrix,
    relevant: sp.csr_matrix | sp.csr_array,
    ks: Sequence[int],
    *,
    hits: npt.NDArray[np.bool_] | None = None,
) -> dict[str, FloatVec]:
    """Per-user ranking metrics for many users at once, without a per-user Python loop.

    Args:
        topk_idx: ``(n_users, width)`` item indices, best first, padded with -1.
        relevant: ``(n_users, n_items)`` CSR; nonzero = relevant.
        ks: cut-offs; each may exceed ``width`` (short lists just have fewer hits).
        hits: a precomputed :func:`hit_matrix` (saves recomputing it).

    Returns:
        ``{"precision@10": array(n_users), "recall@10": ..., "ndcg@10", "hit_rate@10", "mrr@10",
        "map@10", ...}`` for every ``k``; NaN for users with no relevant items. Identical to the
        one-list functions applied row by row.
    """
    if not ks or min(ks) < 1:
        raise ConfigError(f"ks must be a non-empty list of cut-offs >= 1, got {list(ks)}")
    h = hit_matrix(topk_idx, relevant) if hits is None else hits
    n_rel = _relevant_counts(relevant)
    out: dict[str, FloatVec] = {}
    for k in ks:
        for name, values in _metrics_from_hits(h, n_rel, int(k)).items():
            out[f"{name}@{k}"] = values
    return out


def auc_batch(
    topk_idx: IntMatrix,
    relevant: sp.csr_matrix | sp.csr_array,
    n_candidates: int | npt.NDArray[np.integer[Any]],
    *,
    hits: npt.NDArray[np.bool_] | None = None,
) -> FloatVec:
    """Per-user :func:`auc` for ranked index lists padded with -1 (semantics as :func:`auc`)."""
    topk = np.asarray(topk_idx, dtype=np.int64)
    h = hit_matrix(topk, relevant) if hits is None else hits
    n_pos = _relevant_counts(relevant)
    n_cand = np.broadcast_to(np.asarray(n_candidates, dtype=np.int64), n_pos.shape)
    return _auc_from_hits(h, n_pos, n_cand, listed=(topk >= 0).sum(axis=1))


def coverage_batch(topk_idx: IntMatrix, n_items: int, k: int | None = None) -> float:
    """:func:`coverage_at_k` for a padded index matrix."""
    if n_items <= 0:
        raise ConfigError(f"n_items must be >= 1, got {n_items}")
    top = np.asarray(topk_idx, dtype=np.int64)
    top = top[:, :k] if k is not None else top
    return len(np.unique(top[top >= 0])) / n_items


def novelty_batch(
    topk_idx: IntMatrix, item_popularity: npt.ArrayLike, n_users: int, k: int | None = None
) -> FloatVec:
    """Per-user novelty (mean self-information of the first ``k`` items); NaN for empty lists.

    ``np.nanmean`` of the result equals :func:`novelty` on the same lists.
    """
    if n_users <= 0:
        raise ConfigError(f"n_users must be >= 1, got {n_users}")
    top = np.asarray(topk_idx, dtype=np.int64)
    top = top[:, :k] if k is not None else top
    pop = np.maximum(np.asarray(item_popularity, dtype=np.float64), 1.0)
    info = -np.log2(pop / n_users)
    valid = top >= 0
    cells = np.where(valid, info[np.where(valid, top, 0)], 0.0)
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, cells.sum(axis=1) / np.maximum(n, 1), np.nan)
