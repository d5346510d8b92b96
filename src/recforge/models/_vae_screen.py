"""The screened drop-one occlusion of Mult-VAE/DAE's served ``because``, in numpy.

:meth:`recforge.models.vae.MultDAE.explain_history_top` explains one history against a few
targets per request. Its work is dozens of small products (``|H| × 600 @ 600 × 10``, one-row
layers) and one large one (the exact rows' logits over the catalogue). Torch's CPU matmul costs
~70 µs for such a small product where numpy's BLAS call costs ~16 µs (measured on the 2-core
machine, one thread), and the large product costs the same in both; so the network's layers are
read once into numpy arrays (:class:`NumpyNet`, cached per model and rebuilt when a weight
changes) and the whole screened explanation runs in numpy (float32 for the network, float64 for
the first layer's rank-one updates and the log-softmax normaliser's sum).

The arithmetic is the torch path's (:meth:`MultDAE.explain_rows`): the same drop-one first-layer
rows (bit for bit), the same layers in float32 through other BLAS kernels, so the weights agree
with the full path's to float32 rounding of the catalogue-wide logits (up to 6.7e-6 on ML-100k,
where 5 of 9430 `because` lists of 3 differ from the full path's by the order of near-equal
weights; docs/benchmarks/explain_screen_coverage.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from recforge.models.vae import MultVAENet

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: One step after the first layer: ``("tanh", None, None)``, ``("linear", (W (out, in), Wᵀ
#: (in, out) contiguous), b)``, or ``("slice", width, None)`` (the mean half of a variational
#: code without a layer to cut). Both layouts: numpy's ``h @ W.T`` on a row-major ``W`` took
#: ~1.4x as long as ``h @ Wᵀ`` on a contiguous copy (32 × 600 @ 600 × 200 and 24 × 600 @
#: 600 × 1650, one thread); the vector-Jacobian product reads ``W`` itself.
Step = tuple[str, Any, Any]


@dataclass(frozen=True)
class NumpyNet:
    """A :class:`~recforge.models.vae.MultVAENet`'s layers as numpy arrays (eval mode).

    Attributes:
        w1_items: the first layer's weight item-major, ``(n_items, hidden[0])`` float32.
        b1: the first layer's bias, float64 (added to the float64 normalised product).
        steps: from the first layer's output to the decoder's last hidden layer: tanh and
            linear steps; a variational encoder's last layer is cut to its mean half (the
            log-variance is never used at inference).
        w_last: the decoder's last layer ``(n_items, width)`` float32, ``b_last`` its bias.
        w_last_t: ``w_last`` transposed, contiguous ``(width, n_items)``: the exact rows'
            product.
    """

    w1_items: F32
    b1: F64
    steps: tuple[Step, ...]
    w_last: F32
    b_last: F32
    w_last_t: F32


def numpy_net(net: MultVAENet) -> NumpyNet:
    """Read ``net``'s weights into a :class:`NumpyNet` (copies: the module may train on)."""
    from torch import nn

    def arr(t: Any) -> Any:
        return t.detach().cpu().float().numpy().copy()

    first = net.encoder[0]
    assert isinstance(first, nn.Linear)
    steps: list[Step] = []
    last = len(net.encoder) - 1
    for k, layer in enumerate(net.encoder):
        if k:
            assert isinstance(layer, nn.Linear)
            steps.append(("linear", arr(layer.weight), arr(layer.bias)))  # (both layouts below)
        if k < last or not net.variational:
            steps.append(("tanh", None, None))
    if net.variational:
        if steps and steps[-1][0] == "linear":
            _, w, b = steps[-1]
            steps[-1] = ("linear", np.ascontiguousarray(w[: net.latent]), b[: net.latent].copy())
        else:
            steps.append(("slice", net.latent, None))
    for layer in net.decoder[:-1]:
        assert isinstance(layer, nn.Linear)
        steps.append(("linear", arr(layer.weight), arr(layer.bias)))
        steps.append(("tanh", None, None))
    out = net.decoder[-1]
    assert isinstance(out, nn.Linear)
    both = tuple(
        (kind, (a, np.ascontiguousarray(a.T)), b) if kind == "linear" else (kind, a, b)
        for kind, a, b in steps
    )
    w_last = arr(out.weight)
    return NumpyNet(
        w1_items=np.ascontiguousarray(arr(first.weight).T),
        b1=first.bias.detach().cpu().double().numpy().copy(),
        steps=both,
        w_last=w_last,
        b_last=arr(out.bias),
        w_last_t=np.ascontiguousarray(w_last.T),
    )


