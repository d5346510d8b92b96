"""Row-wise Levenberg–Marquardt for ridge-regularised least squares, and its leave-one-out.

A new user's fold-in under the squared error fits the user's parameters ``θ`` (one row, ``d``
numbers, every other weight frozen) to

    ``L(θ) = Σ_j (f_j(θ) − t_j)² + λ‖θ − θ₀‖²``

over the user's rated items ``j``. It is a non-linear least-squares problem, so it is solved as
one: Gauss–Newton steps ``(JᵀJ + λI + μI) Δ = −(Jᵀe + λ(θ − θ₀))`` with ``J`` the ``(|H|, d)``
Jacobian of the outputs and ``e = f − t``, damped by Levenberg–Marquardt's ``μ`` (Nocedal &
Wright 2006, §10.3): ``μ`` shrinks after a step that lowers ``L`` and grows after one that does
not, which is then undone. Near the optimum the steps are Newton steps on a quadratic model, so
it converges in a handful of iterations where L-BFGS takes dozens of evaluations; each iteration
is one batched forward and one backward pass.

``J`` comes from one backward pass: every pair gets its own copy of its row's ``θ`` (``θ[row]``,
``(P, d)``), each output depends on its copy only, so the gradient of ``Σ f`` with respect to
the copies is ``J`` itself.

Rows are independent problems solved as one batch (as :mod:`recforge.train.rowwise`): every
decision (accept, damping, stop) is taken per row, so a row ends where it would alone.

:func:`leave_one_out` turns a solved row into the explanation of its scores: removing rating
``j`` moves the optimum by ``Δθ₋ⱼ = (A − J_jJ_jᵀ)⁻¹ J_j e_j = A⁻¹J_j e_j / (1 − h_j)`` with
``A = JᵀJ + λI`` and the leverage ``h_j = J_jᵀA⁻¹J_j`` (Sherman–Morrison), so target ``i``'s
score changes by ``f_i(θ) − f_i(θ + Δθ₋ⱼ) ≈ −g_iᵀA⁻¹J_j e_j / (1 − h_j)`` (``g_i = ∂f_i/∂θ``).
It is exact leave-one-out for a model linear in ``θ`` (ridge regression: Cook 1977's deletion
formula) and, for a network, the one-Newton-step influence of the deleted rating (Koh & Liang
2017, "Understanding black-box predictions via influence functions"), computed from the fold-in
without ``|H|`` refits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = [
    "LOSS_TOL",
    "PRED_TOL",
    "LeastSquaresRows",
    "gauss_newton_rows",
    "leave_one_out",
    "target_jacobian",
]

#: Pair outputs ``f((P, d) per-pair parameter rows) -> (P,)``.
PairOutputs = Callable[[torch.Tensor], torch.Tensor]

#: Stop a row when an accepted step moves no coordinate by more than this (relative to
#: ``1 + |θ|``).
_STEP_TOL = 1e-7
#: Stop a row when the next Gauss-Newton step promises (on its quadratic model) to lower the
#: loss by less than ``PRED_TOL`` of it, or when an accepted step lowered it by less than
#: ``LOSS_TOL`` of it. ReLU networks are piecewise linear in the user row: near the optimum the
#: steps chase kinks, half of them rejected, each gaining a fraction of a percent. On 40 new
#: ML-100k users of NCF, stopping at a 0.1% gain takes 5.6 evaluations instead of 9.4, at a
#: loss 7e-4 above a run to convergence (1e-4 with a 1e-10 gain) and top-10 lists 99.3% the same
#: (docs/benchmarks/fold_in_solvers.md).
PRED_TOL = 1e-4
LOSS_TOL = 1e-3
#: Damping relative to the mean diagonal of ``JᵀJ + λI``: the start (none: the first step is
#: Newton's, exact for a model linear in θ), the factor a rejected step multiplies it by (an
#: accepted one divides), and the floor a rejection restarts from: 0.1, as smaller dampings
#: barely shorten a step that crossed a ReLU kink (each such retry is a wasted evaluation).
_MU_START = 0.0
_MU_FACTOR = 10.0
_MU_FLOOR = 0.1


@dataclass(frozen=True)
class LeastSquaresRows:
    """``R`` independent problems: pairs ``p`` of row ``row[p]``, column ``col[p]`` of an
    ``(R, width)`` padding, with targets ``target[p]``; prior rows ``prior`` ``(R, d)`` and
    weight ``lam``."""

    outputs: PairOutputs
    row: torch.Tensor
    col: torch.Tensor
    width: int
    target: torch.Tensor
    prior: torch.Tensor
    lam: float
    #: The pairs' outputs and Jacobian at rows ``θ`` ``(R, d)`` in closed form, when the model
    #: states them (:mod:`recforge.models._row_jacobian`); autograd through ``outputs`` if None.
    row_jacobian: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None

    def jacobian(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs ``(P,)`` and Jacobian ``(P, d)`` of every pair at rows ``theta`` ``(R, d)``."""
        if self.row_jacobian is not None:
            return self.row_jacobian(theta.detach())
        copies = theta.detach()[self.row].requires_grad_(True)
        with torch.enable_grad():
            f = self.outputs(copies)
            (jac,) = torch.autograd.grad(f.sum(), copies)
        return f.detach(), jac

    def padded(self, per_pair: torch.Tensor) -> torch.Tensor:
        """``(P, ...)`` per-pair values as ``(R, width, ...)`` with zeros in the padding."""
        if self.prior.shape[0] == 1 and len(per_pair) == self.width:
            return per_pair[None]  # one full row (a served fold-in): no scatter
        shape = (self.prior.shape[0], self.width, *per_pair.shape[1:])
        out = per_pair.new_zeros(shape)
        out[self.row, self.col] = per_pair
        return out

    def loss(self, theta: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """``L`` of every row ``(R,)`` given the pair outputs ``f`` at ``theta``."""
        err = theta.new_zeros(theta.shape[0]).index_add(0, self.row, (f - self.target) ** 2)
        return err + self.lam * ((theta - self.prior) ** 2).sum(1)

    def normal_matrix(self, jac: torch.Tensor) -> torch.Tensor:
        """``A = JᵀJ + λI`` of every row ``(R, d, d)``."""
        j = self.padded(jac)
        eye = torch.eye(jac.shape[1], dtype=jac.dtype, device=jac.device)
        return j.transpose(1, 2) @ j + self.lam * eye


def gauss_newton_rows(
    problem: LeastSquaresRows,
    start: torch.Tensor,
    max_iter: int = 30,
    *,
    pred_tol: float = PRED_TOL,
    loss_tol: float = LOSS_TOL,
) -> torch.Tensor:
    """Minimise every row's ``L`` from ``start`` ``(R, d)``; the solved rows ``(R, d)``.

    Levenberg–Marquardt per row (module docstring): at most ``max_iter`` iterations; a row stops
    when its next step promises less than ``pred_tol`` of its loss, or when an accepted step
    moved no coordinate by more than ``1e-7 (1 + |θ|)`` or lowered the loss by less than
    ``loss_tol`` of it (:data:`PRED_TOL`, :data:`LOSS_TOL`).
    """
    theta = start.detach().clone()
    n_rows, dim = theta.shape
    f, jac = problem.jacobian(theta)
    loss = problem.loss(theta, f)
    mu = torch.full((n_rows,), _MU_START, dtype=theta.dtype, device=theta.device)
    active = torch.ones(n_rows, dtype=torch.bool, device=theta.device)
    eye = torch.eye(dim, dtype=theta.dtype, device=theta.device)
    for _ in range(max_iter):
        a = problem.normal_matrix(jac)
        grad = theta.new_zeros(n_rows, dim).index_add(
            0, problem.row, jac * (f - problem.target)[:, None]
        )
        grad = grad + problem.lam * (theta - problem.prior)
        scale = a.diagonal(dim1=1, dim2=2).mean(1)
        # solve_ex: no per-call check for singular systems (A ⪰ λI is not), which costs a sync.
        damped = a + (mu * scale)[:, None, None] * eye
        step = -torch.linalg.solve_ex(damped, grad[:, :, None])[0][..., 0]
        promised = -(grad * step).sum(1) - 0.5 * (step[:, None, :] @ a @ step[:, :, None])[:, 0, 0]
        active = active & (promised > pred_tol * loss)
        if not bool(active.any()):
            break
        step = torch.where(active[:, None], step, 0.0)
        trial = theta + step
        f_new, jac_new = problem.jacobian(trial)
        loss_new = problem.loss(trial, f_new)
        accept = active & (loss_new <= loss)
        small = (step.abs().amax(1) <= _STEP_TOL * (1.0 + theta.abs().amax(1))) | (
            loss - loss_new <= loss_tol * loss
        )
        theta = torch.where(accept[:, None], trial, theta)
        loss = torch.where(accept, loss_new, loss)
        keep = accept[problem.row]
        f = torch.where(keep, f_new, f)
        jac = torch.where(keep[:, None], jac_new, jac)
        mu = torch.where(accept, mu / _MU_FACTOR, torch.clamp(mu * _MU_FACTOR, min=_MU_FLOOR))
        active = active & ~(accept & small)
        if not bool(active.any()):
            break
    return theta


def leave_one_out(
    problem: LeastSquaresRows, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """What every rating's removal does to the solved rows ``theta`` (module docstring).

    Returns ``K = A⁻¹Jᵀ`` ``(R, d, width)`` and ``e / (1 − h)`` ``(R, width)``: the weight of
    rating ``(r, m)`` in a target of row ``r`` with output gradient ``g`` (:func:`target_jacobian`)
    is ``−(gᵀK[r])[m] · (e / (1 − h))[r, m]``; padding columns are 0.
    """
    f, jac = problem.jacobian(theta)
    a = problem.normal_matrix(jac)
    j = problem.padded(jac)  # (R, W, d)
    k = torch.linalg.solve_ex(a, j.transpose(1, 2))[0]  # (R, d, W)
    lev = (j * k.transpose(1, 2)).sum(2)  # (R, W): h = J_jᵀ A⁻¹ J_j
    e = problem.padded(f - problem.target)
    # h < 1 always (A = JᵀJ + λI with λ > 0); the clamp only guards rounding.
    lev_e = e / (1.0 - lev).clamp_min(torch.finfo(lev.dtype).eps)
    return k, lev_e


def target_jacobian(outputs: PairOutputs, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``(T,)`` and gradients ``(T, d)`` of targets scored at parameter rows ``rows``."""
    copies = rows.detach().requires_grad_(True)
    with torch.enable_grad():
        f = outputs(copies)
        (jac,) = torch.autograd.grad(f.sum(), copies)
    return f.detach(), jac
