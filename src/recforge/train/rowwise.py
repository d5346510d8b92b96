"""Row-wise minimisation: many independent small problems solved as one batch.

A new-user fold-in fits one user's parameters with everything else frozen. Occlusion
explanations need ``|H| + 1`` such fits per user (the full history and every drop-one history),
and a service folds in many users: each fit is a *row* of a batch. Rows share no parameter, so the
gradient of the summed per-row losses, restricted to row ``r``'s parameters, is exactly row
``r``'s own gradient. An optimiser whose every decision is taken per row then gives each row the
trajectory it would have alone, and one batched run replaces ``R`` separate ones.

:func:`lbfgs_rows` is such an optimiser: L-BFGS (Nocedal & Wright 2006, Alg. 7.4/7.5, two-loop
recursion with ``γ = sᵀy / yᵀy`` scaling) where each row keeps its own curvature pairs, its own
backtracking Armijo line search (``c₁ = 1e-4``; each retry at the minimiser of the quadratic
through the loss, the slope and the failed trial, kept within ``[0.1 t, 0.5 t]``), and its own
stopping tests (gradient max-norm, step max-norm, no descent direction left). The line search
accepts a step within rounding of the Armijo bound (``4 ε max(1, |loss|)``, ``ε`` of the loss's
dtype): a float32 loss of 25 cannot show a decrease below ~1e-6, and demanding one only burns
evaluations on noise; for the same reason no test reads loss changes (a gradient resolves the
optimum far better).

Rows agree with their separate runs up to rounding, which differs between a batch and a single
row (other BLAS kernels) and can tip a stopping or line-search decision; in float32 that moved
fold-in scores by up to 1e-3 on planted data, so the fold-ins run in float64, where rows match.
Adam (:func:`adam_rows`) is separable by construction (moments and steps are per coordinate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["adam_rows", "lbfgs_rows"]

#: Armijo sufficient-decrease constant of the backtracking line search.
_C1 = 1e-4
#: Rounding allowance of the Armijo test, in ulps of the loss's dtype times ``max(1, |loss|)``.
_NOISE_ULPS = 4


class _Rows:
    """The row-stacked view ``x: (R, D)`` of parameter tensors whose first axis is the row."""

    def __init__(self, params: Sequence[torch.Tensor]) -> None:
        self.params = list(params)
        self.rows = int(self.params[0].shape[0])
        self.sizes = [int(p[0].numel()) if p.shape[0] else 0 for p in self.params]

    def get(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(self.rows, -1) for p in self.params], dim=1).clone()

    def set(self, x: torch.Tensor) -> None:
        a = 0
        with torch.no_grad():
            for p, n in zip(self.params, self.sizes, strict=True):
                p.copy_(x[:, a : a + n].reshape(p.shape))
                a += n

    def evaluate(
        self, x: torch.Tensor, objective: Callable[[], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row losses ``(R,)`` and gradients ``(R, D)`` at ``x``."""
        self.set(x)
        for p in self.params:
            p.grad = None
        with torch.enable_grad():
            loss = objective()
            loss.sum().backward()  # type: ignore[no-untyped-call]
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach() for p in self.params]
        grad = torch.cat([g.reshape(self.rows, -1) for g in grads], dim=1)
        return loss.detach(), grad


def _direction(
    grad: torch.Tensor,
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    gamma: torch.Tensor,
) -> torch.Tensor:
    """``−H g`` by the two-loop recursion, every row with its own pairs (rho = 0: skipped)."""
    q = -grad
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * (s * q).sum(dim=1)
        q = q - a[:, None] * y
        alphas.append(a)
    d = q * gamma[:, None]
    for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
        b = rho * (y * d).sum(dim=1)
        d = d + s * (a - b)[:, None]
    return d


