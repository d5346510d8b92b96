"""Tests of the NCF modules (GMF, MLP, NeuMF) and the ``ncf`` recommender."""

from __future__ import annotations

import pytest
import torch

from recforge.models.ncf import GMF, NCFMLP, NeuMF

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
