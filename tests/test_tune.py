"""Tuning: seeded TPE on a validation carve of train, median pruning on curves, TOML out."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest
import torch
from pydantic import Field
from torch import nn
from typer.testing import CliRunner

from recforge.artifacts import load_run
from recforge.cli.app import app
from recforge.config import ModelConfig, TrainConfig, load_config_file
from recforge.data.interactions import Interactions
from recforge.data.synthetic import make_interactions
from recforge.errors import ConfigError, ModelFitError
from recforge.eval.protocols import Protocol, ProtocolSplit, get_protocol
from recforge.models import registry
from recforge.models.base import FloatArray, Recommender
from recforge.train.losses import Batch, Objective
from recforge.train.trainer import Trainer, epoch_callback
from recforge.tune import Float, read_tuned_config, search_space, tune


@pytest.fixture(scope="module")
def data() -> Interactions:
    return make_interactions(120, 80, seed=5).interactions


# ---------------------------------------------------------------------- a model that gets worse
class WorseningConfig(TrainConfig):
    """``badness`` makes every epoch's validation RMSE worse by that much."""

    badness: float = Field(0.0, ge=0.0, le=1.0)
    epochs: int = Field(6, ge=1)


class _Square(Objective):
    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        return module(batch["x"]).pow(2).mean()


class Worsening(Recommender):
    """Predicts the global mean plus ``badness``; its validation curve rises with ``badness``."""

    name: ClassVar[str] = "test_worsening"
    Config: ClassVar[type[ModelConfig]] = WorseningConfig
    config: WorseningConfig
    epochs_run: ClassVar[list[int]] = []

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        seen: list[int] = []
        self.epochs_run.append(0)

        def validate(module: nn.Module) -> dict[str, float]:
            seen.append(1)
            self.epochs_run[-1] = len(seen)
            return {"valid_loss": 1.0, "valid_rmse": 1.0 + self.config.badness * len(seen)}

        x = {"x": torch.ones(8, 1)}
        Trainer(self.config.model_copy(update={"verbose": False})).fit(
            nn.Linear(1, 1), x, _Square(), validate=validate
        )

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        value = self.global_mean_ + self.config.badness
        return np.full((len(user_idx), self.n_items), value, dtype=np.float32)


@pytest.fixture
def worsening() -> type[Worsening]:
    registry.register(Worsening.name, f"{__name__}:Worsening")
    Worsening.epochs_run.clear()
    return Worsening


# ---------------------------------------------------------------------- tests
def test_epoch_callback_sees_rows_and_can_stop_training() -> None:
    cfg = WorseningConfig(epochs=5, verbose=False)
    seen: list[tuple[int, float]] = []

    def on_epoch(epoch: int, row: Mapping[str, float]) -> None:
        seen.append((epoch, row["valid_rmse"]))
        if epoch == 3:
            raise KeyboardInterrupt  # any exception propagates out of fit

    def validate(module: nn.Module) -> dict[str, float]:
        return {"valid_loss": 0.0, "valid_rmse": 2.0}

    with pytest.raises(KeyboardInterrupt), epoch_callback(on_epoch):
        Trainer(cfg).fit(nn.Linear(1, 1), {"x": torch.ones(4, 1)}, _Square(), validate=validate)
    assert seen == [(1, 2.0), (2, 2.0), (3, 2.0)]
    # Outside the block no callback is installed.
    result = Trainer(cfg).fit(nn.Linear(1, 1), {"x": torch.ones(4, 1)}, _Square())
    assert len(result.history) == 5 and len(seen) == 3


def test_tune_writes_toml_that_train_accepts(data: Interactions, tmp_path: Path) -> None:
    out = tmp_path / "best.toml"
    result = tune("biases", "random-80-20", data=data, trials=3, seed=0, out=out)
    assert result.n_trials == 3 and result.n_complete == 3
    assert result.metric == "rmse" and not result.higher_is_better
    assert result.trials["value"].min() == pytest.approx(result.best_value)
    # Trial 0 is the default config.
    assert result.trials.loc[0, "params"] == {"reg_u": 15.0, "reg_i": 10.0, "epochs": 10}

    text = out.read_text()
    assert text.startswith("# recforge tune: best config for biases\n")
    assert "protocol random-80-20" in text and "best validation rmse" in text
    assert "command: recforge tune --model biases --protocol random-80-20 --trials 3" in text
    name, params = read_tuned_config(out)
    assert name == "biases" and params == result.config

    # Re-fitting the written config on the same validation carve reproduces the best value.
    proto = get_protocol("random-80-20")
    inner = proto.validation_split(proto.split(data, 0))
    model = registry.create(name, params).fit(inner.train)
    assert proto.evaluate(model, inner)["metrics"]["rmse"] == pytest.approx(result.best_value)

    # `recforge train --config` accepts the file as written.
    csv = tmp_path / "ratings.csv"
    data.to_frame().to_csv(csv, index=False)
    run = tmp_path / "run"
    args = ["train", "--model", "biases", "--data", str(csv), "--config", str(out)]
    cli = CliRunner().invoke(app, [*args, "--out", str(run), "--json"])
    assert cli.exit_code == 0, cli.output
    assert load_run(run).model.config.model_dump() == {"seed": 42, **params}


