"""A new user's history given as text ids, ranked by fold-in: shared by the service and the CLI.

``POST /recommendations`` and ``recforge recommend --item/--rating`` both receive raw ids as
text (JSON keys, command-line words) and must turn them into the model's ids, drop the ones it
does not know, keep only "likes" for models trained on implicit feedback, and rank by fold-in
(or by popularity when no liked item is left). Doing that here once keeps the two answers equal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recforge.errors import DataError
from recforge.models.base import Recommender

#: The message of the DataError raised when no given item is in the model's vocabulary.
NO_KNOWN_ITEMS = "none of the rated items is known to the model"

_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]{0,18})")


def coerce_id(raw: str, kind: str) -> Any:
    """A URL/JSON/CLI id string in the vocabulary's type (numpy dtype ``kind``); None when it
    cannot be one of its ids.

    Integer ids must be written the way ``str(id)`` writes them: ``int()`` alone would also take
    ``"1_0"``, ``" 10"`` or Arabic-Indic digits and answer for user 10 under another name. At
    most 19 digits, so the value fits the vocabulary's int64.
    """
    if kind in "iu":
        return int(raw) if _CANONICAL_INT.fullmatch(raw) else None
    if kind == "f":
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if np.isfinite(value) else None
    return raw


def items_as_ratings(model: Recommender, item_ids: Sequence[str]) -> dict[str, float]:
    """Ordered item ids as implicit positives ``{item_id: value}``, in the order given.

    ``value`` is 1 for implicit models and the top of the scale (a "like") for explicit ones,
    as :meth:`Recommender.recommend_for_items` does; a repeated id keeps its first position.
    """
    scale = model.rating_scale_
    value = 1.0 if scale is None else float(scale[1])
    return dict.fromkeys(item_ids, value)


@dataclass(frozen=True)
class NewUserHistory:
    """A new user's ratings as the model sees them.

    Attributes:
        known: ``{raw item id: rating}`` of the items the model knows, in the order given.
        unknown: the given ids (as text) that are no id of the model's.
        liked: the entries of ``known`` that count as evidence
            (:func:`recforge.explain.liked_only`), in the same order.
        disliked: the raw ids of ``known`` left out of ``liked``.
    """

    known: dict[Any, float]
    unknown: list[str]
    liked: dict[Any, float]
    disliked: list[Any]


def read_history(model: Recommender, ratings: Mapping[str, float]) -> NewUserHistory:
    """Split ``{text item id: rating}`` into what the model knows and likes.

    Raises:
        DataError: when none of the ids is known to the model (:data:`NO_KNOWN_ITEMS`).
    """
    from recforge.explain import liked_only

    kind = model.items_.ids.dtype.kind
    raws = [coerce_id(key, kind) for key in ratings]
    coerced = {raw: v for raw, v in zip(raws, ratings.values(), strict=True) if raw is not None}
    rated = model.items_.index(list(coerced), missing="negative").tolist()
    known = {r: v for r, v, i in zip(coerced, coerced.values(), rated, strict=True) if i >= 0}
    # In the order given; None (not an id of the vocabulary's type) is never a known key.
    unknown = [key for key, raw in zip(ratings, raws, strict=True) if raw not in known]
    if not known:
        raise DataError(NO_KNOWN_ITEMS)
    liked = liked_only(model, known)
    return NewUserHistory(known, unknown, liked, [r for r in known if r not in liked])


def popularity(model: Recommender) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """``(order, counts)``: item indices by training interactions, most first (stable), and
    each item's count: what a new user with no liked item is shown."""
    counts = np.asarray(model.seen_.tocsr().sum(axis=0), dtype=np.float64).ravel()
    return np.argsort(-counts, kind="stable").astype(np.int64), counts


def popular_top(
    model: Recommender,
    history: NewUserHistory,
    popular: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]],
    k: int,
    exclude_rated: bool,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Top-``k`` item indices and counts of :func:`popularity` ``popular``, without the items
    of ``history`` when ``exclude_rated``."""
    order, counts = popular
    if exclude_rated:
        order = order[~np.isin(order, model.items_.index(list(history.known)))]
    top = order[:k]
    return top, counts[top].astype(np.float32)


def rank_liked(
    model: Recommender, history: NewUserHistory, k: int, exclude_rated: bool
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Top-``k`` item indices (-1: unfilled) and display scores of the fold-in of
    ``history.liked`` (not empty); with ``exclude_rated`` every given item is left out, the
    disliked ones too (they are no evidence, but the user has seen them)."""
    extra = len(history.disliked) if exclude_rated else 0
    rec = model.recommend_for_ratings(history.liked, k + extra, exclude_rated=exclude_rated)
    disliked = history.disliked
    keep = ~np.isin(rec.item_ids, np.asarray(disliked)) if disliked and exclude_rated else None
    item_ids = rec.item_ids if keep is None else rec.item_ids[keep]
    scores = rec.scores if keep is None else rec.scores[keep]
    # A list: the vocabulary's dict lookup (an array takes pandas' ~0.1 ms get_indexer).
    idx = model.items_.index(item_ids[:k].tolist(), missing="negative")
    return np.asarray(idx, dtype=np.int64), np.asarray(scores[:k], dtype=np.float32)


def fold_in_models() -> list[str]:
    """Registered models whose class has a fold-in of its own (imports every model class)."""
    from recforge.models import registry

    return [
        name
        for name in registry.available()
        if registry.get_class(name).fold_in_scores is not Recommender.fold_in_scores
    ]
