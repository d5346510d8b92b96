"""Model × split → :class:`EvalReport`. Evaluation never trains (DESIGN §1 invariant).

Three protocols, kept apart on purpose and named in every report:

* ``rating`` (:func:`evaluate_ratings`): predict every test rating; RMSE, MAE and like-accuracy
  over all test rows. Rows the model cannot score (unknown user or item) get a stated fallback
  (the training mean by default) and are counted.
* ``full_ranking`` (:func:`evaluate_ranking`): for every test user the model knows, rank ALL
  candidate items (by default every item seen in training) minus the user's training items, and
  score the top-k against the user's test items. Users run through
  :func:`recforge.batch.recommend_all` in memory-bounded chunks and metrics use the vectorised
  batch forms, so 100k users need no per-user Python.
* ``sampled_1+N`` (:func:`sampled_ranking`): the NCF paper's protocol (He et al. 2017) — each test
  positive is ranked against N (99) sampled negatives. Its numbers are NOT comparable with full
  ranking and carry a ``sampled_`` prefix so they cannot be mixed up with it.

The split argument is duck-typed: any object with ``.test`` (and optionally ``.train`` and
``.protocol`` with ``.name``/``.params``/``describe()``), a ``(train, test)`` tuple, or, for
ratings, a bare test :class:`~recforge.data.interactions.Interactions`. Test ids are mapped to
the model's vocabularies through raw ids, so the test set may be encoded against any vocabulary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recforge.batch import recommend_all
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.eval import metrics as M
from recforge.models.base import DEFAULT_SCORE_CHUNK, Recommender, finite_scores

CandidatePolicy = Literal["train_items", "all"]

__all__ = ["EvalReport", "evaluate", "evaluate_ranking", "evaluate_ratings", "sampled_ranking"]


# ====================================================================== report
@dataclass
class EvalReport:
    """The result of one evaluation.

    Attributes:
        per_user: one row per test user: raw ``user_id`` plus metric columns (NaN where a user
            has nothing to evaluate) and counts (``n_relevant`` or ``n_ratings``).
        summary: metric means over evaluated users (NaN excluded; rating metrics over all test
            rows) plus counts such as ``n_users_evaluated`` and ``n_users_skipped``.
        protocol: how the numbers were obtained: evaluation kind, dataset, split name and
            parameters, relevance threshold, candidate policy, ...
        timings: seconds spent per phase.
    """

    per_user: pd.DataFrame
    summary: dict[str, float]
    protocol: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self, *, per_user: bool = False) -> dict[str, Any]:
        """JSON-safe dict (NaN → None, numpy → Python); ``per_user`` adds the table as records."""
        out: dict[str, Any] = {
            "protocol": _jsonable(self.protocol),
            "summary": _jsonable(self.summary),
            "timings": _jsonable(self.timings),
        }
        if per_user:
            out["per_user"] = _jsonable(self.per_user.to_dict(orient="records"))
        return out

    def format(self) -> str:
        """Human-readable text: a protocol header, then one line per number naming its protocol."""
        label = protocol_label(self.protocol)
        split = self.protocol.get("split") or {}
        # Every printed number names its protocol (DESIGN §4); the header holds the full details.
        tag = " ".join(
            str(x)
            for x in (
                self.protocol.get("evaluation", "?"),
                self.protocol.get("dataset"),
                split.get("name"),
            )
            if x
        )
        lines = [f"protocol: {label}"]
        width = max((len(k) for k in self.summary), default=0)
        for key, value in self.summary.items():
            if isinstance(value, int | np.integer):
                text = f"{int(value)}"
            elif value is None or (isinstance(value, float) and math.isnan(value)):
                text = "nan"
            else:
                text = f"{float(value):.4f}"
            lines.append(f"  {key:<{width}}  {text:>10}   [{tag}]")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def protocol_label(protocol: Mapping[str, Any]) -> str:
    """One-line description of a protocol dict (evaluation kind, dataset, split, policies)."""
    parts = [str(protocol.get("evaluation", "?"))]
    if protocol.get("dataset"):
        parts.append(f"data={protocol['dataset']}")
    split = protocol.get("split") or {}
    params = ", ".join(f"{k}={v}" for k, v in (split.get("params") or {}).items())
    parts.append(f"split={split.get('name', '?')}({params})")
    for key in (
        "ks",
        "relevance",
        "candidates",
        "exclude_seen",
        "fallback",
        "like_threshold",
        "seed",
    ):
        if key in protocol:
            parts.append(f"{key}={protocol[key]}")
    return " | ".join(parts)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)


# ====================================================================== split handling
def _unpack(
    split: Any, *, need_train: bool = False
) -> tuple[Interactions | None, Interactions, dict[str, Any]]:
    """(train, test, split description) from a Split-like object, a pair or a test set."""
    if isinstance(split, Interactions):
        if need_train:
            raise ConfigError("give a split or a (train, test) tuple, not a bare test set")
        return None, split, {"name": "given_test", "params": {}}
    if isinstance(split, tuple | list):
        if len(split) != 2:
            raise ConfigError(
                f"expected a (train, test) pair, got a sequence of {len(split)} items"
            )
        train, test = split
        return train, test, {"name": "given", "params": {}}
    test = getattr(split, "test", None)
    if not isinstance(test, Interactions):
        raise ConfigError(
            f"cannot evaluate on {type(split).__name__}: "
            "give a Split, a (train, test) tuple or Interactions"
        )
    proto = getattr(split, "protocol", None)
    desc: dict[str, Any] = {
        "name": str(getattr(proto, "name", "unnamed")),
        "params": dict(getattr(proto, "params", None) or {}),
    }
    describe = getattr(proto, "describe", None)
    if callable(describe):
        desc["description"] = str(describe())
    return getattr(split, "train", None), test, desc


def _model_indices(
    model: Recommender, test: Interactions
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Each test row's (user, item) index in the MODEL's vocabularies; -1 where unknown."""
    if test.users is model.users_:
        u = test.user_idx.astype(np.int64)
    else:  # map the (small) vocabulary once, then gather per row
        u = model.users_.index(test.users.ids, missing="negative")[test.user_idx]
    if test.items is model.items_:
        i = test.item_idx.astype(np.int64)
    else:
        i = model.items_.index(test.items.ids, missing="negative")[test.item_idx]
    return u, i


