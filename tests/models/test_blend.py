"""Blend: ridge weights by hand, planted stacking, persistence, fold-in and the model contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recforge.errors import ConfigError, DataError
from recforge.models.blend import Blend, ridge_blend_weights
from recforge.models.blend_meta import (
    META_FEATURES,
    fwls_design,
    fwls_split,
    pair_features,
    side_tables,
)
from recforge.models.registry import create
from recforge.testing import ModelContract, planted_explicit, planted_implicit

from ._round_trip import assert_loads_identically

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
    ratings = {model.items_.ids[i]: 4.0 for i in range(6)}
    assert_loads_identically(model, tmp_path / "run", ratings)


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


# ---------------------------------------------------------------- feature-weighted stacking
FWLS = {"members": FAST_MEMBERS, "meta_features": list(META_FEATURES)}


def _support_planted(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Two members whose accuracy swaps with the user's support (log count of ratings)."""
    support = rng.uniform(0.0, 6.0, size=n)  # log(1 + ratings) of the pair's user
    t = rng.normal(3.5, 1.0, size=n)
    heavy = support > 3.0
    # Member 0 (say a factor model) is sharp for heavy users and noisy for light ones;
    # member 1 (say a baseline) the other way round.
    p0 = t + rng.normal(0.0, np.where(heavy, 0.2, 1.2))
    p1 = t + rng.normal(0.0, np.where(heavy, 1.2, 0.2))
    return np.column_stack([p0, p1]), support[:, None], t


def test_fwls_beats_the_plain_stack_when_the_best_member_depends_on_support() -> None:
    rng = np.random.default_rng(3)
    p_fit, f_fit, t_fit = _support_planted(20_000, rng)
    p_new, f_new, t_new = _support_planted(20_000, rng)
    mu, sd = f_fit.mean(0), f_fit.std(0)
    w0, w = ridge_blend_weights(p_fit, t_fit, ridge=1e-3)
    plain = np.sqrt(np.mean((w0 + p_new @ w - t_new) ** 2))
    design = fwls_design(p_fit, (f_fit - mu) / sd)
    c0, coef = ridge_blend_weights(design, t_fit, ridge=1e-3)
    fwls = np.sqrt(np.mean((c0 + fwls_design(p_new, (f_new - mu) / sd) @ coef - t_new) ** 2))
    _, v, _ = fwls_split(coef, 2, 1)
    # The plain stack splits the weight about evenly; FWLS shifts it with support.
    assert abs(w[0] - w[1]) < 0.1
    assert v[0, 0] > 0.1 and v[1, 0] < -0.1
    assert fwls < 0.93 * plain, (fwls, plain)


def test_fwls_columns_and_split_are_inverse() -> None:
    p = np.array([[1.0, 2.0], [3.0, 4.0]])
    f = np.array([[10.0, 0.5], [20.0, -1.0]])
    x = fwls_design(p, f)
    np.testing.assert_allclose(x[0], [1, 2, 10, 20, 0.5, 1.0, 10, 0.5])
    coef = np.arange(8.0)
    w, v, a = fwls_split(coef, 2, 2)
    # r = w·p + Σ_j (v[:, j]·p) f_j + a·f, the same as design @ coef.
    by_hand = p @ w + ((p @ v) * f).sum(1) + f @ a
    np.testing.assert_allclose(x @ coef, by_hand)


def test_side_tables_by_hand() -> None:
    users, items = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 0, 1, 2])
    r = np.array([5.0, 3.0, 4.0, 1.0, 2.0, 3.0])
    u, i = side_tables(users, items, r, 4, 4, META_FEATURES)
    np.testing.assert_allclose(u[:, 0], np.log1p([2, 1, 3, 0]))
    np.testing.assert_allclose(u[:, 1], [4.0, 4.0, 2.0, 3.0])  # user 3: the global mean
    np.testing.assert_allclose(u[:, 2], [1.0, 0.0, np.sqrt(2 / 3), 0.0])
    np.testing.assert_allclose(i[:, 1], [3.0, 3.0, 3.0, 3.0])
    np.testing.assert_allclose(i[:, 2], [2.0, np.sqrt(2 / 3), 0.0, 0.0])


