"""The parts Trainer.fit calls, each on its own: early stopping, precision, data parallelism,
checkpoint bookkeeping and one optimisation step."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.errors import ConfigError, ModelFitError
from recforge.train import RatingMSE, Schedule, Trainer
from recforge.train.checkpoint import CheckpointPolicy, FitCheckpointer
from recforge.train.distributed import DataParallel, DistInfo, shard_indices
from recforge.train.early_stopping import EarlyStopping
from recforge.train.precision import autocast
from recforge.train.trainer import _Checkpoints, _Epoch, _LoopState, build_optimizers

from .toys import ToyMF


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = {"epochs": 4, "batch_size": 8, "lr": 0.1, "verbose": False}
    base.update(kw)
    return TrainConfig.model_validate(base)


# ---------------------------------------------------------------------- early stopping
def _stopper(mode: str = "min", min_delta: float = 0.0, patience: int = 2) -> EarlyStopping:
    # valid_loss is a "min" metric (the config refuses max for it); the part itself is generic.
    stop = EarlyStopping.from_config(
        _cfg(patience=patience, monitor="valid_loss", min_delta=min_delta)
    )
    stop.mode = "max" if mode == "max" else "min"
    return stop


def test_early_stopping_counts_stale_epochs_and_keeps_the_best_weights() -> None:
    module = nn.Linear(1, 1)
    stop = _stopper(patience=2)
    with torch.no_grad():
        module.weight.fill_(1.0)
    assert not stop.update(1, {"valid_loss": 0.5}, module)
    with torch.no_grad():
        module.weight.fill_(2.0)
    assert not stop.update(2, {"valid_loss": 0.7}, module)  # worse: stale 1
    assert (stop.best_epoch, stop.best_score, stop.stale) == (1, 0.5, 1)
    assert stop.update(3, {"valid_loss": 0.5}, module)  # equal is not better: stale 2 -> stop
    assert stop.restore(module)
    assert module.weight.item() == 1.0  # epoch 1's weights, not the copy's later edits


def test_improvement_resets_the_stale_count() -> None:
    module = nn.Linear(1, 1)
    stop = _stopper(patience=2)
    for epoch, loss in enumerate([1.0, 1.1, 0.9, 1.2], start=1):
        assert not stop.update(epoch, {"valid_loss": loss}, module)
    assert (stop.best_epoch, stop.stale) == (3, 1)


def test_max_mode_and_min_delta() -> None:
    module = nn.Linear(1, 1)
    stop = _stopper(mode="max", min_delta=0.1, patience=1)
    assert not stop.update(1, {"valid_loss": 0.5}, module)
    assert stop.is_better(0.61, 0.5) and not stop.is_better(0.6, 0.5)
    assert not stop.is_better(0.4, 0.5)
    assert stop.update(2, {"valid_loss": 0.55}, module)  # +0.05 < min_delta: stale -> stop
    low = _stopper(mode="min", min_delta=0.1)
    assert low.is_better(0.39, 0.5) and not low.is_better(0.45, 0.5)


def test_restore_without_a_best_is_false_and_bad_rows_are_refused() -> None:
    stop = _stopper()
    assert not stop.restore(nn.Linear(1, 1))
    with pytest.raises(ConfigError, match="not a history column"):
        stop.update(1, {"train_loss": 1.0}, nn.Linear(1, 1))
    with pytest.raises(ModelFitError, match="NaN"):
        stop.update(1, {"valid_loss": math.nan}, nn.Linear(1, 1))
    with pytest.raises(ConfigError, match="patience"):
        EarlyStopping.from_config(_cfg())


# ---------------------------------------------------------------------- precision
def test_autocast_is_a_no_op_for_fp32_and_bf16_on_request() -> None:
    x = torch.randn(4, 4)
    with autocast(torch.device("cpu"), "fp32"):
        assert (x @ x).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="precision"):
        autocast(torch.device("cpu"), "fp8")


# ---------------------------------------------------------------------- data parallelism
def test_single_process_takes_every_row_in_one_permutation() -> None:
    alone = DataParallel(None, seed=3)
    assert alone.writes and alone.rows_per_epoch(10) == 10 and alone.local_batch(8) == 8
    order = alone.epoch_order(10, 0, torch.Generator().manual_seed(3), torch.device("cpu"), print)
    assert torch.equal(order, torch.randperm(10, generator=torch.Generator().manual_seed(3)))
    assert alone.mean_loss(torch.tensor(6.0, dtype=torch.float64), 4) == 1.5
    assert alone.agree(True, False) == [True, False]


def test_a_rank_takes_its_shard_and_reseeds_per_epoch() -> None:
    info = DistInfo(rank=1, world_size=3, local_rank=1, backend="gloo", device=torch.device("cpu"))
    rank = DataParallel(info, seed=3)
    assert not rank.writes
    assert rank.rows_per_epoch(10) == 4  # ceil(10 / 3)
    assert rank.local_batch(8) == 3  # ceil(8 / 3): the global batch stays 8
    seeds: list[int] = []
    gen = torch.Generator().manual_seed(0)
    order = rank.epoch_order(10, 2, gen, torch.device("cpu"), seeds.append)
    assert torch.equal(order, shard_indices(10, 3, 2, 1, 3))
    again: list[int] = []
    rank.epoch_order(10, 3, gen, torch.device("cpu"), again.append)
    assert len(seeds) == 1 and seeds != again  # a new stream per epoch


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_bookkeeping(tmp_path: Path) -> None:
    none = _Checkpoints(None, DataParallel(None, 0))
    assert none.load() is None and not none.due(2, 4) and not none.writes
    policy = CheckpointPolicy(tmp_path, every_epochs=2)
    some = _Checkpoints(FitCheckpointer(policy, 0, {"x": 1}), DataParallel(None, 0))
    assert some.writes and some.fingerprint == {"x": 1}
    assert [some.due(e, 6) for e in range(1, 7)] == [False, True, False, True, False, False]
    info = DistInfo(rank=1, world_size=2, local_rank=1, backend="gloo", device=torch.device("cpu"))
    other_rank = _Checkpoints(FitCheckpointer(policy, 0, {}), DataParallel(info, 0))
    assert not other_rank.writes


# ---------------------------------------------------------------------- one epoch, one step
def _epoch(cfg: TrainConfig, module: nn.Module) -> _Epoch:
    g = np.random.default_rng(0)
    data = {
        "user": torch.from_numpy(g.integers(0, 30, 40)),
        "item": torch.from_numpy(g.integers(0, 20, 40)),
        "rating": torch.from_numpy(g.normal(3, 1, 40).astype(np.float32)),
    }
    objective = RatingMSE()
    return _Epoch(
        module, objective, build_optimizers(module, cfg), Schedule.from_config(cfg, 5), data,
        8, 5, DataParallel(None, 0), torch.device("cpu"), cfg,
        compute_loss=lambda batch: objective(module, batch),
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip


def test_an_epoch_runs_every_step_and_returns_the_mean_loss() -> None:
    module = ToyMF()
    runner = _epoch(_cfg(), module)
    loop = _LoopState()
    ticks: list[int] = []
    loss, lr = runner.run(0, loop, lambda n, desc=None: ticks.append(n))
    assert loop.step == 5 and ticks == [1] * 5
    assert lr == pytest.approx(0.1) and math.isfinite(loss) and loss > 0
    assert runner.n_rows == 40


def test_a_step_clips_the_gradient_norm() -> None:
    module = ToyMF()
    runner = _epoch(_cfg(grad_clip=1e-3, optimizer="sgd", momentum=0.0, lr=1.0), module)
    before = [p.detach().clone() for p in runner.params]
    batch = {k: v[:8] for k, v in runner.tensors.items()}
    runner.step(batch)
    moved = torch.cat(
        [(p.detach() - b).reshape(-1) for p, b in zip(runner.params, before, strict=True)]
    )
    # SGD with lr 1: the update is the clipped gradient, whose global norm is at most 1e-3.
    assert 0 < float(moved.norm()) <= 1e-3 * (1 + 1e-4)


def test_the_loop_uses_the_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fit stops where EarlyStopping says, whatever the metric: the loop delegates to it.
    calls: list[int] = []

    def update(self: EarlyStopping, epoch: int, row: object, module: nn.Module) -> bool:
        calls.append(epoch)
        self.best_epoch = epoch
        return epoch == 2

    monkeypatch.setattr(EarlyStopping, "update", update)
    result = Trainer(_cfg(epochs=5, patience=1)).fit(
        ToyMF(),
        {k: v for k, v in _epoch(_cfg(), ToyMF()).tensors.items()},
        RatingMSE(),
        validate=lambda m: {"valid_loss": 1.0},
    )
    assert calls == [1, 2] and result.stopped_early and len(result.history) == 2