def forward(steps: tuple[Step, ...], h: F32) -> F32:
    """The decoder's last hidden layer of first-layer outputs ``h`` ``(R, hidden[0])``."""
    for kind, a, b in steps:
        if kind == "tanh":
            h = np.tanh(h)
        elif kind == "linear":
            h = h @ a[1] + b
        else:
            h = h[:, :a]
    return h


def forward_and_vjp(steps: tuple[Step, ...], h: F32) -> tuple[F32, Any]:
    """:func:`forward` of one row ``h`` and its vector-Jacobian product there, by hand
    through the tanh MLP (one row forward, ``T`` rows back, no autograd graph): ``vjp(c)`` maps
    ``(T, width)`` cotangents to ``(T, hidden[0])``."""
    tape: list[tuple[str, Any]] = []
    for kind, a, b in steps:
        if kind == "tanh":
            h = np.tanh(h)
            tape.append(("tanh", h))
        elif kind == "linear":
            tape.append(("linear", a[0]))
            h = h @ a[1] + b
        else:
            tape.append(("slice", h.shape[1] - a))
            h = h[:, :a]

    def vjp(c: F32) -> F32:
        for kind, t in reversed(tape):
            if kind == "tanh":
                c = c * (1.0 - t * t)
            elif kind == "linear":
                c = c @ t
            else:
                c = np.concatenate([c, np.zeros((len(c), t), dtype=c.dtype)], axis=1)
        return c

    return h, vjp


@dataclass(frozen=True)
class FirstLayer:
    """The first layer's drop-one rows of one binary history, kept as parts.

    Row ``v`` (0: the full history, ``1 + m``: without entry ``m``) is
    ``W₁ x̂_v + c₁ = (full − cols[v − 1]) / norm[v] + c₁`` (``full`` alone for ``v = 0``), so
    the screen needs only the products of ``full`` and ``cols`` with its gradients, and only
    the rows it keeps are built (:meth:`rows`).

    Attributes:
        lay: the network.
        cols: ``(|H|, hidden[0])`` float32: the kept entries' columns of ``W₁`` (zeros for
            entries a threshold leaves out).
        full: ``(hidden[0],)`` float64: their sum, the full row's product.
        norm: ``(|H| + 1,)`` every row's L2 norm.
    """

    lay: NumpyNet
    cols: F32
    full: F64
    norm: F64

    def rows(self, r: I64) -> F32:
        """Rows ``r`` as :meth:`MultDAE._drop_one_pre` builds them: the products in float64,
        divided by the norm (an empty row stays 0), plus the bias, cast to float32."""
        r = np.asarray(r, dtype=np.int64)
        dropped = self.cols[np.maximum(r - 1, 0)].astype(np.float64)
        prod = np.where((r == 0)[:, None], self.full[None, :], self.full[None, :] - dropped)
        norm = self.norm[r]
        unit = prod / np.maximum(norm, 1e-12)[:, None]
        if not (norm > 0).all():
            unit[norm <= 0] = 0.0
        out: F32 = (unit + self.lay.b1).astype(np.float32)
        return out

    def screen(self, grad: F32) -> F32:
        """``(pre_v − pre_0)·g_i`` of every drop-one row ``v`` and cotangent row ``g_i`` of
        ``grad`` ``(T, hidden[0])``: ``(|H|, T)`` from ``full·g`` and ``cols·g`` (the bias
        cancels), one pass over ``cols`` instead of building every row."""
        g = grad.T
        fg = self.full @ g.astype(np.float64)
        cg = self.cols @ g
        unit = np.maximum(self.norm, 1e-12)
        out: F32 = ((fg[None, :] - cg) / unit[1:, None] - fg[None, :] / unit[0]).astype(np.float32)
        return out


def first_layer(lay: NumpyNet, idx: I64, kept: npt.NDArray[np.bool_] | None) -> FirstLayer:
    """:class:`FirstLayer` of the binary history ``idx`` (``kept``: the entries a threshold
    counts; None: all)."""
    cols = lay.w1_items[idx]
    k = np.ones(len(idx), dtype=np.float64) if kept is None else kept.astype(np.float64)
    if kept is not None and not kept.all():
        cols = cols * kept[:, None].astype(np.float32)
    n_kept = float(k.sum())
    norm = np.sqrt(np.concatenate([[n_kept], n_kept - k]))
    return FirstLayer(lay, cols, cols.sum(axis=0, dtype=np.float64), norm)


