"""Trainer checkpoints: file format (no pickle), optimizer flattening, exact in-process resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from recforge.config import TrainConfig
from recforge.errors import ConfigError, DataError
from recforge.train import BPR, Trainer, rating_validator
from recforge.train.checkpoint import (
    CheckpointPolicy,
    current_context,
    flatten_optimizer,
    load_train_state,
    training_context,
    unflatten_optimizer,
)
from recforge.train.losses import Batch, Objective
from recforge.train.sampling import NegativeSampler

from .toys import ToyMF


class Crash(RuntimeError):
    """Stands in for a SIGKILL in the in-process tests."""


class CrashingBPR(Objective):
    """BPR with a negative sampler that raises on the first batch of epoch ``crash_at``."""

    def __init__(self, sampler: NegativeSampler, crash_at: int | None) -> None:
        self.sampler = sampler
        self.inner = BPR(sampler, n_negatives=2)
        self.crash_at = crash_at
        self.epoch = -1

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        if self.epoch == self.crash_at:
            raise Crash
        return self.inner(module, batch)


def _pairs() -> dict[str, torch.Tensor]:
    g = np.random.default_rng(0)
    u = g.integers(0, 30, 400)
    i = g.integers(0, 20, 400)
    return {"user": torch.from_numpy(u), "item": torch.from_numpy(i)}


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "epochs": 6,
        "batch_size": 64,
        "lr": 0.05,
        "seed": 3,
        "verbose": False,
        "device": "cpu",
        "schedule": "one_cycle",  # depends on the global step: a wrong resume step shows
    }
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _fit(cfg: TrainConfig, crash_at: int | None = None) -> tuple[nn.Module, object]:
    data = _pairs()
    sampler = NegativeSampler(data["user"].numpy(), data["item"].numpy(), 30, 20, seed=5)
    module = ToyMF(dropout=0.3)
    result = Trainer(cfg).fit(module, data, CrashingBPR(sampler, crash_at))
    return module, result


def _same_weights(a: nn.Module, b: nn.Module) -> None:
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), k


@pytest.mark.parametrize("optimizer", ["adam", "sparse_adam", "sgd"])
def test_resume_after_a_crash_is_bit_identical(tmp_path: Path, optimizer: str) -> None:
    cfg = _cfg(optimizer=optimizer)
    ref, ref_result = _fit(cfg)
    policy = CheckpointPolicy(tmp_path, every_epochs=2)
    with training_context(checkpoints=policy), pytest.raises(Crash):
        _fit(cfg, crash_at=3)  # dies during epoch 4: the last checkpoint is after epoch 2
    state = load_train_state(tmp_path / "fit-000.safetensors")
    assert (state.epoch, state.complete, len(state.rows)) == (2, False, 2)
    assert state.objective["sampler"]["bit_generator"] == "PCG64"
    resumed_policy = CheckpointPolicy(tmp_path, every_epochs=2, resume=True)
    with training_context(checkpoints=resumed_policy):
        again, result = _fit(cfg)
    _same_weights(ref, again)
    hist, ref_hist = result.history, ref_result.history  # type: ignore[attr-defined]
    assert hist["epoch"].tolist() == list(range(1, 7))
    assert hist["train_loss"].tolist() == ref_hist["train_loss"].tolist()
    assert hist["lr"].tolist() == ref_hist["lr"].tolist()
    done = load_train_state(tmp_path / "fit-000.safetensors")
    assert done.complete and done.epoch == 6


def test_completed_checkpoint_skips_training(tmp_path: Path) -> None:
    cfg = _cfg()
    with training_context(checkpoints=CheckpointPolicy(tmp_path, every_epochs=1)):
        ref, _ = _fit(cfg)
    # A crashing objective proves no batch runs: the finished fit is only loaded.
    with training_context(checkpoints=CheckpointPolicy(tmp_path, resume=True)):
        again, result = _fit(cfg, crash_at=0)
    _same_weights(ref, again)
    assert len(result.history) == 6  # type: ignore[attr-defined]


def test_early_stopping_state_survives_a_resume(tmp_path: Path) -> None:
    g = np.random.default_rng(1)
    u, i = g.integers(0, 30, 300), g.integers(0, 20, 300)
    r = torch.from_numpy(g.normal(3, 1, 300)).float()
    data = {"user": torch.from_numpy(u), "item": torch.from_numpy(i), "rating": r}
    vu, vi = torch.from_numpy(g.integers(0, 30, 80)), torch.from_numpy(g.integers(0, 20, 80))
    valid = rating_validator(vu, vi, torch.from_numpy(g.normal(3, 1, 80)).float())
    cfg = _cfg(epochs=12, patience=2, schedule="constant", lr=0.3)

    class MSE(Objective):
        crash_at: int | None = None
        epoch = -1

        def start_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
            if self.epoch == self.crash_at:
                raise Crash
            return ((module(batch["user"], batch["item"]) + 3 - batch["rating"]) ** 2).mean()

    ref = ToyMF(dropout=0.3)
    ref_res = Trainer(cfg).fit(ref, data, MSE(), validate=valid)
    assert ref_res.stopped_early  # the planted noise makes the model overfit quickly
    crash = MSE()
    crash.crash_at = ref_res.best_epoch  # after the best epoch: best_state must be restored
    with (
        training_context(checkpoints=CheckpointPolicy(tmp_path, every_epochs=1)),
        pytest.raises(Crash),
    ):
        Trainer(cfg).fit(ToyMF(dropout=0.3), data, crash, validate=valid)
    again = ToyMF(dropout=0.3)
    with training_context(checkpoints=CheckpointPolicy(tmp_path, resume=True)):
        res = Trainer(cfg).fit(again, data, MSE(), validate=valid)
    _same_weights(ref, again)
    assert (res.best_epoch, res.best_score, res.stopped_early) == (
        ref_res.best_epoch,
        ref_res.best_score,
        True,
    )


def test_checkpoint_file_is_safetensors_with_json_metadata(tmp_path: Path) -> None:
    with (
        training_context(checkpoints=CheckpointPolicy(tmp_path, every_epochs=1)),
        pytest.raises(Crash),
    ):
        _fit(_cfg(), crash_at=2)
    path = tmp_path / "fit-000.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        keys = set(fh.keys())
        meta = json.loads((fh.metadata() or {})["recforge.checkpoint"])
    assert {"module.p.weight", "rng.torch", "rng.perm", "opt0.0.exp_avg"} <= keys
    assert meta["epoch"] == 2 and meta["step"] == 2 * 7  # 400 rows / 64 = 7 batches per epoch
    assert [r["epoch"] for r in meta["rows"]] == [1, 2]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_resume_refuses_another_runs_checkpoint(tmp_path: Path) -> None:
    with (
        training_context(checkpoints=CheckpointPolicy(tmp_path, every_epochs=1)),
        pytest.raises(Crash),
    ):
        _fit(_cfg(), crash_at=2)
    with (
        training_context(checkpoints=CheckpointPolicy(tmp_path, resume=True)),
        pytest.raises(ConfigError, match="config"),
    ):
        _fit(_cfg(lr=0.01))


def test_corrupt_checkpoint_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "fit-000.safetensors").write_bytes(b"\x80\x04garbage")  # a pickle header
    with (
        training_context(checkpoints=CheckpointPolicy(tmp_path, resume=True)),
        pytest.raises(DataError, match="unreadable checkpoint"),
    ):
        _fit(_cfg())


def test_optimizer_state_round_trips_through_flattening() -> None:
    p = nn.Parameter(torch.randn(5, 3))
    opt = torch.optim.Adam([p], lr=0.1, betas=(0.8, 0.9))
    p.sum().backward()  # type: ignore[no-untyped-call]
    opt.step()
    tensors, meta = flatten_optimizer(opt.state_dict(), "opt0")
    assert set(tensors) == {"opt0.0.step", "opt0.0.exp_avg", "opt0.0.exp_avg_sq"}
    restored = unflatten_optimizer(tensors, json.loads(json.dumps(meta)), "opt0")
    assert torch.equal(restored["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert restored["param_groups"][0]["betas"] == [0.8, 0.9]


def test_context_is_scoped_and_numbers_fits() -> None:
    assert current_context() is None
    with training_context() as ctx:
        assert current_context() is ctx
        assert [ctx.next_fit(), ctx.next_fit()] == [0, 1]
    assert current_context() is None


def test_policy_validates_its_cadence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        CheckpointPolicy(tmp_path, every_epochs=0)
    with pytest.raises(ConfigError):
        CheckpointPolicy(tmp_path, every_minutes=-1.0)
