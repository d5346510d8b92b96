"""Tests of the two-tower module, its in-batch softmax loss and the ``two_tower`` recommender."""

from __future__ import annotations

import math

import pytest
import torch

from recforge.models.two_tower import TwoTowerNet, in_batch_softmax_loss

N_USERS, N_ITEMS = 6, 9


def _features() -> torch.Tensor:
    f = torch.zeros(N_ITEMS, 4)
    f[torch.arange(N_ITEMS), torch.arange(N_ITEMS) % 4] = 1.0
    f[0, 3] = 1.0  # item 0 has two genres
    return f


# ---------------------------------------------------------------------- module
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("with_features", [False, True])
def test_score_all_is_tower_dot_product(use_bias: bool, with_features: bool) -> None:
    torch.manual_seed(0)
    m = TwoTowerNet(
        N_USERS,
        N_ITEMS,
        5,
        (7, 3),
        item_features=_features() if with_features else None,
        feature_dim=2,
        use_bias=use_bias,
        init_std=0.5,
    ).eval()
    u = torch.tensor([0, 4, 5])
    uv, iv = m.user_vectors(u), m.item_vectors()
    assert uv.shape == (3, 3) and iv.shape == (N_ITEMS, 3)
    expected = uv @ iv.T
    if use_bias:
        assert m.user_bias is not None and m.item_bias is not None
        torch.nn.init.normal_(m.user_bias.weight)
        torch.nn.init.normal_(m.item_bias.weight)
        expected = expected + m.user_bias.weight[u] + m.item_bias.weight[:, 0][None, :]
    full = m.score_all(u)
    torch.testing.assert_close(full, expected)
    pair = m(u.repeat_interleave(N_ITEMS), torch.arange(N_ITEMS).repeat(3))
    torch.testing.assert_close(pair.reshape(3, N_ITEMS), full)


def test_item_features_change_item_vectors_and_are_mean_normalised() -> None:
    torch.manual_seed(1)
    m = TwoTowerNet(
        N_USERS, N_ITEMS, 4, (3,), item_features=_features(), feature_dim=2, init_std=0.5
    )
    assert m.item_features is not None and m.feature_emb is not None
    torch.testing.assert_close(m.item_features[0], torch.tensor([0.5, 0.0, 0.0, 0.5]))
    # Items 1 and 5 share a genre; giving them the same id embedding makes their vectors equal,
    # and changing the genre embedding moves them while an item without that genre stays put.
    with torch.no_grad():
        m.item_emb.weight[5] = m.item_emb.weight[1]
    v = m.item_vectors()
    torch.testing.assert_close(v[1], v[5])
    before = v.detach().clone()
    with torch.no_grad():
        m.feature_emb.weight[:, 1] += 1.0
    after = m.item_vectors().detach()
    assert not torch.allclose(after[1], before[1])
    torch.testing.assert_close(after[2], before[2])


def test_normalize_gives_unit_vectors() -> None:
    m = TwoTowerNet(N_USERS, N_ITEMS, 4, (5, 3), normalize=True, init_std=0.5)
    torch.testing.assert_close(m.item_vectors().norm(dim=1), torch.ones(N_ITEMS))
    torch.testing.assert_close(
        m.user_vectors(torch.arange(N_USERS)).norm(dim=1), torch.ones(N_USERS)
    )


def test_feature_rows_must_match_items() -> None:
    with pytest.raises(ValueError, match="rows"):
        TwoTowerNet(N_USERS, N_ITEMS, item_features=torch.zeros(N_ITEMS + 1, 3))


# ---------------------------------------------------------------------- loss
def test_in_batch_softmax_hand_computed() -> None:
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    # logits [[2, 1], [0, 1]] / tau=0.5 -> [[4, 2], [0, 2]]
    expected = -0.5 * (
        (4 - math.log(math.exp(4) + math.exp(2))) + (2 - math.log(math.exp(0) + math.exp(2)))
    )
    loss = in_batch_softmax_loss(u, v, torch.tensor([0, 1]), temperature=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_in_batch_softmax_log_q_correction_subtracts_column_log_prob() -> None:
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    log_q = torch.log(torch.tensor([0.8, 0.2]))
    # logits [[2, 1], [0, 1]] - log_q per column.
    l00, l01 = 2 - math.log(0.8), 1 - math.log(0.2)
    l10, l11 = 0 - math.log(0.8), 1 - math.log(0.2)
    expected = -0.5 * (
        (l00 - math.log(math.exp(l00) + math.exp(l01)))
        + (l11 - math.log(math.exp(l10) + math.exp(l11)))
    )
    loss = in_batch_softmax_loss(u, v, torch.tensor([0, 1]), log_q=log_q)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_in_batch_softmax_masks_repeated_items() -> None:
    u = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    # Rows 0 and 1 are the same item: each sees only itself and item 2 as candidates.
    loss = in_batch_softmax_loss(u, v, torch.tensor([4, 4, 7]))
    r0 = 1 - math.log(math.exp(1) + math.exp(0))
    r2 = 3 - math.log(math.exp(0) + math.exp(0) + math.exp(3))
    assert loss.item() == pytest.approx(-(2 * r0 + r2) / 3, rel=1e-6)
