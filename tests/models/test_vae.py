"""Unit tests of Mult-VAE and Mult-DAE (Liang et al. 2018)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.split import heldout_users
from recforge.data.synthetic import make_interactions
from recforge.eval.evaluate import evaluate_ranking
from recforge.eval.foldin import evaluate_foldin, foldin_as_training
from recforge.models.registry import create
from recforge.models.vae import (
    MultDAE,
    MultinomialELBO,
    MultVAE,
    MultVAENet,
    gaussian_kl,
    kl_beta,
    multinomial_nll,
)
from recforge.testing import chance_hit_rate, hit_rate, planted_explicit, planted_implicit
from recforge.train.rows import CSRRows

FAST: dict[str, Any] = {"epochs": 30, "hidden": [64], "latent": 16, "batch_size": 100}


@pytest.fixture(scope="module")
def vae() -> MultVAE:
    model = create("mult_vae", FAST).fit(planted_implicit(0).train)
    assert isinstance(model, MultVAE)
    return model


@pytest.fixture(scope="module")
def dae() -> MultDAE:
    model = create("mult_dae", FAST).fit(planted_implicit(0).train)
    assert isinstance(model, MultDAE)
    return model


# ---------------------------------------------------------------------- pure functions
def test_kl_beta_schedule_values() -> None:
    assert kl_beta(0, 100, 0.2) == 0.0
    assert kl_beta(10, 100, 0.2) == pytest.approx(0.1)
    assert kl_beta(20, 100, 0.2) == pytest.approx(0.2)
    assert kl_beta(90, 100, 0.2) == pytest.approx(0.2)  # capped
    assert kl_beta(50, 100, 1.0) == pytest.approx(0.5)
    assert kl_beta(0, 0, 0.3) == pytest.approx(0.3)  # no ramp


def test_multinomial_nll_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # Row 1: -log(1/2); row 2: -log(3/4) - log(1/4).
    expected = (math.log(2.0) + (-math.log(0.75) - math.log(0.25))) / 2.0
    assert float(multinomial_nll(logits, x)) == pytest.approx(expected, rel=1e-6)


def test_gaussian_kl_by_hand() -> None:
    assert float(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4))) == 0.0
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    # ½(1 + 1 − 0 − 1) + ½(0 + 2 − log 2 − 1)
    assert float(gaussian_kl(mu, logvar)) == pytest.approx(0.5 + 0.5 * (1.0 - math.log(2.0)))


def test_objective_anneals_beta_per_batch() -> None:
    torch.manual_seed(0)
    rows = CSRRows(planted_implicit(0).train.csr("binary"))
    net = MultVAENet(rows.shape[1], (8,), 4)
    seen: list[float] = []
    objective = MultinomialELBO(rows, steps_per_epoch=3, beta=lambda s: kl_beta(s, 10, 0.5))
    batch = {"row": torch.arange(5)}
    for epoch in range(3):
        objective.start_epoch(epoch)
        for _ in range(3):
            objective(net, batch)
            seen.append(objective.last_beta)
    np.testing.assert_allclose(seen, [min(0.5, s / 10) for s in range(9)])


def test_default_anneal_spans_the_run(vae: MultVAE) -> None:
    # 270 users in batches of 100 -> 3 steps per epoch; 30 epochs -> 90 steps; β_max 0.2.
    beta = vae._beta(3)
    assert beta(0) == 0.0
    assert beta(9) == pytest.approx(0.1)
    assert beta(18) == pytest.approx(0.2) and beta(89) == pytest.approx(0.2)
    explicit = create("mult_vae", total_anneal_steps=1000, beta_max=0.4)._beta(3)  # type: ignore[attr-defined]
    assert explicit(200) == pytest.approx(0.2) and explicit(900) == pytest.approx(0.4)


# ---------------------------------------------------------------------- network
def test_network_shapes_and_inference_is_deterministic() -> None:
    torch.manual_seed(0)
    net = MultVAENet(30, (12,), 5, dropout=0.5)
    assert [(m.in_features, m.out_features) for m in net.encoder] == [(30, 12), (12, 10)]
    assert [(m.in_features, m.out_features) for m in net.decoder] == [(5, 12), (12, 30)]
    x = (torch.rand(4, 30) < 0.3).float()
    net.eval()
    logits, mu, logvar = net.parts(x)
    assert logits.shape == (4, 30) and mu.shape == (4, 5)
    assert logvar is not None and logvar.shape == (4, 5)
    torch.testing.assert_close(net(x), net(x))
    torch.testing.assert_close(net(x), net.decode(mu))
    net.train()
    assert not torch.allclose(net(x), net(x))  # dropout and sampling while training


def test_dae_code_is_deterministic_tanh() -> None:
    net = MultVAENet(30, (12,), 5, variational=False)
    code, logvar = net.encode(torch.ones(2, 30))
    assert logvar is None and code.shape == (2, 5)
    assert float(code.detach().abs().max()) <= 1.0
    assert [(m.in_features, m.out_features) for m in net.encoder] == [(30, 12), (12, 5)]


def test_input_is_l2_normalised() -> None:
    net = MultVAENet(6, (4,), 2, dropout=0.0)
    net.eval()
    x = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(net(x), net(3.0 * x))


# ---------------------------------------------------------------------- planted data
@pytest.mark.parametrize("which", ["vae", "dae"])
def test_beats_popularity_on_withheld_items(which: str, request: pytest.FixtureRequest) -> None:
    model: MultDAE = request.getfixturevalue(which)
    data = planted_implicit(0)
    pop = hit_rate(create("popularity").fit(data.train), data)
    got = hit_rate(model, data)
    assert got > pop + 0.3 and got > 5 * chance_hit_rate(data)
    assert not model.predicts_ratings
    loss = model.history_["train_loss"].to_numpy()
    assert loss[-1] < loss[0]


@pytest.mark.parametrize("which", ["vae", "dae"])
def test_scores_are_log_probabilities(which: str, request: pytest.FixtureRequest) -> None:
    model: MultDAE = request.getfixturevalue(which)
    scores = model.score_items(np.arange(5))
    np.testing.assert_allclose(np.exp(scores.astype(np.float64)).sum(1), 1.0, rtol=1e-4)


@pytest.mark.parametrize("which", ["vae", "dae"])
def test_fold_in_of_a_trained_row_is_exact(which: str, request: pytest.FixtureRequest) -> None:
    model: MultDAE = request.getfixturevalue(which)
    csr = model.inputs_
    for u in (0, 11, 250):
        items = csr.indices[csr.indptr[u] : csr.indptr[u + 1]].astype(np.int64)
        got = model.fold_in_scores(items, np.ones(len(items), dtype=np.float32))
        np.testing.assert_array_equal(got, model.score_items(np.array([u]))[0])


def test_explicit_data_with_a_positive_threshold() -> None:
    train = planted_explicit(0).train
    model = create("mult_dae", {**FAST, "epochs": 2, "positive_threshold": 4.0}).fit(train)
    assert isinstance(model, MultDAE)
    expected = (train.csr("rating").toarray() >= 4.0).astype(np.float32)
    np.testing.assert_array_equal(model.inputs_.toarray(), expected)
    assert not model.predicts_ratings
    pred = model.predict(train.users.ids[:3], train.items.ids[:3])
    assert np.all(pred <= 0.0)  # log-probabilities, not ratings
    # Fold-in keeps the ratings >= threshold only, as in training.
    u = 0
    row = train.csr("rating")[u]
    items, ratings = row.indices.astype(np.int64), row.data
    np.testing.assert_array_equal(
        model.fold_in_scores(items, ratings), model.score_items(np.array([u]))[0]
    )


# ---------------------------------------------------------------------- validation
class _Fixed(nn.Module):
    """A stand-in network returning the same logits for every row."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([logits]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


