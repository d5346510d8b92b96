"""Golden results of ``Trainer.fit`` on CPU: the loop's refactoring must not change one bit.

Each scenario trains a tiny seeded network through one branch of the loop (dropout + gradient
clipping + a schedule + validation, early stopping with best-weight restore, sparse Adam with
sampled negatives, bf16 autocast, checkpoint + crash + resume, the epoch callback) and hashes the
final weights, the history (wall-clock columns excluded) and the result fields. The digests were
recorded with the loop as it was before it was split into parts (commit "tests: golden Trainer
results"), so any change of numerics, RNG consumption or bookkeeping shows here.

The digests are exact float results of torch 2.13.0 on x86-64 CPUs; elsewhere the kernels may
round differently, so the comparison is skipped there (the scenarios still run).
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.models import create
from recforge.testing import planted_explicit, planted_implicit
from recforge.train import BPR, NegativeSampler, RatingMSE, Trainer, rating_validator
from recforge.train.checkpoint import CheckpointPolicy, training_context
from recforge.train.losses import Batch, Objective
from recforge.train.trainer import TrainResult, epoch_callback

from .toys import ToyMF

EXACT = torch.__version__.split("+")[0] == "2.13.0" and platform.machine() in ("x86_64", "AMD64")

#: Digests recorded before the refactoring (see the module docstring).
GOLDEN: dict[str, str] = {
    "bf16": "2a3cfdd4752350971ef13b0a020996caea31590c90f197b3a6543d57b55c6b90",
    "callback": "6ac6979670dba861c1f8c17a090b398c85b7ca10aa18dca6adb106b5c0846b95",
    "checkpoint_resume": "b67235cbe1ab27a5ecd7170caac0cb4dbadfde179ef16982a6b57a5215f67f3f",
    "early_stopping": "7f650a120803616f9bf2777610184e887d12206244a4c25d25c04cbf52bfeaea",
    "model_biased_mf": "b63a17fff59c8d6548d9dce14c34f9e57fabf2a07e30ee1a8edd4727fc96c20e",
    "model_mult_vae": "b584f8a08b7b53574e2719f4f96d67dd8294be1ed626183bddbf48d27ac18e70",
    "model_two_tower": "21efdaafffe6ed100fbf2ad609993648f7021e4370167012eadbcb36dc5c514d",
    "plain": "ddb5cd8c87f9b1b31ad56a9d20716de33b20c9a38ae57d5db44a68263459e1d4",
    "sparse_bpr": "eaf61fe657afb91662edce1de0b3716ba6ee3e0bfd9540608d7504f86e7db04a",
}


class Crash(RuntimeError):
    """Stands in for a killed process."""


class _CrashingMSE(Objective):
    """Rating MSE that raises on the first batch of epoch ``crash_at`` (None: never)."""

    def __init__(self, crash_at: int | None) -> None:
        self.inner = RatingMSE()
        self.crash_at = crash_at
        self.epoch = -1

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        if self.epoch == self.crash_at:
            raise Crash
        return self.inner(module, batch)


def _ratings(seed: int, n: int) -> dict[str, torch.Tensor]:
    g = np.random.default_rng(seed)
    p, q = g.normal(0, 1, (30, 2)), g.normal(0, 1, (20, 2))
    u, i = g.integers(0, 30, n), g.integers(0, 20, n)
    r = 3.0 + (p[u] * q[i]).sum(1) + g.normal(0, 0.3, n)
    return {
        "user": torch.from_numpy(u),
        "item": torch.from_numpy(i),
        "rating": torch.from_numpy(r.astype(np.float32)),
    }


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "epochs": 6,
        "batch_size": 64,
        "lr": 0.05,
        "seed": 3,
        "verbose": False,
        "device": "cpu",
    }
    base.update(kw)
    return TrainConfig.model_validate(base)


def _validator() -> Callable[[nn.Module], dict[str, float]]:
    v = _ratings(1, 120)
    return rating_validator(v["user"], v["item"], v["rating"], clip=(1.0, 5.0))


def _digest(module: nn.Module, result: TrainResult, extra: object = None) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    history = result.history.drop(columns=["seconds"])
    table = {c: [float(x).hex() for x in history[c]] for c in history.columns}
    summary = {
        "history": table,
        "best_epoch": result.best_epoch,
        "best_score": None if result.best_score is None else float(result.best_score).hex(),
        "stopped_early": result.stopped_early,
        "extra": extra,
    }
    h.update(json.dumps(summary, sort_keys=True).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------- scenarios
def _plain(tmp_path: Path) -> str:
    module = ToyMF(dropout=0.2)
    cfg = _cfg(grad_clip=0.5, schedule="sgdr", weight_decay=1e-3)
    result = Trainer(cfg).fit(module, _ratings(0, 500), RatingMSE(), validate=_validator())
    return _digest(module, result)


def _early_stopping(tmp_path: Path) -> str:
    module = ToyMF()
    cfg = _cfg(epochs=30, lr=0.3, patience=2, monitor="valid_rmse", min_delta=1e-3)
    result = Trainer(cfg).fit(module, _ratings(0, 300), RatingMSE(), validate=_validator())
    assert result.stopped_early and result.best_epoch < len(result.history)
    return _digest(module, result)


def _sparse_bpr(tmp_path: Path) -> str:
    data = _ratings(2, 400)
    pairs = {"user": data["user"], "item": data["item"]}
    sampler = NegativeSampler(pairs["user"].numpy(), pairs["item"].numpy(), 30, 20, seed=5)
    module = ToyMF(dropout=0.3)
    cfg = _cfg(optimizer="sparse_adam", schedule="one_cycle")
    result = Trainer(cfg).fit(module, pairs, BPR(sampler, n_negatives=2))
    return _digest(module, result)


def _bf16(tmp_path: Path) -> str:
    module = ToyMF(dropout=0.1)
    cfg = _cfg(precision="bf16", optimizer="adamw", weight_decay=1e-2, schedule="step")
    result = Trainer(cfg).fit(module, _ratings(0, 500), RatingMSE(), validate=_validator())
    return _digest(module, result)


def _checkpoint_resume(tmp_path: Path) -> str:
    cfg = _cfg(epochs=7, patience=3, schedule="one_cycle")
    policy = CheckpointPolicy(tmp_path, every_epochs=2)
    with training_context(checkpoints=policy), pytest.raises(Crash):
        Trainer(cfg).fit(
            ToyMF(dropout=0.2), _ratings(0, 400), _CrashingMSE(4), validate=_validator()
        )
    module = ToyMF(dropout=0.2)
    with training_context(checkpoints=CheckpointPolicy(tmp_path, every_epochs=2, resume=True)):
        result = Trainer(cfg).fit(
            module, _ratings(0, 400), _CrashingMSE(None), validate=_validator()
        )
    return _digest(module, result)


def _callback(tmp_path: Path) -> str:
    seen: list[tuple[int, float]] = []
    module = ToyMF()
    with epoch_callback(lambda epoch, row: seen.append((epoch, float(row["valid_rmse"])))):
        result = Trainer(_cfg(epochs=4)).fit(
            module, _ratings(0, 300), RatingMSE(), validate=_validator()
        )
    assert [e for e, _ in seen] == [1, 2, 3, 4]
    return _digest(module, result, extra=[(e, v.hex()) for e, v in seen])


def _model(name: str, explicit: bool, **config: object) -> str:
    # A registered model end to end (its rows, objective and validator through the Trainer).
    small = {"n_users": 60, "n_items": 40, "density": 0.3}
    split = planted_explicit(0, **small) if explicit else planted_implicit(0, **small)
    model = create(name, {"epochs": 3, "verbose": False, "device": "cpu", **config})
    model.fit(split.train, split.test)
    h = hashlib.sha256()
    for key, value in sorted(model.get_state().items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(value).tobytes())
    history = model.history_.drop(columns=["seconds"])  # type: ignore[attr-defined]
    h.update(history.to_json(double_precision=15).encode())
    return h.hexdigest()


SCENARIOS: dict[str, Callable[[Path], str]] = {
    # backend="torch": this pins the Trainer's own loop (auto would take the fused numba epoch,
    # which tests/train/test_fused_mf.py holds against this loop).
    "model_biased_mf": lambda _: _model("biased_mf", True, patience=1, backend="torch"),
    "model_mult_vae": lambda _: _model("mult_vae", False, hidden=[16], latent=8),
    "model_two_tower": lambda _: _model("two_tower", False, loss="softmax"),
    "plain": _plain,
    "early_stopping": _early_stopping,
    "sparse_bpr": _sparse_bpr,
    "bf16": _bf16,
    "checkpoint_resume": _checkpoint_resume,
    "callback": _callback,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_trainer_results_are_bit_identical_to_the_recorded_ones(name: str, tmp_path: Path) -> None:
    got = SCENARIOS[name](tmp_path)
    assert got == SCENARIOS[name](tmp_path / "again"), "the same seeded fit must repeat exactly"
    if not EXACT:
        pytest.skip("golden digests are exact for torch 2.13.0 on x86-64 only")
    assert got == GOLDEN[name], f"{name}: Trainer results changed (digest {got})"
