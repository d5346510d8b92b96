"""Tests of the NCF modules (GMF, MLP, NeuMF) and the ``ncf`` recommender."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.ncf import GMF, NCF, NCFMLP, NeuMF
from recforge.models.registry import create
from recforge.testing import hit_rate, planted_explicit, planted_implicit, rating_rmse

N_USERS, N_ITEMS = 7, 11


def _pairs() -> tuple[torch.Tensor, torch.Tensor]:
    users = torch.tensor([0, 3, 6, 3, 1])
    items = torch.tensor([10, 0, 5, 5, 2])
    return users, items


# ---------------------------------------------------------------------- modules
def test_gmf_is_elementwise_product_then_linear() -> None:
    torch.manual_seed(0)
    m = GMF(N_USERS, N_ITEMS, 4, init_std=0.5)
    u, i = _pairs()
    p, q = m.user_emb.weight[u], m.item_emb.weight[i]
    h, b = m.predict.weight[0], m.predict.bias[0]
    expected = (p * q * h).sum(-1) + b
    out = m(u, i)
    assert out.shape == (5,)
    torch.testing.assert_close(out, expected)


def test_gmf_score_all_matches_pairwise_forward() -> None:
    torch.manual_seed(1)
    m = GMF(N_USERS, N_ITEMS, 3, init_std=0.5)
    u = torch.tensor([2, 0, 5])
    full = m.score_all(u)
    assert full.shape == (3, N_ITEMS)
    pair = m(u.repeat_interleave(N_ITEMS), torch.arange(N_ITEMS).repeat(3)).reshape(3, N_ITEMS)
    torch.testing.assert_close(full, pair)


def test_mlp_tower_matches_hand_forward() -> None:
    torch.manual_seed(2)
    m = NCFMLP(N_USERS, N_ITEMS, (8, 6, 3), init_std=0.5)
    assert m.user_emb.embedding_dim == 4 and m.item_emb.embedding_dim == 4
    assert [(lin.in_features, lin.out_features) for lin in m.hidden] == [(8, 6), (6, 3)]
    u, i = _pairs()
    x = torch.cat([m.user_emb.weight[u], m.item_emb.weight[i]], dim=1)
    for lin in m.hidden:
        x = torch.relu(x @ lin.weight.T + lin.bias)
    expected = x @ m.predict.weight[0] + m.predict.bias[0]
    torch.testing.assert_close(m(u, i), expected)


def test_mlp_reference_material_network_shape() -> None:
    # "concat 128 -> 64 -> 1": 64 factors per side, one hidden layer of 64, one output.
    m = NCFMLP(N_USERS, N_ITEMS, (128, 64))
    assert m.user_emb.embedding_dim == 64
    assert len(m.hidden) == 1 and m.hidden[0].in_features == 128 and m.hidden[0].out_features == 64
    assert m.predict.in_features == 64 and m.predict.out_features == 1


@pytest.mark.parametrize("layers", [(8,), (7, 3), ()])
def test_mlp_rejects_bad_layers(layers: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="layers"):
        NCFMLP(N_USERS, N_ITEMS, layers)


def test_mlp_score_all_matches_pairwise_forward_across_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(3)
    m = NCFMLP(N_USERS, N_ITEMS, (6, 5, 4), init_std=0.5).eval()
    u = torch.arange(N_USERS)
    pair = m(u.repeat_interleave(N_ITEMS), torch.arange(N_ITEMS).repeat(N_USERS)).reshape(
        N_USERS, N_ITEMS
    )
    torch.testing.assert_close(m.score_all(u), pair)
    # A tiny budget forces one user per chunk; the result must not change.
    monkeypatch.setattr("recforge.models.ncf._MLP_SCORE_BUDGET", 1)
    torch.testing.assert_close(m.score_all(u), pair)


def test_neumf_fuses_both_branches_in_one_predict_layer() -> None:
    torch.manual_seed(4)
    m = NeuMF(N_USERS, N_ITEMS, n_factors=3, layers=(6, 4), init_std=0.5).eval()
    assert m.predict.in_features == 3 + 4
    u, i = _pairs()
    z = torch.cat([m.gmf.features(u, i), m.mlp.features(u, i)], dim=1)
    expected = z @ m.predict.weight[0] + m.predict.bias[0]
    torch.testing.assert_close(m(u, i), expected)
    full = m.score_all(torch.arange(N_USERS))
    pair = m(
        torch.arange(N_USERS).repeat_interleave(N_ITEMS), torch.arange(N_ITEMS).repeat(N_USERS)
    )
    torch.testing.assert_close(full, pair.reshape(N_USERS, N_ITEMS))


@pytest.mark.parametrize("alpha", [0.5, 0.2])
def test_neumf_load_pretrained_is_alpha_mix_of_branches(alpha: float) -> None:
    torch.manual_seed(5)
    gmf = GMF(N_USERS, N_ITEMS, 3, init_std=0.5)
    mlp = NCFMLP(N_USERS, N_ITEMS, (6, 4), init_std=0.5).eval()
    m = NeuMF(N_USERS, N_ITEMS, n_factors=3, layers=(6, 4)).eval()
    m.load_pretrained(gmf, mlp, alpha=alpha)
    u, i = _pairs()
    torch.testing.assert_close(m(u, i), alpha * gmf(u, i) + (1 - alpha) * mlp(u, i))
    torch.testing.assert_close(m.gmf.user_emb.weight, gmf.user_emb.weight)
    torch.testing.assert_close(m.mlp.hidden[0].weight, mlp.hidden[0].weight)
    # Copies, not shared tensors: training NeuMF must not change the pretrained models.
    assert m.gmf.user_emb.weight.data_ptr() != gmf.user_emb.weight.data_ptr()


def test_neumf_load_pretrained_rejects_bad_alpha() -> None:
    m = NeuMF(N_USERS, N_ITEMS, n_factors=3, layers=(6, 4))
    with pytest.raises(ValueError, match="alpha"):
        m.load_pretrained(GMF(N_USERS, N_ITEMS, 3), NCFMLP(N_USERS, N_ITEMS, (6, 4)), alpha=1.5)


# ---------------------------------------------------------------------- recommender
def _fit(train: Interactions, **cfg: Any) -> NCF:
    model = create("ncf", {"verbose": False, **cfg}).fit(train)
    assert isinstance(model, NCF)
    return model


@pytest.mark.parametrize("variant", ["gmf", "mlp", "neumf"])
def test_explicit_rmse_clearly_below_global_mean(variant: str) -> None:
    data = planted_explicit(1)
    model = _fit(data.train, variant=variant, epochs=15)
    base = rating_rmse(create("global_mean").fit(data.train), data.test)
    got = rating_rmse(model, data.test)
    assert got < 0.9 * base, f"{variant}: RMSE {got:.3f} vs global mean {base:.3f}"
    pred = model.predict(
        data.test.users.lookup(data.test.user_idx[:50]),
        data.test.items.lookup(data.test.item_idx[:50]),
    )
    assert pred.min() >= 1.0 and pred.max() <= 5.0


def test_implicit_neumf_ranks_withheld_items_better_than_popularity() -> None:
    data = planted_implicit(1)
    model = _fit(data.train, variant="neumf", epochs=10, lr=1e-2, n_negatives=4)
    assert model.loss_kind() == "bce" and not model.predicts_ratings
    got = hit_rate(model, data, 10)
    pop = hit_rate(create("popularity").fit(data.train), data, 10)
    assert got >= pop + 0.15, f"NeuMF hit-rate@10 {got:.3f} vs popularity {pop:.3f}"


def test_neumf_pretrain_starts_from_alpha_mix_of_fitted_gmf_and_mlp() -> None:
    data = planted_explicit(1)
    shared = {"epochs": 3, "lr": 1e-2, "dropout": 0.0, "n_factors": 8, "layers": (16, 8)}
    gmf = _fit(data.train, variant="gmf", **shared)
    mlp = _fit(data.train, variant="mlp", **shared)
    # A vanishing learning rate for the NeuMF phase leaves the pre-trained start in place.
    neumf = _fit(
        data.train,
        variant="neumf",
        pretrain=True,
        pretrain_epochs=3,
        pretrain_lr=1e-2,
        **{**shared, "lr": 1e-12, "epochs": 1},
        alpha=0.3,
    )
    assert set(neumf.pretrain_history_) == {"gmf", "mlp"}
    assert len(neumf.pretrain_history_["gmf"]) == 3
    u = torch.as_tensor(data.test.user_idx[:200].astype(np.int64))
    i = torch.as_tensor(data.test.item_idx[:200].astype(np.int64))
    with torch.no_grad():
        expected = 0.3 * gmf.network()(u, i) + 0.7 * mlp.network()(u, i)
        got = neumf.network()(u, i)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_neumf_pretrain_lowers_the_starting_loss() -> None:
    data = planted_explicit(1)
    cfg = {"variant": "neumf", "epochs": 2, "lr": 1e-2}
    scratch = _fit(data.train, **cfg)
    warm = _fit(data.train, pretrain=True, pretrain_epochs=5, **cfg)
    assert warm.history_["train_loss"].iloc[0] < 0.8 * scratch.history_["train_loss"].iloc[0]
    assert warm.is_fitted and np.isfinite(warm.score_items(np.arange(5))).all()


def test_item_vectors_per_variant() -> None:
    data = planted_explicit(1)
    for variant, width in [("gmf", 8), ("mlp", 8), ("neumf", 16)]:
        model = _fit(data.train, variant=variant, epochs=1, n_factors=8, layers=(16, 8))
        vecs = model.item_vectors()
        assert vecs is not None and vecs.shape == (data.train.n_items, width)


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"variant": "gmf", "pretrain": True}, "pretrain"),
        ({"layers": (7, 3)}, "layers"),
        ({"layers": (64,)}, "layers"),
        ({"variant": "deep"}, "variant"),
    ],
)
def test_bad_config_is_a_config_error(cfg: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create("ncf", cfg)