def test_fwls_scores_follow_the_formula_and_agree_with_predict() -> None:
    data = planted_explicit(1)
    model = create("blend", FWLS).fit(data.train)
    assert isinstance(model, Blend)
    assert model.meta_v_.shape == (3, 6) and model.meta_users_.shape == (model.n_users, 3)
    users = np.arange(5)
    lo, hi = model.rating_scale_ or (1.0, 5.0)
    fu, fi = model.meta_users_[users], model.meta_items_
    expected = model.intercept_ + (fu @ model.meta_a_[:3])[:, None] + fi @ model.meta_a_[3:]
    for m, member in enumerate(model.members_):
        weight = (
            model.weights_[m] + (fu @ model.meta_v_[m, :3])[:, None] + fi @ model.meta_v_[m, 3:]
        )
        expected = expected + weight * np.clip(member.score_items(users), lo, hi)
    scores = model.score_items(users)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    pairs_u, pairs_i = np.repeat(users, 4), np.tile([0, 3, 7, 11], 5)
    np.testing.assert_allclose(
        model.predict_idx(pairs_u, pairs_i), scores[pairs_u, pairs_i], rtol=1e-6, atol=1e-6
    )
    # The default (no meta-features) keeps the plain stack: exactly its weights.
    plain = create("blend", {"members": FAST_MEMBERS}).fit(data.train)
    assert isinstance(plain, Blend) and not hasattr(plain, "meta_v_")


def test_fwls_fold_in_uses_the_new_users_own_ratings() -> None:
    data = planted_explicit(2)
    model = create("blend", FWLS).fit(data.train)
    assert isinstance(model, Blend)
    items = np.array([0, 2, 5, 9], dtype=np.int64)
    ratings = np.array([5.0, 4.0, 2.0, 5.0], dtype=np.float32)
    raw = np.array([np.log1p(4), ratings.mean(), ratings.std()])
    fu = (raw - model.meta_mu_[:3]) / model.meta_sd_[:3]
    fi = model.meta_items_
    lo, hi = model.rating_scale_ or (1.0, 5.0)
    expected = model.intercept_ + fu @ model.meta_a_[:3] + fi @ model.meta_a_[3:]
    for m, member in enumerate(model.members_):
        weight = model.weights_[m] + fu @ model.meta_v_[m, :3] + fi @ model.meta_v_[m, 3:]
        expected = expected + weight * np.clip(member.fold_in_scores(items, ratings), lo, hi)
    np.testing.assert_allclose(model.fold_in_scores(items, ratings), expected, rtol=1e-5, atol=1e-5)
    # The batched fold-in (occlusion explanations) gives each row its own meta-features.
    batch = sp.csr_matrix(
        (np.r_[ratings, ratings[:2]], (np.r_[0, 0, 0, 0, 1, 1], np.r_[items, items[:2]])),
        shape=(2, model.n_items),
    )
    np.testing.assert_allclose(
        model.fold_in_scores_batch(batch),
        np.vstack([expected, model.fold_in_scores(items[:2], ratings[:2])]),
        rtol=1e-5,
        atol=1e-5,
    )
    # A user who rated everything 5 gets other meta-features than one who rated everything 1.
    assert not np.allclose(
        model.fold_in_scores(items, np.full(4, 5.0, np.float32)) - 4.0,
        model.fold_in_scores(items, np.full(4, 1.0, np.float32)),
    )


def test_fwls_save_load_round_trip_and_one_sided_features(tmp_path: Path) -> None:
    data = planted_explicit(0)
    for names in (list(META_FEATURES), ["item_support"]):
        model = create("blend", {"members": FAST_MEMBERS, "meta_features": names}).fit(data.train)
        ratings = {model.items_.ids[i]: 3.0 + i % 3 for i in range(6)}
        assert_loads_identically(model, tmp_path / f"run{len(names)}", ratings)


def test_fwls_config_errors() -> None:
    with pytest.raises(ConfigError, match="meta_features"):
        create("blend", {"meta_features": ["user_age"]})
    with pytest.raises(ConfigError, match="twice"):
        create("blend", {"meta_features": ["user_sd", "user_sd"]})


class TestBlendFWLSContract(ModelContract):
    model_name = "blend"
    config = FWLS
    explicit = True


