"""Faithful explanations: which of a user's history items made an item's score, and by how much.

Every model explains through one hook, :meth:`Recommender.explain_rows
<recforge.models.base.Recommender.explain_rows>`, exactly as every model recommends through
``score_items``. The hook receives the user's *history* ``H`` (rated items in timeline order, with
their ratings) and returns a signed weight ``w_j`` per history item ``j``:

* **exact** (EASE, item-kNN, ALS, biases, MF and biased MF with the MSE loss): the model's fold-in
  score of ``H`` is an explicit sum ``Σ_j w_j + r_i``, and ``w_j`` is ``j``'s term. EASE:
  ``w_j = x_uj B_ji``; item-kNN: similarity × (binary or baseline-adjusted) rating; ALS: Hu, Koren
  & Volinsky 2008, §5 — the folded-in user factor is a weighted sum over the user's items, so
  ``w_j = c_uj · y_iᵀ W^u y_j`` with ``W^u = (YᵀC^uY + λI)⁻¹``; MF / biased MF / explicit ALS: the
  closed-form ridge fold-in ``w = A⁻¹(Xᵀt + λw₀)`` is linear in the targets ``t_j``, so
  ``w_j = (x_iᵀ A⁻¹ x_j) t_j``.
* **occlusion** (every other model): ``w_j = f(H)_i − f(H ∖ {j})_i``, the change of the item's
  fold-in score when ``j`` is removed; all ``|H| + 1`` fold-ins of a user run as one
  ``fold_in_scores_batch`` call.

The **residual** is what no history item accounts for: ``score − Σ_j w_j`` (in the link's input
space for models with a scaled-sigmoid output, see :attr:`Explanation.link`). For exact families it
is the biases / global offset (zero for EASE, implicit ALS and implicit item-kNN) plus, for a
*known* user, the difference between the trained user parameters and the fold-in of the same
history. For occlusion it also holds the interactions between history items. By construction
``Σ contributions + rest + residual`` equals the (raw) score.

A user is a known raw user id (history: the training events, in timeline order, with ratings), a
new user's ``{item_id: rating}`` mapping (insertion order is the timeline), or an ordered list of
item ids (each counted as a rating at the top of the scale: a "like").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recforge.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from recforge.models.base import RecList, Recommender

__all__ = [
    "Attribution",
    "Contribution",
    "Explanation",
    "add_explanation_columns",
    "attention_idx",
    "because_idx",
    "drop_one_products",
    "drop_one_rows",
    "explain",
    "explain_items",
    "explain_reclist",
    "explanations_frame",
    "history_items",
    "like_threshold",
    "liked_only",
    "occlusion",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
#: How an explanation's weights were computed (see :class:`Explanation`).
Method = Literal["exact", "occlusion", "leave_one_out"]

#: Rows folded in per ``fold_in_scores_batch`` call of the occlusion default (bounds the dense
#: ``rows × n_items`` score block together with :data:`OCCLUSION_CELLS`).
OCCLUSION_CELLS = 1 << 24


# ---------------------------------------------------------------------- result types
@dataclass(frozen=True)
class Attribution:
    """What :meth:`Recommender.explain_rows` returns, in index space.

    Attributes:
        score: ``(n_pairs,)`` the decomposed fold-in score of each target (the link's input).
        weights: one ``(|H_p|,)`` array per pair, aligned with the entries of its history row.
        method: ``"exact"``, ``"occlusion"`` or ``"leave_one_out"`` (see :class:`Explanation`).
        y_range: ``(lo, hi)`` when the served score is ``lo + (hi − lo)·σ(score)``, else None.
    """

    score: F64
    weights: list[F64]
    method: Method
    y_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class Contribution:
    """One history item's signed share of a score."""

    item_id: Any
    weight: float
    rating: float
    title: str | None = None


@dataclass(frozen=True)
class Explanation:
    """Why ``item_id`` scores ``score`` for a user.

    Attributes:
        user_id: the raw user id, or None for a new user.
        item_id: the explained item.
        score: the model's score as served (``recommend`` / ``recommend_for_ratings``).
        contributions: the ``k`` history items with the largest weights, largest first.
        rest: summed weight of the other history items.
        residual: the part no history item accounts for (see the module docstring).
        method: ``"exact"`` (a decomposition), ``"occlusion"`` (drop-one score changes, each
            from a refit) or ``"leave_one_out"`` (drop-one score changes of a least-squares
            fold-in from its one solution: exact for a user model linear in its parameters,
            first order otherwise; :mod:`recforge.train.gauss_newton`).
        link: ``"identity"``, or ``"scaled_sigmoid"`` when weights add up to :attr:`raw_score`
            (the logit) and ``score = lo + (hi − lo)·σ(raw_score)``.
        raw_score: the additive quantity: ``Σ contributions + rest + residual``.
        attention: attention models only (SASRec, BERT4Rec), else None: the ``k`` history items
            the model's next-item state attends to most (last layer, mean over heads; ``weight``
            is the attention weight, and the same list serves every item of the user). Shown
            beside the contributions, never instead: attention is not tested for faithfulness,
            the occlusion weights are.
        rated: whether the history holds ratings (the model was fitted on explicit ratings):
            the sentence says "Because you rated X", else "Because of X in your history" (a
            click or purchase log is not a rating).
    """

    user_id: Any
    item_id: Any
    score: float
    contributions: tuple[Contribution, ...]
    rest: float
    residual: float
    method: Method
    link: Literal["identity", "scaled_sigmoid"] = "identity"
    raw_score: float = field(default=float("nan"))
    attention: tuple[Contribution, ...] | None = None
    rated: bool = True

    def because(self, n: int = 2) -> list[Contribution]:
        """The (at most ``n``) history items that raised the score most; positive weights only."""
        return [c for c in self.contributions if c.weight > 0][:n]

    def sentence(self, n: int = 2) -> str:
        """``"Because you rated X and Y"`` (implicit feedback: ``"Because of X and Y in your
        history"``; empty when no history item raised the score)."""
        names = [c.title or str(c.item_id) for c in self.because(n)]
        return self.because_phrase(names) if names else ""

    def because_phrase(self, names: Sequence[str]) -> str:
        """``names`` (one or more) joined into this explanation's "because" sentence."""
        joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return (
            f"Because you rated {joined}" if self.rated else f"Because of {joined} in your history"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (ids as given, floats rounded to 6 digits)."""
        return {
            "user_id": _plain(self.user_id),
            "item_id": _plain(self.item_id),
            "score": round(self.score, 6),
            "raw_score": round(self.raw_score, 6),
            "link": self.link,
            "method": self.method,
            "contributions": [
                {
                    "item_id": _plain(c.item_id),
                    "title": c.title,
                    "rating": c.rating,
                    "weight": round(c.weight, 6),
                }
                for c in self.contributions
            ],
            "rest": round(self.rest, 6),
            "residual": round(self.residual, 6),
            "attention": None
            if self.attention is None
            else [
                {
                    "item_id": _plain(c.item_id),
                    "title": c.title,
                    "rating": c.rating,
                    "weight": round(c.weight, 6),
                }
                for c in self.attention
            ],
        }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------- stars -> evidence
def like_threshold(model: Recommender) -> float | None:
    """Ratings at or below this are no positive evidence for ``model``; None: every rating counts.

    Models that score ratings (``predicts_ratings``) read the value itself, so a 1★ already pulls
    the other way. Models trained on implicit feedback treat any rated item as a positive; for
    them a rating counts only when it is a "like" (:func:`recforge.data.labels.like`: strictly
    above the scale's midpoint, ``r > 3`` on 1–5 stars). Without a rating scale, every entry is a
    positive.
    """
    if model.predicts_ratings or model.rating_scale_ is None:
        return None
    lo, hi = model.rating_scale_
    return (lo + hi) / 2.0


def liked_only(model: Recommender, ratings: Mapping[Any, float]) -> dict[Any, float]:
    """``ratings`` without the entries that are no positive evidence for ``model`` (dropped).

    See :func:`like_threshold`; the order of the remaining entries is kept (it is the timeline).
    """
    from recforge.data.labels import like

    thr = like_threshold(model)
    if thr is None:
        return dict(ratings)
    keys = list(ratings)
    keep = like([ratings[k] for k in keys], thr)
    return {k: ratings[k] for k, ok in zip(keys, keep.tolist(), strict=True) if ok}


# ---------------------------------------------------------------------- histories
@dataclass(frozen=True)
class _History:
    user_id: Any
    user_idx: int | None  # training index of a known user
    items: I64  # timeline order
    ratings: npt.NDArray[np.float32]


def _history(model: Recommender, user: Any) -> _History:
    model.check_fitted()
    if isinstance(user, Mapping):
        idx, vals = model._fold_in_inputs(user)
        return _History(None, None, idx.astype(np.int64), vals.astype(np.float32))
    if isinstance(user, (list, tuple, np.ndarray)):
        ids = list(np.asarray(user, dtype=object).tolist()) if len(user) else []
        if not ids:
            raise DataError("the new user's item list is empty; give at least one item id")
        # An item list carries no stars: each entry counts as a rating at the top of the scale.
        top = model.rating_scale_[1] if model.rating_scale_ is not None else 1.0
        idx, vals = model._fold_in_inputs(dict.fromkeys(ids, top))
        return _History(None, None, idx.astype(np.int64), vals.astype(np.float32))
    return _known_history(model, user, int(model.users_.index_one(user)))


def _known_history(model: Recommender, user: Any, u: int) -> _History:
    seen = model.seen_
    lo, hi = int(seen.indptr[u]), int(seen.indptr[u + 1])
    order = np.argsort(model.seen_order_[lo:hi], kind="stable")
    items = seen.indices[lo:hi][order].astype(np.int64)
    vals = np.asarray(model.seen_ratings_[lo:hi], dtype=np.float32)[order]
    return _History(user, u, items, vals)


def history_of(model: Recommender, user_idx: int) -> tuple[I64, npt.NDArray[np.float32]]:
    """A known user's training history by user index: item indices in timeline order and their
    ratings (what :func:`because_idx` explains for the user's raw id)."""
    hist = _known_history(model, None, user_idx)
    return hist.items, hist.ratings


def history_items(model: Recommender, user: Any) -> I64:
    """The item indices of ``user``'s history in timeline order (a user as :func:`explain`)."""
    return _history(model, user).items


def _row(hist: _History, n_items: int) -> sp.csr_matrix:
    """One CSR row in timeline order (unsorted indices are kept: they are the order)."""
    ptr = np.array([0, len(hist.items)], dtype=np.int64)
    return sp.csr_matrix(
        (hist.ratings.astype(np.float32), hist.items.astype(np.int32), ptr), shape=(1, n_items)
    )


def row_entries(rows: sp.csr_matrix, r: int) -> tuple[I64, npt.NDArray[np.float32]]:
    """Item indices and values of CSR row ``r`` in stored (timeline) order."""
    lo, hi = int(rows.indptr[r]), int(rows.indptr[r + 1])
    return rows.indices[lo:hi].astype(np.int64), np.asarray(rows.data[lo:hi], dtype=np.float32)


def rows_by_history(
    rows: sp.csr_matrix,
    row_of: I64,
    targets: I64,
    one: Callable[[I64, npt.NDArray[np.float32], I64], tuple[F64, F64]],
) -> tuple[F64, list[F64]]:
    """An exact ``explain_rows`` from its one-history form ``one(items, ratings, targets) ->
    (score, weights)`` (see :meth:`Recommender.explain_history`): scores and per-pair weights."""
    row_of = np.asarray(row_of, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    weights: list[F64] = [np.zeros(0)] * len(targets)
    score = np.zeros(len(targets), dtype=np.float64)
    for r in np.unique(row_of).tolist():
        pairs = np.flatnonzero(row_of == r)
        idx, vals = row_entries(rows, r)
        s, w = one(idx, vals, targets[pairs])
        score[pairs] = s
        for n, p in enumerate(pairs.tolist()):
            weights[p] = w[n]
    return score, weights


class HistoryTerms:
    """Mixin of the exact explainers (EASE, item-kNN, ALS) that compute one history at a time.

    A model defines ``_explain_one(items, ratings, targets) -> (score, weights)`` (int64 items
    in timeline order, float32 values, int64 targets; ``weights[p, m]`` the term of
    ``items[m]`` in ``targets[p]``'s score) and calls :meth:`_history_terms` from its
    ``explain_rows`` (whose docstring states its formula); :meth:`explain_history` then serves
    one history straight from ``_explain_one``, without the one-row CSR of the default.
    """

    if TYPE_CHECKING:

        def _check_fitted(self) -> None: ...

    def _explain_one(
        self, idx: I64, vals: npt.NDArray[np.float32], targets: I64
    ) -> tuple[F64, F64]:
        raise NotImplementedError

    def _history_terms(self, rows: sp.csr_matrix, row_of: I64, targets: I64) -> Attribution:
        """``explain_rows``' exact attribution: each row's history through ``_explain_one``."""
        self._check_fitted()
        score, weights = rows_by_history(rows, row_of, targets, self._explain_one)
        return Attribution(score, weights, "exact")

    def explain_history(
        self, items: I64, ratings: npt.NDArray[np.floating[Any]], targets: I64
    ) -> tuple[F64, F64]:
        """:meth:`Recommender.explain_rows` of one history, without a CSR row."""
        self._check_fitted()
        return self._explain_one(
            np.asarray(items, dtype=np.int64),
            np.asarray(ratings, dtype=np.float32),
            np.asarray(targets, dtype=np.int64),
        )


# ---------------------------------------------------------------------- the occlusion default
def _drop_one_block(idx: I64, vals: npt.NDArray[np.float32]) -> tuple[I64, Any, I64]:
    """CSR arrays of ``1 + L`` rows: the full history, then the history without entry ``m``."""
    n = len(idx)
    keep = ~np.eye(n, dtype=bool)
    ind = np.concatenate([idx, np.broadcast_to(idx, (n, n))[keep]])
    dat = np.concatenate([vals, np.broadcast_to(vals, (n, n))[keep]])
    ptr = np.concatenate([[0], n + np.arange(n + 1) * (n - 1)])
    return ind.astype(np.int64), dat.astype(np.float32), ptr.astype(np.int64)


def drop_one_rows(idx: I64, vals: npt.NDArray[np.float32], n_items: int) -> sp.csr_matrix:
    """CSR of ``1 + L`` rows: the full history, then the history without entry ``m``
    (``m = 0 .. L−1``), entries in timeline order."""
    ind, dat, ptr = _drop_one_block(np.asarray(idx, np.int64), np.asarray(vals, np.float32))
    return sp.csr_matrix((dat, ind.astype(np.int32), ptr), shape=(len(ptr) - 1, n_items))


def drop_one_products(inputs: sp.csr_matrix, weight: Any) -> Any:
    """``inputs @ weightᵀ`` in float64 for a block whose row 0 is the full history.

    Each other row differs from row 0 in a few entries (one, unless the input weights of the
    remaining entries depend on the dropped one, as recency weights do), so its product is row
    0's minus the differences' products: ``O(nnz(diff) · h)`` multiply-adds instead of
    ``O(nnz · h)``, and only the touched columns of ``weight`` (``(h, n_items)``, a torch
    tensor) are read. Returns a ``(rows, h)`` float64 tensor on ``weight``'s device.
    """
    import torch

    x = sp.csr_matrix(inputs, dtype=np.float64)
    n = x.shape[0]
    lo, hi = int(x.indptr[0]), int(x.indptr[1])
    f_ind, f_dat = x.indices[lo:hi], x.data[lo:hi]
    rep = sp.csr_matrix(
        (np.tile(f_dat, n), np.tile(f_ind, n), np.arange(n + 1) * len(f_ind)), shape=x.shape
    )
    diff = sp.csr_matrix(rep - x)
    diff.eliminate_zeros()
    cols = np.unique(np.concatenate([f_ind, diff.indices]))
    dev = weight.device
    w = weight.detach()[:, torch.as_tensor(cols, device=dev)].to(torch.float64).T  # (m, h)
    first = torch.as_tensor(np.searchsorted(cols, f_ind), device=dev)
    full = torch.as_tensor(f_dat, device=dev) @ w[first]
    out = full[None, :].expand(n, -1).clone()
    d_rows = np.repeat(np.arange(n), np.diff(diff.indptr))
    contrib = (
        torch.as_tensor(diff.data, device=dev)[:, None]
        * w[torch.as_tensor(np.searchsorted(cols, diff.indices), device=dev)]
    )
    return out.index_add_(0, torch.as_tensor(d_rows, device=dev), contrib, alpha=-1.0)


def _fold_in_block(
    model: Recommender, ind: I64, dat: npt.NDArray[np.float32], ptr: I64, cols: I64
) -> F64:
    """Fold-in scores of every row of one CSR (given as arrays) at the item columns ``cols``."""
    n_rows = len(ptr) - 1
    out = np.empty((n_rows, len(cols)), dtype=np.float64)
    step = max(1, OCCLUSION_CELLS // max(1, model.n_items))
    for a in range(0, n_rows, step):
        b = min(n_rows, a + step)
        lo, hi = ptr[a], ptr[b]
        sub_ptr = ptr[a : b + 1] - lo
        empty = np.diff(sub_ptr) == 0
        chunk = sp.csr_matrix(
            (dat[lo:hi], ind[lo:hi].astype(np.int32), sub_ptr), shape=(b - a, model.n_items)
        )
        if empty.any():
            # A history of one item has an empty drop-one row; not every fold-in accepts it, so
            # those rows are scored on their own (0 when the model refuses an empty history).
            scores = np.zeros((b - a, len(cols)), dtype=np.float64)
            full = np.flatnonzero(~empty)
            if len(full):
                scores[full] = model.fold_in_scores_batch(chunk[full])[:, cols]
            try:
                none = model.fold_in_scores(np.zeros(0, np.int64), np.zeros(0, np.float32))
                scores[empty] = np.asarray(none, dtype=np.float64)[cols]
            except (ConfigError, DataError, ValueError, IndexError, RuntimeError):
                pass
            out[a:b] = scores
        else:
            out[a:b] = np.asarray(model.fold_in_scores_batch(chunk), dtype=np.float64)[:, cols]
    return out


def occlusion(model: Recommender, rows: sp.csr_matrix, row_of: I64, targets: I64) -> Attribution:
    """Drop-one occlusion: ``w_j = f(H)_i − f(H ∖ {j})_i`` through the model's fold-in.

    All ``|H| + 1`` fold-ins of every history row are one batched ``fold_in_scores_batch`` run
    (chunked to bound memory); only the target columns are kept.
    """
    row_of = np.asarray(row_of, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    cols, col_of = np.unique(targets, return_inverse=True)
    inds, dats, ptrs, starts = [], [], [], []
    base = 0
    offset = 0
    for r in range(rows.shape[0]):
        idx, vals = row_entries(rows, r)
        ind, dat, ptr = _drop_one_block(idx, vals)
        inds.append(ind)
        dats.append(dat)
        ptrs.append(ptr[:-1] + offset)
        starts.append(base)
        base += len(ptr) - 1
        offset += len(ind)
    ptr_all = np.concatenate([*ptrs, [offset]]).astype(np.int64)
    scores = _fold_in_block(model, np.concatenate(inds), np.concatenate(dats), ptr_all, cols)
    score = np.empty(len(targets), dtype=np.float64)
    weights: list[F64] = []
    for p, (r, c) in enumerate(zip(row_of.tolist(), col_of.tolist(), strict=True)):
        s = starts[r]
        n = int(rows.indptr[r + 1] - rows.indptr[r])
        score[p] = scores[s, c]
        weights.append(scores[s, c] - scores[s + 1 : s + 1 + n, c])
    return Attribution(score, weights, "occlusion")


# ---------------------------------------------------------------------- public entry points
def _logit(score: float, y_range: tuple[float, float]) -> float:
    lo, hi = y_range
    frac = min(max((score - lo) / (hi - lo), 1e-12), 1 - 1e-12)
    return float(np.log(frac / (1.0 - frac)))


def _sigmoid(raw: float, y_range: tuple[float, float]) -> float:
    lo, hi = y_range
    return float(lo + (hi - lo) / (1.0 + np.exp(-raw)))


def _titles(model: Recommender, idx: I64) -> list[str | None]:
    """Titles of item indices (None where unknown), from a per-model array built once."""
    meta = model.item_meta_
    if meta is None or "title" not in meta.columns or not len(idx):
        return [None] * len(idx)
    cached = model.__dict__.get("_explain_titles")
    if cached is None or cached[0] is not meta:
        found = meta["title"].reindex(model.items_.ids).tolist()
        titles = np.asarray([t if isinstance(t, str) else None for t in found], dtype=object)
        cached = (meta, titles)
        model.__dict__["_explain_titles"] = cached
    out: list[str | None] = cached[1][idx].tolist()
    return out


def _explain_pairs(model: Recommender, hist: _History, targets: I64, k: int) -> list[Explanation]:
    if k < 0:
        raise ConfigError(f"k must be >= 0, got {k}")
    row = _row(hist, model.n_items)
    attr = model.explain_rows(row, np.zeros(len(targets), dtype=np.int64), targets)
    if hist.user_idx is not None:
        served = model.predict_idx(np.full(len(targets), hist.user_idx, np.int64), targets)
        served64 = np.asarray(served, dtype=np.float64)
    elif attr.y_range is not None:
        served64 = np.asarray([_sigmoid(float(s), attr.y_range) for s in attr.score])
    else:
        served64 = np.asarray(attr.score, dtype=np.float64)
    # Every pair shares the one history: weights as one (pairs, |H|) block, ranked at once
    # (largest first, ties by timeline position), so the per-pair Python is object building.
    n_hist = len(hist.items)
    w_all = np.zeros((len(targets), n_hist), dtype=np.float64)
    for p, w in enumerate(attr.weights):
        w_all[p] = w
    pos = np.broadcast_to(np.arange(n_hist), w_all.shape)
    top_all = np.lexsort((pos, -w_all), axis=-1)[:, :k]
    shown = np.take_along_axis(w_all, top_all, axis=1)
    totals = w_all.sum(axis=1)
    rest = totals - shown.sum(axis=1)
    raws = (
        np.asarray([_logit(float(v), attr.y_range) for v in served64])
        if attr.y_range is not None
        else served64
    )
    used = np.unique(top_all)
    ids = np.empty(n_hist, dtype=object)
    ids[used] = [_plain(v) for v in model.items_.lookup(hist.items[used])]
    titles = np.empty(n_hist, dtype=object)
    titles[used] = _titles(model, hist.items[used])
    ratings = hist.ratings.astype(np.float64).tolist()
    target_ids = [_plain(v) for v in model.items_.lookup(np.asarray(targets))]
    att = attention_idx(model, hist.items, k)
    attention = None
    if att is not None:
        at = np.asarray([j for j, _ in att], dtype=np.int64)
        at_ids = [_plain(v) for v in model.items_.lookup(hist.items[at])]
        at_titles = _titles(model, hist.items[at])
        attention = tuple(
            Contribution(i, w, ratings[j], t)
            for (j, w), i, t in zip(att, at_ids, at_titles, strict=True)
        )
    link: Literal["identity", "scaled_sigmoid"] = (
        "scaled_sigmoid" if attr.y_range is not None else "identity"
    )
    out = []
    for p in range(len(targets)):
        contribs = tuple(
            Contribution(ids[j], w, ratings[j], titles[j])
            for j, w in zip(top_all[p].tolist(), shown[p].tolist(), strict=True)
        )
        raw = float(raws[p])
        out.append(
            Explanation(
                user_id=hist.user_id,
                item_id=target_ids[p],
                score=float(served64[p]),
                contributions=contribs,
                rest=float(rest[p]),
                residual=raw - float(totals[p]),
                method=attr.method,
                link=link,
                raw_score=raw,
                attention=attention,
                rated=model.rating_scale_ is not None,
            )
        )
    return out


def attention_idx(model: Recommender, items: I64, k: int) -> list[tuple[int, float]] | None:
    """The ``k`` history positions with the largest attention (largest first), as
    ``(position in items, weight)``; None for models without attention weights."""
    hook = getattr(model, "attention_to_history", None)
    weights = hook(items) if hook is not None and len(items) else None
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    top = np.lexsort((np.arange(len(w)), -w))[:k]
    return [(j, float(w[j])) for j in top.tolist()]


def because_idx(
    model: Recommender, user: Any, targets: npt.ArrayLike, n: int = 3
) -> list[list[tuple[int, float]]]:
    """Per target item index: the (at most ``n``) history items that raised its score most.

    ``[(history item index, weight), ...]`` largest first, positive weights only: what
    :meth:`Explanation.because` lists, from the same hook, without the served score, titles and
    objects a full :class:`Explanation` carries. For the service's per-request ``because``.
    """
    hist = _history(model, user)
    targets = np.asarray(targets, dtype=np.int64)
    if not len(targets) or not len(hist.items):
        return [[] for _ in range(len(targets))]
    # A model may screen which history items can be among the n largest (-inf for the rest).
    top_n = getattr(model, "explain_history_top", None)
    if top_n is not None:
        w_all = top_n(hist.items, hist.ratings, targets, n)
    else:
        w_all = model.explain_history(hist.items, hist.ratings, targets)[1]
    return because_lists(hist.items, w_all, n)


def because_lists(
    items: I64, w_all: npt.NDArray[np.float64], n: int
) -> list[list[tuple[int, float]]]:
    """:func:`because_idx`'s lists from weights ``w_all`` ``(targets, len(items))`` of the
    history ``items`` (``-inf``: not a candidate)."""
    # Only positive weights are listed: the n largest of each row by n argmax passes (the first
    # of equal weights is the earliest in the timeline, as Explanation.contributions ranks
    # them), not a sort of every row; -inf marks what is no longer (or never was) a candidate.
    w = np.where(w_all > 0, w_all, -np.inf)
    rows = np.arange(len(w))
    picks = []
    for _ in range(min(n, w.shape[1])):
        j = w.argmax(axis=1)
        picks.append((items[j].tolist(), w[rows, j].tolist()))
        w[rows, j] = -np.inf
    out: list[list[tuple[int, float]]] = [[] for _ in range(len(w))]
    for picked, weights in picks:
        for p, (i, wt) in enumerate(zip(picked, weights, strict=True)):
            if wt > 0:
                out[p].append((i, wt))
    return out


def explain_items(
    model: Recommender, user: Any, item_ids: Sequence[Any], k: int = 5
) -> list[Explanation]:
    """Explanations of several items for one user, from one batched hook call.

    Args:
        model: a fitted recommender.
        user: a known raw user id, ``{item_id: rating}`` of a new user, or an ordered item list.
        item_ids: raw item ids to explain (UnknownIdError for an unknown one).
        k: history items listed per explanation (the rest is summed in ``rest``).
    """
    hist = _history(model, user)
    targets = model.items_.index(np.asarray(list(item_ids))).astype(np.int64)
    if not len(targets):
        return []
    return _explain_pairs(model, hist, targets, k)


def explain(model: Recommender, user: Any, item_id: Any, k: int = 5) -> Explanation:
    """Why ``model`` scores ``item_id`` for ``user`` (see the module docstring)."""
    return explain_items(model, user, [item_id], k=k)[0]


def explain_reclist(model: Recommender, user: Any, recs: RecList, k: int = 5) -> list[Explanation]:
    """Explanations of every item of a recommendation list, in its order."""
    return explain_items(model, user, list(recs.item_ids), k=k)


def add_explanation_columns(frame: pd.DataFrame, explanations: Sequence[Explanation]) -> None:
    """Add ``because`` (the sentence), ``contributions`` (``[{item_id, weight}]``) and
    ``residual`` to a :meth:`RecList.to_frame` frame, in place (one explanation per row)."""
    import pandas as pd

    if len(explanations) != len(frame):
        raise ConfigError(
            f"{len(explanations)} explanations for {len(frame)} recommended items; pass "
            "model.explain_batch(user, recs.item_ids)"
        )
    frame["because"] = [e.sentence() for e in explanations]
    contributions: list[Any] = [
        [{"item_id": _plain(c.item_id), "weight": c.weight} for c in e.contributions]
        for e in explanations
    ]
    frame["contributions"] = pd.Series(contributions, index=frame.index, dtype=object)
    frame["residual"] = [e.residual for e in explanations]


def explanations_frame(recs: RecList, explanations: Sequence[Explanation]) -> pd.DataFrame:
    """``recs.to_frame(explanations)``: plus ``because``, ``contributions``, ``residual``."""
    return recs.to_frame(explanations)