def _candidate_mask(
    model: Recommender, candidates: CandidatePolicy | npt.ArrayLike
) -> npt.NDArray[np.bool_]:
    if isinstance(candidates, str):
        if candidates == "train_items":
            return np.asarray(model.seen_.getnnz(axis=0) > 0)
        if candidates == "all":
            return np.ones(model.n_items, dtype=bool)
        raise ConfigError(
            f"candidates={candidates!r}: use 'train_items', 'all' or an array of item ids"
        )
    ids = model.items_.index(np.atleast_1d(np.asarray(candidates)), missing="negative")
    mask = np.zeros(model.n_items, dtype=bool)
    mask[ids[ids >= 0]] = True
    return mask


def _check_ks(ks: Sequence[int] | int) -> list[int]:
    ks_list = [ks] if isinstance(ks, int) else [int(k) for k in ks]
    if not ks_list or min(ks_list) < 1:
        raise ConfigError(f"ks must be cut-offs >= 1, got {ks_list}")
    return sorted(set(ks_list))


def _binary_csr(
    rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64], shape: tuple[int, int]
) -> sp.csr_matrix:
    mat = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
    mat.sum_duplicates()
    mat.data[:] = 1.0
    mat.sort_indices()
    return mat


def _dataset_name(train: Interactions | None, test: Interactions) -> str:
    return train.source if train is not None else test.source


# ====================================================================== rating protocol
def evaluate_ratings(
    model: Recommender,
    test: Interactions | Any,
    *,
    fallback: Literal["global_mean", "drop"] | float = "global_mean",
    like_threshold: float = 3.0,
) -> EvalReport:
    """RMSE, MAE and like-accuracy of ``model.predict`` on every test rating.

    Args:
        model: a fitted recommender (it is never trained here).
        test: the test Interactions, or a split / ``(train, test)`` tuple (its ``test`` is used).
        fallback: prediction for rows the model cannot score (unknown user or item, or NaN):
            ``"global_mean"`` (the model's training mean), a number, or ``"drop"`` to leave such
            rows out. Either way they are counted in ``n_fallback``.
        like_threshold: "like" means rating > this (for like-accuracy).

    Raises:
        ConfigError: the model does not predict ratings (``predicts_ratings`` is False).

    Returns:
        An EvalReport with summary ``rmse, mae, like_accuracy`` (over all scored rows) and counts;
        ``per_user`` has ``user_id, n_ratings, rmse, mae`` per test user.
    """
    t0 = time.perf_counter()
    model.check_fitted()
    if not model.predicts_ratings:
        raise ConfigError(
            f"model {model.name} scores items but does not predict ratings; "
            "evaluate it with ranking metrics (metrics='ranking')"
        )
    train, test_i, split_desc = _unpack(test)
    u, i = _model_indices(model, test_i)
    raw_users = test_i.users.lookup(test_i.user_idx)
    pred = model.predict(raw_users, test_i.items.lookup(test_i.item_idx)).astype(np.float64)
    t_pred = time.perf_counter()

    missing = ~np.isfinite(pred)
    fill = _fallback_value(model, fallback)
    keep = np.ones(len(pred), dtype=bool)
    if fill is None:
        keep = ~missing
    else:
        pred[missing] = fill
    truth = test_i.rating.astype(np.float64)
    per_user = _per_user_errors(test_i, keep, pred, truth)
    summary: dict[str, float] = {
        "rmse": M.rmse(truth[keep], pred[keep]),
        "mae": M.mae(truth[keep], pred[keep]),
        "like_accuracy": M.like_accuracy(truth[keep], pred[keep], like_threshold),
        "n_ratings": int(keep.sum()),
        "n_users": len(per_user),
        "n_fallback": int(missing.sum()),
        "n_rows_unknown_user": int((u < 0).sum()),
        "n_rows_unknown_item": int((i < 0).sum()),
    }
    protocol: dict[str, Any] = {
        "evaluation": "rating",
        "dataset": _dataset_name(train, test_i),
        "split": split_desc,
        "fallback": fallback if isinstance(fallback, str) else float(fallback),
        "like_threshold": like_threshold,
        "model": model.name,
    }
    t_end = time.perf_counter()
    return EvalReport(
        per_user,
        summary,
        protocol,
        {"predict_s": t_pred - t0, "metrics_s": t_end - t_pred, "total_s": t_end - t0},
    )