@dataclass(frozen=True)
class Head:
    """The full history's pass through the network (row 0 of every screen).

    Attributes:
        h0: the decoder's last hidden layer ``(1, width)``.
        vjp: its vector-Jacobian product at the first layer's output (:func:`forward_and_vjp`).
        z0: the catalogue-wide logits ``(n_items,)`` float32.
    """

    h0: F32
    vjp: Callable[[F32], F32]
    z0: F32


def head(lay: NumpyNet, pre0: F32) -> Head:
    """:class:`Head` of the full history's first-layer row ``pre0`` ``(1, hidden[0])``."""
    h0, vjp = forward_and_vjp(lay.steps, pre0)
    z0: F32 = h0[0] @ lay.w_last.T + lay.b_last
    return Head(h0, vjp, z0)


def log_softmax(z: F32) -> F32:
    """Row-wise ``log softmax`` of float32 logits ``z`` ``(R, n_items)``, the normaliser summed
    in float64 (as :func:`exact_weights` computes it): float32."""
    top = z.max(axis=1, keepdims=True)
    lse = (np.log(np.exp(z - top).sum(axis=1, dtype=np.float64)) + top[:, 0]).astype(np.float32)
    out: F32 = z - lse[:, None]
    return out


def first_screen(
    lay: NumpyNet,
    full: Head,
    screen_of: Callable[[F32], F32],
    targets: I64,
    keep: int,
) -> tuple[I64, F32, F32]:
    """The first screen of :meth:`MultDAE.explain_history_top`.

    ``full``: the full history's :func:`head`; ``screen_of(g)``: the
    products ``(pre_v − pre_0)·g_i`` of every drop-one row with the rows of ``g``
    (:meth:`FirstLayer.screen`). The screen is ``g_i·(pre_v − pre_0)`` with
    ``g_i = ∂[(w̄ − W_i)·h]/∂pre`` at the full history, every target at once. Returns the union
    over targets of each one's ``keep`` best history positions (sorted), ``w̄ = p₀ᵀW`` and the
    targets' rows ``W_i`` of the last layer.
    """
    w = lay.w_last
    z0 = full.z0
    p0 = np.exp(z0 - z0.max())
    p0 /= p0.sum()
    wbar: F32 = p0 @ w
    wt: F32 = w[targets]
    screen = screen_of(full.vjp(wbar[None, :] - wt))  # (|H|, targets)
    keep = min(keep, len(screen))
    cand = np.unique(np.argpartition(-screen, keep - 1, axis=0)[:keep]).astype(np.int64)
    return cand, wbar, wt


def second_screen(lay: NumpyNet, pre_rows: F32, wbar: F32, wt: F32, refine: int) -> tuple[I64, F32]:
    """The second screen: rows ``pre_rows`` (row 0: the full history) through the layers after
    the first, ranked per target by the Jensen bound ``(W_i − w̄)·(h_0 − h_v)`` (short of the
    weight by the same gap for every target). Returns the union of each target's ``refine``
    best (positions in ``pre_rows[1:]``, sorted) and the hidden layers of row 0 and those."""
    hidden = forward(lay.steps, pre_rows)
    n_rows = len(pre_rows) - 1
    if refine >= n_rows:
        return np.arange(n_rows, dtype=np.int64), hidden
    bound = (hidden[:1] - hidden[1:]) @ (wt - wbar[None, :]).T
    best = np.unique(np.argpartition(-bound, refine - 1, axis=0)[:refine]).astype(np.int64)
    return best, hidden[np.concatenate([[0], best + 1])]


def exact_weights(lay: NumpyNet, hidden: F32, targets: I64) -> F64:
    """Drop-one weights ``log p_0(i) − log p_v(i)`` ``(len(targets), len(hidden) − 1)`` from the
    decoder's last hidden layers (row 0: the full history): the catalogue-wide logits and
    their log-softmax normaliser per row, float32 as the network computes them."""
    z = hidden @ lay.w_last_t + lay.b_last
    top = z.max(axis=1, keepdims=True)
    lse = (np.log(np.exp(z - top).sum(axis=1, dtype=np.float64)) + top[:, 0]).astype(np.float32)
    logp = (z[:, targets] - lse[:, None]).astype(np.float64)  # (log_softmax's, on columns)
    out: F64 = (logp[0][None, :] - logp[1:]).T
    return out
