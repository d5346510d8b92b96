"""The shared Trainer: optimizers, schedules, early stopping, determinism, history, errors."""

from __future__ import annotations

import math
import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.errors import ConfigError, DataError, ModelFitError
from recforge.train import (
    Objective,
    RatingMSE,
    Schedule,
    Trainer,
    objective_validator,
    rating_validator,
    resolve_device,
)
from recforge.train.losses import Batch
from recforge.viz.plots import learning_curve


class ToyMF(nn.Module):
    """Biased dot product with optional dropout on the user vector (to test RNG determinism)."""

    user_param_names: ClassVar[tuple[str, ...]] = ("p.weight",)
    item_param_names: ClassVar[tuple[str, ...]] = ("q.weight",)

    def __init__(self, n_users: int = 30, n_items: int = 20, d: int = 4, dropout: float = 0.0):
        super().__init__()
        torch.manual_seed(0)
        self.p = nn.Embedding(n_users, d)
        self.q = nn.Embedding(n_items, d)
        self.bias = nn.Parameter(torch.zeros(()))
        nn.init.normal_(self.p.weight, 0, 0.1)
        nn.init.normal_(self.q.weight, 0, 0.1)
        self.drop = nn.Dropout(dropout)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = (self.drop(self.p(user)) * self.q(item)).sum(-1) + self.bias
        return out


def _data(seed: int = 0, n: int = 600) -> dict[str, torch.Tensor]:
    g = np.random.default_rng(seed)
    p = g.normal(0, 1, (30, 2))
    q = g.normal(0, 1, (20, 2))
    u = g.integers(0, 30, n)
    i = g.integers(0, 20, n)
    r = 3.0 + (p[u] * q[i]).sum(1) + g.normal(0, 0.1, n)
    return {
        "user": torch.from_numpy(u),
        "item": torch.from_numpy(i),
        "rating": torch.from_numpy(r.astype(np.float32)),
    }


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = {"epochs": 8, "batch_size": 64, "lr": 0.05, "verbose": False}
    base.update(kw)
    return TrainConfig.model_validate(base)


def _weights(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


@pytest.mark.parametrize(
    ("optimizer", "lr"),
    [
        ("adam", 0.05),
        ("adamw", 0.05),
        ("rmsprop", 0.01),
        ("sgd", 0.1),
        ("adagrad", 0.2),
        ("sparse_adam", 0.05),
    ],
)
def test_every_optimizer_reduces_the_loss(optimizer: str, lr: float) -> None:
    m = ToyMF()
    res = Trainer(_cfg(optimizer=optimizer, lr=lr)).fit(m, _data(), RatingMSE())
    h = res.history
    assert list(h["epoch"]) == list(range(1, 9))
    assert h["train_loss"].iloc[-1] < 0.5 * h["train_loss"].iloc[0]
    if optimizer == "sparse_adam":
        assert m.p.sparse and m.q.sparse


@pytest.mark.parametrize("schedule", ["constant", "sgdr", "one_cycle", "step"])
def test_lr_follows_the_schedule(schedule: str) -> None:
    cfg = _cfg(schedule=schedule, epochs=6, step_size=2, sgdr_t0=1, sgdr_mult=2, min_lr=0.001)
    data = _data()
    res = Trainer(cfg).fit(ToyMF(), data, RatingMSE())
    steps = math.ceil(600 / 64)
    sched = Schedule.from_config(cfg, steps)
    # Each epoch records the rate used by its last batch.
    expected = [sched((e + 1) * steps - 1) for e in range(6)]
    assert np.allclose(res.history["lr"], expected)
    if schedule != "constant":
        assert res.history["lr"].nunique() > 1


def test_optimizer_receives_the_scheduled_rate() -> None:
    seen: list[float] = []

    class Spy(RatingMSE):
        def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
            return super().loss(module, batch)

    cfg = _cfg(schedule="step", epochs=3, step_size=1, step_gamma=0.5, batch_size=600, lr=0.4)
    m = ToyMF()
    trainer = Trainer(cfg)
    orig = torch.optim.Adam.step

    def spy_step(self: torch.optim.Adam, *a: object, **k: object) -> object:
        seen.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)  # type: ignore[arg-type]

    torch.optim.Adam.step = spy_step  # type: ignore[method-assign,assignment]
    try:
        trainer.fit(m, _data(), Spy())
    finally:
        torch.optim.Adam.step = orig  # type: ignore[method-assign]
    assert seen == pytest.approx([0.4, 0.2, 0.1])