def test_tune_is_seeded(data: Interactions) -> None:
    a = tune("biases", "random-80-20", data=data, trials=3, seed=1)
    b = tune("biases", "random-80-20", data=data, trials=3, seed=1)
    assert a.trials["params"].tolist() == b.trials["params"].tolist()
    assert a.best_value == b.best_value


def test_pruning_stops_worsening_trials(data: Interactions, worsening: type[Worsening]) -> None:
    result = tune(
        worsening.name,
        "random-80-20",
        data=data,
        trials=4,
        seed=0,
        space={"badness": Float(0.0, 1.0)},
        pruner_startup_trials=1,
        pruner_warmup_steps=0,
    )
    states = result.trials["state"].tolist()
    assert states[0] == "complete" and result.best_trial == 0
    assert result.best_value == pytest.approx(
        math.sqrt(np.mean((result_valid_ratings(data) - result_mean(data)) ** 2)), rel=1e-5
    )
    assert result.n_pruned == 3 and states[1:] == ["pruned"] * 3
    # Trial 0 ran every epoch; pruned trials stopped after their first reported epoch.
    assert worsening.epochs_run == [6, 1, 1, 1]


def result_valid_ratings(data: Interactions) -> npt.NDArray[np.float64]:
    proto = get_protocol("random-80-20")
    inner = proto.validation_split(proto.split(data, 0))
    return inner.split.test.rating.astype(np.float64)


def result_mean(data: Interactions) -> float:
    proto = get_protocol("random-80-20")
    return proto.validation_split(proto.split(data, 0)).train.global_mean


@pytest.mark.parametrize(
    ("model", "protocol"), [("biased_mf", "random-80-20"), ("ease", "temporal-user-80-20")]
)
def test_test_part_is_never_read(
    data: Interactions, model: str, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proto = get_protocol(protocol)
    test = proto.split(data, 0).split.test
    test_pairs = set(
        zip(test.users.lookup(test.user_idx), test.items.lookup(test.item_idx), strict=True)
    )
    touched: list[Interactions] = []
    real_fit, real_eval = Recommender.fit, Protocol.evaluate

    def fit(self: Recommender, train: Interactions, valid: Interactions | None = None) -> Any:
        touched.extend(p for p in (train, valid) if p is not None)
        return real_fit(self, train, valid)

    def evaluate(self: Protocol, m: Recommender, ps: ProtocolSplit) -> dict[str, Any]:
        assert ps.fold.endswith("/valid")
        touched.append(ps.split.test)  # type: ignore[union-attr]
        return real_eval(self, m, ps)

    monkeypatch.setattr(Recommender, "fit", fit)
    monkeypatch.setattr(Protocol, "evaluate", evaluate)
    fixed = {"epochs": 2} if model == "biased_mf" else {}
    result = tune(model, protocol, data=data, trials=2, fixed=fixed)
    assert result.n_complete >= 1 and touched
    for part in touched:
        pairs = set(
            zip(part.users.lookup(part.user_idx), part.items.lookup(part.item_idx), strict=True)
        )
        assert not pairs & test_pairs


def test_peers_share_the_search_table(data: Interactions) -> None:
    assert set(search_space("surprise-svd")) == {"n_factors", "n_epochs", "lr_all", "reg_all"}
    assert "alpha" not in search_space("als", "rating")
    assert "alpha" in search_space("als", "ranking")
    result = tune("surprise-baselineonly", "random-80-20", data=data, trials=2)
    assert result.n_complete == 2


def test_bad_requests_are_config_errors(data: Interactions) -> None:
    with pytest.raises(ConfigError, match="unknown protocol"):
        tune("biases", "nope", data=data, trials=1)
    with pytest.raises(ConfigError, match="no search space"):
        search_space("nope")
    with pytest.raises(ConfigError, match="does not predict ratings"):
        tune("popularity", "random-80-20", data=data, trials=1)
    with pytest.raises(ConfigError, match="reg_u"):
        tune("biases", "random-80-20", data=data, trials=1, fixed={"reg_u": -1})
    with pytest.raises(ConfigError, match="trials"):
        tune("biases", "random-80-20", data=data, trials=0)


def test_all_failed_trials_raise(data: Interactions) -> None:
    # Every sampled value is invalid: each trial fails (the study goes on), then tune reports it.
    with pytest.raises(ModelFitError, match=r"no trial completed \(ConfigError: .*reg_u"):
        tune("biases", "random-80-20", data=data, trials=2, space={"reg_u": Float(-5.0, -1.0)})


def test_cli_tune_json(data: Interactions, tmp_path: Path) -> None:
    csv = tmp_path / "ratings.csv"
    data.to_frame().to_csv(csv, index=False)
    out = tmp_path / "best.toml"
    args = ["tune", "--model", "biases", "--protocol", "random-80-20", "--trials", "2"]
    cli = CliRunner().invoke(app, [*args, "--data", str(csv), "--out", str(out), "--json"])
    assert cli.exit_code == 0, cli.output
    assert load_config_file(out)["model"] == "biases"
    cli = CliRunner().invoke(app, [*args[:-1], "0", "--data", str(csv)])
    assert cli.exit_code != 0
