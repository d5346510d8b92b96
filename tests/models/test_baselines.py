"""Baselines: hand-computed values, Surprise BaselineOnly equivalence, fold-in, popularity ties."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.data.vocab import IdVocab
from recforge.errors import ConfigError
from recforge.models import create
from recforge.models.base import topk_rows
from recforge.models.baselines import Biases, GlobalMean, Popularity


def _frame(rows: list[tuple[object, object, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])


def _explicit(
    rows: list[tuple[object, object, float]], items: IdVocab | None = None
) -> Interactions:
    return Interactions.from_frame(_frame(rows), items=items, rating_scale=(1.0, 5.0))


def surprise_baseline_als(
    frame: pd.DataFrame, reg_u: float = 15, reg_i: float = 10, n_epochs: int = 10
) -> tuple[float, dict[object, float], dict[object, float]]:
    """A literal, loop-by-loop port of Surprise's ``baseline_als`` (optimize_baselines.pyx).

    Kept deliberately naive and independent of recforge, as the reference for the vectorised fit.
    """
    ur: dict[object, list[tuple[object, float]]] = defaultdict(list)
    ir: dict[object, list[tuple[object, float]]] = defaultdict(list)
    for u, i, r in zip(frame.user_id, frame.item_id, frame.rating.astype(float), strict=True):
        ur[u].append((i, r))
        ir[i].append((u, r))
    mu = float(np.mean(frame.rating.astype(float)))
    bu: dict[object, float] = dict.fromkeys(ur, 0.0)
    bi: dict[object, float] = dict.fromkeys(ir, 0.0)
    for _ in range(n_epochs):
        for i, lst in ir.items():
            bi[i] = sum(r - mu - bu[u] for u, r in lst) / (reg_i + len(lst))
        for u, lst in ur.items():
            bu[u] = sum(r - mu - bi[i] for i, r in lst) / (reg_u + len(lst))
    return mu, bu, bi


def surprise_predict(
    mu: float, bu: dict[object, float], bi: dict[object, float], users: pd.Series, items: pd.Series
) -> np.ndarray:
    """BaselineOnly.estimate + default clipping: unknown users/items contribute a zero bias."""
    est = [mu + bu.get(u, 0.0) + bi.get(i, 0.0) for u, i in zip(users, items, strict=True)]
    return np.clip(np.asarray(est), 1.0, 5.0)


# ---------------------------------------------------------------------- global mean
def test_global_mean_predicts_training_mean() -> None:
    train = _explicit([(1, "a", 5.0), (1, "b", 3.0), (2, "a", 4.0), (3, "c", 1.0)])
    model = GlobalMean().fit(train)
    pred = model.predict([1, 3, 2, 99], ["c", "a", "b", "a"])
    np.testing.assert_allclose(pred[:3], [3.25, 3.25, 3.25])
    assert np.isnan(pred[3])
    assert model.score_items(np.array([0, 2])).shape == (2, 3)
    np.testing.assert_allclose(model.predict_for_ratings({"a": 1.0}, ["b"]), [3.25])
    assert model.get_state()["mean"].tolist() == [3.25]


# ---------------------------------------------------------------------- biases
def test_biases_one_sweep_by_hand() -> None:
    # mu = 4; deviations u0:i0 +1, u0:i1 -1, u1:i0 0; lambda_u = lambda_i = 1.
    # b_i0 = (1 + 0) / (1 + 2) = 1/3          b_i1 = -1 / (1 + 1) = -1/2
    # b_u0 = ((1 - 1/3) + (-1 + 1/2)) / (1 + 2) = 1/18
    # b_u1 = (0 - 1/3) / (1 + 1) = -1/6
    train = _explicit([(0, 0, 5.0), (0, 1, 3.0), (1, 0, 4.0)])
    model = Biases(reg_u=1, reg_i=1, epochs=1).fit(train)
    np.testing.assert_allclose(model.item_bias_, [1 / 3, -1 / 2])
    np.testing.assert_allclose(model.user_bias_, [1 / 18, -1 / 6])
    np.testing.assert_allclose(model.predict([1], [1]), [4 - 1 / 6 - 1 / 2], rtol=1e-6)
    resid = np.array([1 - 1 / 18 - 1 / 3, -1 - 1 / 18 + 1 / 2, 0 + 1 / 6 - 1 / 3])
    loss = (resid @ resid + (1 / 18) ** 2 + (1 / 6) ** 2 + (1 / 3) ** 2 + (1 / 2) ** 2) / 3
    assert model.history_["train_loss"].tolist() == pytest.approx([loss])


def test_biases_equal_a_literal_port_of_surprise_baseline_als() -> None:
    rng = np.random.default_rng(3)
    n = 400
    frame = _frame(
        list(
            zip(
                rng.integers(0, 40, n).tolist(),
                rng.integers(0, 30, n).tolist(),
                rng.integers(1, 6, n).astype(float).tolist(),
                strict=True,
            )
        )
    ).drop_duplicates(["user_id", "item_id"])
    train = Interactions.from_frame(frame, rating_scale=(1.0, 5.0))
    model = Biases().fit(train)
    mu, bu, bi = surprise_baseline_als(frame)
    assert model.global_mean_ == pytest.approx(mu, abs=1e-6)
    np.testing.assert_allclose(model.user_bias_, [bu[u] for u in train.users.ids], atol=1e-6)
    np.testing.assert_allclose(model.item_bias_, [bi[i] for i in train.items.ids], atol=1e-6)


def test_biases_loss_never_increases_and_valid_rmse_is_recorded() -> None:
    from recforge.testing import planted_explicit

    data = planted_explicit(1)
    model = Biases(epochs=6).fit(data.train, valid=data.test)
    hist = model.history_
    assert hist.columns.tolist() == ["epoch", "train_loss", "train_rmse", "valid_rmse"]
    assert hist["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    # Each block update is an exact minimiser, so the regularised loss is monotone.
    assert np.all(np.diff(hist["train_loss"].to_numpy()) <= 1e-12)
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    pred = model.predict(
        data.test.users.lookup(data.test.user_idx), data.test.items.lookup(data.test.item_idx)
    )
    expected = np.sqrt(np.mean((pred.astype(np.float64) - data.test.rating) ** 2))
    assert hist["valid_rmse"].iloc[-1] == pytest.approx(expected, rel=1e-5)


def test_biases_predictions_are_clipped_scores_are_not() -> None:
    train = _explicit([(0, 0, 5.0), (0, 1, 5.0), (1, 0, 5.0), (1, 1, 1.0), (2, 1, 1.0)])
    model = Biases(reg_u=0, reg_i=0, epochs=20).fit(train)
    raw = model.score_items(np.arange(3))
    assert raw.max() > 5.0 or raw.min() < 1.0  # unregularised biases overshoot the scale
    pred = model.predict([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1])
    assert pred.min() >= 1.0 and pred.max() <= 5.0


def test_items_without_ratings_get_zero_bias_even_without_regularisation() -> None:
    items = IdVocab(["a", "b", "never-rated"], name="item")
    train = _explicit([(1, "a", 4.0), (2, "b", 2.0)], items=items)
    model = Biases(reg_u=0, reg_i=0).fit(train)
    assert np.isfinite(model.item_bias_).all() and model.item_bias_[2] == 0.0
    assert model.predict([1], ["never-rated"])[0] == pytest.approx(
        model.global_mean_ + model.user_bias_[0]
    )


def test_biases_fold_in_by_hand_and_for_a_training_user() -> None:
    train = _explicit([(0, 0, 5.0), (0, 1, 3.0), (1, 0, 4.0), (2, 1, 2.0), (2, 2, 4.0)])
    model = Biases(reg_u=2, reg_i=1).fit(train)
    mu, bi = model.global_mean_, model.item_bias_
    b_u = (5.0 - mu - bi[0] + 1.0 - mu - bi[2]) / (2 + 2)
    np.testing.assert_allclose(
        model.fold_in_scores(np.array([0, 2]), np.array([5.0, 1.0], np.float32)),
        mu + b_u + bi,
        rtol=1e-6,
    )
    # The last ALS step is the user update, so folding a training user in reproduces them.
    for u in range(3):
        items, ratings = train.user_history(u)
        np.testing.assert_allclose(
            model.fold_in_scores(items.astype(np.int64), ratings),
            model.score_items(np.array([u]))[0],
            rtol=1e-6,
        )
    rec = model.recommend_for_ratings({0: 5.0}, k=5)
    assert rec.item_ids.tolist() == sorted([1, 2], key=lambda i: -bi[i])  # item 0 was rated
    np.testing.assert_allclose(
        rec.scores, model.fold_in_scores(np.array([0]), np.array([5.0], np.float32))[rec.item_ids]
    )


@pytest.mark.parametrize(
    "bad", [{"reg_u": -1.0}, {"reg_i": -0.1}, {"epochs": 0}, {"epochs": 10_000}, {"n_epochs": 3}]
)
def test_biases_config_is_range_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        create("biases", bad)


def test_biases_defaults_are_surprise_defaults() -> None:
    cfg = Biases().config
    assert (cfg.reg_u, cfg.reg_i, cfg.epochs) == (15.0, 10.0, 10)


def test_biases_set_state_checks_shapes() -> None:
    model = Biases().fit(_explicit([(0, 0, 5.0), (1, 1, 3.0)]))
    state = model.get_state()
    with pytest.raises(ValueError, match="item_bias"):
        model.set_state({**state, "item_bias": np.zeros(5)})
    with pytest.raises(KeyError):
        model.set_state({"item_bias": state["item_bias"]})


# ---------------------------------------------------------------------- popularity
def _popularity_data() -> Interactions:
    # counts: a=3, b=2, c=2, d=1, e=0 (e only in the vocabulary)
    rows = [(1, "a", 5.0), (2, "a", 1.0), (3, "a", 2.0), (1, "b", 4.0), (2, "c", 3.0)]
    rows += [(3, "b", 5.0), (3, "c", 4.0), (2, "d", 4.0)]
    return _explicit(rows, items=IdVocab(["a", "b", "c", "d", "e"], name="item"))


def test_popularity_scores_are_interaction_counts() -> None:
    model = Popularity().fit(_popularity_data())
    assert model.item_popularity_.tolist() == [3, 2, 2, 1, 0]
    # Counts, not ratings: not clipped to the 1-5 scale.
    np.testing.assert_array_equal(model.predict([1, 1, 1], ["a", "d", "e"]), [3, 1, 0])
    assert not Popularity.predicts_ratings


def test_popularity_recommends_most_popular_unseen_with_index_ties() -> None:
    model = Popularity().fit(_popularity_data())
    (r1,) = model.recommend([1], k=2)  # user 1 saw a, b
    assert r1.item_ids.tolist() == ["c", "d"]
    (r9,) = model.recommend([1], k=2, exclude_seen=False)
    assert r9.item_ids.tolist() == ["a", "b"]  # b and c tie at 2: the lower index wins
    (r2,) = model.recommend([2], k=10)  # user 2 saw a, c, d
    assert r2.item_ids.tolist() == ["b", "e"]
    np.testing.assert_array_equal(r2.scores, [2, 0])


def test_popularity_fold_in_ignores_ratings_but_excludes_rated() -> None:
    model = Popularity().fit(_popularity_data())
    rec = model.recommend_for_ratings({"a": 1.0, "zzz-unknown": 5.0}, k=3)
    assert rec.item_ids.tolist() == ["b", "c", "d"]
    assert rec.user_id is None


def test_popularity_has_no_item_vectors() -> None:
    model = Popularity().fit(_popularity_data())
    assert model.item_vectors() is None
    with pytest.raises(ConfigError, match="no item vectors"):
        model.similar_items("a")


# ---------------------------------------------------------------------- ranking ties (base)
def test_topk_rows_breaks_ties_by_lower_index_across_the_cut() -> None:
    # Every baseline ranks with many ties (global mean: all; popularity: equal counts). The k-th
    # place must go to the lowest tied indices, not to whatever argpartition happened to keep.
    rng = np.random.default_rng(0)
    for _ in range(200):
        rows, cols = int(rng.integers(1, 6)), int(rng.integers(1, 40))
        scores = rng.integers(0, 4, (rows, cols)).astype(np.float32)
        scores[rng.random(scores.shape) < 0.1] = -np.inf
        k = int(rng.integers(1, 45))
        idx, val = topk_rows(scores, k)
        order = np.lexsort((np.broadcast_to(np.arange(cols), scores.shape), -scores), axis=1)
        expected = order[:, : min(k, cols)]
        np.testing.assert_array_equal(idx, expected)
        np.testing.assert_array_equal(val, np.take_along_axis(scores, expected, axis=1))


def test_global_mean_recommends_lowest_indices() -> None:
    train = _explicit([(1, i, 3.0) for i in range(30)] + [(2, 0, 4.0)])
    (rec,) = GlobalMean().fit(train).recommend([2], k=5)
    assert rec.item_ids.tolist() == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------------- MovieLens 100k
def _ml100k() -> Path:
    root = os.environ.get("RECFORGE_DATA_DIR")
    if not root or not (Path(root) / "ml-100k" / "u1.base").is_file():
        pytest.skip("needs RECFORGE_DATA_DIR with ml-100k/u1.base (MovieLens 100k)")
    return Path(root) / "ml-100k"


def _fold(folder: Path, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    names = ["user_id", "item_id", "rating", "timestamp"]
    read = lambda part: pd.read_csv(folder / f"u{n}.{part}", sep="\t", names=names)  # noqa: E731
    return read("base"), read("test")


def _rmse_like_surprise(model: Biases, test: pd.DataFrame) -> float:
    """Unknown users/items contribute a zero bias, as in Surprise's BaselineOnly."""
    u = model.users_.index(test.user_id, missing="negative")
    i = model.items_.index(test.item_id, missing="negative")
    pred = model.global_mean_ + np.where(u >= 0, model.user_bias_[u], 0.0)
    pred += np.where(i >= 0, model.item_bias_[i], 0.0)
    pred = np.clip(pred, 1.0, 5.0)
    return float(np.sqrt(np.mean((pred - test.rating.to_numpy()) ** 2)))


