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
is one evaluation of the outputs and their Jacobian.

The problem hands over ``J`` as a function of the rows: in closed form where the network states
it (:mod:`recforge.models._row_jacobian`), else by :func:`autograd_jacobian`, one backward pass
through a copy of its row's ``θ`` per pair (each output depends on its copy only, so the
gradient of ``Σ f`` with respect to the copies is ``J`` itself).

The solver runs in numpy float64: a served fold-in is a few dozen operations on ``d × d``
matrices per iteration (``d`` ~ 100), each cheaper to dispatch in numpy than in torch. With the
closed-form Jacobians, a solve takes 1.2-2.5 ms on ML-100k (docs/benchmarks/fold_in_solvers.md;
that table's session-9 version, torch and autograd, read 4.3-8.0 ms).

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

import numpy as np
import numpy.typing as npt
import torch

__all__ = [
    "LOSS_TOL",
    "PRED_TOL",
    "LeastSquaresRows",
    "RowJacobian",
    "autograd_jacobian",
    "gauss_newton_rows",
    "leave_one_out",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: ``θ (R, d) -> (outputs (P,), Jacobian (P, d))`` of fixed pairs, each scored at its row of θ.
RowJacobian = Callable[[FloatArray], tuple[FloatArray, FloatArray]]

#: Stop a row when an accepted step moves no coordinate by more than this (relative to
#: ``1 + |θ|``).
_STEP_TOL = 1e-7
#: Stop a row when the next Gauss-Newton step promises (on its quadratic model) to lower the
#: loss by less than ``PRED_TOL`` of it, or when an accepted step lowered it by less than
#: ``LOSS_TOL`` of it. ReLU networks are piecewise linear in the user row: near the optimum the
#: steps chase kinks, half of them rejected, each gaining a fraction of a percent. On 20 new
#: ML-100k users of each family (docs/benchmarks/fold_in_solvers.md) the gain stop at 3e-4
#: takes 6.9-7.5 evaluations where 1e-10 took 9.7-10.8, at a loss 0.04-0.09% above a run to
#: convergence (1e-10: 0.01%) and the same top-10 lists but for 0-2.5% of the items; a stop at
#: 1e-3 saved 1-2 more evaluations but left single users 0.8-6% of their loss above.
PRED_TOL = 1e-4
LOSS_TOL = 3e-4
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
    weight ``lam``; ``jacobian`` gives the pairs' outputs and Jacobian at rows ``θ``."""

    jacobian: RowJacobian
    row: IntArray
    col: IntArray
    width: int
    target: FloatArray
    prior: FloatArray
    lam: float

    def padded(self, per_pair: FloatArray) -> FloatArray:
        """``(P, ...)`` per-pair values as ``(R, width, ...)`` with zeros in the padding."""
        if self.prior.shape[0] == 1 and len(per_pair) == self.width:
            return per_pair[None]  # one full row (a served fold-in): no scatter
        out = np.zeros((self.prior.shape[0], self.width, *per_pair.shape[1:]), per_pair.dtype)
        out[self.row, self.col] = per_pair
        return out

    def loss(self, theta: FloatArray, f: FloatArray) -> FloatArray:
        """``L`` of every row ``(R,)`` given the pair outputs ``f`` at ``theta``."""
        n_rows = theta.shape[0]
        err = np.bincount(self.row, weights=(f - self.target) ** 2, minlength=n_rows)
        out: FloatArray = err + self.lam * ((theta - self.prior) ** 2).sum(1)
        return out

    def normal_matrix(self, jac: FloatArray) -> FloatArray:
        """``A = JᵀJ + λI`` of every row ``(R, d, d)``."""
        j = self.padded(jac)
        a = j.transpose(0, 2, 1) @ j
        a[:, np.arange(jac.shape[1]), np.arange(jac.shape[1])] += self.lam
        return a

    def gradient(self, theta: FloatArray, f: FloatArray, jac: FloatArray) -> FloatArray:
        """``∇L / 2 = Jᵀe + λ(θ − θ₀)`` of every row ``(R, d)``."""
        e = self.padded(f - self.target)
        jte = (self.padded(jac).transpose(0, 2, 1) @ e[:, :, None])[:, :, 0]
        return jte + self.lam * (theta - self.prior)


def gauss_newton_rows(
    problem: LeastSquaresRows,
    start: FloatArray,
    max_iter: int = 30,
    *,
    pred_tol: float = PRED_TOL,
    loss_tol: float = LOSS_TOL,
) -> FloatArray:
    """Minimise every row's ``L`` from ``start`` ``(R, d)``; the solved rows ``(R, d)``.

    Levenberg–Marquardt per row (module docstring): at most ``max_iter`` iterations; a row stops
    when its next step promises less than ``pred_tol`` of its loss, or when an accepted step
    moved no coordinate by more than ``1e-7 (1 + |θ|)`` or lowered the loss by less than
    ``loss_tol`` of it (:data:`PRED_TOL`, :data:`LOSS_TOL`).
    """
    theta = np.array(start, dtype=np.float64)
    n_rows, dim = theta.shape
    f, jac = problem.jacobian(theta)
    loss = problem.loss(theta, f)
    mu = np.full(n_rows, _MU_START)
    active = np.ones(n_rows, dtype=bool)
    diag = np.arange(dim)
    for _ in range(max_iter):
        a = problem.normal_matrix(jac)
        grad = problem.gradient(theta, f, jac)
        damped = a.copy()
        damped[:, diag, diag] += (mu * a[:, diag, diag].mean(1))[:, None]
        step = -np.linalg.solve(damped, grad[:, :, None])[:, :, 0]
        promised = -(grad * step).sum(1) - 0.5 * (step[:, None, :] @ a @ step[:, :, None])[:, 0, 0]
        active &= promised > pred_tol * loss
        if not active.any():
            break
        step[~active] = 0.0
        trial = theta + step
        f_new, jac_new = problem.jacobian(trial)
        loss_new = problem.loss(trial, f_new)
        accept = active & (loss_new <= loss)
        small = (np.abs(step).max(1) <= _STEP_TOL * (1.0 + np.abs(theta).max(1))) | (
            loss - loss_new <= loss_tol * loss
        )
        theta[accept] = trial[accept]
        loss = np.where(accept, loss_new, loss)
        keep = accept[problem.row]
        f = np.where(keep, f_new, f)
        jac = np.where(keep[:, None], jac_new, jac)
        mu = np.where(accept, mu / _MU_FACTOR, np.maximum(mu * _MU_FACTOR, _MU_FLOOR))
        active &= ~(accept & small)
        if not active.any():
            break
    return theta


def leave_one_out(problem: LeastSquaresRows, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
    """What every rating's removal does to the solved rows ``theta`` (module docstring).

    Returns ``K = A⁻¹Jᵀ`` ``(R, d, width)`` and ``e / (1 − h)`` ``(R, width)``: the weight of
    rating ``(r, m)`` in a target of row ``r`` with output gradient ``g`` is
    ``−(gᵀK[r])[m] · (e / (1 − h))[r, m]``; padding columns are 0.
    """
    f, jac = problem.jacobian(theta)
    a = problem.normal_matrix(jac)
    j = problem.padded(jac)  # (R, W, d)
    k = np.asarray(np.linalg.solve(a, j.transpose(0, 2, 1)), dtype=np.float64)  # (R, d, W)
    lev = (j * k.transpose(0, 2, 1)).sum(2)  # (R, W): h = J_jᵀ A⁻¹ J_j
    e = problem.padded(f - problem.target)
    # h < 1 always (A = JᵀJ + λI with λ > 0); the floor only guards rounding.
    lev_e = np.asarray(e / np.maximum(1.0 - lev, np.finfo(np.float64).eps), dtype=np.float64)
    return k, lev_e


def autograd_jacobian(
    outputs: Callable[[torch.Tensor], torch.Tensor],
    row: IntArray,
    device: torch.device | str = "cpu",
) -> RowJacobian:
    """The :data:`RowJacobian` of pair outputs ``outputs(copies (P, d)) -> (P,)`` (one row of
    θ per pair, pair ``p`` at row ``row[p]``, on ``device``) by one backward pass, for
    networks without a closed form."""
    row_t = torch.from_numpy(np.asarray(row, dtype=np.int64)).to(device)

    def at(theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        rows = torch.from_numpy(np.asarray(theta, dtype=np.float64)).to(device)
        copies = rows[row_t].requires_grad_(True)
        with torch.enable_grad():
            f = outputs(copies)
            (jac,) = torch.autograd.grad(f.sum(), copies)
        return f.detach().cpu().numpy(), jac.cpu().numpy()

    return at