def lbfgs_rows(
    params: Sequence[torch.Tensor],
    objective: Callable[[], torch.Tensor],
    *,
    max_iter: int = 20,
    history: int = 10,
    tolerance_grad: float = 1e-5,
    tolerance_change: float = 1e-6,
    max_line_search: int = 25,
) -> None:
    """Minimise ``objective`` row by row with L-BFGS, in place (see the module docstring).

    Args:
        params: leaf tensors with ``requires_grad``; the first axis of each is the row.
        objective: evaluates the per-row losses ``(R,)`` at the current ``params``.
        max_iter: L-BFGS iterations per row (each takes one or more evaluations).
        history: curvature pairs kept per row.
        tolerance_grad: a row stops once its gradient's max-norm is at most this.
        tolerance_change: a row stops once its step's max-norm is below this.
        max_line_search: halvings tried before a row gives up (it then keeps its point).
    """
    view = _Rows(params)
    x = view.get()
    loss, grad = view.evaluate(x, objective)
    active = grad.abs().amax(dim=1) > tolerance_grad
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    gamma = torch.ones(view.rows, dtype=x.dtype, device=x.device)
    noise = _NOISE_ULPS * float(torch.finfo(loss.dtype).eps)
    for it in range(max_iter):
        if not bool(active.any()):
            break
        d = _direction(grad, pairs, gamma)
        slope = (grad * d).sum(dim=1)
        scale = loss.abs().clamp_min(1.0)
        active &= slope < 0  # not a descent direction (rounding): the row is done
        # First step as torch.optim.LBFGS: min(1, 1/|g|_1), then the quasi-Newton step 1.
        t = torch.ones_like(loss)
        if it == 0:
            t = torch.clamp(1.0 / grad.abs().sum(dim=1).clamp_min(1e-30), max=1.0)
        pending = active.clone()
        x_new, loss_new, grad_new = x.clone(), loss.clone(), grad.clone()
        for _ in range(max_line_search):
            trial = x + t[:, None] * d
            l_t, g_t = view.evaluate(trial, objective)
            bound = loss + _C1 * t * slope + noise * scale
            ok = pending & torch.isfinite(l_t) & (l_t <= bound)
            x_new = torch.where(ok[:, None], trial, x_new)
            loss_new = torch.where(ok, l_t, loss_new)
            grad_new = torch.where(ok[:, None], g_t, grad_new)
            pending &= ~ok
            if not bool(pending.any()):
                break
            # Minimiser of the quadratic through loss, slope and l_t, kept in [0.1 t, 0.5 t].
            curv = (l_t - loss - slope * t).clamp_min(1e-30)
            quad = torch.where(torch.isfinite(l_t), -slope * t * t / (2.0 * curv), 0.1 * t)
            t = torch.where(pending, torch.minimum(torch.maximum(quad, 0.1 * t), 0.5 * t), t)
        active &= ~pending  # no decrease found: the row keeps its point and stops
        s = x_new - x
        y = grad_new - grad
        ys = (s * y).sum(dim=1)
        good = active & (ys > 1e-10)
        pairs.append(
            (
                torch.where(good[:, None], s, 0.0),
                torch.where(good[:, None], y, 0.0),
                torch.where(good, 1.0 / torch.where(good, ys, 1.0), 0.0),
            )
        )
        if len(pairs) > history:
            pairs.pop(0)
        gamma = torch.where(good, ys / (y * y).sum(dim=1).clamp_min(1e-30), gamma)
        x, loss, grad = x_new, loss_new, grad_new
        active &= (grad.abs().amax(dim=1) > tolerance_grad) & (
            s.abs().amax(dim=1) > tolerance_change
        )
    view.set(x)


def adam_rows(
    params: Sequence[torch.Tensor], objective: Callable[[], torch.Tensor], *, steps: int, lr: float
) -> None:
    """``steps`` Adam steps on the summed per-row losses (Adam is per coordinate: row-separable)."""
    adam = torch.optim.Adam(list(params), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            adam.zero_grad()
            objective().sum().backward()  # type: ignore[no-untyped-call]
            adam.step()