def _fallback_value(model: Recommender, fallback: str | float) -> float | None:
    """The prediction that replaces a missing one (None: drop the row)."""
    if not isinstance(fallback, str):
        return float(fallback)
    if fallback == "global_mean":
        return float(model.global_mean_)
    if fallback == "drop":
        return None
    raise ConfigError(f"fallback={fallback!r}: use 'global_mean', 'drop' or a number")


def _per_user_errors(
    test: Interactions,
    keep: npt.NDArray[np.bool_],
    pred: npt.NDArray[np.float64],
    truth: npt.NDArray[np.float64],
) -> pd.DataFrame:
    """``user_id, n_ratings, rmse, mae`` per test user over the kept rows."""
    # Per-user errors by bincount over the test's own user codes (no Python loop over users).
    codes, inv = np.unique(test.user_idx[keep], return_inverse=True)
    err = pred[keep] - truth[keep]
    n_per = np.bincount(inv, minlength=len(codes))
    sq = np.bincount(inv, weights=err**2, minlength=len(codes))
    ab = np.bincount(inv, weights=np.abs(err), minlength=len(codes))
    return pd.DataFrame(
        {
            "user_id": test.users.lookup(codes),
            "n_ratings": n_per.astype(np.int64),
            "rmse": np.sqrt(sq / np.maximum(n_per, 1)),
            "mae": ab / np.maximum(n_per, 1),
        }
    )


# ====================================================================== full-ranking protocol
def _relevance(
    model: Recommender,
    test: Interactions,
    u: npt.NDArray[np.int64],
    i: npt.NDArray[np.int64],
    relevance_threshold: float | None,
    cand: npt.NDArray[np.bool_],
    exclude_seen: bool,
) -> tuple[sp.csr_matrix, dict[str, int]]:
    """Binary (model users × model items) CSR of relevant test pairs, with what was dropped."""
    known_u = u >= 0
    good = (
        np.ones(len(u), dtype=bool)
        if relevance_threshold is None
        else test.rating >= relevance_threshold
    )
    unknown_item = known_u & good & (i < 0)
    not_cand = known_u & good & (i >= 0) & ~cand[np.maximum(i, 0)]
    rows = known_u & good & (i >= 0) & ~not_cand
    rel = _binary_csr(u[rows], i[rows], (model.n_users, model.n_items))
    n_seen = 0
    if exclude_seen and rel.nnz:
        # A test item the user already has in training can never be recommended: drop and count.
        overlap = rel.multiply(model.seen_ > 0).tocsr()
        overlap.eliminate_zeros()
        n_seen = int(overlap.nnz)
        if n_seen:
            rel = sp.csr_matrix(rel - overlap)
            rel.eliminate_zeros()
            rel.sort_indices()
    counts = {
        "n_relevant_pairs": int(rel.nnz),
        "n_relevant_dropped_unknown_item": int(unknown_item.sum()),
        "n_relevant_dropped_not_candidate": int(not_cand.sum()),
        "n_relevant_dropped_seen": n_seen,
    }
    return rel, counts


