"""Unit tests of AutoRec (U-AutoRec and I-AutoRec) and the CSR row batches it trains from."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recforge.data.split import heldout_users
from recforge.data.synthetic import make_interactions
from recforge.errors import ConfigError
from recforge.eval.evaluate import evaluate_ranking
from recforge.eval.foldin import evaluate_foldin, foldin_as_training
from recforge.models.autorec import VARIANT_DEFAULTS, AutoRec, AutoRecNet, MaskedRowMSE, masked_mse
from recforge.models.registry import create
from recforge.testing import planted_explicit, rating_rmse
from recforge.train import rows as rows_mod
from recforge.train.rows import CSRRows, csr_from_state, csr_to_state

# Fast settings for the 300 x 200 planted data (the defaults are tuned for ML-100k, where I-AutoRec
# gets 7 batches per epoch, not 1); the contract (test_contract.py) covers the shared behaviour.
ITEM_CFG: dict[str, Any] = {"variant": "item", "batch_size": 64, "epochs": 40, "reg": 10.0}
USER_CFG: dict[str, Any] = {"variant": "user"}


@pytest.fixture(scope="module")
def item_model() -> AutoRec:
    model = create("autorec", ITEM_CFG).fit(planted_explicit(0).train)
    assert isinstance(model, AutoRec)
    return model


@pytest.fixture(scope="module")
def user_model() -> AutoRec:
    model = create("autorec", USER_CFG).fit(planted_explicit(0).train)
    assert isinstance(model, AutoRec)
    return model


# ---------------------------------------------------------------------- the masked loss
def test_masked_mse_counts_observed_entries_only() -> None:
    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 9.0, 1.0]])
    target = torch.tensor([[1.0, 0.0, 5.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[True, False, True], [True, False, False]])
    # Observed errors: 0, 2, 2 -> (0 + 4 + 4) / 3.
    assert float(masked_mse(pred, target, mask)) == pytest.approx(8.0 / 3.0)
    # Any value at an unobserved position leaves the loss and its gradient there untouched.
    moved = pred.clone()
    moved[~mask] = 100.0
    moved.requires_grad_(True)
    loss = masked_mse(moved, target, mask)
    loss.backward()  # type: ignore[no-untyped-call]
    assert float(loss.detach()) == pytest.approx(8.0 / 3.0)
    assert moved.grad is not None
    assert torch.all(moved.grad[~mask] == 0)
    assert float(masked_mse(pred, target, torch.zeros_like(mask))) == 0.0


def test_objective_is_masked_mse_plus_scaled_weight_decay() -> None:
    torch.manual_seed(0)
    mat = sp.csr_matrix(np.array([[5.0, 0.0, 3.0], [0.0, 1.0, 0.0]], dtype=np.float32))
    net = AutoRecNet(3, (2,))
    objective = MaskedRowMSE(CSRRows(mat), reg_scale=0.25)
    got = objective(net, {"row": torch.tensor([0, 1])})
    x = torch.tensor(mat.toarray())
    out = net(x)
    sq = (out - x).pow(2)
    data_term = (sq[0, 0] + sq[0, 2] + sq[1, 1]) / 3.0
    weights = net.hidden_layers[0].weight.pow(2).sum() + net.output.weight.pow(2).sum()
    expected = data_term + 0.25 * weights
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


# ---------------------------------------------------------------------- CSR row batches
def test_dense_rows_equal_the_dense_matrix() -> None:
    rng = np.random.default_rng(3)
    dense = np.where(rng.random((7, 11)) < 0.3, rng.integers(1, 6, (7, 11)), 0).astype(np.float32)
    dense[4] = 0.0  # an empty row
    mat = sp.csr_matrix(dense)
    rows = CSRRows(mat)
    pick = torch.tensor([2, 4, 0, 2, 6])
    values, mask = rows.dense(pick)
    np.testing.assert_array_equal(values.numpy(), dense[pick.numpy()])
    np.testing.assert_array_equal(mask.numpy(), dense[pick.numpy()] != 0)
    empty_v, empty_m = rows.dense(torch.tensor([], dtype=torch.int64))
    assert empty_v.shape == (0, 11) and empty_m.shape == (0, 11)


def test_one_row_is_the_batched_rows_row() -> None:
    """The single-row path (a served request) gives the batched expansion's tensors."""
    rng = np.random.default_rng(4)
    dense = np.where(rng.random((6, 9)) < 0.4, rng.integers(1, 6, (6, 9)), 0).astype(np.float32)
    dense[3] = 0.0  # an empty row
    rows = CSRRows(sp.csr_matrix(dense))
    batch_v, batch_m = rows.dense(torch.arange(6))
    for r in range(6):
        for pick in (torch.tensor([r]), torch.tensor(r)):
            one_v, one_m = rows.dense(pick)
            assert one_v.shape == (1, 9) and one_v.dtype == batch_v.dtype
            assert torch.equal(one_v[0], batch_v[r]) and torch.equal(one_m[0], batch_m[r])


