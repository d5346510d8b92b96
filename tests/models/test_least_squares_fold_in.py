"""The squared error's fold-in as least squares (NCF, embedding net, two-tower): one solve
serves fold-ins and leave-one-out explanations; Gauss-Newton is an optimizer choice."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recforge.errors import ConfigError
from recforge.explain import occlusion
from recforge.models.registry import create
from recforge.testing import planted_explicit, planted_implicit

FAMILIES = [
    ("ncf", {"epochs": 3}),
    ("embedding_net", {"epochs": 3}),
    ("two_tower", {"epochs": 3}),
]


def _fit(name: str, **cfg: Any) -> Any:
    return create(name, {"verbose": False, "seed": 0, **cfg}).fit(planted_explicit(2).train)


def _history(model: Any, u: int) -> tuple[np.ndarray, np.ndarray]:
    seen = model.seen_
    lo, hi = int(seen.indptr[u]), int(seen.indptr[u + 1])
    return seen.indices[lo:hi].astype(np.int64), np.asarray(
        model.seen_ratings_[lo:hi], dtype=np.float32
    )


@pytest.mark.parametrize(("name", "cfg"), FAMILIES)
def test_leave_one_out_tracks_occlusion(name: str, cfg: dict[str, Any]) -> None:
    """The one-solve weights rank the history as drop-one refits do, and score as the fold-in."""
    model = _fit(name, **cfg)
    items, ratings = _history(model, 0)
    row = _row(model, items, ratings)
    fold = model.fold_in_scores(items, ratings)
    targets = np.argsort(-fold)[:3]
    attr = model.explain_rows(row, np.zeros(3, np.int64), targets)
    assert attr.method == "leave_one_out"
    np.testing.assert_allclose(attr.score, fold[targets], rtol=1e-5, atol=1e-5)
    exact = occlusion(model, row, np.zeros(3, np.int64), targets)
    for got, want in zip(attr.weights, exact.weights, strict=True):
        assert np.corrcoef(got, want)[0, 1] > 0.9


def _row(model: Any, items: np.ndarray, ratings: np.ndarray) -> Any:
    import scipy.sparse as sp

    return sp.csr_matrix((ratings, items, [0, len(items)]), shape=(1, model.n_items))


@pytest.mark.parametrize(("name", "cfg"), FAMILIES[:2])
def test_gauss_newton_reaches_the_lbfgs_fold_in(name: str, cfg: dict[str, Any]) -> None:
    model = _fit(name, **cfg)
    items, ratings = _history(model, 1)
    lbfgs = model.fold_in_scores(items, ratings)
    model.config = model.config.model_copy(
        update={"fold_in_optimizer": "gauss_newton", "fold_in_steps": 50}
    )
    newton = model.fold_in_scores(items, ratings)
    np.testing.assert_allclose(newton, lbfgs, atol=5e-3)


def test_gauss_newton_needs_the_squared_error() -> None:
    model = create("ncf", {"verbose": False, "epochs": 1, "fold_in_optimizer": "gauss_newton"}).fit(
        planted_implicit(0).train
    )
    with pytest.raises(ConfigError, match="gauss_newton"):
        model.fold_in_scores(np.array([0, 1, 2]), np.ones(3, np.float32))


def test_one_solve_serves_the_fold_in_and_its_explanation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new user's ranking and explanation share one solve; new weights invalidate it."""
    import torch

    import recforge.models.neural as neural

    solves: list[int] = []
    real = neural.gauss_newton_rows

    def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
        solves.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(neural, "gauss_newton_rows", counted)
    model = _fit("ncf", epochs=2)
    items, ratings = _history(model, 2)
    first = model.fold_in_scores(items, ratings)
    targets = np.argsort(-first)[:2]
    attr = model.explain_rows(_row(model, items, ratings), np.zeros(2, np.int64), targets)
    np.testing.assert_allclose(attr.score, first[targets], rtol=1e-6)
    np.testing.assert_array_equal(model.fold_in_scores(items, ratings), first)
    assert len(solves) == 1
    with torch.no_grad():  # an in-place update (a training step) bumps the weights' version
        next(model._module().parameters()).mul_(1.5)
    assert not np.allclose(model.fold_in_scores(items, ratings), first)
    assert len(solves) == 2