def _ranking_protocol(
    evaluation: str,
    dataset: str,
    split_desc: Any,
    ks: list[int],
    relevance_threshold: float | None,
    candidates: str,
    **extra: Any,
) -> dict[str, Any]:
    """The protocol record shared by full-ranking and sampled evaluation (key order kept)."""
    relevance = (
        "any test interaction"
        if relevance_threshold is None
        else f"test rating >= {relevance_threshold:g}"
    )
    return {
        "evaluation": evaluation,
        "dataset": dataset,
        "split": split_desc,
        "ks": ks,
        "relevance": relevance,
        "relevance_threshold": relevance_threshold,
        "candidates": candidates,
        **extra,
    }


def evaluate_ranking(
    model: Recommender,
    split: Any,
    *,
    ks: Sequence[int] | int = (10, 20),
    relevance_threshold: float | None = None,
    candidates: CandidatePolicy | npt.ArrayLike = "train_items",
    exclude_seen: bool = True,
    auc: bool = False,
    chunk_size: int | None = None,
    memory_budget_bytes: int | None = None,
    progress: bool = False,
) -> EvalReport:
    """Full-ranking top-k evaluation (DESIGN §4).

    For each test user the model knows, every candidate item except the user's training items is
    ranked; the relevant set is the user's test items (with ``rating >= relevance_threshold`` when
    given) that are candidates the model knows. Users unknown to the model, and users left with
    no relevant item, are skipped and counted.

    Args:
        model: a fitted recommender (never trained here).
        split: a Split-like object or a ``(train, test)`` tuple.
        ks: cut-offs; metrics are computed for each.
        relevance_threshold: minimum test rating that counts as relevant; None = every test item.
        candidates: ``"train_items"`` (items with at least one training interaction),
            ``"all"`` (every item in the model's vocabulary) or an array of raw item ids.
        exclude_seen: remove each user's training items from the ranking (and from the relevant
            set, counted in ``n_relevant_dropped_seen``).
        auc: also compute AUC over the full candidate ranking (ranks every candidate: slower).
        chunk_size, memory_budget_bytes, progress: passed to :func:`recforge.batch.recommend_all`.

    Returns:
        EvalReport: per-user ``precision@k, recall@k, ndcg@k, hit_rate@k, mrr@k, map@k,
        novelty@k`` (+ ``auc``); summary means plus ``coverage@k`` and counts.
    """
    t0 = time.perf_counter()
    model.check_fitted()
    ks_list = _check_ks(ks)
    train, test, split_desc = _unpack(split, need_train=False)
    u, i = _model_indices(model, test)
    cand = _candidate_mask(model, candidates)
    n_cand = _count_candidates(cand)
    rel, rel_counts = _relevance(model, test, u, i, relevance_threshold, cand, exclude_seen)

    known_users = np.unique(u[u >= 0])
    n_unknown = len(np.unique(test.user_idx[u < 0]))
    n_rel_all = np.diff(rel.indptr)
    eval_users = known_users[n_rel_all[known_users] > 0]
    acc = _RankingAccumulator(model, ks_list, cand, exclude_seen, auc)
    t_setup = time.perf_counter()
    t_metrics = acc.rank_all(eval_users, rel, chunk_size, memory_budget_bytes, progress)
    t_loop = time.perf_counter()

    per_user_vals = acc.per_user_values()
    per_user = _ranking_table(model, known_users, eval_users, n_rel_all, per_user_vals)
    counts = _user_counts(len(known_users), len(eval_users), n_unknown, n_cand)
    summary = acc.summary(per_user_vals) | counts | rel_counts
    protocol = _ranking_protocol(
        "full_ranking",
        _dataset_name(train, test),
        split_desc,
        ks_list,
        relevance_threshold,
        candidates if isinstance(candidates, str) else f"{n_cand} given items",
        exclude_seen=exclude_seen,
        model=model.name,
    )
    t_end = time.perf_counter()
    timings = {
        "setup_s": t_setup - t0,
        "recommend_s": (t_loop - t_setup) - t_metrics,
        "metrics_s": t_metrics + (t_end - t_loop),
        "total_s": t_end - t0,
    }
    return EvalReport(per_user, summary, protocol, timings)


def _user_counts(n_known: int, n_evaluated: int, n_unknown: int, n_cand: int) -> dict[str, int]:
    """How many test users were evaluated or skipped (and why), and the candidate count."""
    return {
        "n_users_evaluated": n_evaluated,
        "n_users_skipped": n_unknown + (n_known - n_evaluated),
        "n_users_unknown": n_unknown,
        "n_users_no_relevant": n_known - n_evaluated,
        "n_candidate_items": n_cand,
    }


def _count_candidates(cand: npt.NDArray[np.bool_]) -> int:
    n_cand = int(cand.sum())
    if n_cand == 0:
        raise ConfigError(
            "the candidate set is empty: no item the model knows passes the candidate policy"
        )
    return n_cand