@pytest.mark.movielens
def test_biases_match_surprise_baselineonly_on_ml100k_u1() -> None:
    train_df, test_df = _fold(_ml100k(), 1)
    model = Biases().fit(Interactions.from_frame(train_df, rating_scale=(1.0, 5.0)))
    rmse = _rmse_like_surprise(model, test_df)
    mu, bu, bi = surprise_baseline_als(train_df)
    reference = float(
        np.sqrt(
            np.mean(
                (surprise_predict(mu, bu, bi, test_df.user_id, test_df.item_id) - test_df.rating)
                ** 2
            )
        )
    )
    assert abs(rmse - reference) < 1e-6
    # u1 is the hardest of the five folds: Surprise's algorithm gives 0.9599 (mean of five: 0.946).
    assert 0.955 < rmse < 0.965


@pytest.mark.movielens
def test_biases_mean_rmse_over_ml100k_u1_to_u5_matches_surprise() -> None:
    folder = _ml100k()
    rmses = []
    for n in range(1, 6):
        train_df, test_df = _fold(folder, n)
        model = Biases().fit(Interactions.from_frame(train_df, rating_scale=(1.0, 5.0)))
        rmses.append(_rmse_like_surprise(model, test_df))
    # Surprise BaselineOnly measures 0.946 mean RMSE on these folds.
    assert abs(float(np.mean(rmses)) - 0.946) < 0.005
