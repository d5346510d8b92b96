"""Closed-form outputs and Jacobians of id-pair networks in one user's parameter row.

A least-squares fold-in (:mod:`recforge.train.gauss_newton`) needs, at every iteration, the
outputs ``f_p`` of its pairs ``p = (row r_p, item j_p)`` and their gradients ``∂f_p/∂θ_{r_p}`` in
the user row ``θ`` (every other weight frozen). Autograd gets them from one backward pass through
one copy of the row per pair: a forward and a backward through the whole network per
evaluation. The networks whose user row enters one linear map are cheaper in closed form:

* the item side of that first map is fixed during a fold-in, so it is computed once per problem;
* a ReLU stack is linear between kinks: its gradient is the product of the layers' weights
  masked by the active units, ``hᵀ D_L W_L ⋯ D_2 W_2 D_1`` (``D_l = diag(z_l > 0)``), one
  batched matmul per layer;
* a user tower is evaluated once per row, not once per pair (``f_p = v_{j_p} · u(θ_{r_p})``,
  so ``∂f_p/∂θ = v_{j_p}ᵀ ∂u/∂θ``).

A network offers this through ``row_jacobian(item_idx (P,), row (P,)) -> RowJacobian``, in
numpy float64 as the solver is (:mod:`recforge.train.gauss_newton`), from the weights of the
fold-in's private float64 copy; the tests check every one against autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from recforge.train.gauss_newton import FloatArray, IntArray, RowJacobian

__all__ = [
    "F64",
    "FrozenItemHalf",
    "IntArray",
    "RowJacobian",
    "concat_mlp",
    "dense",
    "relu_stack",
    "row_products",
    "times",
]

#: The fold-in's float64 arrays (named apart from the models' float32 ``FloatArray``).
F64 = FloatArray


class FrozenItemHalf:
    """Mixin of networks whose first layer takes ``[p_u; q_i]``: the item half ``W_i q_i`` of
    every item, computed once on a copy whose item side is frozen (:meth:`freeze_item_side`:
    a fold-in's private copy, where ranking every item then costs one layer less)."""

    _frozen_item_part: torch.Tensor | None = None

    def first_layer(self) -> tuple[nn.Linear, nn.Embedding, int]:
        """The first layer, the item embedding table and the user part's width."""
        raise NotImplementedError

    def freeze_item_side(self) -> None:
        """Compute the item half once (the item weights must not change afterwards)."""
        with torch.no_grad():
            self._frozen_item_part = self.item_half()

    def item_half(self) -> torch.Tensor:
        """``W_i q_i`` of every item: ``(n_items, first layer width)``."""
        if self._frozen_item_part is not None:
            return self._frozen_item_part
        first, items, d_user = self.first_layer()
        return items.weight @ first.weight[:, d_user:].T


def dense(tensor: torch.Tensor) -> FloatArray:
    """A weight as a float64 numpy array (no copy for the CPU float64 fold-in network)."""
    return np.asarray(tensor.detach().cpu().numpy(), dtype=np.float64)


def _layers(linears: Sequence[nn.Module]) -> list[tuple[FloatArray, FloatArray]]:
    out = []
    for lin in linears:
        assert isinstance(lin, nn.Linear) and lin.bias is not None
        out.append((dense(lin.weight), dense(lin.bias)))
    return out


def relu_stack(
    z1: FloatArray, layers: Sequence[tuple[FloatArray, FloatArray]], head: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``x_L = ReLU(W_L ⋯ ReLU(W_2 ReLU(z1) + c_2) ⋯ + c_L)`` and the gradients of ``head x_L``.

    Args:
        z1: first-layer pre-activations ``(B, h_1)``.
        layers: ``(W, c)`` of the layers after the first (each followed by a ReLU).
        head: ``(k, h_L)`` output map whose rows' gradients are wanted.

    Returns:
        ``x_L`` ``(B, h_L)`` and ``∂(head x_L)/∂z1`` ``(k, B, h_1)`` (output-major: for one
        output these are plain ``(B, h)`` matmuls).
    """
    masks = [z1 > 0]
    x = np.maximum(z1, 0.0)
    for w, c in layers:
        z = x @ w.T + c
        masks.append(z > 0)
        x = np.maximum(z, 0.0)
    grad = head[:, None, :] * masks[-1]
    for (w, _), mask in zip(reversed(layers), reversed(masks[:-1]), strict=True):
        grad = times(grad, w) * mask
    return x, grad


def times(stacked: FloatArray, weight: FloatArray) -> FloatArray:
    """``(k, B, h) @ (h, h')`` as one 2-D product (numpy runs a 3-D ``@`` as ``k`` small ones,
    slow for a tower's ``k`` outputs of one user, ``B = 1``)."""
    k, b, h = stacked.shape
    out: FloatArray = (stacked.reshape(k * b, h) @ weight).reshape(k, b, weight.shape[1])
    return out


def concat_mlp(
    net: FrozenItemHalf,
    linears: Sequence[nn.Module],
    head: FloatArray,
    item_idx: IntArray,
    row: IntArray,
) -> Callable[[FloatArray], tuple[FloatArray, FloatArray]]:
    """The ReLU MLP on ``[θ_{r_p}; q_{j_p}]`` of fixed pairs, as a function of the user rows.

    Args:
        net: the network; its item half ``W_i q_i`` (:meth:`FrozenItemHalf.item_half`, computed
            once on a fold-in's copy) gives the pairs' fixed part of the first layer.
        linears: the hidden layers, each followed by a ReLU; the first takes ``[θ; q]``.
        head: ``(k, h_L)`` output map whose gradients are wanted.
        item_idx: each pair's item ``(P,)``.
        row: each pair's row of θ ``(P,)``.

    Returns:
        ``θ (R, d_u) -> (x_L (P, h_L), ∂(head x_L)/∂θ (k, P, d_u))``.
    """
    d_u = net.first_layer()[2]
    (w1, c1), *rest = _layers(linears)
    w_user = w1[:, :d_u]
    item_part = dense(net.item_half())[item_idx] + c1

    def at(theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        z1 = (theta @ w_user.T)[row] + item_part
        x, grad = relu_stack(z1, rest, head)
        return x, times(grad, w_user)

    return at


def row_products(
    vectors: FloatArray, row: IntArray, n_rows: int
) -> Callable[[FloatArray], FloatArray]:
    """``M (R, k, d) -> (P, d)`` with entry ``p`` = ``vectors[p] @ M[row[p]]``, for fixed pairs.

    Gathering ``M[row]`` would hold ``P·k·d`` numbers (gigabytes for a batch of fold-ins);
    the pairs are laid out instead as a zero-padded ``(R, W, k)`` block (``W`` the most pairs of
    one row), one batched matmul, and read back.
    """
    if n_rows == 1:
        return lambda m: vectors @ m[0]
    order = np.argsort(row, kind="stable")
    counts = np.bincount(row, minlength=n_rows)
    starts = np.cumsum(counts) - counts
    col = np.empty_like(row)
    col[order] = np.arange(len(row)) - starts[row[order]]
    padded = np.zeros((n_rows, int(counts.max(initial=0)), vectors.shape[1]))
    padded[row, col] = vectors
    return lambda m: (padded @ m)[row, col]
