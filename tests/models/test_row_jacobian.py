"""Closed-form pair outputs and Jacobians in the user row (recforge.models._row_jacobian) equal
autograd's, for every network that states them; fitted models solve through them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from recforge.models.embedding_net import EmbeddingNetModule
from recforge.models.ncf import GMF, NCFMLP, NeuMF
from recforge.models.neural import OutputHead, _UserRows
from recforge.models.registry import create
from recforge.models.two_tower import TwoTowerNet
from recforge.testing import planted_explicit
from recforge.train.gauss_newton import autograd_jacobian

N_USERS, N_ITEMS = 7, 23

NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "gmf": lambda: GMF(N_USERS, N_ITEMS, 5),
    "ncf_mlp": lambda: NCFMLP(N_USERS, N_ITEMS, (10, 8, 6, 4)),
    "neumf": lambda: NeuMF(N_USERS, N_ITEMS, 4, (8, 6)),
    "embedding_net": lambda: EmbeddingNetModule(N_USERS, N_ITEMS, 5, (9, 7), (0.2,)),
    "two_tower": lambda: TwoTowerNet(N_USERS, N_ITEMS, 6, (8, 5)),
    "two_tower_bias": lambda: TwoTowerNet(N_USERS, N_ITEMS, 6, (8, 7, 5), use_bias=True),
    "two_tower_cosine": lambda: TwoTowerNet(N_USERS, N_ITEMS, 6, (8, 5), normalize=True),
    "two_tower_linear": lambda: TwoTowerNet(N_USERS, N_ITEMS, 6, (5,), use_bias=True),
    "two_tower_features": lambda: TwoTowerNet(
        N_USERS,
        N_ITEMS,
        6,
        (8, 5),
        item_features=(torch.rand(N_ITEMS, 4) > 0.5).float(),
        use_bias=True,
    ),
}


def _randomised(net: nn.Module) -> nn.Module:
    # Initial weights leave most ReLUs in one state; random ones cross kinks in every layer.
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.7)
    return net


@pytest.mark.parametrize("y_range", [None, (0.5, 5.5)])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_closed_form_matches_autograd(name: str, y_range: tuple[float, float] | None) -> None:
    head = OutputHead(_randomised(NETWORKS[name]()), N_ITEMS, y_range=y_range, offset=0.3)
    rows = _UserRows(head, head.user_param_names)
    n_rows, n_pairs = 3, 40
    rng = np.random.default_rng(1)
    # Unsorted rows, one row without pairs, items repeated: the layouts a batch can have.
    row = rng.integers(0, n_rows - 1, n_pairs)
    items = rng.integers(0, N_ITEMS, n_pairs)
    theta = rng.normal(size=(n_rows, rows.start.shape[1]))

    def outputs(copies: torch.Tensor) -> torch.Tensor:
        rows.set(copies)
        out: torch.Tensor = rows.module(torch.arange(len(copies)), torch.from_numpy(items))
        return out

    closed = rows.module.row_jacobian(items, row)
    assert closed is not None
    f_auto, j_auto = autograd_jacobian(outputs, row)(theta)
    f_closed, j_closed = closed(theta)
    np.testing.assert_allclose(f_closed, f_auto, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(j_closed, j_auto, rtol=1e-10, atol=1e-12)
    assert np.abs(j_auto).max() > 1e-3  # not vacuous


def test_head_without_closed_form_says_so() -> None:
    class Dot(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.user_emb = nn.Embedding(N_USERS, 3)
            self.item_emb = nn.Embedding(N_ITEMS, 3)

        def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
            return (self.user_emb(u) * self.item_emb(i)).sum(-1)

    head = OutputHead(Dot(), N_ITEMS, y_range=None, offset=0.0)
    assert head.row_jacobian(np.array([0]), np.array([0])) is None


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("ncf", {"variant": "neumf"}),
        ("ncf", {"variant": "gmf"}),
        ("embedding_net", {}),
        ("two_tower", {}),
    ],
)
def test_fitted_models_solve_in_closed_form(name: str, cfg: dict[str, Any]) -> None:
    """The served fold-in takes the closed form, and its solution is autograd's."""
    model = create(name, {"verbose": False, "seed": 0, "epochs": 2, **cfg})
    model.fit(planted_explicit(3).train)
    items = np.array([0, 3, 5, 8, 13], dtype=np.int64)
    target = torch.tensor([[5.0, 1.0, 4.0, 2.0, 3.0]], dtype=torch.float64)
    ls = model.least_squares_rows(torch.from_numpy(items)[None], target, torch.ones(1, 5).bool())
    theta = model.solve_least_squares(ls)
    closed = ls.problem.jacobian
    assert "autograd_jacobian" not in closed.__qualname__
    rows = ls.problem.row

    def outputs(copies: torch.Tensor) -> torch.Tensor:
        return ls.pair_scores(copies, torch.from_numpy(ls.pair_items))

    f_closed, j_closed = closed(theta)
    f_auto, j_auto = autograd_jacobian(outputs, rows)(theta)
    np.testing.assert_allclose(f_closed, f_auto, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(j_closed, j_auto, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", ["ncf_mlp", "neumf", "embedding_net"])
def test_frozen_item_half_scores_as_the_network(name: str) -> None:
    """A fold-in copy computes W_i q_i once; its full scoring is the trained network's."""
    head = OutputHead(_randomised(NETWORKS[name]()), N_ITEMS, y_range=None, offset=0.0)
    rows = _UserRows(head, head.user_param_names)  # freezes the item side of its copy
    inner = rows.module.inner
    frozen = getattr(inner, "mlp", inner)._frozen_item_part
    assert frozen is not None
    theta = torch.from_numpy(np.random.default_rng(2).normal(size=(2, rows.start.shape[1])))
    rows.set(theta)
    got = rows.module.score_all(torch.arange(2))
    want = torch.stack(
        [rows.module(torch.full((N_ITEMS,), r), torch.arange(N_ITEMS)) for r in range(2)]
    )
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
