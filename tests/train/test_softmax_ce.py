"""The hand-written full-softmax cross-entropy equals autograd's, in value and gradient."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from recforge.train.softmax_ce import full_softmax_ce


def _reference(
    states: torch.Tensor,
    table: torch.Tensor,
    target: torch.Tensor,
    blocked: torch.Tensor | None,
) -> torch.Tensor:
    logits = states @ table.T
    if blocked is not None:
        logits = logits.masked_fill(blocked, -math.inf)
    return F.cross_entropy(logits, target)


@pytest.mark.parametrize("with_mask", [False, True])
def test_value_and_gradients_match_cross_entropy(with_mask: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    states = torch.randn(37, 8, generator=gen, dtype=torch.float64)
    table = torch.randn(50, 8, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 50, (37,), generator=gen)
    blocked = None
    if with_mask:
        blocked = torch.rand(37, 50, generator=gen) < 0.3
        blocked[torch.arange(37), target] = False
    got = []
    for fn in (full_softmax_ce, _reference):
        s = states.clone().requires_grad_(True)
        t = table.clone().requires_grad_(True)
        # A weight on the loss checks the incoming gradient is applied, not assumed to be 1.
        (fn(s, t, target, blocked) * 3.0).backward()
        got.append((fn(s, t, target, blocked).detach(), s.grad, t.grad))
    (loss, gs, gt), (want, ws, wt) = got
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(gs, ws)
    torch.testing.assert_close(gt, wt)


def test_blocked_items_get_no_probability_and_no_gradient() -> None:
    states = torch.zeros(2, 3, requires_grad=True)
    table = torch.eye(4, 3, requires_grad=True)
    target = torch.tensor([0, 1])
    blocked = torch.tensor([[False, True, True, False], [False, False, True, True]])
    loss = full_softmax_ce(states, table, target, blocked)
    # Zero states: each row's softmax is uniform over its two allowed items.
    assert float(loss) == pytest.approx(math.log(2.0))
    # Item 2 is blocked in both rows: it receives no gradient, while every other item does.
    full_softmax_ce(torch.randn(2, 3), table, target, blocked).backward()
    assert table.grad is not None
    assert table.grad[2].abs().sum() == 0
    assert bool((table.grad[[0, 1, 3]].abs().sum(1) > 0).all())


def test_only_the_needed_gradient_is_computed() -> None:
    states = torch.randn(5, 4, dtype=torch.float64)
    table = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 1, 2, 3, 4])
    full_softmax_ce(states, table, target).backward()
    assert table.grad is not None and states.grad is None
    # The one gradient asked for is still the right one.
    want = table.detach().clone().requires_grad_(True)
    _reference(states, want, target, None).backward()
    torch.testing.assert_close(table.grad, want.grad)