def test_early_stopping_restores_the_best_weights() -> None:
    scripted = iter([3.0, 1.0, 2.0, 4.0, 5.0, 6.0])
    snapshots: list[dict[str, torch.Tensor]] = []

    def validate(module: nn.Module) -> dict[str, float]:
        snapshots.append(_weights(module))
        return {"valid_loss": next(scripted)}

    m = ToyMF()
    res = Trainer(_cfg(epochs=6, patience=2)).fit(m, _data(), RatingMSE(), validate=validate)
    assert res.stopped_early
    assert len(res.history) == 4  # epochs 3 and 4 did not improve on epoch 2
    assert res.best_epoch == 2 and res.best_score == 1.0
    final = _weights(m)
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not torch.equal(final["p.weight"], snapshots[3]["p.weight"])


def test_monitor_max_mode_and_min_delta() -> None:
    scripted = iter([0.5, 0.6, 0.605, 0.7, 0.71])

    def validate(module: nn.Module) -> dict[str, float]:
        return {"valid_loss": 1.0, "valid_auc": next(scripted)}

    cfg = _cfg(epochs=5, patience=1, monitor="valid_auc", monitor_mode="max", min_delta=0.01)
    res = Trainer(cfg).fit(ToyMF(), _data(), RatingMSE(), validate=validate)
    # 0.605 is not better than 0.6 by more than 0.01 -> stop after epoch 3.
    assert len(res.history) == 3 and res.best_epoch == 2


def test_unknown_monitor_is_a_config_error() -> None:
    def validate(module: nn.Module) -> dict[str, float]:
        return {"valid_loss": 1.0}

    with pytest.raises(ConfigError, match="valid_rmse"):
        Trainer(_cfg(patience=2, monitor="valid_rmse")).fit(
            ToyMF(), _data(), RatingMSE(), validate=validate
        )


def test_patience_without_validation_warns_and_trains_all_epochs() -> None:
    with pytest.warns(UserWarning, match="no validation") as caught:
        res = Trainer(_cfg(epochs=3, patience=1)).fit(ToyMF(), _data(), RatingMSE())
    assert len(res.history) == 3 and not res.stopped_early
    assert caught[0].filename == __file__, "the warning must point at the caller of fit"


def test_same_seed_identical_weights_different_seed_differs() -> None:
    def run(seed: int) -> dict[str, torch.Tensor]:
        m = ToyMF(dropout=0.3)
        Trainer(_cfg(seed=seed, epochs=3)).fit(m, _data(), RatingMSE())
        return _weights(m)

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["p.weight"], c["p.weight"])


def test_trainer_does_not_disturb_the_global_rng() -> None:
    m = ToyMF(dropout=0.5)  # its constructor seeds; build it first
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Trainer(_cfg(epochs=1)).fit(m, _data(), RatingMSE())
    assert torch.equal(torch.rand(3), expected)


def test_history_columns_and_validators() -> None:
    data, valid = _data(0), _data(1, n=200)
    validate = rating_validator(valid["user"], valid["item"], valid["rating"], clip=(1.0, 5.0))
    res = Trainer(_cfg()).fit(ToyMF(), data, RatingMSE(), validate=validate)
    h = res.history
    assert list(h.columns) == [
        "epoch",
        "train_loss",
        "valid_loss",
        "valid_rmse",
        "valid_mae",
        "lr",
        "seconds",
    ]
    assert h["valid_loss"].iloc[-1] < h["valid_loss"].iloc[0]
    assert (h["seconds"] > 0).all() and res.samples_per_second > 0
    # valid_loss from the objective validator equals the rating validator's unclipped MSE.
    m = ToyMF()
    Trainer(_cfg(epochs=2)).fit(m, data, RatingMSE())
    with torch.no_grad():
        a = objective_validator(RatingMSE(), valid, batch_size=37)(m)["valid_loss"]
        b = rating_validator(valid["user"], valid["item"], valid["rating"], batch_size=50)(m)
    assert a == pytest.approx(b["valid_loss"], rel=1e-5)