def _tiny() -> tuple[Interactions, Interactions]:
    # User 1 has item 10; user 2 has items 11, 12, 13 (item indices 0..3 in id order).
    train = Interactions.from_frame(
        pd.DataFrame(
            {"user_id": [1, 2, 2, 2], "item_id": [10, 11, 12, 13], "rating": [1.0, 1.0, 1.0, 1.0]}
        )
    )
    valid = Interactions.from_frame(
        pd.DataFrame({"user_id": [1], "item_id": [12], "rating": [1.0]})
    ).reencode(train.users, train.items, unknown="drop")
    return train, valid


def test_validator_ndcg_and_loss_by_hand() -> None:
    train, valid = _tiny()
    model = create("mult_vae", {"epochs": 1, "hidden": [4], "latent": 2, "valid_k": 3})
    model.fit(train)
    assert isinstance(model, MultVAE)
    validate = model.make_validator(train, valid)
    assert validate is not None
    # User 1 trained on item 10 (index 0); held-out item 12 (index 2).
    # Logits [10, 1, 3, 2]: item 10 is masked; ranking 12, 13, 11 -> hit at rank 1.
    out = validate(_Fixed([10.0, 1.0, 3.0, 2.0]))
    assert out["valid_ndcg@3"] == pytest.approx(1.0)
    expected_nll = -(3.0 - math.log(math.exp(1.0) + math.exp(3.0) + math.exp(2.0)))
    assert out["valid_loss"] == pytest.approx(expected_nll, rel=1e-5)
    # Logits [10, 3, 1, 2]: ranking 11, 13, 12 -> hit at rank 3: 1 / log2(4).
    out = validate(_Fixed([10.0, 3.0, 1.0, 2.0]))
    assert out["valid_ndcg@3"] == pytest.approx(0.5)


