"""Row-wise Levenberg–Marquardt and its leave-one-out (recforge.train.gauss_newton)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from recforge.train.gauss_newton import (
    LeastSquaresRows,
    autograd_jacobian,
    gauss_newton_rows,
    leave_one_out,
)

LAM = 0.7


def _problem(
    x: torch.Tensor, rows: list[list[int]], t: torch.Tensor, link: bool = False
) -> LeastSquaresRows:
    """Pairs (row r, item j) with outputs x_j·θ_r (through a sigmoid when ``link``), their
    Jacobian by autograd."""
    row = np.array([r for r, items in enumerate(rows) for _ in items])
    col = np.array([m for items in rows for m in range(len(items))])
    item = torch.tensor([j for items in rows for j in items])

    def outputs(theta: torch.Tensor) -> torch.Tensor:
        raw = (theta * x[item]).sum(1)
        return 4.0 * torch.sigmoid(raw) if link else raw

    prior = np.full((len(rows), x.shape[1]), 0.1)
    width = max(len(items) for items in rows)
    return LeastSquaresRows(autograd_jacobian(outputs, row), row, col, width, t.numpy(), prior, LAM)


def _target_jacobian(
    outputs: Callable[[torch.Tensor], torch.Tensor], theta: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and gradients of ``n`` targets all scored at the one row ``theta`` ``(d,)``."""
    return autograd_jacobian(outputs, np.zeros(n, dtype=np.int64))(theta[None])


def _data(seed: int = 0) -> tuple[torch.Tensor, list[list[int]], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    rows = [[0, 3, 5, 7, 9], [1, 2, 4], [6, 8, 10, 11, 0, 2]]
    t = torch.randn(sum(map(len, rows)), generator=g, dtype=torch.float64)
    return x, rows, t


def _ridge(x: torch.Tensor, items: list[int], t: torch.Tensor) -> torch.Tensor:
    """Closed form of one row: (XᵀX + λI)⁻¹(Xᵀt + λθ₀)."""
    xs = x[items]
    a = xs.T @ xs + LAM * torch.eye(x.shape[1], dtype=x.dtype)
    return torch.linalg.solve(a, xs.T @ t + LAM * 0.1)


def test_linear_rows_reach_the_ridge_solution() -> None:
    x, rows, t = _data()
    problem = _problem(x, rows, t)
    theta = gauss_newton_rows(problem, problem.prior.copy(), max_iter=30)
    offsets = np.cumsum([0] + [len(r) for r in rows])
    for r, items in enumerate(rows):
        want = _ridge(x, items, t[offsets[r] : offsets[r + 1]])
        np.testing.assert_allclose(theta[r], want.numpy(), rtol=1e-9, atol=1e-9)


def test_rows_end_where_they_would_alone() -> None:
    x, rows, t = _data(1)
    batch = gauss_newton_rows(_problem(x, rows, t, link=True), _problem(x, rows, t).prior)
    offsets = np.cumsum([0] + [len(r) for r in rows])
    for r, items in enumerate(rows):
        alone = _problem(x, [items], t[offsets[r] : offsets[r + 1]], link=True)
        np.testing.assert_allclose(
            gauss_newton_rows(alone, alone.prior.copy())[0], batch[r], rtol=1e-12, atol=1e-12
        )


def test_nonlinear_solution_is_stationary() -> None:
    x, rows, t = _data(2)
    problem = _problem(x, rows, 2.0 + t.clamp(-1.5, 1.5), link=True)

    def loss_at(theta: np.ndarray) -> np.ndarray:
        return problem.loss(theta, problem.jacobian(theta)[0])

    def grad_at(theta: np.ndarray) -> float:
        f, jac = problem.jacobian(theta)
        return float(np.abs(problem.gradient(theta, f, jac)).max())

    default = gauss_newton_rows(problem, problem.prior.copy(), max_iter=50)
    solved = gauss_newton_rows(
        problem, problem.prior.copy(), max_iter=50, pred_tol=0.0, loss_tol=1e-10
    )
    # Run to the end: stopped by the loss test (a relative decrease under 1e-10).
    assert grad_at(solved) < 1e-4 < 1e-3 * grad_at(problem.prior)
    # The default stops once a step promises under 1e-4 of the loss, or gains under 3e-4 of it.
    assert np.all(loss_at(default) - loss_at(solved) <= 1e-3 * loss_at(solved))


def test_leave_one_out_is_exact_for_a_linear_model() -> None:
    """The weights equal the score changes of refits without each rating (Cook's formula)."""
    x, rows, t = _data(3)
    problem = _problem(x, rows, t)
    theta = gauss_newton_rows(problem, problem.prior.copy(), max_iter=30)
    k, lev_e = leave_one_out(problem, theta)
    targets = torch.tensor([2, 11])
    offsets = np.cumsum([0] + [len(r) for r in rows])
    for r, items in enumerate(rows):
        tr = t[offsets[r] : offsets[r + 1]]
        score, grad = _target_jacobian(lambda th: (th * x[targets]).sum(1), theta[r], 2)
        weights = -(grad[:, None, :] @ k[r])[:, 0, : len(items)] * lev_e[r, : len(items)]
        for m in range(len(items)):
            keep = [q for q in range(len(items)) if q != m]
            refit = _ridge(x, [items[q] for q in keep], tr[keep])
            drop = score - (x[targets] @ refit).numpy()
            np.testing.assert_allclose(weights[:, m], drop, rtol=1e-8, atol=1e-10)


def test_leave_one_out_tracks_refits_through_a_link() -> None:
    x, rows, t = _data(4)
    tt = 2.0 + t.clamp(-1.5, 1.5)
    problem = _problem(x, rows, tt, link=True)
    theta = gauss_newton_rows(problem, problem.prior.copy(), max_iter=50)
    k, lev_e = leave_one_out(problem, theta)
    items = rows[2]
    target = torch.tensor([1])

    def scored(th: torch.Tensor) -> torch.Tensor:
        return 4.0 * torch.sigmoid((th * x[target]).sum(1))

    score, grad = _target_jacobian(scored, theta[2], 1)
    weights = (-(grad[:, None, :] @ k[2])[:, 0, : len(items)] * lev_e[2, : len(items)])[0]
    drops = []
    for m in range(len(items)):
        keep = [q for q in range(len(items)) if q != m]
        alone = _problem(x, [[items[q] for q in keep]], tt[8:][keep], link=True)
        refit = gauss_newton_rows(alone, alone.prior.copy(), max_iter=50)
        drops.append(float(score[0] - scored(torch.from_numpy(refit))[0]))
    # First order through the sigmoid: the ranking and the sizes (within 15%), not the digits.
    assert np.corrcoef(weights, drops)[0, 1] > 0.99
    np.testing.assert_allclose(weights, drops, rtol=0.15, atol=0.01)
