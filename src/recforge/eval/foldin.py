"""Strong-generalisation evaluation: users unseen in training, folded in without retraining.

For each held-out user of a :class:`~recforge.data.split.HeldOutSplit`, the model receives the
user's *fold-in* events (:meth:`Recommender.fold_in_scores_batch`) and ranks every training item
except those events; the relevant set is the user's *target* events (optionally rating-thresholded).
This is the protocol of Liang et al. 2018 ("heldout-users") and the acceptance test of new-user
recommendations: the model never trains on these users.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from recforge.errors import ConfigError
from recforge.eval import metrics as M
from recforge.eval.evaluate import EvalReport
from recforge.models.base import Recommender, rank_scores, seen_cells

#: Held-out users folded in per batch (bounds the dense (batch × items) score block).
FOLDIN_BATCH = 256


def _heldout_parts(model: Recommender, split: Any, part: str) -> tuple[Any, Any]:
    """``(fold-in, target)`` Interactions of a held-out part, checked against the model."""
    foldin = getattr(split, f"{part}_foldin", None)
    target = getattr(split, f"{part}_target", None)
    if foldin is None or target is None:
        raise ConfigError(f"split has no {part} fold-in/target parts")
    if model.items_ != foldin.items:
        raise ConfigError(
            "the model's item vocabulary differs from the split's; fit it on split.train"
        )
    return foldin, target


def evaluate_foldin(
    model: Recommender,
    split: Any,
    *,
    part: str = "test",
    ks: Sequence[int] = (20, 50, 100),
    relevance_threshold: float | None = None,
) -> EvalReport:
    """Rank for held-out users after folding in their history; metrics on their target events.

    Args:
        model: fitted on ``split.train`` (its item vocabulary must equal train's).
        split: a HeldOutSplit (``train``, ``{part}_foldin``, ``{part}_target``, ``protocol``).
        part: ``"test"`` or ``"valid"``.
        ks: cut-offs (Recall@k divides by min(k, |relevant|); NDCG binary gains).
        relevance_threshold: minimum target rating that counts as relevant; None = all targets.
    """
    t0 = time.perf_counter()
    model.check_fitted()
    foldin, target = _heldout_parts(model, split, part)
    ks_list = sorted({int(k) for k in ks})
    if not ks_list or ks_list[0] < 1:
        raise ConfigError(f"ks must be positive integers, got {list(ks)}")
    k_max = min(max(ks_list), model.n_items)
    hist = foldin.csr("rating")
    rel = target.csr("rating")
    if relevance_threshold is not None:
        rel = rel.multiply(rel >= relevance_threshold).tocsr()
    rel.data[:] = 1.0
    rel = (rel - rel.multiply(hist != 0)).tocsr()  # a target already in the fold-in is not new
    rel.eliminate_zeros()
    n_rel = np.diff(rel.indptr)
    users = np.flatnonzero((n_rel > 0) & (np.diff(hist.indptr) > 0))

    parts: dict[str, list[np.ndarray[Any, Any]]] = {}
    for start in range(0, len(users), FOLDIN_BATCH):
        batch = users[start : start + FOLDIN_BATCH]
        rows = hist[batch]
        known = seen_cells(rows, np.arange(len(batch)))  # the fold-in history is not recommended
        idx, _ = rank_scores(model.fold_in_scores_batch(rows), k_max, exclude=known)
        for name, values in M.ranking_metrics_batch(idx, rel[batch], ks_list).items():
            parts.setdefault(name, []).append(values)
    per_user = pd.DataFrame(
        {"user_id": foldin.users.lookup(users), "n_relevant": n_rel[users]}
        | {name: np.concatenate(v) for name, v in parts.items()}
    )
    summary: dict[str, float] = {
        name: float(np.nanmean(per_user[name])) if len(per_user) else float("nan") for name in parts
    }
    summary |= {
        "n_users_evaluated": float(len(users)),
        "n_users_skipped": float(foldin.n_users - len(users)),
    }
    protocol = {
        "evaluation": "fold_in_full_ranking",
        "dataset": split.train.source,
        "split": {"name": split.protocol.name, "params": dict(split.protocol.params)},
        "part": part,
        "ks": ks_list,
        "relevance": "any target interaction"
        if relevance_threshold is None
        else f"target rating >= {relevance_threshold:g}",
        "candidates": "train_items minus the user's fold-in items",
        "model": model.name,
    }
    return EvalReport(per_user, summary, protocol, {"total_s": time.perf_counter() - t0})


def evaluate_foldin_ratings(
    model: Recommender, split: Any, *, part: str = "test", like_threshold: float = 3.0
) -> EvalReport:
    """Rating accuracy for held-out users folded in from their fold-in ratings, no retraining.

    Each held-out user's fold-in ratings go through :meth:`Recommender.fold_in_scores_batch`;
    the folded-in scores at the user's target items are their predicted ratings (clipped to the
    training scale). RMSE, MAE and like-accuracy (``rating > like_threshold`` on both sides) over
    every target rating. This is the tutorial's "a new user rates a few movies" measured: build
    the split with ``heldout_users(..., foldin_events=5)``.

    Raises:
        ConfigError: the model ranks only (no rating predictions), or the split has no such part.
    """
    t0 = time.perf_counter()
    model.check_fitted()
    if not model.predicts_ratings:
        raise ConfigError(f"model {model.name} does not predict ratings")
    foldin, target = _heldout_parts(model, split, part)
    hist = foldin.csr("rating")
    want = target.csr("rating")
    users = np.flatnonzero((np.diff(hist.indptr) > 0) & (np.diff(want.indptr) > 0))
    truth_parts, pred_parts, user_parts = [], [], []
    for start in range(0, len(users), FOLDIN_BATCH):
        batch = users[start : start + FOLDIN_BATCH]
        scores = np.asarray(model.fold_in_scores_batch(hist[batch]), dtype=np.float32)
        rows = want[batch]
        row_of = np.repeat(np.arange(len(batch)), np.diff(rows.indptr))
        pred_parts.append(model._clip(scores[row_of, rows.indices].astype(np.float32)))
        truth_parts.append(rows.data.astype(np.float64))
        user_parts.append(batch[row_of])
    truth = np.concatenate(truth_parts) if truth_parts else np.empty(0)
    pred = np.concatenate(pred_parts).astype(np.float64) if pred_parts else np.empty(0)
    ok = np.isfinite(pred)
    per_row = pd.DataFrame(
        {
            "user_id": foldin.users.lookup(np.concatenate(user_parts))
            if user_parts
            else np.empty(0, dtype=object),
            "rating": truth,
            "prediction": pred,
        }
    )
    summary = {
        "rmse": M.rmse(truth[ok], pred[ok]) if ok.any() else float("nan"),
        "mae": M.mae(truth[ok], pred[ok]) if ok.any() else float("nan"),
        "like_accuracy": M.like_accuracy(truth[ok], pred[ok], like_threshold)
        if ok.any()
        else float("nan"),
        "n_users_evaluated": float(len(users)),
        "n_ratings": float(ok.sum()),
        "n_unscored": float((~ok).sum()),
    }
    protocol = {
        "evaluation": "fold_in_ratings",
        "dataset": split.train.source,
        "split": {"name": split.protocol.name, "params": dict(split.protocol.params)},
        "part": part,
        "like_threshold": like_threshold,
        "model": model.name,
    }
    return EvalReport(per_row, summary, protocol, {"total_s": time.perf_counter() - t0})


def foldin_as_training(split: Any, part: str = "test") -> tuple[Any, Any]:
    """(train + fold-in events, target events) re-encoded: the 'trained with them' reference.

    Returns ``(train, test)`` Interactions where ``train`` includes the held-out users' fold-in
    events and ``test`` holds their targets, encoded against that train; pass the pair to
    :func:`recforge.eval.evaluate.evaluate_ranking`.
    """
    foldin = getattr(split, f"{part}_foldin")
    target = getattr(split, f"{part}_target")
    from recforge.data.interactions import Interactions

    frame = pd.concat([split.train.to_frame(), foldin.to_frame()], ignore_index=True)
    train = Interactions.from_frame(
        frame,
        item_meta=split.train.item_meta,
        user_meta=split.train.user_meta,
        rating_scale=split.train.rating_scale,
        source=split.train.source,
    )
    test = target.reencode(train.users, train.items, unknown="drop")
    return train, test


__all__ = ["FOLDIN_BATCH", "evaluate_foldin", "evaluate_foldin_ratings", "foldin_as_training"]