def _ranking_table(
    model: Recommender,
    known_users: npt.NDArray[np.int64],
    eval_users: npt.NDArray[np.int64],
    n_rel_all: npt.NDArray[np.int64],
    per_user_vals: dict[str, npt.NDArray[np.float64]],
) -> pd.DataFrame:
    """One row per known test user; users without relevant items keep NaN metrics."""
    # Known test users without relevant items stay in the table as NaN rows (counted, not scored).
    order = np.searchsorted(known_users, eval_users)
    table: dict[str, Any] = {
        "user_id": model.users_.lookup(known_users),
        "n_relevant": n_rel_all[known_users].astype(np.int64),
    }
    for n, vals in per_user_vals.items():
        col = np.full(len(known_users), np.nan)
        col[order] = vals
        table[n] = col
    return pd.DataFrame(table)


class _RankingAccumulator:
    """Per-user ranking metrics of :func:`evaluate_ranking`, gathered chunk by chunk, and the
    items each cut-off covered (for ``coverage@k``)."""

    def __init__(
        self,
        model: Recommender,
        ks: list[int],
        cand: npt.NDArray[np.bool_],
        exclude_seen: bool,
        auc: bool,
    ) -> None:
        self.model, self.ks, self.cand = model, ks, cand
        self.n_cand = int(cand.sum())
        self.exclude_seen, self.auc = exclude_seen, auc
        self.popularity = np.asarray(model.seen_.getnnz(axis=0), dtype=np.float64)
        self.n_train_users = max(int(model.seen_.shape[0]), 1)
        self.covered = {k: np.zeros(model.n_items, dtype=bool) for k in ks}
        self.parts: dict[str, list[npt.NDArray[np.float64]]] = {}
        self.names = [f"{m}@{k}" for k in ks for m in M.RANKING_METRICS]
        self.names += [f"novelty@{k}" for k in ks] + (["auc"] if auc else [])

    def rank_all(
        self,
        users: npt.NDArray[np.int64],
        rel: sp.csr_matrix,
        chunk_size: int | None,
        memory_budget_bytes: int | None,
        progress: bool,
    ) -> float:
        """Rank every candidate for ``users`` chunk by chunk (top max(k), or all for AUC) and
        add each chunk; returns the seconds spent on metrics (the rest is recommending)."""
        t_metrics = 0.0
        for part, idx, _val in recommend_all(
            self.model,
            users,
            self.model.n_items if self.auc else max(self.ks),
            exclude_seen=self.exclude_seen,
            candidates=self.cand,
            chunk_size=chunk_size,
            memory_budget_bytes=memory_budget_bytes,
            progress=progress,
        ):
            tm = time.perf_counter()
            self.add(part, idx, rel[part])
            t_metrics += time.perf_counter() - tm
        return t_metrics

    def add(
        self, part: npt.NDArray[np.int64], idx: npt.NDArray[np.int64], rel_chunk: sp.csr_matrix
    ) -> None:
        """One chunk: users ``part`` got the ranked lists ``idx``; ``rel_chunk`` is relevant."""
        hits = M.hit_matrix(idx, rel_chunk)
        chunk_metrics = M.ranking_metrics_batch(idx, rel_chunk, self.ks, hits=hits)
        for k in self.ks:
            top = idx[:, :k]
            self.covered[k][top[top >= 0]] = True
            chunk_metrics[f"novelty@{k}"] = M.novelty_batch(
                idx, self.popularity, self.n_train_users, k
            )
        if self.auc:
            # Each user's candidate count: candidates minus the seen items that were excluded.
            seen = self.model.seen_
            n_seen_cand = (seen[part] @ self.cand.astype(np.float32)) if self.exclude_seen else 0
            chunk_metrics["auc"] = M.auc_batch(
                idx, rel_chunk, self.n_cand - np.asarray(n_seen_cand, np.int64), hits=hits
            )
        for name, values in chunk_metrics.items():
            self.parts.setdefault(name, []).append(values)

    def per_user_values(self) -> dict[str, npt.NDArray[np.float64]]:
        """Each metric's values over the evaluated users, in evaluation order."""
        empty = np.zeros(0, dtype=np.float64)
        return {n: np.concatenate(self.parts[n]) if n in self.parts else empty for n in self.names}

    def summary(self, per_user_vals: dict[str, npt.NDArray[np.float64]]) -> dict[str, float]:
        """Mean of each metric over users (NaN when none), with ``coverage@k`` after novelty."""
        summary: dict[str, float] = {}
        for n in self.names:
            vals = per_user_vals[n]
            summary[n] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            if n.startswith("novelty@"):
                k = int(n.split("@")[1])
                summary[f"coverage@{k}"] = float(self.covered[k].sum() / self.n_cand)
        return summary