def test_no_validation_gives_nan_valid_loss() -> None:
    res = Trainer(_cfg(epochs=2)).fit(ToyMF(), _data(), RatingMSE())
    assert res.history["valid_loss"].isna().all() and res.best_score is None


def test_gradient_clipping_bounds_each_step() -> None:
    m = ToyMF()
    before = torch.cat([p.detach().clone().ravel() for p in m.parameters()])
    cfg = _cfg(optimizer="sgd", momentum=0.0, lr=1.0, grad_clip=1e-3, epochs=1, batch_size=600)
    Trainer(cfg).fit(m, _data(), RatingMSE())
    after = torch.cat([p.detach().ravel() for p in m.parameters()])
    # One SGD step of a gradient clipped to norm 1e-3 moves the weights by at most lr * 1e-3.
    assert float((after - before).norm()) <= 1e-3 + 1e-7
    assert float((after - before).norm()) > 0


class _NaN(Objective):
    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        out: torch.Tensor = module(batch["user"], batch["item"]).sum() * float("nan")
        return out


def test_divergence_is_a_model_fit_error() -> None:
    with pytest.raises(ModelFitError, match="diverged at epoch 1"):
        Trainer(_cfg(epochs=2)).fit(ToyMF(), _data(), _NaN())


def test_bad_data_is_a_data_error() -> None:
    with pytest.raises(DataError, match="empty"):
        Trainer(_cfg()).fit(ToyMF(), {"user": torch.zeros(0, dtype=torch.long)}, RatingMSE())
    bad = {"user": torch.zeros(3, dtype=torch.long), "item": torch.zeros(2, dtype=torch.long)}
    with pytest.raises(DataError, match="differ in length"):
        Trainer(_cfg()).fit(ToyMF(), bad, RatingMSE())


def test_start_epoch_hook_is_called() -> None:
    calls: list[int] = []

    class Hooked(RatingMSE):
        def start_epoch(self, epoch: int) -> None:
            calls.append(epoch)

    Trainer(_cfg(epochs=3)).fit(ToyMF(), _data(), Hooked())
    assert calls == [0, 1, 2]


def test_progress_bar_is_silent_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    Trainer(_cfg(epochs=2, verbose=True)).fit(ToyMF(), _data(), RatingMSE())
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_num_threads_is_restored() -> None:
    before = torch.get_num_threads()
    Trainer(_cfg(epochs=1, num_threads=1)).fit(ToyMF(), _data(), RatingMSE())
    assert torch.get_num_threads() == before


def test_devices() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError):
        resolve_device("warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_sparse_adam_rejects_weight_decay() -> None:
    with pytest.raises(ValueError, match="sparse_adam"):
        TrainConfig(optimizer="sparse_adam", weight_decay=0.1)


def test_learning_curve_png(tmp_path: object) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / "plots" / "curve.png"
    hist = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [1.0, 0.8, 0.7],
            "valid_loss": [1.1, 0.9, 0.95],
            "valid_rmse": [1.05, 0.95, 0.97],
            "lr": [0.01, 0.005, 0.001],
            "seconds": [0.1, 0.1, 0.1],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert learning_curve(hist, out, title="toy") == out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Loss only, no validation: still a valid PNG.
    learning_curve(hist[["epoch", "train_loss"]], tmp_path / "b.png")  # type: ignore[operator]
    with pytest.raises(DataError):
        learning_curve(hist.iloc[:0], tmp_path / "c.png")  # type: ignore[operator]
