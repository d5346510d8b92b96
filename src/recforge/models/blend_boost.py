"""Gradient-boosted trees on a blend's residuals: the non-linear stage of the Netflix Prize blends.

The linear (or feature-weighted) stack of :mod:`recforge.models.blend` gives each member a
weight that is at most a linear function of the pair's meta-features. The winning Netflix Prize
blends went further and fed the member predictions and meta-features to gradient-boosted
decision trees (Töscher, Jahrer & Bell 2009, "The BigChaos Solution to the Netflix Grand
Prize", §7; Friedman 2001, "Greedy function approximation: a gradient boosting machine"), which
can learn, for example, that two members disagreeing is a sign to trust neither. Here the trees
fit the *residual* of the linear stack on the same held-out (or out-of-fold) ratings::

    r̂(u, i) = stack(u, i) + Σ_t η · tree_t(x(u, i))
    x(u, i) = [clip(s_1) … clip(s_m), sd_m clip(s_m), f_1(u, i) … f_q(u, i)]

with ``f_j`` the blend's standardised meta-features (none without FWLS) and ``sd_m`` the spread
of the members' predictions. The trees are fitted with scikit-learn's histogram gradient
boosting (least squares, ``max_leaf_nodes`` leaves, L2 on the leaf values, early stopping on a
seeded 10% of the rows). They are kept as flat node arrays (:class:`TreeEnsemble`), so a saved
blend holds plain arrays (no pickle) and scoring is one compiled pass that does not need
scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recforge.train._mf_kernels import _jit

F64 = npt.NDArray[np.float64]

#: Rows per scoring chunk: bounds the ``(rows, features)`` input array of a large score grid.
BOOST_CHUNK_ROWS = 1 << 17


@_jit
def _ensemble_predict(
    x: Any,
    feature: Any,
    threshold: Any,
    left: Any,
    right: Any,
    value: Any,
    leaf: Any,
    nan_left: Any,
    roots: Any,
    out: Any,
) -> None:
    """``out[r] += Σ_t value[leaf reached by row r in tree t]`` (``x[f] <= threshold`` → left)."""
    for r in range(x.shape[0]):
        total = 0.0
        for t in range(roots.shape[0]):
            node = roots[t]
            while not leaf[node]:
                v = x[r, feature[node]]
                go_left = nan_left[node] if np.isnan(v) else v <= threshold[node]
                node = left[node] if go_left else right[node]
            total += value[node]
        out[r] += total


@dataclass(frozen=True)
class TreeEnsemble:
    """Regression trees as flat node arrays: ``predict(x) = baseline + Σ_t tree_t(x)``.

    Node ``n`` of the concatenated trees splits on ``feature[n]`` at ``threshold[n]`` (rows with
    ``x <= threshold`` and, where ``nan_left``, missing values go to ``left[n]``; both child
    indices are global) unless ``leaf[n]``, where the tree's output is ``value[n]`` (the
    learning rate already applied). ``roots[t]`` is tree ``t``'s first node.
    """

    feature: npt.NDArray[np.int64]
    threshold: F64
    left: npt.NDArray[np.int64]
    right: npt.NDArray[np.int64]
    value: F64
    leaf: npt.NDArray[np.bool_]
    nan_left: npt.NDArray[np.bool_]
    roots: npt.NDArray[np.int64]
    baseline: float
    n_features: int

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    def predict(self, x: npt.NDArray[np.floating[Any]]) -> F64:
        """The ensemble's output for every row of ``x`` ``(n, n_features)``."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"boost input has shape {x.shape}, expected (n, {self.n_features})")
        out = np.full(len(x), self.baseline, dtype=np.float64)
        if self.n_trees:
            _ensemble_predict(x, *self._node_columns(), self.roots, out)
        return out

    def _node_columns(self) -> tuple[npt.NDArray[Any], ...]:
        """The per-node arrays in the node table's column order."""
        return (
            self.feature,
            self.threshold,
            self.left,
            self.right,
            self.value,
            self.leaf,
            self.nan_left,
        )

    def to_state(self, prefix: str) -> dict[str, npt.NDArray[Any]]:
        """Plain arrays for a saved model (the node table, tree roots and scalars)."""
        nodes = np.column_stack(self._node_columns()).astype(np.float64)
        return {
            f"{prefix}nodes": nodes.reshape(-1, 7),
            f"{prefix}roots": self.roots.astype(np.int64),
            f"{prefix}scalars": np.array([self.baseline, self.n_features], dtype=np.float64),
        }

    @classmethod
    def from_state(cls, state: dict[str, npt.NDArray[Any]], prefix: str) -> TreeEnsemble:
        """Inverse of :meth:`to_state`; refuses tables whose child links leave the table."""
        nodes = np.asarray(state[f"{prefix}nodes"], dtype=np.float64).reshape(-1, 7)
        roots = np.asarray(state[f"{prefix}roots"], dtype=np.int64)
        baseline, n_features = np.asarray(state[f"{prefix}scalars"], dtype=np.float64)
        leaf = nodes[:, 5] != 0
        feature, left, right = (nodes[:, k].astype(np.int64) for k in (0, 2, 3))
        inner = ~leaf
        n = len(nodes)
        links_ok = bool(
            np.all((left[inner] > np.flatnonzero(inner)) & (left[inner] < n))
            and np.all((right[inner] > np.flatnonzero(inner)) & (right[inner] < n))
        )
        if (
            not links_ok
            or np.any((roots < 0) | (roots >= max(n, 1)))
            or np.any((feature[inner] < 0) | (feature[inner] >= n_features))
        ):
            raise ValueError(f"state '{prefix}nodes': the tree table is not a valid ensemble")
        return cls(
            feature=feature,
            threshold=nodes[:, 1].copy(),
            left=left,
            right=right,
            value=nodes[:, 4].copy(),
            leaf=leaf,
            nan_left=nodes[:, 6] != 0,
            roots=roots,
            baseline=float(baseline),
            n_features=int(n_features),
        )