# ====================================================================== sampled (NCF) protocol
#: Bound on the negative sampler's dense per-block scratch (bytes); small blocks stay in cache.
_SAMPLER_BLOCK_BYTES = 8 * 1024**2


def _sample_negatives(
    interacted: sp.csr_matrix,
    users: npt.NDArray[np.int64],
    pool: npt.NDArray[np.int64],
    n: int,
    rng: np.random.Generator,
    max_rounds: int = 30,
) -> npt.NDArray[np.int64]:
    """``n`` distinct pool items per row that the row's user never interacted with.

    Vectorised rejection sampling over blocks of rows: draw every cell, then redraw only the
    rejected cells (interacted, or repeated within the row) of rows that had one, until none is
    left. Membership uses a dense ``(block, n_items)`` "taken" mask (O(1) lookups, unlike a
    searchsorted over all interactions); repeats use a "claim" matrix: each cell writes its column
    number at its item, and a cell whose item holds another column's number is a repeat (exactly
    one copy wins, whatever order numpy writes in). Rows still rejected after ``max_rounds``
    (users whose allowed pool is barely larger than ``n``) are drawn exactly, one by one; rare.
    """
    n_items = interacted.shape[1]
    out = np.empty((len(users), n), dtype=np.int64)
    block = max(1, _SAMPLER_BLOCK_BYTES // (5 * max(n_items, 1)))
    col = np.arange(n, dtype=np.int32)
    for lo in range(0, len(users), block):
        u = users[lo : lo + block]
        b = len(u)
        sub = interacted[u]
        taken = np.zeros((b, n_items), dtype=bool)
        taken[np.repeat(np.arange(b), np.diff(sub.indptr)), sub.indices] = True
        claim = np.empty((b, n_items), dtype=np.int32)  # only cells written this round are read
        neg = pool[rng.integers(0, len(pool), size=(b, n))]
        active = np.arange(b)
        taken_flat, claim_flat = taken.reshape(-1), claim.reshape(-1)  # 1-D takes are faster
        for _ in range(max_rounds):
            cells = neg[active]
            flat = active[:, None] * n_items + cells
            claim_flat[flat] = col
            bad = taken_flat[flat] | (claim_flat[flat] != col)
            has_bad = bad.any(axis=1)
            active, bad, cells = active[has_bad], bad[has_bad], cells[has_bad]
            if len(active) == 0:
                break
            cells[bad] = pool[rng.integers(0, len(pool), size=int(bad.sum()))]
            neg[active] = cells
        else:
            for r in active:
                allowed = np.setdiff1d(pool, sub.indices[sub.indptr[r] : sub.indptr[r + 1]])
                neg[r] = rng.choice(allowed, size=n, replace=False)
        out[lo : lo + b] = neg
    return out


def sampled_ranking(
    model: Recommender,
    split: Any,
    *,
    n_negatives: int = 99,
    ks: Sequence[int] | int = (10,),
    seed: int = 0,
    relevance_threshold: float | None = None,
    candidates: CandidatePolicy | npt.ArrayLike = "train_items",
) -> EvalReport:
    """The NCF paper's sampled protocol: each test positive ranked among ``n_negatives`` negatives.

    Kept separate from :func:`evaluate_ranking` because its numbers are much higher and not
    comparable with full ranking. For every test pair (user, item) the model knows (rating >=
    ``relevance_threshold`` when given), ``n_negatives`` distinct candidate items the user has
    interacted with neither in training nor in test are drawn uniformly (seeded). The positive's
    rank is the number of negatives scoring higher **or equal** (ties count against it, so a
    constant model gets no credit). ``HR@k = [rank < k]``, ``NDCG@k = 1/log2(rank + 2)`` if
    ``rank < k``; each user's value is the mean over their pairs, the summary the mean over users.
    Pairs whose user has fewer than ``n_negatives`` allowed items are skipped and counted.

    Args:
        model: a fitted recommender.
        split: a Split-like object or a ``(train, test)`` tuple.
        n_negatives: negatives per positive (99 in the paper).
        ks: cut-offs (the paper reports 10).
        seed: seed of the negative sampler.
        relevance_threshold: minimum test rating of a positive; None = every test pair.
        candidates: pool the negatives are drawn from (as in :func:`evaluate_ranking`).

    Returns:
        EvalReport with ``sampled_hit_rate@k`` and ``sampled_ndcg@k`` and protocol
        ``evaluation = "sampled_1+{n_negatives}"``.
    """
    t0 = time.perf_counter()
    model.check_fitted()
    ks_list = _check_ks(ks)
    if n_negatives < 1:
        raise ConfigError(f"n_negatives must be >= 1, got {n_negatives}")
    train, test, split_desc = _unpack(split)
    u, i = _model_indices(model, test)
    cand = _candidate_mask(model, candidates)
    pool = np.flatnonzero(cand).astype(np.int64)
    known = (u >= 0) & (i >= 0)
    interacted = _interacted(model, u[known], i[known])
    good_rating = _relevant_rating(test, relevance_threshold)
    pairs_u, pairs_i, n_too_few = _positive_pairs(
        model, u[known & good_rating], i[known & good_rating], cand, interacted, n_negatives
    )
    # (no pairs: the sampler draws nothing and returns a (0, n_negatives) array)
    neg = _sample_negatives(interacted, pairs_u, pool, n_negatives, np.random.default_rng(seed))
    t_sample = time.perf_counter()
    rank = _positive_ranks(model, pairs_u, np.concatenate([pairs_i[:, None], neg], axis=1))
    t_score = time.perf_counter()
    table, summary = _sampled_metrics(model, pairs_u, rank, ks_list)
    n_unknown = len(np.unique(test.user_idx[u < 0]))
    summary.update(
        {
            "n_users_evaluated": len(table["user_id"]),
            "n_positives": len(pairs_u),
            "n_users_unknown": n_unknown,
            "n_positives_dropped_unknown_item": int(((u >= 0) & (i < 0) & good_rating).sum()),
            "n_positives_dropped_too_few_negatives": n_too_few,
        }
    )
    protocol = _ranking_protocol(
        f"sampled_1+{n_negatives}",
        _dataset_name(train, test),
        split_desc,
        ks_list,
        relevance_threshold,
        candidates if isinstance(candidates, str) else f"{len(pool)} given items",
        n_negatives=n_negatives,
        seed=seed,
        ties="count against the positive",
        model=model.name,
    )
    t_end = time.perf_counter()
    timings = {"sample_s": t_sample - t0, "score_s": t_score - t_sample, "total_s": t_end - t0}
    return EvalReport(pd.DataFrame(table), summary, protocol, timings)


def _relevant_rating(test: Interactions, threshold: float | None) -> npt.NDArray[np.bool_]:
    """Test rows whose rating makes them a positive (every row without a threshold)."""
    if threshold is None:
        return np.ones(len(test), dtype=bool)
    return np.asarray(test.rating >= threshold)


def _interacted(
    model: Recommender, test_u: npt.NDArray[np.int64], test_i: npt.NDArray[np.int64]
) -> sp.csr_matrix:
    """Everything each user touched (train + the known test pairs): never a negative."""
    return _binary_csr(
        np.concatenate([np.repeat(np.arange(model.n_users), np.diff(model.seen_.indptr)), test_u]),
        np.concatenate([model.seen_.indices.astype(np.int64), test_i]),
        (model.n_users, model.n_items),
    )


def _positive_pairs(
    model: Recommender,
    pairs_u: npt.NDArray[np.int64],
    pairs_i: npt.NDArray[np.int64],
    cand: npt.NDArray[np.bool_],
    interacted: sp.csr_matrix,
    n_negatives: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
    """The distinct candidate positives, sorted by user, whose user has ``n_negatives`` allowed
    items; also how many were dropped for having too few."""
    # Drop duplicate test pairs and positives that are not candidates, so each is counted once.
    key = np.unique(pairs_u * model.n_items + pairs_i)
    pairs_u, pairs_i = key // model.n_items, key % model.n_items
    in_pool = cand[pairs_i]
    n_pool = int(cand.sum())
    allowed = n_pool - np.asarray(interacted[pairs_u] @ cand.astype(np.float32)).reshape(-1)
    ok = in_pool & (allowed >= n_negatives)
    return pairs_u[ok], pairs_i[ok], int((in_pool & ~ok).sum())


def _positive_ranks(
    model: Recommender, pairs_u: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Per row of ``items`` (the positive, then its negatives): how many negatives score higher
    or equal to the positive (non-finite scores rank last)."""
    width = items.shape[1]
    scores = np.empty(items.shape, dtype=np.float32)
    # Pairs are sorted by user: score them in blocks of whole users, so each predict_idx call
    # touches a bounded number of users (models without a pairwise scorer score full rows).
    starts = np.searchsorted(pairs_u, np.unique(pairs_u)[::DEFAULT_SCORE_CHUNK])
    for lo, hi in zip(starts, np.append(starts[1:], len(pairs_u))[: len(starts)], strict=True):
        block = model.predict_idx(np.repeat(pairs_u[lo:hi], width), items[lo:hi].ravel())
        scores[lo:hi] = np.asarray(block, dtype=np.float32).reshape(hi - lo, width)
    scores = finite_scores(scores)
    rank: npt.NDArray[np.int64] = (scores[:, 1:] >= scores[:, :1]).sum(axis=1)
    return rank


def _sampled_metrics(
    model: Recommender, pairs_u: npt.NDArray[np.int64], rank: npt.NDArray[np.int64], ks: list[int]
) -> tuple[dict[str, Any], dict[str, float]]:
    """Per-user table and summary of ``sampled_hit_rate@k`` and ``sampled_ndcg@k``: each user's
    value is the mean over their positives, the summary the mean over users."""
    codes, inv = np.unique(pairs_u, return_inverse=True)
    n_pairs = np.bincount(inv, minlength=len(codes))
    table: dict[str, Any] = {
        "user_id": model.users_.lookup(codes),
        "n_positives": n_pairs.astype(np.int64),
    }
    summary: dict[str, float] = {}
    for k in ks:
        hr = (rank < k).astype(np.float64)
        ndcg = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)
        for name, vals in (("sampled_hit_rate", hr), ("sampled_ndcg", ndcg)):
            per = np.bincount(inv, weights=vals, minlength=len(codes)) / np.maximum(n_pairs, 1)
            table[f"{name}@{k}"] = per
            summary[f"{name}@{k}"] = float(per.mean()) if len(per) else float("nan")
    return table, summary


# ====================================================================== dispatcher
def evaluate(
    model: Recommender,
    split: Any,
    *,
    metrics: Literal["auto", "rating", "ranking", "all"] = "auto",
    ks: Sequence[int] | int = (10, 20),
    relevance_threshold: float | None = None,
    candidates: CandidatePolicy | npt.ArrayLike = "train_items",
    exclude_seen: bool = True,
    fallback: Literal["global_mean", "drop"] | float = "global_mean",
    like_threshold: float = 3.0,
    chunk_size: int | None = None,
    memory_budget_bytes: int | None = None,
    progress: bool = False,
) -> EvalReport:
    """Evaluate a fitted model on a split. Never trains.

    Args:
        model: a fitted recommender.
        split: a Split-like object or a ``(train, test)`` tuple.
        metrics: ``"rating"`` (:func:`evaluate_ratings`), ``"ranking"`` (:func:`evaluate_ranking`),
            ``"all"`` (both, merged into one report; ranking only when rating metrics do not
            apply) or ``"auto"``: rating metrics for a model that predicts ratings on an
            explicit test set, ranking metrics otherwise.
        ks, relevance_threshold, candidates, exclude_seen, chunk_size, memory_budget_bytes,
            progress: see :func:`evaluate_ranking`.
        fallback, like_threshold: see :func:`evaluate_ratings`.
    """
    model.check_fitted()
    _, test, _ = _unpack(split)
    rating_ok = model.predicts_ratings and test.rating_scale is not None
    if metrics == "auto":
        metrics = "rating" if rating_ok else "ranking"
    if metrics == "all" and not rating_ok:
        metrics = "ranking"  # "all" means every applicable protocol
    if metrics not in ("rating", "ranking", "all"):
        raise ConfigError(f"metrics={metrics!r}: use 'auto', 'rating', 'ranking' or 'all'")
    reports: list[EvalReport] = []
    if metrics in ("rating", "all"):
        reports.append(
            evaluate_ratings(model, split, fallback=fallback, like_threshold=like_threshold)
        )
    if metrics in ("ranking", "all"):
        reports.append(
            evaluate_ranking(
                model,
                split,
                ks=ks,
                relevance_threshold=relevance_threshold,
                candidates=candidates,
                exclude_seen=exclude_seen,
                chunk_size=chunk_size,
                memory_budget_bytes=memory_budget_bytes,
                progress=progress,
            )
        )
    return reports[0] if len(reports) == 1 else _merge(reports[0], reports[1])


def _merge(rating: EvalReport, ranking: EvalReport) -> EvalReport:
    """One report holding a rating and a ranking evaluation of the same split."""
    per_user = rating.per_user.merge(ranking.per_user, on="user_id", how="outer")
    protocol = {**rating.protocol, **ranking.protocol, "evaluation": "rating+full_ranking"}
    timings = {f"rating_{k}": v for k, v in rating.timings.items()}
    timings.update({f"ranking_{k}": v for k, v in ranking.timings.items()})
    return EvalReport(per_user, {**rating.summary, **ranking.summary}, protocol, timings)
