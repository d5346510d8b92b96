"""Full-catalogue softmax cross-entropy with one ``(N, I)`` buffer and a hand-written backward.

``L = −mean_n log softmax(H Eᵀ)_{n, y_n}`` for states ``H`` ``(N, d)``, an item table ``E``
``(I, d)`` and targets ``y`` — the loss of SASRec+ (Klenitskiy & Vasilev 2023), GRU4Rec's
cross-entropy and BERT4Rec's cloze objective. Its gradient needs only the softmax::

    ∂L/∂logits = (softmax(H Eᵀ) − onehot(y)) / N
    ∂L/∂H = (∂L/∂logits) E,     ∂L/∂E = (∂L/∂logits)ᵀ H

``F.cross_entropy(h @ table.T, y)`` gets there through autograd: ``log_softmax`` writes its
output, ``nll_loss``'s backward fills an ``(N, I)`` tensor with zeros and scatters, and
``log_softmax``'s backward reads two ``(N, I)`` tensors to write a third. With a catalogue of
10⁴ items those memory passes cost as much as the three matrix products (session-19 profile of
one SASRec epoch on ml-latest-small: 8.9 s of 19.9 s). Here the forward turns the log-softmax
into probabilities in place and the backward subtracts the one-hot in place: one buffer, two
element-wise passes after the product, the same gradient up to float rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable


class _FullSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        states: torch.Tensor,
        table: torch.Tensor,
        target: torch.Tensor,
        blocked: torch.Tensor | None,
    ) -> torch.Tensor:
        logits = states @ table.T
        if blocked is not None:
            logits.masked_fill_(blocked, -torch.inf)
        log_probs = torch.log_softmax(logits, dim=1)
        del logits
        loss = -log_probs.gather(1, target[:, None]).mean()
        probs = log_probs.exp_()  # in place: the backward needs the softmax only
        ctx.save_for_backward(states, table, target, probs)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        states, table, target, probs = ctx.saved_tensors
        rows = torch.arange(len(target), device=target.device)
        # In place on the saved softmax: the backward runs once (once_differentiable, and the
        # trainer never retains the graph), so the buffer is not needed afterwards.
        probs[rows, target] -= 1.0
        scale = grad / max(len(target), 1)
        grad_states = (probs @ table) * scale if ctx.needs_input_grad[0] else None
        grad_table = (probs.T @ states) * scale if ctx.needs_input_grad[1] else None
        return grad_states, grad_table, None, None


def full_softmax_ce(
    states: torch.Tensor,
    table: torch.Tensor,
    target: torch.Tensor,
    blocked: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``softmax(states @ table.T)`` against ``target`` (module docstring).

    Args:
        states: ``(N, d)`` float, one row per scored position.
        table: ``(I, d)`` float, the item table scored against (output embeddings).
        target: ``(N,)`` int64 in ``[0, I)``.
        blocked: optional ``(N, I)`` bool; ``True`` removes that item from that row's softmax
            (a target must not be blocked).

    Equals ``F.cross_entropy((states @ table.T).masked_fill(blocked, -inf), target)`` in value
    and gradient up to float rounding, with one ``(N, I)`` buffer. An empty ``target`` gives
    ``nan`` like ``F.cross_entropy``'s mean reduction.
    """
    loss: torch.Tensor = _FullSoftmaxCE.apply(states, table, target, blocked)  # type: ignore[no-untyped-call]
    return loss
