"""Feature-weighted linear stacking (FWLS): meta-features and the stacked ridge regression.

Sill, Takács, Mackey & Lin (2009), "Feature-Weighted Linear Stacking", arXiv:0911.0460 — the
blend of the Netflix Prize's second-placed team. A plain linear stack predicts
``r̂ = w₀ + Σ_m w_m p_m``. FWLS lets each member's weight depend linearly on meta-features
``f_j(u, i)`` of the (user, item) pair::

    r̂(u, i) = w₀ + Σ_m (w_m + Σ_j v_mj f_j(u, i)) · p_m(u, i) + Σ_j a_j f_j(u, i)

which is still linear in the coefficients: ridge regression on the columns
``[p_m, p_m · f_j, f_j]``. So a member that is good for heavy users and poor for users with few
ratings gets a large weight only where the user's support is high.

The meta-features are computed from the ratings the members were trained on (the blend's carve
for the weight fit, all training data after the refit; a folded-in user's from their given
ratings), and standardised with the mean and sd they had on the carved ratings:

- ``user_support`` / ``item_support``: ``log(1 + number of training ratings)``;
- ``user_mean`` / ``item_mean``: mean training rating (the global mean where there is none);
- ``user_sd`` / ``item_sd``: standard deviation of the training ratings (0 below two ratings).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "META_FEATURES",
    "fwls_design",
    "fwls_split",
    "pair_features",
    "rating_stats",
    "side_tables",
    "user_row",
    "user_rows",
]

#: Meta-feature names: the side (``user``/``item``) and the statistic.
META_FEATURES: tuple[str, ...] = (
    "user_support",
    "user_mean",
    "user_sd",
    "item_support",
    "item_mean",
    "item_sd",
)

F64 = npt.NDArray[np.float64]


def rating_stats(
    index: npt.NDArray[np.integer[Any]],
    ratings: npt.NDArray[np.floating[Any]],
    n: int,
    mean0: float,
) -> tuple[F64, F64, F64]:
    """``(log(1 + count), mean, sd)`` of ``ratings`` grouped by ``index`` (``n`` groups).

    A group without ratings gets mean ``mean0``; one with fewer than two ratings gets sd 0.
    """
    r = np.asarray(ratings, dtype=np.float64)
    count = np.bincount(index, minlength=n).astype(np.float64)
    total = np.bincount(index, weights=r, minlength=n)
    safe = np.maximum(count, 1.0)
    mean = np.where(count > 0, total / safe, mean0)
    sq = np.bincount(index, weights=(r - mean[index]) ** 2, minlength=n)
    sd = np.where(count > 1, np.sqrt(sq / safe), 0.0)
    return np.log1p(count), mean, sd


def _pick(names: tuple[str, ...], side: str, stats: tuple[F64, F64, F64]) -> F64:
    col = {"support": 0, "mean": 1, "sd": 2}
    chosen = [stats[col[n.split("_", 1)[1]]] for n in names if n.startswith(side + "_")]
    if not chosen:
        return np.zeros((len(stats[0]), 0))
    return np.column_stack(chosen)


def side_tables(
    user_idx: npt.NDArray[np.integer[Any]],
    item_idx: npt.NDArray[np.integer[Any]],
    ratings: npt.NDArray[np.floating[Any]],
    n_users: int,
    n_items: int,
    names: tuple[str, ...],
) -> tuple[F64, F64]:
    """Per-user ``(n_users, q_u)`` and per-item ``(n_items, q_i)`` raw meta-feature tables.

    Columns follow ``names`` within each side (user features first in the design, then items).
    """
    mean0 = float(np.mean(ratings)) if len(ratings) else 0.0
    users = _pick(names, "user", rating_stats(user_idx, ratings, n_users, mean0))
    items = _pick(names, "item", rating_stats(item_idx, ratings, n_items, mean0))
    return users, items


def pair_features(
    users: F64,
    items: F64,
    user_idx: npt.NDArray[np.integer[Any]],
    item_idx: npt.NDArray[np.integer[Any]],
    names: tuple[str, ...],
    mean0: float,
) -> F64:
    """Raw meta-features ``(n, q)`` of pairs from :func:`side_tables`' tables.

    An index past a table's end (an id the tables' data lacks: a split's held-out part extends
    its training vocabularies) gets the row of no ratings: log support 0, mean ``mean0``, sd 0.
    """

    def padded(table: F64, side: str) -> F64:
        cols = [n for n in names if n.startswith(side + "_")]
        empty = [mean0 if n.endswith("_mean") else 0.0 for n in cols]
        return np.vstack([table, np.asarray(empty, dtype=np.float64).reshape(1, -1)])

    u, i = padded(users, "user"), padded(items, "item")
    ui = np.minimum(np.asarray(user_idx, dtype=np.int64), len(users))
    ii = np.minimum(np.asarray(item_idx, dtype=np.int64), len(items))
    return np.column_stack([u[ui], i[ii]])


def user_row(ratings: npt.NDArray[np.floating[Any]], names: tuple[str, ...], mean0: float) -> F64:
    """The user-side raw meta-features ``(1, q_u)`` of a new user from their given ratings."""
    return user_rows(np.zeros(len(ratings), dtype=np.int64), ratings, 1, names, mean0)


def user_rows(
    row: npt.NDArray[np.integer[Any]],
    ratings: npt.NDArray[np.floating[Any]],
    n_rows: int,
    names: tuple[str, ...],
    mean0: float,
) -> F64:
    """User-side raw meta-features ``(n_rows, q_u)`` of new users; ``row`` says whose rating."""
    r = np.asarray(ratings, dtype=np.float64)
    return _pick(names, "user", rating_stats(np.asarray(row, np.int64), r, n_rows, mean0))


def fwls_design(preds: F64, feats: F64) -> F64:
    """FWLS regressors ``[P, P·f_1, …, P·f_q, F]``; P: ``(n, m)`` predictions, F: ``(n, q)``."""
    products = [preds * feats[:, [j]] for j in range(feats.shape[1])]
    return np.column_stack([preds, *products, feats])


def fwls_split(coef: F64, n_members: int, n_feats: int) -> tuple[F64, F64, F64]:
    """``(w (m,), V (m, q), a (q,))`` from the coefficients of :func:`fwls_design`'s columns."""
    w = coef[:n_members]
    v = coef[n_members : n_members * (n_feats + 1)].reshape(n_feats, n_members).T
    a = coef[n_members * (n_feats + 1) :]
    return w, v, a
