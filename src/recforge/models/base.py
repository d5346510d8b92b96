"""The Recommender interface shared by every model family (scikit-learn conventions).

Hyper-parameters live in ``self.config`` (a frozen :class:`~recforge.config.ModelConfig`);
nothing is computed in ``__init__``; learned state lives in attributes ending in ``_``.
Families implement only :meth:`Recommender._fit` and :meth:`Recommender.score_items` (plus,
optionally, a faster :meth:`Recommender.predict_idx`, fold-in for new users and item vectors);
everything that turns scores into recommendations is implemented once, here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recforge.config import ModelConfig, config_from_mapping
from recforge.data.interactions import Interactions
from recforge.data.vocab import IdVocab
from recforge.errors import ConfigError, DataError, NoFoldInError, NotFittedError
from recforge.threads import blas_capped

if TYPE_CHECKING:
    from recforge.explain import Attribution, Explanation

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.int64]

#: Users scored per chunk by the default batched paths; bounds the (chunk × items) float block.
DEFAULT_SCORE_CHUNK = 1024


@dataclass(frozen=True)
class RecList:
    """Ranked recommendations for one user, or the items most similar to one item: raw item ids
    and their scores, best first.

    ``user_id`` holds whom (or what) the list is for: the user's id, or with ``query="item"``
    (:meth:`Recommender.similar_items`) the id of the item the others are similar to, which
    :meth:`to_frame` then names ``similar_to``. ``item_meta`` is the model's item metadata (a
    shared reference, not a copy), so :meth:`to_frame` can add titles; it is None when the
    model knows no metadata.
    """

    user_id: Any
    item_ids: npt.NDArray[Any]
    scores: npt.NDArray[np.float32]
    item_meta: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    query: Literal["user", "item"] = "user"

    def __len__(self) -> int:
        return len(self.item_ids)

    def to_frame(self, explanations: Sequence[Explanation] | None = None) -> pd.DataFrame:
        """Tidy frame: ``user_id, rank, item_id, score`` (rank from 1; ``similar_to`` in place of
        ``user_id`` for a similar-items list), plus ``title`` when the model's item metadata has
        titles (None for items it does not describe).

        The id columns carry the names of the canonical ratings frame and of the store's
        ``recommendations`` table, so a frame can be joined with either directly. With
        ``explanations`` (``model.explain_batch(user, recs.item_ids)``, one per item) the frame
        gains ``because``, ``contributions`` and ``residual`` (:mod:`recforge.explain`).
        """
        out = pd.DataFrame(
            {
                ("user_id" if self.query == "user" else "similar_to"): [self.user_id] * len(self),
                "rank": np.arange(1, len(self) + 1, dtype=np.int64),
                "item_id": self.item_ids,
                "score": self.scores,
            }
        )
        meta = self.item_meta
        if meta is not None and "title" in meta.columns:
            titles = meta["title"].reindex(pd.Index(self.item_ids))
            out["title"] = pd.Series(
                [None if pd.isna(t) else str(t) for t in titles.tolist()], dtype=object
            )
        if explanations is not None:
            from recforge.explain import add_explanation_columns

            add_explanation_columns(out, explanations)
        return out


def reclists_to_frame(recs: Sequence[RecList]) -> pd.DataFrame:
    """Stack many RecLists into one tidy frame (the columns of :meth:`RecList.to_frame`)."""
    if not recs:
        return pd.DataFrame(
            {
                "user_id": pd.Series([], dtype=object),
                "rank": pd.Series([], dtype=np.int64),
                "item_id": pd.Series([], dtype=object),
                "score": pd.Series([], dtype=np.float32),
            }
        )
    return pd.concat([r.to_frame() for r in recs], ignore_index=True)


def topk_rows(
    scores: npt.NDArray[np.floating[Any]], k: int
) -> tuple[IndexArray, npt.NDArray[np.float32]]:
    """Top-``k`` column indices and values of each row, best first; ties broken by lower index.

    ``-inf`` entries mark excluded items; callers drop them. ``k`` is capped at the row length.
    """
    n = scores.shape[1]
    k = min(k, n)
    if k <= 0:
        return np.zeros((scores.shape[0], 0), np.int64), np.zeros((scores.shape[0], 0), np.float32)
    if scores.shape[0] == 1 and k < n:
        # One row (a served request): numpy's partition, not torch's per-call cost.
        one = top_k_one_row(scores[0], k)
        if one is not None:
            return one[0][None, :], one[1][None, :]
    compiled = _compiled_topk(scores, k)
    if compiled is not None:
        return compiled
    if k < n:
        from recforge.models._topk import select_top

        # torch.topk, with an exact fallback for rows whose tie straddles the cut (see _topk).
        part = select_top(scores, k)
    else:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    # lexsort: last key is primary -> sort by -value, then by index for deterministic ties.
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return idx, np.take_along_axis(vals, order, axis=1).astype(np.float32)


def top_k_one_row(
    row: npt.NDArray[np.floating[Any]], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
    """The ``k`` largest entries of one row, best first, ties by lower index; None when the row
    holds a NaN (numpy and torch order NaN differently: callers take their general path).

    For one served request, without torch's or a 2-D selection's per-call cost: the ``k``-th
    largest value from ``np.partition``, then every entry at or above it (ties at the cut
    included) ordered by ``lexsort``. About 30 µs for 27,000 items instead of ~150 µs.
    """
    if np.isnan(row).any():
        return None
    n = len(row)
    k = min(k, n)
    kth = np.partition(row, n - k)[n - k]
    cand = np.flatnonzero(row >= kth)
    vals = row[cand]
    order = np.lexsort((cand, -vals))[:k]
    return cand[order].astype(np.int64), vals[order].astype(np.float32)


#: One-thread cost of computing a score cell by a BLAS product, in milliseconds (~64
#: multiply-adds, as for 64 factors, at ~2e7 a millisecond): BLAS threads for a score block.
_SCORE_MS_PER_CELL = 3.2e-6
#: One-thread cost of the compiled top-k per score cell, in milliseconds (~5-15 ns measured on
#: MovieLens-sized blocks, k = 100): its work estimate for :func:`recforge.threads.picked_threads`.
_TOPK_MS_PER_CELL = 5e-6


def _compiled_topk(
    scores: npt.NDArray[np.floating[Any]], k: int
) -> tuple[IndexArray, npt.NDArray[np.float32]] | None:
    """:func:`topk_rows` by the numba heap kernel (:mod:`recforge.models._topk_kernels`); None
    without numba. Rows holding a NaN go through the torch path, as before."""
    from recforge.train.fused_mf import numba_available

    if not numba_available() or scores.ndim != 2 or scores.dtype not in (np.float32, np.float64):
        return None

    from recforge.models._topk_kernels import topk_block
    from recforge.threads import picked_map, thread_ranges

    block = np.ascontiguousarray(scores)
    rows = block.shape[0]
    idx = np.empty((rows, k), dtype=np.int64)
    val = np.empty((rows, k), dtype=np.float32)
    nan = np.zeros(rows, dtype=np.bool_)
    # Rows are independent: 1 thread or the fit's count, whichever was measured faster here.
    work_ms = block.size * _TOPK_MS_PER_CELL
    bounds, costs = thread_ranges(rows, lambda: np.ones(rows), work_ms)
    picked_map(
        "topk", lambda b: topk_block(block, k, b[0], b[1], idx, val, nan), bounds, costs, work_ms
    )
    if nan.any():
        from recforge.models._topk import select_top

        bad = np.flatnonzero(nan)
        sub = block[bad]
        part = (
            select_top(sub, k)
            if k < block.shape[1]
            else np.broadcast_to(np.arange(block.shape[1]), sub.shape).copy()
        )
        vals = np.take_along_axis(sub, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        idx[bad] = np.take_along_axis(part, order, axis=1)
        val[bad] = np.take_along_axis(vals, order, axis=1)
    return idx, val


def finite_scores(scores: npt.ArrayLike, dtype: type[np.floating[Any]] = np.float32) -> Any:
    """A copy of ``scores`` in which NaN and ±inf became ``-max(float32)``: ranked last, but kept.

    ``-inf`` is reserved for *excluded* items (seen, not a candidate, the query item), which
    :func:`rank_scores` drops; a model's non-finite score only ranks an item last.
    """
    out = np.array(scores, dtype=dtype, copy=True)
    out[~np.isfinite(out)] = -np.finfo(np.float32).max
    return out


def rank_one_row(
    scores: npt.ArrayLike, k: int, exclude: npt.ArrayLike
) -> tuple[IndexArray, FloatArray, IndexArray]:
    """One user's ranked list from a score row: ``(top, scores, targets)``.

    :func:`rank_scores` of the ``(n_items,)`` row (or ``(1, n_items)``) without the items
    ``exclude``; ``targets`` are the filled positions of ``top`` (no -1), the items a
    ``rank_history_top`` then explains.
    """
    row = np.asarray(scores).reshape(1, -1)
    ex = np.asarray(exclude, dtype=np.int64)
    top, val = rank_scores(row, k, exclude=(np.zeros(len(ex), np.int64), ex))
    return top[0], val[0], top[0][top[0] >= 0]


def rank_scores(
    scores: npt.ArrayLike,
    k: int,
    *,
    exclude_items: npt.NDArray[np.bool_] | None = None,
    exclude: tuple[npt.NDArray[np.integer[Any]], npt.NDArray[np.integer[Any]]] | None = None,
    dtype: type[np.floating[Any]] = np.float32,
) -> tuple[IndexArray, FloatArray]:
    """Scores → ranked lists: the one place that turns a score matrix into top-``k`` items.

    Non-finite scores rank last (:func:`finite_scores`); items flagged in ``exclude_items`` (one
    flag per column, every row) and the ``(rows, cols)`` cells in ``exclude`` are removed; the
    rest is ranked by :func:`topk_rows` (ties by lower index). Positions left unfilled (fewer
    allowed items than ``k``) hold index -1 and score -inf.

    Args:
        scores: ``(n_rows, n_items)`` scores, higher is better (not modified).
        k: list length, capped at ``n_items``.
        exclude_items: boolean mask over items to exclude from every row.
        exclude: row and column indices of single cells to exclude.
        dtype: float type the ranking is done in (float32 unless the caller needs more).
    """
    ranked = finite_scores(scores, dtype)
    if exclude_items is not None:
        ranked[:, exclude_items] = -np.inf
    if exclude is not None:
        ranked[exclude[0], exclude[1]] = -np.inf
    idx, val = topk_rows(ranked, min(k, ranked.shape[1]))
    idx[~np.isfinite(val)] = -1
    return idx, val


def seen_cells(
    seen: sp.csr_matrix, user_idx: npt.NDArray[np.integer[Any]]
) -> tuple[IndexArray, IndexArray]:
    """``(rows, cols)``: for each position ``r`` of ``user_idx``, the items that user has seen."""
    # Straight from indptr/indices: scipy's fancy row indexing builds a matrix (~100 µs a call,
    # most of a served request's ranking).
    u = np.asarray(user_idx, dtype=np.int64)
    starts = seen.indptr[u].astype(np.int64)
    counts = seen.indptr[u + 1].astype(np.int64) - starts
    rows = np.repeat(np.arange(len(u)), counts)
    first = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return rows, seen.indices[first + np.arange(len(rows))].astype(np.int64)


#: Attributes :meth:`Recommender.fit` sets before ``_fit``; removed again when ``_fit`` fails.
_FIT_ATTRIBUTES = (
    "users_",
    "items_",
    "seen_",
    "seen_ratings_",
    "seen_order_",
    "_seen_source_",
    "global_mean_",
    "rating_scale_",
    "item_meta_",
)


class Recommender(ABC):
    """Abstract base of every recforge model.

    Subclasses set ``name`` (the registry key), ``Config`` (their config class) and
    ``predicts_ratings`` (True when scores are ratings on the training scale).

    Fitted attributes set by :meth:`fit` for every model:
        users_, items_: the training vocabularies.
        seen_: user × item CSR (binary) of training interactions; used to exclude seen items.
        seen_ratings_, seen_order_: per stored entry of ``seen_``, its training rating and its
            position in the user's timeline (0 = oldest); what explanations of known users read
            (computed from the training events on first read).
        global_mean_: mean training rating; rating_scale_: (low, high) or None.
        item_meta_: item metadata frame (titles, genres) or None.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    predicts_ratings: ClassVar[bool] = True

    users_: IdVocab
    items_: IdVocab
    seen_: sp.csr_matrix
    global_mean_: float
    rating_scale_: tuple[float, float] | None
    item_meta_: pd.DataFrame | None

    def __init__(
        self, config: ModelConfig | Mapping[str, Any] | None = None, **overrides: Any
    ) -> None:
        values = config.model_dump() if isinstance(config, ModelConfig) else dict(config or {})
        values.update(overrides)
        self.config = config_from_mapping(self.Config, values, where=f"model {self.name}")

    def __repr__(self) -> str:
        changed = {
            k: v
            for k, v in self.config.model_dump().items()
            if v != self.Config.model_fields[k].default
        }
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        train: Interactions | pd.DataFrame,
        valid: Interactions | pd.DataFrame | None = None,
        *,
        columns: Mapping[str, str | int] | None = None,
        **read: Any,
    ) -> Self:
        """Learn from ``train`` (and use ``valid`` for early stopping where supported).

        Args:
            train: Interactions, or a pandas DataFrame of events (one row each).
            valid: optional validation data, in the same form as ``train``.
            columns: for DataFrames, role → column name, e.g. ``{"user": "customer",
                "item": "product", "rating": "stars"}``; usual names are found without it.
            **read: for DataFrames, the same roles as keywords (``user=``, ``item=``,
                ``rating=``, ``time=``), and ``implicit``, ``rating_scale``, ``duplicates``,
                ``item_meta`` (see :func:`recforge.data.frames.frame_to_interactions`).
        """
        from recforge.data.frames import as_training_data

        train, valid = as_training_data(train, valid, columns=columns, **read)
        if len(train) == 0:
            raise DataError(f"{train.source}: cannot fit {self.name} on an empty training set")
        self.users_ = train.users
        self.items_ = train.items
        self.seen_ = train.csr("binary")
        # seen_ratings_ / seen_order_ are computed from train on first read (see the properties):
        # ~9 ms of an ML-100k fit that is ~50 ms for item-kNN, needed by save and explanations.
        self.__dict__.pop("seen_ratings_", None)
        self.__dict__.pop("seen_order_", None)
        self.__dict__["_seen_source_"] = train
        self.global_mean_ = train.global_mean
        self.rating_scale_ = train.rating_scale
        self.item_meta_ = train.item_meta
        if valid is not None and (valid.users is not train.users or valid.items is not train.items):
            # Validation must speak train's indices; unknown ids cannot be scored and are dropped.
            valid = valid.reencode(train.users, train.items, unknown="drop")
        from recforge.threads import threads

        try:
            # Threads that fit the machine unless the config (or --threads) says otherwise.
            with threads(self._threads_wanted()):
                self._fit(train, valid)
        except BaseException:
            # A fit that failed part-way leaves no half-trained model that looks usable.
            for attr in _FIT_ATTRIBUTES:
                self.__dict__.pop(attr, None)
            raise
        return self

    @property
    def seen_ratings_(self) -> FloatArray:
        """Per stored entry of ``seen_``: its training rating (see :func:`seen_history`)."""
        return self._seen_attr("seen_ratings_")  # type: ignore[no-any-return]

    @seen_ratings_.setter
    def seen_ratings_(self, value: FloatArray) -> None:
        self.__dict__["seen_ratings_"] = value

    @property
    def seen_order_(self) -> npt.NDArray[np.int32]:
        """Per stored entry of ``seen_``: its position in the user's timeline (0 = oldest)."""
        return self._seen_attr("seen_order_")  # type: ignore[no-any-return]

    @seen_order_.setter
    def seen_order_(self, value: npt.NDArray[np.int32]) -> None:
        self.__dict__["seen_order_"] = value

    def _seen_attr(self, name: str) -> Any:
        """``seen_ratings_`` / ``seen_order_``, computed by :func:`seen_history` from the fit's
        training events on first read (then the events are let go): a fit that is never saved
        or explained does not pay for them. Values stored under the attributes' own names in
        ``__dict__`` (the properties take precedence), so a failed fit removes them like the
        other fitted attributes. Two threads reading at once may both compute (the same
        arrays); neither sees a missing attribute."""
        d = self.__dict__
        if name not in d:
            train = d.get("_seen_source_")
            if train is None:
                if name in d:  # another thread finished in between
                    return d[name]
                raise AttributeError(name)
            ratings, order = seen_history(train)
            d.setdefault("seen_ratings_", ratings)
            d.setdefault("seen_order_", order)
            d.pop("_seen_source_", None)
        return d[name]

    def _threads_wanted(self) -> int | None:
        """The config's ``num_threads`` (None: recforge.threads' default for the machine).

        A model whose every op is too small to split across threads overrides this to ask for 1.
        """
        n: int | None = getattr(self.config, "num_threads", None)
        return n

    @abstractmethod
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        """Family-specific learning. ``valid`` (if any) is encoded with train's vocabularies."""

    @property
    def is_fitted(self) -> bool:
        """True once :meth:`fit` (or :meth:`load`) has run."""
        return hasattr(self, "items_")

    def check_fitted(self) -> None:
        """Raise :class:`~recforge.errors.NotFittedError` unless :meth:`fit` or ``load`` has run.

        For code that receives a model (evaluation, export, serving) and must refuse an unfitted
        one with a clear message before touching its learned attributes.
        """
        if not self.is_fitted:
            raise NotFittedError(
                f"{self.name} is not fitted yet; call fit(train) or load a saved run first"
            )

    def _check_fitted(self) -> None:
        # The families' spelling; outside code calls check_fitted.
        self.check_fitted()

    @property
    def n_users(self) -> int:
        self._check_fitted()
        return len(self.users_)

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return len(self.items_)

    # ------------------------------------------------------------------ scoring (index space)
    @abstractmethod
    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """Scores of every item for a batch of user indices: shape ``(len(user_idx), n_items)``.

        Higher is better. For rating models the score is the predicted rating (unclipped).
        """

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """Scores of (user, item) index pairs; the default gathers from :meth:`score_items`."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        item_idx = np.asarray(item_idx, dtype=np.int64)
        out = np.empty(len(user_idx), dtype=np.float32)
        # Sort pairs by user once; each chunk of unique users is then one contiguous slice.
        order = np.argsort(user_idx, kind="stable")
        sorted_users = user_idx[order]
        uniq, inverse = np.unique(sorted_users, return_inverse=True)
        bounds = np.searchsorted(sorted_users, uniq[::DEFAULT_SCORE_CHUNK])
        bounds = np.append(bounds, len(sorted_users))
        for c, start in enumerate(range(0, len(uniq), DEFAULT_SCORE_CHUNK)):
            scores = self.score_items(uniq[start : start + DEFAULT_SCORE_CHUNK])
            rows = order[bounds[c] : bounds[c + 1]]
            out[rows] = scores[inverse[bounds[c] : bounds[c + 1]] - start, item_idx[rows]]
        return out

    # ------------------------------------------------------------------ public API (raw ids)
    def predict(self, user_ids: npt.ArrayLike, item_ids: npt.ArrayLike) -> FloatArray:
        """Predicted ratings (clipped to the rating scale) for raw id pairs; NaN where unknown."""
        self._check_fitted()
        u = self.users_.index(np.asarray(user_ids).reshape(-1), missing="negative")
        i = self.items_.index(np.asarray(item_ids).reshape(-1), missing="negative")
        if len(u) != len(i):
            raise ConfigError(f"predict: {len(u)} user ids but {len(i)} item ids")
        out = np.full(len(u), np.nan, dtype=np.float32)
        known = (u >= 0) & (i >= 0)
        if known.any():
            out[known] = self.predict_idx(u[known], i[known])
        return self._clip(out)

    def _clip(self, values: FloatArray) -> FloatArray:
        if self.predicts_ratings and self.rating_scale_ is not None:
            lo, hi = self.rating_scale_
            return np.clip(values, lo, hi).astype(np.float32)
        return values.astype(np.float32, copy=False)

    def display_scores(self, values: FloatArray) -> FloatArray:
        """Scores as recommendations show them: a rating model's predicted ratings capped to the
        training scale (as :meth:`predict` and Surprise's ``predict(clip=True)``), other scores
        unchanged; ``-inf`` (an unfilled slot) and NaN stay. Lists are ranked on the uncapped
        scores, so two items shown at the scale's top keep the model's order."""
        if not (self.predicts_ratings and self.rating_scale_ is not None):
            return values
        return np.where(np.isfinite(values), self._clip(values), values).astype(np.float32)

    def recommend_idx(
        self,
        user_idx: npt.NDArray[np.integer[Any]],
        k: int,
        *,
        exclude_seen: bool = True,
        candidates: npt.NDArray[np.bool_] | None = None,
    ) -> tuple[IndexArray, FloatArray]:
        """Top-``k`` item indices and scores for user indices, in chunks.

        Returns arrays of shape ``(len(user_idx), min(k, n_items))``; positions that could not be
        filled (every allowed item already used) hold index -1 and score -inf.
        """
        self._check_fitted()
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        user_idx = np.asarray(user_idx, dtype=np.int64)
        width = min(k, self.n_items)
        all_idx = np.empty((len(user_idx), width), dtype=np.int64)
        all_val = np.empty((len(user_idx), width), dtype=np.float32)
        cells = min(len(user_idx), DEFAULT_SCORE_CHUNK) * self.n_items
        with blas_capped(cells * _SCORE_MS_PER_CELL):
            self._rank_chunks(user_idx, width, exclude_seen, candidates, all_idx, all_val)
        return all_idx, self.display_scores(all_val)

    def _rank_chunks(
        self,
        user_idx: npt.NDArray[np.integer[Any]],
        width: int,
        exclude_seen: bool,
        candidates: npt.NDArray[np.bool_] | None,
        all_idx: IndexArray,
        all_val: FloatArray,
    ) -> None:
        """:meth:`recommend_idx`'s loop: score, exclude and rank each chunk of users."""
        for start in range(0, len(user_idx), DEFAULT_SCORE_CHUNK):
            chunk = user_idx[start : start + DEFAULT_SCORE_CHUNK]
            idx, val = rank_scores(
                self.score_items(chunk),
                width,
                exclude_items=~candidates if candidates is not None else None,
                exclude=seen_cells(self.seen_, chunk) if exclude_seen else None,
            )
            all_idx[start : start + len(chunk)] = idx
            all_val[start : start + len(chunk)] = val

    def recommend(
        self,
        user_ids: npt.ArrayLike,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: npt.ArrayLike | None = None,
    ) -> list[RecList]:
        """Top-``k`` recommendations for each raw user id (UnknownIdError for unknown users).

        Args:
            user_ids: raw user ids (a scalar is accepted too).
            k: list length; larger than the catalogue is fine (you get every allowed item).
            exclude_seen: drop items the user interacted with in training.
            candidates: optional raw item ids to restrict the ranking to (unknown ids ignored).
        """
        self._check_fitted()
        ids = np.atleast_1d(np.asarray(user_ids))
        u = self.users_.index(ids)
        cand_mask = None
        if candidates is not None:
            ci = self.items_.index(np.atleast_1d(np.asarray(candidates)), missing="negative")
            cand_mask = np.zeros(self.n_items, dtype=bool)
            cand_mask[ci[ci >= 0]] = True
        idx, val = self.recommend_idx(u, k, exclude_seen=exclude_seen, candidates=cand_mask)
        return [
            self._to_reclist(uid, row_i, row_v)
            for uid, row_i, row_v in zip(ids, idx, val, strict=True)
        ]

    def _to_reclist(
        self,
        user_id: Any,
        idx: IndexArray,
        val: FloatArray,
        query: Literal["user", "item"] = "user",
    ) -> RecList:
        """The ranked ``idx`` (``-1``: none) and scores ``val`` as raw ids; ``query="item"``: a
        similar-items list for the item ``user_id``."""
        ok = idx >= 0
        raw = user_id.item() if isinstance(user_id, np.generic) else user_id
        return RecList(raw, self.items_.lookup(idx[ok]), val[ok], self.item_meta_, query)

    # ------------------------------------------------------------------ new users (fold-in)
    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """Scores of every item for an unseen user who rated ``item_idx`` with ``ratings``.

        Families override this (least squares for MF, encoding for autoencoders, ...).
        """
        # A subclass of ConfigError, so callers can tell "no fold-in" from a bad argument.
        raise NoFoldInError(f"model {self.name} does not support recommendations for new users")

    def fold_in_scores_batch(self, rows: sp.csr_matrix) -> FloatArray:
        """Fold-in scores for several new users at once: one CSR row (over item indices) each.

        Returns ``(rows.shape[0], n_items)``. The default calls :meth:`fold_in_scores` per row;
        families whose fold-in is a matrix product (EASE, kNN, autoencoders) may override it.
        """
        rows = sp.csr_matrix(rows)
        out = np.empty((rows.shape[0], self.n_items), dtype=np.float32)
        for r in range(rows.shape[0]):
            lo, hi = rows.indptr[r], rows.indptr[r + 1]
            out[r] = self.fold_in_scores(
                rows.indices[lo:hi].astype(np.int64), rows.data[lo:hi].astype(np.float32)
            )
        return out

    def _fold_in_inputs(self, ratings: Mapping[Any, float]) -> tuple[IndexArray, FloatArray]:
        self._check_fitted()
        if not ratings:
            raise DataError("new-user ratings are empty; give at least one {item_id: rating}")
        ids = list(ratings.keys())
        idx = self.items_.index(ids, missing="negative")
        vals = np.asarray([ratings[i] for i in ids], dtype=np.float32)
        if not np.all(np.isfinite(vals)):
            raise DataError("new-user ratings must be finite numbers")
        keep = idx >= 0
        if not keep.any():
            raise DataError("none of the rated items is known to the model")
        return idx[keep], vals[keep]

    def recommend_for_ratings(
        self, ratings: Mapping[Any, float], k: int = 10, *, exclude_rated: bool = True
    ) -> RecList:
        """Recommendations for a new user given ``{item_id: rating}``, without retraining.

        Items unknown to the model are ignored.
        """
        item_idx, vals = self._fold_in_inputs(ratings)
        scores = self.fold_in_scores(item_idx, vals)[None, :]
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        rated = (np.zeros_like(item_idx), item_idx) if exclude_rated else None
        idx, val = rank_scores(scores, k, exclude=rated)
        return self._to_reclist(None, idx[0], self.display_scores(val[0]))

    def recommend_for_items(
        self, item_ids: Sequence[Any], k: int = 10, *, exclude_rated: bool = True
    ) -> RecList:
        """Recommendations for a new user given the items they chose, oldest first (no ratings).

        Sequential models read the order; the others take each item as an implicit positive:
        rating 1 for implicit models, the top of the rating scale (a "like") for explicit
        ones, through :meth:`recommend_for_ratings`. Unknown items are ignored.
        """
        self._check_fitted()
        value = 1.0 if self.rating_scale_ is None else float(self.rating_scale_[1])
        return self.recommend_for_ratings(
            dict.fromkeys(item_ids, value), k, exclude_rated=exclude_rated
        )

    def predict_for_ratings(
        self, ratings: Mapping[Any, float], item_ids: npt.ArrayLike
    ) -> FloatArray:
        """Predicted ratings of ``item_ids`` for a new user; NaN for unknown items."""
        item_idx, vals = self._fold_in_inputs(ratings)
        scores = self.fold_in_scores(item_idx, vals)
        target = self.items_.index(np.atleast_1d(np.asarray(item_ids)), missing="negative")
        out = np.full(len(target), np.nan, dtype=np.float32)
        out[target >= 0] = scores[target[target >= 0]]
        return self._clip(out)

    # ------------------------------------------------------------------ explanations
    def explain(self, user: Any, item_id: Any, k: int = 5) -> Explanation:
        """Why ``item_id`` scores as it does for ``user``: see :func:`recforge.explain.explain`.

        ``user`` is a known raw user id, a new user's ``{item_id: rating}`` mapping, or an
        ordered list of item ids (oldest first).
        """
        from recforge.explain import explain

        return explain(self, user, item_id, k=k)

    def explain_batch(self, user: Any, item_ids: Sequence[Any], k: int = 5) -> list[Explanation]:
        """:meth:`explain` for several items of one user, computed in one batch."""
        from recforge.explain import explain_items

        return explain_items(self, user, item_ids, k=k)

    def explain_rows(
        self, rows: sp.csr_matrix, row_of: IndexArray, targets: IndexArray
    ) -> Attribution:
        """Contribution of each history entry to each target's fold-in score (the one hook).

        ``rows`` holds one history per CSR row (entries in timeline order, values the ratings),
        ``row_of[p]`` and ``targets[p]`` name pair ``p``'s row and item. The default is batched
        occlusion through :meth:`fold_in_scores_batch`; additive families override it exactly.
        """
        from recforge.explain import occlusion

        return occlusion(self, rows, row_of, targets)

    def explain_history(
        self, items: IndexArray, ratings: FloatArray, targets: IndexArray
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """:meth:`explain_rows` of one history: ``(score, weights)``, ``weights[p, m]`` the
        contribution of ``items[m]`` (timeline order, values ``ratings``) to ``targets[p]``.

        The default wraps the history in a one-row CSR; the exact families compute it directly
        (building the CSR was ~5% of a served explanation).
        """
        ptr = np.array([0, len(items)], dtype=np.int64)
        row = sp.csr_matrix(
            (np.asarray(ratings, dtype=np.float32), np.asarray(items, dtype=np.int32), ptr),
            shape=(1, self.n_items),
        )
        attr = self.explain_rows(row, np.zeros(len(targets), dtype=np.int64), targets)
        if not len(targets):
            return attr.score, np.zeros((0, len(items)), dtype=np.float64)
        return attr.score, np.stack([np.asarray(w, dtype=np.float64) for w in attr.weights])

    # ------------------------------------------------------------------ item similarity
    def item_vectors(self) -> FloatArray | None:
        """Item representation matrix ``(n_items, d)`` for similarity and ANN retrieval, if any."""
        return None

    # ------------------------------------------------------------------ learned embeddings
    def item_embeddings(self) -> FloatArray | None:
        """Learned item embeddings ``(n_items, d)`` for inspection (PCA maps, reports), or None.

        Unlike :meth:`item_vectors` (whatever retrieval uses, biases or features included), this
        is the model's latent item space only; families without one return None.
        """
        return None

    def user_embeddings(self) -> FloatArray | None:
        """Learned user embeddings ``(n_users, d)`` for inspection, or None (see above)."""
        return None

    def similar_items(self, item_id: Any, k: int = 10) -> RecList:
        """The ``k`` items most cosine-similar to ``item_id`` (itself excluded)."""
        self._check_fitted()
        vecs = self.item_vectors()
        if vecs is None:
            raise ConfigError(
                f"model {self.name} has no item vectors; similar items need an embedding model"
            )
        i = self.items_.index_one(item_id)
        norms = np.linalg.norm(vecs, axis=1)
        norms[norms == 0] = 1.0
        sims = (vecs @ vecs[i]) / (norms * norms[i])
        idx, val = rank_scores(sims[None, :], k, exclude=_itself(i))
        return self._to_reclist(item_id, idx[0], val[0], query="item")

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """Learned arrays of this family (saved to safetensors); artifacts adds the base state."""
        return {}

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:  # noqa: B027
        """Restore what :meth:`get_state` returned (families without state need not override)."""

    def save(self, path: str | Path) -> Path:
        """Save to a run directory (see :func:`recforge.artifacts.save_run`)."""
        from recforge.artifacts import save_run

        return save_run(path, self)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a model saved with :meth:`save` (see :func:`recforge.artifacts.load_run`)."""
        from recforge.artifacts import load_run
        from recforge.errors import ArtifactError

        model = load_run(path).model
        if not isinstance(model, cls):
            raise ArtifactError(
                f"{path}: holds a {model.name} model, not {cls.name}; load it with "
                f"{type(model).__name__}.load or recforge.artifacts.load_run"
            )
        return model


def seen_history(train: Interactions) -> tuple[FloatArray, npt.NDArray[np.int32]]:
    """Ratings and timeline positions (0 = oldest) of the entries of ``train.csr("binary")``."""
    from recforge.models.recency import recency_positions

    from_end = recency_positions(train).astype(np.float64)
    n_u = np.bincount(train.user_idx, minlength=train.n_users)
    position = n_u[train.user_idx] - 1 - from_end
    # Each event's entry of the CSR (sorted unique (user, item) pairs): one binary search of its
    # pair key among the entries' keys, where two more COO -> CSR builds cost ~3x as long.
    seen = train.csr("binary")
    n_items = np.int64(max(train.n_items, 1))
    rows = np.repeat(np.arange(train.n_users, dtype=np.int64), np.diff(seen.indptr))
    keys = rows * n_items + seen.indices
    slot = _entry_of(keys, train.user_idx.astype(np.int64) * n_items + train.item_idx)
    # Duplicate events of a pair were summed by csr(); keep their mean position (integer sums,
    # exact in float64 whatever their order).
    total = np.bincount(slot, weights=position + 1.0, minlength=seen.nnz)
    count = np.bincount(slot, minlength=seen.nnz)
    ratings = train.csr("rating").data.astype(np.float32)
    order = np.rint(total / np.maximum(count, 1) - 1.0).astype(np.int32)
    return ratings, order


def _entry_of(keys: npt.NDArray[np.int64], queries: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``np.searchsorted(keys, queries)`` for ``queries`` drawn from the sorted unique ``keys``.

    Events in timeline order are not in key order, and a binary search per event then misses the
    cache: 7.4 ms for ML-100k's 80k events, against 0.5 ms for one scatter and one gather through
    a dense table of the key space, used when that space is at most 32 cells an event and 2²³
    cells (int32: 32 MB at most, freed on return). Queries already in key order keep the search
    (1.2 ms for ml-latest-small's).
    """
    space = int(keys[-1]) + 1 if len(keys) else 0
    small = space <= min(32 * len(queries), 2**23)
    if len(queries) < 2 or not small or bool(np.all(queries[1:] >= queries[:-1])):
        return np.searchsorted(keys, queries)
    table = np.empty(space, dtype=np.int32)
    table[keys] = np.arange(len(keys), dtype=np.int32)
    return table[queries].astype(np.int64)


def mask_seen(
    scores: npt.NDArray[np.float32], seen: sp.csr_matrix, user_idx: npt.NDArray[np.integer[Any]]
) -> None:
    """Set ``scores[r, j] = -inf`` for every item ``j`` user ``user_idx[r]`` has seen (in place)."""
    rows, cols = seen_cells(seen, user_idx)
    scores[rows, cols] = -np.inf


def _itself(i: int) -> tuple[IndexArray, IndexArray]:
    """The cell of item ``i`` in a one-row score matrix (a query item is not its own neighbour)."""
    return np.zeros(1, np.int64), np.asarray([i], np.int64)
