"""mf and biased_mf: planted structure, objectives, y_range, persistence and fold-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models import create
from recforge.models.mf import MF, BiasedDotModule, BiasedMF, DotModule
from recforge.models.neural import NeuralRecommender, OutputHead
from recforge.testing import hit_rate, planted_explicit, planted_implicit, rating_rmse

FAST = {"verbose": False}


@pytest.fixture(scope="module")
def explicit() -> object:
    return planted_explicit(0)


@pytest.fixture(scope="module")
def implicit() -> object:
    return planted_implicit(0)


@pytest.fixture(scope="module")
def biased(explicit: object) -> BiasedMF:
    model = create("biased_mf", FAST).fit(explicit.train)  # type: ignore[attr-defined]
    assert isinstance(model, BiasedMF)
    return model


def _global_mean_rmse(split: object) -> float:
    return rating_rmse(create("global_mean").fit(split.train), split.test)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- networks
def test_modules_score_all_matches_pairwise_forward() -> None:
    for net in (DotModule(7, 5, 3, init_std=0.5), BiasedDotModule(7, 5, 3, init_std=0.5)):
        with torch.no_grad():
            if isinstance(net, BiasedDotModule):
                net.user_bias.weight.normal_()
                net.item_bias.weight.normal_()
            users = torch.tensor([0, 3, 6])
            full = net.score_all(users)
            pairs = net(users.repeat_interleave(5), torch.arange(5).repeat(3)).reshape(3, 5)
        assert full.shape == (3, 5)
        assert torch.allclose(full, pairs, atol=1e-6)


def test_biased_module_formula() -> None:
    net = BiasedDotModule(2, 2, 2)
    with torch.no_grad():
        net.user_emb.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
        net.item_emb.weight.copy_(torch.tensor([[3.0, -1.0], [0.5, 0.5]]))
        net.user_bias.weight.copy_(torch.tensor([[0.1], [0.2]]))
        net.item_bias.weight.copy_(torch.tensor([[-0.3], [0.4]]))
        out = net(torch.tensor([0, 1]), torch.tensor([0, 1]))
    # user 0 item 0: 0.1 - 0.3 + (3 - 2); user 1 item 1: 0.2 + 0.4 + 0.5
    assert torch.allclose(out, torch.tensor([0.8, 1.1]))


# ---------------------------------------------------------------------- explicit
def test_biased_mf_beats_global_mean_and_biases(explicit: object, biased: BiasedMF) -> None:
    got = rating_rmse(biased, explicit.test)  # type: ignore[attr-defined]
    assert got < 0.75 * _global_mean_rmse(explicit)
    assert got < rating_rmse(create("biases").fit(explicit.train), explicit.test)  # type: ignore[attr-defined]


def test_mf_explicit_beats_global_mean(explicit: object) -> None:
    model = create("mf", FAST).fit(explicit.train)  # type: ignore[attr-defined]
    assert rating_rmse(model, explicit.test) < 0.75 * _global_mean_rmse(explicit)  # type: ignore[attr-defined]


def test_y_range_bounds_raw_scores(explicit: object, biased: BiasedMF) -> None:
    assert biased.resolved_y_range() == (0.5, 5.5)
    scores = biased.score_items(np.arange(biased.n_users))
    assert scores.min() > 0.5 and scores.max() < 5.5
    linear = create("biased_mf", FAST, y_range="none", epochs=3).fit(explicit.train)  # type: ignore[attr-defined]
    assert isinstance(linear, BiasedMF) and linear.resolved_y_range() is None
    head = linear.module_
    assert isinstance(head, OutputHead)
    # Linear output starts at the global mean: the head's offset is mu.
    assert float(head.offset) == pytest.approx(linear.global_mean_, rel=1e-6)
    custom = create("biased_mf", FAST, y_range=(0.0, 6.0), epochs=1).fit(explicit.train)  # type: ignore[attr-defined]
    assert isinstance(custom, BiasedMF) and custom.resolved_y_range() == (0.0, 6.0)
    with pytest.raises(ConfigError, match="y_range"):
        create("biased_mf", FAST, y_range=(5.0, 1.0), epochs=1).fit(explicit.train)  # type: ignore[attr-defined]


def test_predictions_clipped_to_scale(explicit: object, biased: BiasedMF) -> None:
    tr = explicit.train  # type: ignore[attr-defined]
    pred = biased.predict(tr.users.ids[:50], tr.items.ids[:50])
    assert np.isfinite(pred).all() and pred.min() >= 1.0 and pred.max() <= 5.0


def test_history_and_validation(explicit: object) -> None:
    split = explicit
    model = create("biased_mf", FAST, epochs=4).fit(split.train, valid=split.test)  # type: ignore[attr-defined]
    h = model.history_  # type: ignore[attr-defined]
    assert isinstance(h, pd.DataFrame) and len(h) == 4
    assert {"epoch", "train_loss", "valid_loss", "valid_rmse", "valid_mae", "lr", "seconds"} <= set(
        h
    )
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    # The last valid_rmse is the test RMSE of the clipped predictions.
    assert h["valid_rmse"].iloc[-1] == pytest.approx(rating_rmse(model, split.test), rel=1e-4)  # type: ignore[attr-defined]


def test_early_stopping_through_the_model_config(explicit: object) -> None:
    # A huge learning rate makes validation worse after the first epochs; the best is restored.
    model = create("biased_mf", FAST, epochs=12, lr=0.2, schedule="constant", patience=2).fit(
        explicit.train, valid=explicit.test
    )  # type: ignore[attr-defined]
    res = model.train_result_  # type: ignore[attr-defined]
    h = model.history_  # type: ignore[attr-defined]
    assert res.best_epoch == int(h["epoch"][h["valid_loss"].idxmin()])
    assert res.best_score == pytest.approx(h["valid_loss"].min())
    rmse_now = rating_rmse(model, explicit.test)  # type: ignore[attr-defined]
    assert rmse_now == pytest.approx(h["valid_rmse"][h["valid_loss"].idxmin()], rel=1e-4)


def test_sparse_adam_trains(explicit: object) -> None:
    model = create(
        "biased_mf", FAST, optimizer="sparse_adam", weight_decay=0.0, lr=0.01, epochs=8
    ).fit(explicit.train)  # type: ignore[attr-defined]
    assert rating_rmse(model, explicit.test) < 0.85 * _global_mean_rmse(explicit)  # type: ignore[attr-defined]


def test_item_vectors_and_similar_items(biased: BiasedMF) -> None:
    vecs = biased.item_vectors()
    assert vecs is not None and vecs.shape == (biased.n_items, 50)
    rec = biased.similar_items(biased.items_.ids[0], k=5)
    assert len(rec) == 5 and biased.items_.ids[0] not in set(rec.item_ids.tolist())


def test_tutorial_configuration_is_expressible(explicit: object) -> None:
    model = create("mf", FAST, n_factors=5, y_range="none", loss="mse", epochs=2)
    model.fit(explicit.train)  # type: ignore[attr-defined]
    assert isinstance(model, MF)
    head = model.module_
    assert isinstance(head, OutputHead) and isinstance(head.inner, DotModule)
    assert head.inner.user_emb.embedding_dim == 5
    assert head.y_range is None and float(head.offset) == 0.0  # a pure dot product


# ---------------------------------------------------------------------- implicit
@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_implicit_mf_recovers_planted_items(implicit: object, loss: str) -> None:
    model = create("mf", FAST, loss=loss).fit(implicit.train)  # type: ignore[attr-defined]
    assert isinstance(model, MF) and model.loss_kind() == loss
    pop = hit_rate(create("popularity").fit(implicit.train), implicit)  # type: ignore[arg-type, attr-defined]
    got = hit_rate(model, implicit)  # type: ignore[arg-type]
    assert got > pop + 0.4, (got, pop)


def test_popularity_sampler_trains(implicit: object) -> None:
    model = create("mf", FAST, loss="bpr", negative_sampler="popularity", epochs=10)
    model.fit(implicit.train)  # type: ignore[attr-defined]
    pop = hit_rate(create("popularity").fit(implicit.train), implicit)  # type: ignore[arg-type, attr-defined]
    assert hit_rate(model, implicit) > pop + 0.2  # type: ignore[arg-type]


def test_auto_loss_on_implicit_data_and_unclipped_scores(implicit: object) -> None:
    model = create("mf", FAST, epochs=2).fit(implicit.train)  # type: ignore[attr-defined]
    assert isinstance(model, MF)
    assert model.loss_kind() == "bce" and not model.predicts_ratings
    assert model.resolved_y_range() is None and model.resolved_reg() == 0.0
    with pytest.raises(ConfigError, match="explicit ratings"):
        create("mf", FAST, loss="mse").fit(implicit.train)  # type: ignore[attr-defined]


def test_implicit_loss_on_ratings_uses_positive_threshold(explicit: object) -> None:
    train = explicit.train  # type: ignore[attr-defined]
    model = create("mf", FAST, loss="bce", positive_threshold=4.0, epochs=2).fit(train)
    assert isinstance(model, MF)
    data, _ = model.training_setup(train)
    assert len(data["user"]) == int((train.rating >= 4.0).sum())
    # Scores are logits, not ratings: predict does not clip them to the 1-5 scale.
    assert not model.predicts_ratings
    raw = model.predict_idx(np.array([0, 1]), np.array([0, 1]))
    assert np.array_equal(model.predict(train.users.ids[:2], train.items.ids[:2]), raw)


def test_implicit_validation_reports_loss_and_auc(implicit: object) -> None:
    model = create("mf", FAST, loss="bpr", epochs=3).fit(implicit.train, valid=implicit.test)  # type: ignore[attr-defined]
    h = model.history_  # type: ignore[attr-defined]
    assert {"valid_loss", "valid_auc"} <= set(h)
    assert h["valid_auc"].iloc[-1] > 0.7 and h["valid_auc"].iloc[-1] <= 1.0


# ---------------------------------------------------------------------- persistence
@pytest.mark.parametrize(("name", "cfg"), [("biased_mf", {}), ("mf", {"loss": "bpr"})])
def test_save_load_identical_scores(
    explicit: object, implicit: object, tmp_path: Path, name: str, cfg: dict[str, object]
) -> None:
    data = implicit if cfg else explicit
    model = create(name, FAST, epochs=3, **cfg).fit(data.train)  # type: ignore[attr-defined]
    model.save(tmp_path / "run")
    loaded = type(model).load(tmp_path / "run")
    assert isinstance(loaded, NeuralRecommender)
    users = np.arange(model.n_users)
    assert np.array_equal(model.score_items(users), loaded.score_items(users))
    state = model.get_state()
    assert all(v.dtype == np.float32 for v in state.values())
    assert not any(p.suffix in {".pt", ".pkl"} for p in (tmp_path / "run").rglob("*"))


def test_same_seed_same_scores_different_seed_differs(explicit: object) -> None:
    def scores(seed: int) -> np.ndarray:
        m = create("biased_mf", FAST, epochs=2, seed=seed).fit(explicit.train)  # type: ignore[attr-defined]
        return m.score_items(np.arange(20))

    a, b, c = scores(3), scores(3), scores(4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# ---------------------------------------------------------------------- fold-in
def _user_ratings(train: Interactions, u: int) -> dict[object, float]:
    items, ratings = train.user_history(u)
    return dict(zip(train.items.lookup(items).tolist(), ratings.tolist(), strict=True))


def test_closed_form_fold_in_solves_the_same_problem_as_gradient_fold_in(explicit: object) -> None:
    # Without a y_range the model is linear in [p; b]: closed form and Adam must agree.
    train = explicit.train  # type: ignore[attr-defined]
    model = create("biased_mf", FAST, y_range="none", epochs=5).fit(train)
    assert isinstance(model, BiasedMF)
    idx, vals = model._fold_in_inputs(_user_ratings(train, 7))
    closed = model.fold_in_scores(idx, vals)
    gradient = NeuralRecommender.fold_in_scores(model, idx, vals)
    assert np.allclose(closed, gradient, atol=2e-3)
    # Adam gets to the same point, more slowly.
    model.config = model.config.model_copy(
        update={"fold_in_optimizer": "adam", "fold_in_steps": 2000, "fold_in_lr": 0.02}
    )
    adam = NeuralRecommender.fold_in_scores(model, idx, vals)
    assert np.allclose(closed, adam, atol=2e-3)


def test_fold_in_predicts_held_out_ratings(explicit: object, biased: BiasedMF) -> None:
    train, test = explicit.train, explicit.test  # type: ignore[attr-defined]
    sq_new: list[float] = []
    sq_avg: list[float] = []
    for u in np.unique(test.user_idx)[::3]:
        idx, vals = biased._fold_in_inputs(_user_ratings(train, int(u)))
        new = biased.fold_in_scores(idx, vals)
        avg = biased.fold_in_scores(idx[:0], vals[:0])  # no ratings: the average user
        sel = test.user_idx == u
        sq_new += list((np.clip(new[test.item_idx[sel]], 1, 5) - test.rating[sel]) ** 2)
        sq_avg += list((np.clip(avg[test.item_idx[sel]], 1, 5) - test.rating[sel]) ** 2)
    rmse_new, rmse_avg = np.sqrt(np.mean(sq_new)), np.sqrt(np.mean(sq_avg))
    # Folding in a user's own ratings predicts their held-out ratings far better than the average
    # user does, and nearly as well as the trained model (which saw them during training).
    assert rmse_new < 0.85 * rmse_avg
    assert rmse_new < 1.1 * rating_rmse(biased, test)


def test_recommend_for_ratings_excludes_rated(explicit: object, biased: BiasedMF) -> None:
    ratings = _user_ratings(explicit.train, 10)  # type: ignore[attr-defined]
    rec = biased.recommend_for_ratings(ratings, k=10)
    assert len(rec) == 10 and not set(ratings) & set(rec.item_ids.tolist())
    pred = biased.predict_for_ratings(ratings, list(ratings)[:5])
    assert np.isfinite(pred).all() and pred.min() >= 1 and pred.max() <= 5


def test_generic_fold_in_for_implicit_mf(implicit: object) -> None:
    train = implicit.train  # type: ignore[attr-defined]
    model = create("mf", FAST, loss="bpr").fit(train)
    hits = 0
    users = implicit.target_users[:30]  # type: ignore[attr-defined]
    for u in users:
        rec = model.recommend_for_ratings(_user_ratings(train, int(u)), k=10)
        hits += int(train.items.ids[implicit.target_item[u]] in set(rec.item_ids.tolist()))  # type: ignore[attr-defined]
    assert hits / len(users) > 0.5


# ---------------------------------------------------------------------- MovieLens
@pytest.mark.movielens
def test_biased_mf_defaults_on_ml100k_u1(data_dir: Path) -> None:
    folder = data_dir / "ml-100k"
    if not (folder / "u1.base").is_file():
        pytest.skip(f"{folder}/u1.base not found")
    cols = ["user_id", "item_id", "rating", "timestamp"]
    base = pd.read_csv(folder / "u1.base", sep="\t", names=cols)
    test = pd.read_csv(folder / "u1.test", sep="\t", names=cols)
    train = Interactions.from_frame(base, rating_scale=(1.0, 5.0))
    # One thread: tiny batches gain nothing from more, and an oversubscribed CI machine makes
    # OpenMP workers spin (100x slower).
    model = create("biased_mf", FAST, num_threads=1).fit(train)
    pred = model.predict(test["user_id"].to_numpy(), test["item_id"].to_numpy())
    pred = np.where(np.isfinite(pred), pred, model.global_mean_)
    rmse = float(np.sqrt(np.mean((pred - test["rating"].to_numpy()) ** 2)))
    # Surprise's BaselineOnly gets 0.962 on u1 (its hardest fold); the defaults reach ~0.915.
    assert rmse < 0.93


# ---------------------------------------------------------------------------------- funk_svd
def test_funk_epoch_is_surprises_per_rating_update() -> None:
    """One compiled epoch at one rating a batch is Surprise SVD's update, rating by rating:
    ``e = r − (μ + b_u + b_i + p·q)``, ``b ← b + γ(e − λb)``, ``p ← p + γ(e·q − λp)``, ``q`` alike,
    with γ = 2η (recforge's loss is ``(ŷ − r)²``, Surprise's update uses ``e`` itself)."""
    from recforge.train._mf_kernels import mse_sgd_epoch

    rng = np.random.default_rng(0)
    n_u, n_i, k, n = 5, 4, 3, 30
    P = rng.normal(0, 0.1, (n_u, k)).astype(np.float32)
    Q = rng.normal(0, 0.1, (n_i, k)).astype(np.float32)
    BU, BI = np.zeros((n_u, 1), np.float32), np.zeros((n_i, 1), np.float32)
    users, items = rng.integers(0, n_u, n), rng.integers(0, n_i, n)
    ratings = rng.integers(1, 6, n).astype(np.float64)
    mu, eta, lam = 3.2, 0.01, 0.05
    p, q, bu, bi = (a.astype(np.float64) for a in (P, Q, BU[:, 0], BI[:, 0]))
    for u, i, r in zip(users, items, ratings, strict=True):  # Surprise's SVD.sgd loop
        e = r - (mu + bu[u] + bi[i] + p[u] @ q[i])
        bu[u] += 2 * eta * (e - lam * bu[u])
        bi[i] += 2 * eta * (e - lam * bi[i])
        p[u], q[i] = (
            p[u] + 2 * eta * (e * q[i] - lam * p[u]),
            q[i] + 2 * eta * (e * p[u] - lam * q[i]),
        )
    grads = [np.zeros_like(a) for a in (P, Q, BU, BI)]
    mse_sgd_epoch(P, Q, BU, BI, True, *grads, users, items, ratings, np.arange(n), 1,
                  np.full(n, eta), mu, 0.0, 1.0, False, lam)  # fmt: skip
    for got, want in ((P, p), (Q, q), (BU[:, 0], bu), (BI[:, 0], bi)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_funk_svd_beats_biases_and_refuses_implicit_data(
    explicit: object, implicit: object
) -> None:
    model = create("funk_svd", {**FAST, "epochs": 30, "n_factors": 16})
    assert rating_rmse(model.fit(explicit.train), explicit.test) < rating_rmse(  # type: ignore[attr-defined]
        create("biases").fit(explicit.train),
        explicit.test,  # type: ignore[attr-defined]
    )
    with pytest.raises(ConfigError, match="funk_svd fits explicit ratings"):
        create("funk_svd", FAST).fit(implicit.train)  # type: ignore[attr-defined]