def test_stored_zero_is_observed() -> None:
    mat = sp.csr_matrix(
        (np.array([0.0, 2.0], np.float32), np.array([1, 2]), np.array([0, 2])), shape=(1, 3)
    )
    values, mask = CSRRows(mat).dense(torch.tensor([0]))
    assert values.tolist() == [[0.0, 0.0, 2.0]]
    assert mask.tolist() == [[False, True, True]]


def test_csr_state_round_trip() -> None:
    mat = sp.random(6, 9, density=0.3, format="csr", random_state=1, dtype=np.float32)
    back = csr_from_state("x", csr_to_state("x", mat))
    assert back.shape == mat.shape
    np.testing.assert_array_equal(back.toarray(), mat.toarray())


def test_training_densifies_only_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    original = rows_mod.CSRRows.dense

    def spy(self: CSRRows, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sizes.append(len(rows))
        return original(self, rows)

    monkeypatch.setattr(rows_mod.CSRRows, "dense", spy)
    train = planted_explicit(0).train
    create("autorec", {**ITEM_CFG, "hidden": [8], "epochs": 2, "batch_size": 50}).fit(train)
    # 200 item rows in batches of 50: 4 batches per epoch, never the whole matrix.
    assert sizes == [50] * 8


# ---------------------------------------------------------------------- config and network
def test_defaults_follow_the_variant() -> None:
    item = create("autorec")
    user = create("autorec", variant="user")
    assert item.hidden_dims() == (500,)  # type: ignore[attr-defined]
    assert user.hidden_dims() == (20, 10, 20)  # type: ignore[attr-defined]
    assert item.config.optimizer == "adam"  # type: ignore[attr-defined]
    for key, value in VARIANT_DEFAULTS["user"].items():
        assert getattr(user.config, key) == value
    # Keys the caller sets win over the variant's defaults, and the resolved config round-trips.
    custom = create("autorec", variant="user", hidden=[7, 3], batch_size=8)
    assert custom.hidden_dims() == (7, 3)  # type: ignore[attr-defined]
    assert custom.config.batch_size == 8  # type: ignore[attr-defined]
    assert create("autorec", custom.config.model_dump()).config == custom.config
    with pytest.raises(ConfigError, match="hidden"):
        create("autorec", hidden=[])
    with pytest.raises(ConfigError, match="variant"):
        create("autorec", variant="both")


def test_stacked_network_shapes() -> None:
    net = AutoRecNet(30, (20, 10, 20))
    widths = [(m.in_features, m.out_features) for m in net.hidden_layers]
    assert widths == [(30, 20), (20, 10), (10, 20)]
    x = torch.rand(4, 30)
    assert net.features(x).shape == (4, 20)
    assert net(x).shape == (4, 30)


def test_implicit_data_is_a_config_error() -> None:
    data = make_interactions(30, 20, density=0.3, rating_scale=None, seed=0).interactions
    with pytest.raises(ConfigError, match="mult_vae"):
        create("autorec", ITEM_CFG).fit(data)


# ---------------------------------------------------------------------- planted data
@pytest.mark.parametrize("which", ["item_model", "user_model"])
def test_planted_rmse_beats_global_mean(which: str, request: pytest.FixtureRequest) -> None:
    model: AutoRec = request.getfixturevalue(which)
    data = planted_explicit(0)
    base = rating_rmse(create("global_mean").fit(data.train), data.test)
    assert rating_rmse(model, data.test) < 0.9 * base
    history = model.history_
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


def test_item_scores_equal_the_full_reconstruction(item_model: AutoRec) -> None:
    # The cached-code scoring path must equal reconstructing every item row and reading columns.
    net = item_model._net()
    users = np.array([0, 5, 17], dtype=np.int64)
    dense = torch.tensor(item_model.ratings_.T.toarray())
    with torch.no_grad():
        full = net(dense).numpy()  # (n_items, n_users)
    np.testing.assert_allclose(
        item_model.score_items(users), full[:, users].T, rtol=1e-5, atol=1e-5
    )


def test_user_scores_are_the_reconstruction_of_the_row(user_model: AutoRec) -> None:
    net = user_model._net()
    users = np.array([1, 2, 40], dtype=np.int64)
    with torch.no_grad():
        full = net(torch.tensor(user_model.ratings_[users].toarray())).numpy()
    np.testing.assert_allclose(user_model.score_items(users), full, rtol=1e-6, atol=1e-6)


def test_unknown_user_predicts_nan(item_model: AutoRec) -> None:
    item = item_model.items_.ids[0]
    pred = item_model.predict([item_model.users_.ids[0], -987654], [item, item])
    assert np.isfinite(pred[0]) and np.isnan(pred[1])


# ---------------------------------------------------------------------- fold-in
def _row(model: AutoRec, u: int) -> dict[Any, float]:
    lo, hi = model.ratings_.indptr[u], model.ratings_.indptr[u + 1]
    ids = model.items_.lookup(model.ratings_.indices[lo:hi])
    return dict(zip(ids.tolist(), model.ratings_.data[lo:hi].tolist(), strict=True))


def test_user_fold_in_of_a_trained_row_is_exact(user_model: AutoRec) -> None:
    for u in (0, 7, 123):
        idx, vals = user_model._fold_in_inputs(_row(user_model, u))
        np.testing.assert_allclose(
            user_model.fold_in_scores(idx, vals),
            user_model.score_items(np.array([u]))[0],
            atol=1e-6,
        )


def test_item_fold_in_of_a_trained_row_ranks_like_training(item_model: AutoRec) -> None:
    corr = []
    for u in range(0, 300, 30):
        idx, vals = item_model._fold_in_inputs(_row(item_model, u))
        folded = item_model.fold_in_scores(idx, vals)
        trained = item_model.score_items(np.array([u]))[0]
        corr.append(np.corrcoef(folded, trained)[0, 1])
    assert np.mean(corr) > 0.7


def _with_fold_in_reg(model: AutoRec, lam: float) -> AutoRec:
    twin = copy.copy(model)
    twin.config = model.config.model_copy(update={"fold_in_reg": lam})
    return twin


def test_item_fold_in_is_the_ridge_solution(item_model: AutoRec) -> None:
    row = dict(list(_row(item_model, 3).items())[:8])
    idx, vals = item_model._fold_in_inputs(row)
    net = item_model._net()
    codes = item_model._item_codes().double().numpy()
    w_out = net.output.weight.detach().double().numpy()
    b_out = net.output.bias.detach().double().numpy()
    w0 = np.concatenate([w_out.mean(0), [b_out.mean()]])
    x = np.hstack([codes[idx], np.ones((len(idx), 1))])
    # Primal normal equations by hand (the model solves the dual, n_rated × n_rated, system).
    lam = 2.5
    w = np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ vals + lam * w0)
    got = _with_fold_in_reg(item_model, lam).fold_in_scores(idx, vals)
    np.testing.assert_allclose(got, codes @ w[:-1] + w[-1], rtol=1e-4, atol=1e-4)
    # Almost no shrinkage: the rated items are interpolated (8 equations, 65 unknowns).
    exact = _with_fold_in_reg(item_model, 1e-9).fold_in_scores(idx, vals)
    np.testing.assert_allclose(exact[idx], vals, atol=1e-3)
    # Infinite shrinkage: the average trained user.
    flat = _with_fold_in_reg(item_model, 1e12).fold_in_scores(idx, vals)
    np.testing.assert_allclose(flat, codes @ w0[:-1] + w0[-1], atol=1e-4)


