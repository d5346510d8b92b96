"""Blend: ridge weights by hand, planted stacking, persistence, fold-in and the model contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recforge.errors import ConfigError, DataError
from recforge.models.base import Recommender
from recforge.models.blend import Blend, ridge_blend_weights
from recforge.models.registry import create
from recforge.testing import ModelContract, planted_explicit, planted_implicit

FAST_MEMBERS = [
    {"model": "biases"},
    {"model": "biased_mf", "config": {"epochs": 5}},
    {"model": "item_knn", "config": {"similarity": "pearson_baseline"}},
]


def test_ridge_weights_recover_a_known_combination() -> None:
    rng = np.random.default_rng(0)
    p = rng.normal(3.0, 1.0, size=(500, 3))
    t = 0.5 + 0.2 * p[:, 0] + 0.7 * p[:, 2]
    w0, w = ridge_blend_weights(p, t, ridge=0.0)
    assert w0 == pytest.approx(0.5, abs=1e-8)
    np.testing.assert_allclose(w, [0.2, 0.0, 0.7], atol=1e-8)
    # A penalty shrinks the weights; the unpenalised intercept still matches the mean.
    w0_r, w_r = ridge_blend_weights(p, t, ridge=10.0)
    assert np.linalg.norm(w_r) < 0.2 * np.linalg.norm(w)
    assert w0_r + p.mean(0) @ w_r == pytest.approx(t.mean())


def test_blend_is_at_least_as_good_as_its_best_member_on_the_carve() -> None:
    data = planted_explicit(0)
    model = create("blend", {"members": FAST_MEMBERS}).fit(data.train)
    assert isinstance(model, Blend)
    assert len(model.members_) == 3 and model.weights_.shape == (3,)
    # Least squares on the carve can only match or beat any single member there (up to ridge).
    assert model.valid_rmse_ <= model.member_valid_rmse_.min() + 1e-3


def test_scores_are_the_weighted_member_scores() -> None:
    data = planted_explicit(1)
    model = create("blend", {"members": FAST_MEMBERS}).fit(data.train)
    assert isinstance(model, Blend)
    users = np.arange(5)
    lo, hi = model.rating_scale_ or (1.0, 5.0)
    expected = model.intercept_ + sum(
        w * np.clip(m.score_items(users), lo, hi)
        for w, m in zip(model.weights_, model.members_, strict=True)
    )
    np.testing.assert_allclose(model.score_items(users), expected, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(tmp_path: Path) -> None:
    data = planted_explicit(2)
    model = create("blend", {"members": FAST_MEMBERS}).fit(data.train)
    loaded = Recommender.load(model.save(tmp_path / "run"))
    users = np.arange(model.n_users)
    np.testing.assert_array_equal(loaded.score_items(users), model.score_items(users))
    ratings = {model.items_.ids[i]: 4.0 for i in range(6)}
    np.testing.assert_array_equal(
        loaded.recommend_for_ratings(ratings, k=5).item_ids,
        model.recommend_for_ratings(ratings, k=5).item_ids,
    )


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="members"):
        create("blend", {"members": [{"model": "no_such_model"}]})
    with pytest.raises(ConfigError, match="blend"):
        create("blend", {"members": [{"model": "blend"}]})
    with pytest.raises(ConfigError, match="members"):
        create("blend", {"members": []})
    with pytest.raises(ConfigError, match="does not predict ratings"):
        create("blend", {"members": [{"model": "ease"}]}).fit(planted_explicit(0).train)
    with pytest.raises(DataError, match="explicit"):
        create("blend", {"members": FAST_MEMBERS}).fit(planted_implicit(0).train)


class TestBlendContract(ModelContract):
    model_name = "blend"
    config = {"members": FAST_MEMBERS}
    explicit = True
