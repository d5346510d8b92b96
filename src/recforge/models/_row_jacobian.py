"""Closed-form outputs and Jacobians of id-pair networks in one user's parameter row.

A least-squares fold-in (:mod:`recforge.train.gauss_newton`) needs, at every iteration, the
outputs ``f_p`` of its pairs ``p = (row r_p, item j_p)`` and their gradients ``∂f_p/∂θ_{r_p}`` in
the user row ``θ`` (every other weight frozen). Autograd gets them from one backward pass through
one copy of the row per pair: a forward and a backward through the whole network, ~0.6 ms of a
~1 ms NCF iteration. The networks whose user row enters one linear map are cheaper in closed
form:

* the item side of that first map is fixed during a fold-in, so it is computed once per problem;
* a ReLU stack is linear between kinks: its gradient is the product of the layers' weights
  masked by the active units, ``hᵀ D_L W_L ⋯ D_2 W_2 D_1`` (``D_l = diag(z_l > 0)``), one
  batched matmul per layer;
* a user tower is evaluated once per row, not once per pair (``f_p = v_{j_p} · u(θ_{r_p})``,
  so ``∂f_p/∂θ = v_{j_p}ᵀ ∂u/∂θ``).

A network offers this through ``row_jacobian(item_idx (P,), row (P,)) -> RowJacobian``; the
tests check every one against autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RowJacobian", "concat_mlp", "relu_stack", "row_products"]

#: ``θ (R, d) -> (outputs (P,), Jacobian (P, d))`` of fixed pairs, each scored at its row of θ.
RowJacobian = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def relu_stack(
    z1: torch.Tensor, linears: Sequence[nn.Module], head: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_L = ReLU(W_L ⋯ ReLU(W_2 ReLU(z1) + c_2) ⋯ + c_L)`` and the gradients of ``head x_L``.

    Args:
        z1: first-layer pre-activations ``(B, h_1)``.
        linears: the layers after the first (``nn.Linear``, each followed by a ReLU).
        head: ``(k, h_L)`` output map whose rows' gradients are wanted.

    Returns:
        ``x_L`` ``(B, h_L)`` and ``∂(head x_L)/∂z1`` ``(k, B, h_1)`` (output-major: for one
        output these are plain ``(B, h)`` matmuls, where ``(B, 1, h)`` ones were batched
        matmuls of one row each, several times slower).
    """
    masks = [z1 > 0]
    x = torch.relu(z1)
    for lin in linears:
        assert isinstance(lin, nn.Linear)
        z = F.linear(x, lin.weight, lin.bias)
        masks.append(z > 0)
        x = torch.relu(z)
    grad = head[:, None, :] * masks[-1]
    for lin, mask in zip(reversed(linears), reversed(masks[:-1]), strict=True):
        assert isinstance(lin, nn.Linear)
        grad = (grad @ lin.weight) * mask
    return x, grad


def concat_mlp(
    item_rows: torch.Tensor,
    linears: Sequence[nn.Module],
    head: torch.Tensor,
    row: torch.Tensor,
) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The ReLU MLP on ``[θ_{r_p}; q_{j_p}]`` of fixed pairs, as a function of the user rows.

    Args:
        item_rows: the pairs' item embeddings ``q_{j_p}`` ``(P, d_i)``.
        linears: the hidden layers, each followed by a ReLU; the first takes ``[θ; q]``.
        head: ``(k, h_L)`` output map whose gradients are wanted.
        row: each pair's row of θ ``(P,)``.

    Returns:
        ``θ (R, d_u) -> (x_L (P, h_L), ∂(head x_L)/∂θ (k, P, d_u))``.
    """
    first = linears[0]
    assert isinstance(first, nn.Linear)
    d_u = first.in_features - item_rows.shape[1]
    w_user = first.weight[:, :d_u]
    # The item half of the first layer is fixed during a fold-in: once per problem.
    item_part = F.linear(item_rows, first.weight[:, d_u:], first.bias)

    def at(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1 = (theta @ w_user.T)[row] + item_part
        x, grad = relu_stack(z1, linears[1:], head)
        return x, grad @ w_user

    return at


def row_products(
    vectors: torch.Tensor, row: torch.Tensor, n_rows: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``M (R, k, d) -> (P, d)`` with entry ``p`` = ``vectors[p] @ M[row[p]]``, for fixed pairs.

    Gathering ``M[row]`` would hold ``P·k·d`` numbers (gigabytes for a batch of fold-ins);
    the pairs are laid out instead as a zero-padded ``(R, W, k)`` block (``W`` the most pairs of
    one row), one batched matmul, and read back.
    """
    if n_rows == 1:
        return lambda m: vectors @ m[0]
    order = torch.argsort(row, stable=True)
    counts = torch.bincount(row, minlength=n_rows)
    starts = torch.cumsum(counts, 0) - counts
    col = torch.empty_like(row)
    col[order] = torch.arange(len(row), device=row.device) - starts[row[order]]
    width = int(counts.max()) if len(row) else 0
    padded = vectors.new_zeros(n_rows, width, vectors.shape[1])
    padded[row, col] = vectors
    return lambda m: (padded @ m)[row, col]
