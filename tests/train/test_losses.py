"""Loss functions and objectives against hand-computed values."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from recforge.train.losses import (
    BPR,
    RatingMSE,
    SampledBCE,
    bce_pos_neg,
    bpr_loss,
    embedding_l2,
    fixed_negatives,
    mse_loss,
    scaled_sigmoid,
)
from recforge.train.sampling import NegativeSampler

LN2, LN3 = math.log(2.0), math.log(3.0)


class _Table(nn.Module):
    """s(u, i) = U[u] + V[i] with one-dimensional, hand-set tables."""

    user_param_names: ClassVar[tuple[str, ...]] = ("u.weight",)
    item_param_names: ClassVar[tuple[str, ...]] = ("v.weight",)

    def __init__(self, u: list[float], v: list[float]) -> None:
        super().__init__()
        self.u = nn.Embedding(len(u), 1)
        self.v = nn.Embedding(len(v), 1)
        with torch.no_grad():
            self.u.weight.copy_(torch.tensor(u)[:, None])
            self.v.weight.copy_(torch.tensor(v)[:, None])

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = (self.u(user) + self.v(item)).squeeze(-1)
        return out


def _v(t: torch.Tensor) -> float:
    return float(t.detach())


def test_scaled_sigmoid_values() -> None:
    x = torch.tensor([0.0, LN3, -LN3])
    got = scaled_sigmoid(x, 0.5, 5.5)
    # sigma(0) = 1/2, sigma(ln 3) = 3/4, sigma(-ln 3) = 1/4.
    assert torch.allclose(got, torch.tensor([3.0, 4.25, 1.75]))


def test_mse() -> None:
    assert float(mse_loss(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]))) == pytest.approx(2.5)


def test_bce_pos_neg_hand_computed() -> None:
    pos = torch.tensor([0.0])
    neg = torch.tensor([[0.0, LN3]])
    # -log sigma(0) = ln 2; -log(1 - sigma(0)) = ln 2; -log(1 - sigma(ln 3)) = -log(1/4) = ln 4.
    assert float(bce_pos_neg(pos, neg)) == pytest.approx((LN2 + LN2 + 2 * LN2) / 3)
    mask = torch.tensor([[True, False]])
    assert float(bce_pos_neg(pos, neg, mask)) == pytest.approx(LN2)


def test_bpr_hand_computed() -> None:
    pos = torch.tensor([LN3, 0.0])
    neg = torch.tensor([[0.0], [0.0]])
    # -log sigma(ln 3) = log(4/3); -log sigma(0) = ln 2.
    assert float(bpr_loss(pos, neg)) == pytest.approx((math.log(4 / 3) + LN2) / 2)
    mask = torch.tensor([[True], [False]])
    assert float(bpr_loss(pos, neg, mask)) == pytest.approx(math.log(4 / 3))


def test_embedding_l2_sums_rows_and_averages_over_batch() -> None:
    m = _Table([1.0, 2.0], [3.0, 0.5])
    user = torch.tensor([0, 1])
    item = torch.tensor([1, 1])
    # (1 + 4 + 0.25 + 0.25) / 2
    assert _v(embedding_l2(m, user, item)) == pytest.approx(2.75)
    # (B, n) items are all counted.
    items2 = torch.tensor([[0, 1], [0, 0]])
    assert _v(embedding_l2(m, user, items2)) == pytest.approx((1 + 4 + 9 + 0.25 + 9 + 9) / 2)


def test_rating_mse_objective_with_reg() -> None:
    m = _Table([1.0, 2.0], [3.0, 0.5])
    batch = {
        "user": torch.tensor([0, 1]),
        "item": torch.tensor([0, 1]),
        "rating": torch.tensor([4.0, 3.0]),
    }
    # predictions 4.0 and 2.5 -> mse (0 + 0.25) / 2
    assert _v(RatingMSE()(m, batch)) == pytest.approx(0.125)
    reg = (1 + 9 + 4 + 0.25) / 2
    assert _v(RatingMSE(reg=0.1)(m, batch)) == pytest.approx(0.125 + 0.1 * reg)


def _sampler() -> NegativeSampler:
    return NegativeSampler([0, 0, 1], [0, 1, 2], n_users=2, n_items=4, seed=0)


def test_sampled_objectives_with_fixed_negatives() -> None:
    m = _Table([0.0, 1.0], [0.0, LN3, 0.0, -1.0])
    batch = {"user": torch.tensor([0]), "item": torch.tensor([1]), "neg": torch.tensor([[2, 3]])}
    # pos score ln 3; negatives 0 and -1.
    expected_bce = (
        math.log(1 + 1 / 3) + math.log(1 + math.exp(0.0)) + math.log(1 + math.exp(-1.0))
    ) / 3
    assert _v(SampledBCE(_sampler(), 2)(m, batch)) == pytest.approx(expected_bce)
    expected_bpr = (math.log(1 + math.exp(-LN3)) + math.log(1 + math.exp(-LN3 - 1))) / 2
    assert _v(BPR(_sampler(), 2)(m, batch)) == pytest.approx(expected_bpr)


def test_sampled_objective_draws_valid_negatives_and_backpropagates() -> None:
    m = _Table([0.0, 1.0], [0.0, 0.5, 0.0, -1.0])
    obj = SampledBCE(_sampler(), n_negatives=3, reg=0.01)
    batch = {"user": torch.tensor([0, 0, 1]), "item": torch.tensor([0, 1, 2])}
    neg = obj.negatives(batch["user"])
    assert neg.shape == (3, 3)
    assert not _sampler().is_positive(np.repeat([0, 0, 1], 3), neg.reshape(-1).numpy()).any()
    loss = obj(m, batch)
    loss.backward()  # type: ignore[no-untyped-call]
    assert m.v.weight.grad is not None and float(m.v.weight.grad.abs().sum()) > 0


def test_fixed_negatives_are_reproducible_and_leave_the_stream_alone() -> None:
    s1, s2 = _sampler(), _sampler()
    a = fixed_negatives(s1, np.array([0, 1, 0]), 4, seed=7)
    b = fixed_negatives(s2, np.array([0, 1, 0]), 4, seed=7)
    assert torch.equal(a, b)
    # The training stream of s1 is unaffected by drawing the fixed negatives.
    assert np.array_equal(s1.sample([0, 1], 5), _sampler().sample([0, 1], 5))