def test_fwls_carve_with_ids_its_inner_part_lacks() -> None:
    # 60 items rated once: the carve holds some of them, which its inner part has never seen
    # (the carve extends the inner vocabularies); they get the no-ratings meta-features.
    data = planted_explicit(4)
    frame = data.train.to_frame()
    users = frame["user_id"].unique()[:60]
    extra = pd.DataFrame(
        {"user_id": users, "item_id": [f"solo{k}" for k in range(60)], "rating": 4.0}
    )
    frame = frame.drop(columns="timestamp").astype({"item_id": str})
    train = pd.concat([frame, extra], ignore_index=True)
    model = create("blend", {**FWLS, "valid_ratio": 0.3}).fit(train, rating_scale=(1.0, 5.0))
    assert isinstance(model, Blend)
    pred = model.predict(extra["user_id"].to_numpy(), extra["item_id"].to_numpy())
    assert np.isfinite(pred).all()


def test_pair_features_pads_unknown_ids() -> None:
    users, items = np.array([[1.0, 4.0]]), np.array([[2.0]])
    names = ("user_support", "user_mean", "item_sd")
    out = pair_features(users, items, np.array([0, 1]), np.array([3, 0]), names, mean0=3.5)
    np.testing.assert_allclose(out, [[1.0, 4.0, 0.0], [0.0, 3.5, 2.0]])


# ---------------------------------------------------------------- cross-fitted stacking
@pytest.mark.parametrize("meta", [(), META_FEATURES], ids=["plain", "fwls"])
def test_cross_fitted_weights_use_every_rating_out_of_fold(meta: tuple[str, ...]) -> None:
    from recforge.data.split import kfold

    train = planted_explicit(2, n_users=120, n_items=80).train
    cfg = {"members": FAST_MEMBERS, "cv_folds": 3, "seed": 5, "meta_features": list(meta)}
    model = create("blend", cfg).fit(train)
    assert isinstance(model, Blend)
    # By hand: the three folds of the blend's seed, each predicted by members fitted without it.
    folds = kfold(train, k=3, seed=5)
    pairs = [
        set(zip(f.test.user_idx.tolist(), f.test.item_idx.tolist(), strict=True)) for f in folds
    ]
    assert sum(map(len, pairs)) == len(train) == len(set().union(*pairs))  # a partition
    preds, target, raw = [], [], []
    for f in folds:
        frame = f.test.to_frame()
        cols = [
            create(m["model"], m.get("config", {}))
            .fit(f.train)
            .predict(frame["user_id"].to_numpy(), frame["item_id"].to_numpy())
            for m in FAST_MEMBERS
        ]
        preds.append(np.column_stack(cols).astype(np.float64))
        target.append(frame["rating"].to_numpy(dtype=np.float64))
        if meta:
            u, i = side_tables(
                f.train.user_idx,
                f.train.item_idx,
                f.train.rating,
                f.train.n_users,
                f.train.n_items,
                model.config.meta_features,
            )
            raw.append(
                pair_features(
                    u,
                    i,
                    f.test.user_idx,
                    f.test.item_idx,
                    model.config.meta_features,
                    f.train.global_mean,
                )
            )
    p, t = np.vstack(preds), np.concatenate(target)
    if meta:
        x = np.vstack(raw)
        sd = np.where(x.std(0) > 0, x.std(0), 1.0)
        design = fwls_design(p, (x - x.mean(0)) / sd)
        n = p.shape[1]
        pen = np.r_[np.full(n, 1e-3), np.full(design.shape[1] - n, 1e-3)]
        w0, coef = ridge_blend_weights(design, t, pen)
        w = fwls_split(coef, n, len(meta))[0]
    else:
        w0, w = ridge_blend_weights(p, t, 1e-3)
    assert model.intercept_ == pytest.approx(w0, abs=1e-9)
    np.testing.assert_allclose(model.weights_, w, atol=1e-9)
    # The carve diagnostics are out-of-fold: each member's error on all training ratings.
    np.testing.assert_allclose(
        model.member_valid_rmse_, np.sqrt(np.mean((p - t[:, None]) ** 2, axis=0)), rtol=1e-12
    )


def test_cv_folds_config_errors() -> None:
    with pytest.raises(ConfigError, match="cv_folds"):
        create("blend", {"cv_folds": 1})
    with pytest.raises(ConfigError, match="cv_folds"):
        create("blend", {"cv_folds": -2})


class TestBlendCrossFitContract(ModelContract):
    model_name = "blend"
    config = {**FWLS, "cv_folds": 2}
    explicit = True