def test_fold_in_predictions_are_clipped(item_model: AutoRec) -> None:
    pred = item_model.predict_for_ratings(_row(item_model, 0), item_model.items_.ids)
    assert np.isfinite(pred).all() and pred.min() >= 1.0 and pred.max() <= 5.0


# ---------------------------------------------------------------------- validation, persistence
def test_validation_history_and_early_stopping() -> None:
    data = planted_explicit(0)
    model = create("autorec", {**ITEM_CFG, "epochs": 30, "patience": 3, "monitor": "valid_rmse"})
    model.fit(data.train, data.test)
    history = model.history_  # type: ignore[attr-defined]
    assert {"valid_loss", "valid_rmse", "valid_mae"} <= set(history.columns)
    best = int(history["valid_rmse"].idxmin())
    assert model.train_result_.best_epoch == best + 1  # type: ignore[attr-defined]
    # The restored weights are the best epoch's: the validation RMSE recomputed matches.
    assert rating_rmse(model, data.test) == pytest.approx(
        history["valid_rmse"].iloc[best], abs=1e-5
    )


@pytest.mark.parametrize("which", ["item_model", "user_model"])
def test_save_load_identical_scores(
    which: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    model: AutoRec = request.getfixturevalue(which)
    loaded = type(model).load(model.save(tmp_path / "run"))
    assert isinstance(loaded, AutoRec)
    users = np.arange(model.n_users)
    np.testing.assert_array_equal(loaded.score_items(users), model.score_items(users))
    row = _row(model, 4)
    np.testing.assert_array_equal(
        loaded.recommend_for_ratings(row, k=10).item_ids,
        model.recommend_for_ratings(row, k=10).item_ids,
    )


def test_same_seed_same_weights() -> None:
    train = planted_explicit(0).train
    cfg = {**USER_CFG, "epochs": 3, "dropout": 0.3}
    # Dropout draws and batch order both come from the seed.
    a = create("autorec", cfg).fit(train)
    b = create("autorec", cfg).fit(train)
    c = create("autorec", {**cfg, "seed": 7}).fit(train)
    users = np.arange(train.n_users)
    np.testing.assert_array_equal(a.score_items(users), b.score_items(users))
    assert not np.allclose(a.score_items(users), c.score_items(users))


# ---------------------------------------------------------------------- new users (issue 4)
@pytest.mark.parametrize("which", ["item_model", "user_model"])
def test_batch_fold_in_equals_single_fold_ins(which: str, request: pytest.FixtureRequest) -> None:
    model: AutoRec = request.getfixturevalue(which)
    rows = model.ratings_[[2, 8, 31]]
    batch = model.fold_in_scores_batch(rows)
    for r in range(3):
        single = model.fold_in_scores(rows[r].indices.astype(np.int64), rows[r].data)
        np.testing.assert_allclose(batch[r], single, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cfg", [ITEM_CFG, USER_CFG], ids=["item", "user"])
def test_held_out_users_fold_in_close_to_training(cfg: dict[str, Any]) -> None:
    # The fold-in acceptance protocol of tests/eval/test_foldin.py on planted *ratings*: 15% of
    # users never trained on; their 80% history is folded in, NDCG@10 on their other 20%.
    data = make_interactions(
        n_users=500, n_items=150, n_factors=4, density=0.25, rating_scale=(1.0, 5.0), seed=11
    ).interactions
    split = heldout_users(data, valid_users=0, test_users=0.15, foldin_ratio=0.8, seed=5)
    folded = create("autorec", cfg).fit(split.train)
    ndcg_fold = evaluate_foldin(folded, split, ks=(10,)).summary["ndcg@10"]
    train_with, target = foldin_as_training(split)
    trained = create("autorec", cfg).fit(train_with)
    ndcg_trained = evaluate_ranking(trained, (train_with, target), ks=(10,)).summary["ndcg@10"]
    # Measured: item 0.482 folded vs 0.415 trained, user 0.105 vs 0.111; popularity 0.176.
    assert ndcg_fold >= 0.85 * ndcg_trained
    if cfg["variant"] == "item":
        pop = evaluate_foldin(create("popularity").fit(split.train), split, ks=(10,))
        assert ndcg_fold >= 1.25 * pop.summary["ndcg@10"]
    # U-AutoRec ranks by predicted rating, which says how much a user will like an item, not
    # which items they will rate; on this target it stays below popularity (0.105 vs 0.176).
