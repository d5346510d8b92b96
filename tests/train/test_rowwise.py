"""Row-wise fold-in: one batched optimisation gives every row the result it gets alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recforge.models.neural import NeuralRecommender
from recforge.models.registry import create
from recforge.testing import planted_explicit, planted_implicit
from recforge.train.rowwise import adam_rows, lbfgs_rows


def _problem(rows: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row ridge regressions ``‖A_r w − b_r‖² + ‖w‖²`` of different conditioning."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(rows, 12, 5, generator=g, dtype=torch.float64)
    a = a * torch.linspace(0.2, 3.0, rows, dtype=torch.float64)[:, None, None]
    b = torch.randn(rows, 12, generator=g, dtype=torch.float64)
    exact = torch.linalg.solve(
        a.transpose(1, 2) @ a + torch.eye(5, dtype=torch.float64), a.transpose(1, 2) @ b[..., None]
    )[..., 0]
    return a, b, exact


def _solve(a: torch.Tensor, b: torch.Tensor, how: str) -> torch.Tensor:
    w = torch.zeros(a.shape[0], 5, dtype=torch.float64, requires_grad=True)

    def objective() -> torch.Tensor:
        # A non-quadratic term too (log-cosh), so the line search and curvature pairs matter.
        r = (a @ w[..., None])[..., 0] - b
        return r.pow(2).sum(1) + w.pow(2).sum(1) + torch.log(torch.cosh(w)).sum(1)

    if how == "lbfgs":
        lbfgs_rows([w], objective, max_iter=50, tolerance_grad=1e-10, tolerance_change=1e-12)
    else:
        adam_rows([w], objective, steps=300, lr=0.05)
    return w.detach()


@pytest.mark.parametrize("how", ["lbfgs", "adam"])
def test_a_batch_of_rows_ends_where_each_row_ends_alone(how: str) -> None:
    a, b, _ = _problem(7)
    batch = _solve(a, b, how)
    alone = torch.cat([_solve(a[r : r + 1], b[r : r + 1], how) for r in range(7)])
    assert torch.allclose(batch, alone, atol=1e-9, rtol=0)


def test_lbfgs_rows_reaches_each_rows_minimum() -> None:
    a, b, exact = _problem(5, seed=1)
    w = torch.zeros(5, 5, dtype=torch.float64, requires_grad=True)

    def objective() -> torch.Tensor:
        return ((a @ w[..., None])[..., 0] - b).pow(2).sum(1) + w.pow(2).sum(1)

    lbfgs_rows([w], objective, max_iter=50, tolerance_grad=1e-10, tolerance_change=1e-12)
    assert torch.allclose(w.detach(), exact, atol=1e-7)


def _row(rows: sp.csr_matrix, r: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = rows.indptr[r], rows.indptr[r + 1]
    return rows.indices[lo:hi].astype(np.int64), rows.data[lo:hi].astype(np.float32)


@pytest.mark.parametrize(
    ("name", "config", "explicit", "atol"),
    [
        ("embedding_net", {"epochs": 3}, True, 1e-6),
        ("ncf", {"epochs": 3}, True, 1e-6),
        ("two_tower", {"epochs": 3}, True, 1e-6),
        ("ncf", {"epochs": 2}, False, 1e-6),
        ("two_tower", {"epochs": 2}, False, 1e-6),
    ],
)
def test_batched_gradient_fold_in_matches_one_user_at_a_time(
    name: str, config: dict[str, Any], explicit: bool, atol: float
) -> None:
    data = planted_explicit(0) if explicit else planted_implicit(0)
    model = create(name, config).fit(data.train)
    assert isinstance(model, NeuralRecommender)
    before = {n: p.detach().clone() for n, p in model._module().named_parameters()}
    rows = sp.csr_matrix(model.seen_[:8])
    # An occlusion block too: a history and each of its drop-one histories share their items.
    idx, vals = _row(rows, 0)
    keep = ~np.eye(len(idx), dtype=bool)
    drop = sp.csr_matrix(
        (
            np.broadcast_to(vals, keep.shape)[keep],
            np.broadcast_to(idx, keep.shape)[keep],
            np.arange(len(idx) + 1) * (len(idx) - 1),
        ),
        shape=(len(idx), model.n_items),
    )
    rows = sp.vstack([rows, drop], format="csr")
    batch = model.fold_in_scores_batch(rows)
    alone = np.stack([model.fold_in_scores(*_row(rows, r)) for r in range(rows.shape[0])])
    assert batch.shape == (rows.shape[0], model.n_items)
    np.testing.assert_allclose(batch, alone, atol=atol, rtol=0)
    # The fold-in fits fresh rows only: the trained network is untouched and gets no gradient.
    for n, p in model._module().named_parameters():
        assert torch.equal(p.detach(), before[n]), n
        assert p.grad is None, n
    # And it is a fit: closer to the user's ratings than the average user (explicit models).
    if explicit:
        avg = model.fold_in_scores(np.zeros(0, np.int64), np.zeros(0, np.float32))
        assert np.sum((alone[0, idx] - vals) ** 2) < np.sum((avg[idx] - vals) ** 2)