def fit_boost(
    x: npt.NDArray[np.floating[Any]],
    target: npt.NDArray[np.floating[Any]],
    *,
    max_rounds: int,
    learning_rate: float,
    max_leaves: int,
    min_leaf: int,
    l2: float,
    seed: int,
) -> TreeEnsemble:
    """Least-squares gradient boosting of ``target`` on ``x`` (scikit-learn's histogram GBDT).

    At most ``max_rounds`` trees; boosting stops when the loss on a seeded 10% of the rows has
    not improved for 10 rounds (those rows still train the bins, not the trees).
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    x = np.ascontiguousarray(x, dtype=np.float64)
    model = HistGradientBoostingRegressor(
        loss="squared_error",
        learning_rate=learning_rate,
        max_iter=max_rounds,
        max_leaf_nodes=max_leaves,
        min_samples_leaf=min_leaf,
        l2_regularization=l2,
        early_stopping=len(x) >= 100,
        validation_fraction=0.1,
        n_iter_no_change=10,
        random_state=seed,
    )
    model.fit(x, np.asarray(target, dtype=np.float64))
    return _from_sklearn(model, x.shape[1])


def _from_sklearn(model: Any, n_features: int) -> TreeEnsemble:
    """Flatten a fitted ``HistGradientBoostingRegressor`` into :class:`TreeEnsemble` arrays.

    Reads its per-round ``TreePredictor.nodes`` tables (``feature_idx``, ``num_threshold``,
    ``left``/``right`` child indices local to the tree, ``value`` with the learning rate applied,
    ``is_leaf``, ``missing_go_to_left``); tests check the result against ``model.predict``.
    """
    # One tree per round (a single output); the rounds' node tables share one structured dtype.
    tables = [round_[0].nodes for round_ in model._predictors]
    sizes = [len(t) for t in tables]
    offsets = np.cumsum([0, *sizes])[:-1].astype(np.int64)
    nodes = np.concatenate(tables)
    shift = np.repeat(offsets, sizes)  # each node's tree's first index: local → global links
    leaf = nodes["is_leaf"].astype(bool)
    left = np.where(leaf, 0, nodes["left"].astype(np.int64) + shift)
    right = np.where(leaf, 0, nodes["right"].astype(np.int64) + shift)
    return TreeEnsemble(
        feature=np.where(leaf, 0, nodes["feature_idx"].astype(np.int64)),
        threshold=nodes["num_threshold"].astype(np.float64),
        left=left,
        right=right,
        value=nodes["value"].astype(np.float64),
        leaf=leaf,
        nan_left=nodes["missing_go_to_left"].astype(bool),
        roots=offsets,
        baseline=float(np.ravel(model._baseline_prediction)[0]),
        n_features=n_features,
    )


def boost_inputs(
    clipped: list[npt.NDArray[np.float64]], feats: npt.NDArray[np.float64] | None
) -> F64:
    """The trees' input rows: member predictions, their spread, then the meta-features.

    ``clipped``: one ``(n,)`` clipped prediction vector per member; ``feats``: ``(n, q)``
    standardised meta-features, or None.
    """
    preds = np.column_stack(clipped)
    cols = [preds, preds.std(axis=1, keepdims=True)]
    if feats is not None and feats.shape[1]:
        cols.append(feats)
    return np.ascontiguousarray(np.hstack(cols), dtype=np.float64)
