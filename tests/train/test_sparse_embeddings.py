"""Sparse embedding updates: a SparseAdam step touches only the rows of its batch.

``optimizer = "sparse_adam"`` makes every ``nn.Embedding`` emit sparse gradients (only the rows a
batch looked up) and updates them with ``torch.optim.SparseAdam``; dense parameters (MLP layers)
get Adam. Dense Adam, by contrast, moves every row that *ever* had a gradient on every step
(momentum), i.e. the whole table once training is under way.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.models import create
from recforge.models.mf import BiasedDotModule
from recforge.testing import planted_explicit, rating_rmse
from recforge.train.trainer import build_optimizers


def _step(module: nn.Module, opts: list[torch.optim.Optimizer], users: list[int], items: list[int]):
    u = torch.tensor(users)
    i = torch.tensor(items)
    loss = (module(u, i) - 4.0).pow(2).mean()
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    grad = module.user_emb.weight.grad
    for opt in opts:
        opt.step()
    return grad


def _changed_rows(before: torch.Tensor, after: torch.Tensor) -> set[int]:
    return set(torch.nonzero((before != after).any(dim=1)).flatten().tolist())


def test_sparse_adam_step_touches_only_the_batch_rows() -> None:
    torch.manual_seed(0)
    module = BiasedDotModule(20, 15, 4, init_std=0.1)
    cfg = TrainConfig(optimizer="sparse_adam", lr=0.05, weight_decay=0.0)
    opts = build_optimizers(module, cfg)
    assert [type(o).__name__ for o in opts] == ["SparseAdam"]  # every parameter is a table
    assert module.user_emb.sparse and module.item_bias.sparse

    w0 = module.user_emb.weight.detach().clone()
    grad = _step(module, opts, [1, 2, 2], [3, 4, 5])
    assert grad is not None and grad.is_sparse
    assert set(grad.coalesce().indices().flatten().tolist()) == {1, 2}
    w1 = module.user_emb.weight.detach().clone()
    assert _changed_rows(w0, w1) == {1, 2}

    # Second step on other users: rows 1 and 2 stay put (no momentum update of absent rows).
    _step(module, opts, [7], [3])
    w2 = module.user_emb.weight.detach().clone()
    assert _changed_rows(w1, w2) == {7}


def test_dense_adam_keeps_moving_rows_outside_the_batch() -> None:
    # The contrast that makes sparse updates worth having on big tables.
    torch.manual_seed(0)
    module = BiasedDotModule(20, 15, 4, init_std=0.1)
    opts = build_optimizers(module, TrainConfig(optimizer="adam", lr=0.05))
    _step(module, opts, [1, 2, 2], [3, 4, 5])
    w1 = module.user_emb.weight.detach().clone()
    grad = _step(module, opts, [7], [3])
    assert grad is not None and not grad.is_sparse
    assert _changed_rows(w1, module.user_emb.weight.detach()) == {1, 2, 7}


def test_sparse_adam_splits_dense_layers_to_adam() -> None:
    model = create("ncf", verbose=False, optimizer="sparse_adam", weight_decay=0.0, epochs=1)
    data = planted_explicit(0)
    model.fit(data.train)  # builds the module
    opts = build_optimizers(model.module_, model.config)  # type: ignore[arg-type]
    names = [type(o).__name__ for o in opts]
    assert names == ["SparseAdam", "Adam"]
    sparse_ids = {id(p) for p in opts[0].param_groups[0]["params"]}
    dense_ids = {id(p) for p in opts[1].param_groups[0]["params"]}
    assert not sparse_ids & dense_ids
    embeddings = {id(m.weight) for m in model.module_.modules() if isinstance(m, nn.Embedding)}
    assert sparse_ids == embeddings


@pytest.mark.parametrize("name", ["biased_mf", "ncf", "two_tower"])
def test_sparse_adam_learns_planted_structure(name: str) -> None:
    data = planted_explicit(0)
    baseline = rating_rmse(create("global_mean").fit(data.train), data.test)
    model = create(
        name, verbose=False, optimizer="sparse_adam", weight_decay=0.0, lr=0.01, epochs=10
    ).fit(data.train)
    assert rating_rmse(model, data.test) < 0.9 * baseline
