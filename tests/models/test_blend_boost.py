"""The blend's boosted-tree stage (recforge.models.blend_boost) and its use in ``blend``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from recforge.models.blend import Blend, ridge_blend_weights
from recforge.models.blend_boost import TreeEnsemble, _from_sklearn, boost_inputs, fit_boost
from recforge.models.blend_meta import META_FEATURES
from recforge.models.registry import create
from recforge.testing import ModelContract, planted_explicit

from ._round_trip import assert_loads_identically

FAST_MEMBERS = [
    {"model": "biases"},
    {"model": "biased_mf", "config": {"epochs": 5}},
    {"model": "item_knn", "config": {"similarity": "pearson_baseline"}},
]
BOOST = {
    "members": FAST_MEMBERS,
    "meta_features": list(META_FEATURES),
    "boost_rounds": 30,
    "boost_min_leaf": 10,
}


def test_flat_trees_predict_what_sklearn_predicts() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3_000, 4))
    y = np.sin(2 * x[:, 0]) + (x[:, 1] > 0.3) * x[:, 2] + 0.1 * rng.normal(size=3_000)
    x[rng.random(3_000) < 0.05, 3] = np.nan  # missing values: sklearn learns a side for them
    model = HistGradientBoostingRegressor(max_iter=40, max_leaf_nodes=7, random_state=0)
    model.fit(x, y)
    trees = _from_sklearn(model, 4)
    assert trees.n_trees == model.n_iter_ == 40
    probe = rng.normal(size=(500, 4))
    probe[::7, 3] = np.nan
    np.testing.assert_allclose(trees.predict(probe), model.predict(probe), rtol=0, atol=1e-12)


def test_boosting_fits_what_a_linear_stack_cannot() -> None:
    # The better of two members switches where they disagree: no linear weighting finds that.
    rng = np.random.default_rng(1)

    def planted(n: int) -> tuple[np.ndarray, np.ndarray]:
        t = rng.normal(3.5, 1.0, size=n)
        sharp = rng.random(n) < 0.5
        p0 = t + rng.normal(0.0, np.where(sharp, 0.1, 1.5))
        p1 = np.where(sharp, t + rng.normal(0.0, 1.5, size=n), t + rng.normal(0.0, 0.1, size=n))
        p0 = np.where(sharp, p0, p0 + 1.0)  # member 0 is also biased where it is noisy
        return np.column_stack([p0, p1]), t

    p_fit, t_fit = planted(20_000)
    p_new, t_new = planted(20_000)
    w0, w = ridge_blend_weights(p_fit, t_fit, 1e-3)
    linear = np.sqrt(np.mean((w0 + p_new @ w - t_new) ** 2))
    trees = fit_boost(
        boost_inputs(list(p_fit.T), None),
        t_fit - (w0 + p_fit @ w),
        max_rounds=200,
        learning_rate=0.1,
        max_leaves=15,
        min_leaf=50,
        l2=1.0,
        seed=0,
    )
    boosted = np.sqrt(
        np.mean((w0 + p_new @ w + trees.predict(boost_inputs(list(p_new.T), None)) - t_new) ** 2)
    )
    assert boosted < 0.8 * linear, (boosted, linear)


def test_state_round_trip_and_a_corrupt_table_is_refused() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 3))
    trees = fit_boost(
        x, x[:, 0] ** 2, max_rounds=10, learning_rate=0.3, max_leaves=5, min_leaf=5, l2=0, seed=0
    )
    state = trees.to_state("b_")
    again = TreeEnsemble.from_state(state, "b_")
    np.testing.assert_array_equal(again.predict(x), trees.predict(x))
    nodes = state["b_nodes"].copy()
    inner = np.flatnonzero(nodes[:, 5] == 0)[0]
    nodes[inner, 2] = inner  # a child that points back at its parent: an endless walk
    with pytest.raises(ValueError, match="not a valid ensemble"):
        TreeEnsemble.from_state({**state, "b_nodes": nodes}, "b_")
    with pytest.raises(ValueError, match="expected"):
        trees.predict(x[:, :2])


def test_blend_scores_are_the_stack_plus_the_trees() -> None:
    data = planted_explicit(0)
    model = create("blend", BOOST).fit(data.train)
    assert isinstance(model, Blend) and model.boost_.n_trees >= 1
    plain = create("blend", {**BOOST, "boost_rounds": 0}).fit(data.train)
    assert isinstance(plain, Blend)
    np.testing.assert_array_equal(model.weights_, plain.weights_)  # trees fit the residual
    users, items = np.arange(4), np.arange(model.n_items)
    lo, hi = model.rating_scale_ or (1.0, 5.0)
    parts = [np.clip(m.score_items(users), lo, hi).ravel() for m in model.members_]
    feats = np.hstack(
        [np.repeat(model.meta_users_[users], len(items), 0), np.tile(model.meta_items_, (4, 1))]
    )
    trees = model.boost_.predict(boost_inputs(parts, feats)).reshape(4, -1)
    np.testing.assert_allclose(
        model.score_items(users), plain.score_items(users) + trees, rtol=1e-5, atol=1e-5
    )
    # Pairs agree with the grid.
    u, i = np.repeat(users, 3), np.tile([0, 5, 9], 4)
    np.testing.assert_allclose(
        model.predict_idx(u, i), model.score_items(users)[np.repeat(np.arange(4), 3), i], atol=1e-5
    )


def test_plain_blend_state_has_no_trees_and_boosted_round_trips(tmp_path: Path) -> None:
    data = planted_explicit(3)
    plain = create("blend", {"members": FAST_MEMBERS}).fit(data.train)
    assert not any(k.startswith("blend_boost_") for k in plain.get_state())
    for config in (BOOST, {"members": FAST_MEMBERS, "boost_rounds": 20, "boost_min_leaf": 10}):
        model = create("blend", config).fit(data.train)
        ratings = {model.items_.ids[i]: 2.0 + i % 4 for i in range(8)}
        assert_loads_identically(model, tmp_path / f"run{len(config)}", ratings)


class TestBlendBoostContract(ModelContract):
    model_name = "blend"
    config = {**BOOST, "cv_folds": 2}
    explicit = True