def test_early_stopping_on_ndcg() -> None:
    data = planted_implicit(0)
    cfg = {**FAST, "epochs": 12, "patience": 2, "monitor": "valid_ndcg@10", "monitor_mode": "max"}
    model = create("mult_vae", {**cfg, "valid_k": 10}).fit(data.train, data.test)
    history = model.history_  # type: ignore[attr-defined]
    assert {"valid_loss", "valid_ndcg@10"} <= set(history.columns)
    best = int(history["valid_ndcg@10"].idxmax())
    assert model.train_result_.best_epoch == best + 1  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- persistence, determinism
@pytest.mark.parametrize("which", ["vae", "dae"])
def test_save_load_identical(which: str, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    model: MultDAE = request.getfixturevalue(which)
    loaded = type(model).load(model.save(tmp_path / "run"))
    assert isinstance(loaded, MultDAE)
    users = np.arange(model.n_users)
    np.testing.assert_array_equal(loaded.score_items(users), model.score_items(users))
    items = model.items_.ids[:7]
    np.testing.assert_array_equal(
        loaded.recommend_for_ratings(dict.fromkeys(items, 1.0), k=10).item_ids,
        model.recommend_for_ratings(dict.fromkeys(items, 1.0), k=10).item_ids,
    )


def test_same_seed_same_scores() -> None:
    train = planted_implicit(0).train
    cfg = {**FAST, "epochs": 3}
    a = create("mult_vae", cfg).fit(train)
    b = create("mult_vae", cfg).fit(train)
    c = create("mult_vae", {**cfg, "seed": 1}).fit(train)
    users = np.arange(train.n_users)
    np.testing.assert_array_equal(a.score_items(users), b.score_items(users))
    assert not np.allclose(a.score_items(users), c.score_items(users))


# ---------------------------------------------------------------------- new users (issue 4)
def test_batch_fold_in_equals_single_fold_ins(vae: MultVAE) -> None:
    rows = planted_implicit(0).train.csr("rating")[[3, 9, 40]]
    batch = vae.fold_in_scores_batch(rows)
    for r in range(3):
        items = rows[r].indices.astype(np.int64)
        single = vae.fold_in_scores(items, rows[r].data)
        np.testing.assert_allclose(batch[r], single, rtol=1e-6, atol=1e-6)


def test_threshold_fold_in_falls_back_to_all_ratings() -> None:
    train = planted_explicit(0).train
    model = create("mult_dae", {**FAST, "epochs": 2, "positive_threshold": 4.0}).fit(train)
    items = np.array([0, 5, 9], dtype=np.int64)
    low = model.fold_in_scores(items, np.array([1.0, 2.0, 3.0], dtype=np.float32))
    same = model.fold_in_scores(items, np.array([1.0, 1.0, 1.0], dtype=np.float32))
    np.testing.assert_array_equal(low, same)  # nobody >= 4: every rated item counts
    one = model.fold_in_scores(items, np.array([5.0, 2.0, 3.0], dtype=np.float32))
    np.testing.assert_array_equal(one, model.fold_in_scores(items[:1], np.ones(1, np.float32)))


@pytest.mark.parametrize("name", ["mult_vae", "mult_dae"])
def test_held_out_users_fold_in_close_to_training(name: str) -> None:
    # The fold-in acceptance protocol of tests/eval/test_foldin.py: 15% of users never trained
    # on; their 80% history is encoded, NDCG@10 measured on their other 20%.
    data = make_interactions(
        n_users=500, n_items=150, n_factors=4, density=0.12, rating_scale=None, seed=11
    ).interactions
    split = heldout_users(data, valid_users=0, test_users=0.15, foldin_ratio=0.8, seed=5)
    folded = create(name, FAST).fit(split.train)
    ndcg_fold = evaluate_foldin(folded, split, ks=(10,)).summary["ndcg@10"]
    train_with, target = foldin_as_training(split)
    trained = create(name, FAST).fit(train_with)
    ndcg_trained = evaluate_ranking(trained, (train_with, target), ks=(10,)).summary["ndcg@10"]
    pop = evaluate_foldin(create("popularity").fit(split.train), split, ks=(10,))
    # Measured: vae 0.554 vs 0.549 trained, dae 0.562 vs 0.586; popularity 0.124.
    assert ndcg_fold >= 0.85 * ndcg_trained
    assert ndcg_fold >= 2.0 * pop.summary["ndcg@10"]


def _counted_clicks() -> Interactions:
    """Implicit data whose values are repeat counts, as ``--duplicates count`` reads them."""
    rng = np.random.default_rng(4)
    users = np.repeat(np.arange(40), 6)
    items = (users % 4) * 5 + rng.integers(0, 5, len(users))
    frame = pd.DataFrame({"user_id": users, "item_id": items, "rating": 1.0})
    frame = frame.groupby(["user_id", "item_id"], as_index=False)["rating"].sum()
    return Interactions.from_frame(frame, rating_scale=None, source="clicks")


@pytest.mark.parametrize("name", ["mult_vae", "mult_dae"])
def test_repeat_counts_are_the_rows_of_implicit_data(name: str) -> None:
    data = _counted_clicks()
    assert data.rating.max() > 1  # some repeats
    counted = create(name, {"epochs": 2, "verbose": False}).fit(data)
    binary = create(name, {"epochs": 2, "verbose": False, "weighting": "binary"}).fit(data)
    np.testing.assert_array_equal(counted.inputs_.toarray(), data.csr("rating").toarray())
    np.testing.assert_array_equal(binary.inputs_.toarray(), data.csr("binary").toarray())
    assert not np.allclose(counted.score_items(np.arange(5)), binary.score_items(np.arange(5)))


def test_rated_data_stays_binary_under_auto() -> None:
    data = make_interactions(n_users=30, n_items=20, density=0.3, seed=2).interactions
    assert data.rating_scale is not None
    model = create("mult_dae", {"epochs": 1, "verbose": False}).fit(data)
    np.testing.assert_array_equal(model.inputs_.toarray(), data.csr("binary").toarray())
