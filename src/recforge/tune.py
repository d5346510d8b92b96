"""Hyper-parameter tuning with Optuna on a validation split carved from training data only.

``tune(model, protocol, trials=N)`` runs a seeded TPE search over the model's entry in
:data:`SEARCH_SPACES` (one declarative table for our models and the benchmark peers, so every
row of a benchmark gets the same budget of ``N`` trials):

1. The protocol's first fold is split as the benchmark splits it; only its *training* part is
   used: :meth:`Protocol.validation_split` applies the protocol's own rules to it, giving an inner
   train part and a validation part. The fold's test part is never read (tests check this).
2. Trial 0 is the model's default config (for the parameters whose defaults lie in the space),
   so tuning never reports something worse than the defaults it could have kept.
3. Each trial fits on the inner train part, with the validation part passed as ``valid`` so
   neural models record validation curves; after every epoch the Trainer's
   :func:`~recforge.train.trainer.epoch_callback` reports the curve to Optuna's ``MedianPruner``,
   which stops trials whose curve is worse than the median of earlier trials at the same epoch.
   Models without epochs (closed-form, surprise, implicit) are simply fitted and scored.
4. The trial's value is the protocol's primary metric (``Protocol.evaluate`` on the validation
   part): RMSE for the rating protocols (minimised), NDCG@10 etc. for the ranking ones.

The curve value reported for pruning is the history column that matches the primary metric
(``valid_rmse`` for RMSE, ``valid_ndcg@10`` ...) when the model records it, else ``valid_loss``
(negated when the study maximises, so the pruner always compares in the study's direction).

The best config is written as TOML that ``recforge train --config`` reads (``model = ...`` plus
the tuned and fixed hyper-parameters), under a comment header naming the protocol, dataset,
trials, best validation value and the command that produced it.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd

from recforge.config import dump_toml, load_config_file
from recforge.data.datasource import DataSource
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, ModelFitError, RecError
from recforge.models.base import Recommender

__all__ = [
    "SEARCH_SPACES",
    "Choice",
    "Float",
    "Int",
    "TuneResult",
    "read_tuned_config",
    "search_space",
    "tune",
    "write_best_config",
]

Task = Literal["rating", "ranking"]


# ====================================================================== search-space table
@dataclass(frozen=True)
class _Range:
    low: float
    high: float
    log: bool = False
    only: Task | None = None
    _types: ClassVar[tuple[type, ...]] = (int, float)

    def contains(self, value: Any) -> bool:
        ok = isinstance(value, self._types) and not isinstance(value, bool)
        return ok and self.low <= value <= self.high


class Float(_Range):
    """A float in ``[low, high]`` (log-uniform when ``log``)."""

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


class Int(_Range):
    """An integer in ``[low, high]`` (log-uniform when ``log``)."""

    _types = (int,)

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)


@dataclass(frozen=True)
class Choice:
    """One of ``choices`` (scalars: str, int, float, bool)."""

    choices: tuple[Any, ...]
    only: Task | None = None

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def contains(self, value: Any) -> bool:
        return value in self.choices


Dim = Float | Int | Choice

# Shared ranges for the neural models (Trainer fields).
_LR = Float(3e-4, 3e-2, log=True)
_WD = Float(1e-3, 3.0, log=True)
_EPOCHS = Int(5, 40)
_RANK_LOSS = Choice(("bce", "bpr"), only="ranking")
_KNN: dict[str, Dim] = {
    "k_neighbors": Int(10, 500, log=True),
    "similarity": Choice(("cosine", "adjusted_cosine", "pearson_baseline")),
    "shrinkage": Float(0.0, 200.0),
}
_MF: dict[str, Dim] = {
    "n_factors": Int(8, 128, log=True),
    "lr": _LR,
    "weight_decay": _WD,
    "epochs": _EPOCHS,
    "loss": _RANK_LOSS,
}
_AUTOENCODER: dict[str, Dim] = {  # Mult-VAE / Mult-DAE (Liang et al. 2018 ranges)
    "latent": Int(64, 400, log=True),
    "dropout": Float(0.2, 0.7),
    "lr": Float(3e-4, 3e-3, log=True),
    "epochs": Int(20, 150),
}

#: Per model: hyper-parameter -> range. Ranges are sized for MovieLens (100k to 1M ratings);
#: ``only="rating"|"ranking"`` restricts a dimension to protocols of that kind. A model without
#: parameters worth tuning has an empty space (one trial is run). Peers are covered too, so
#: "equal budget" means the same number of trials over a table like this one.
SEARCH_SPACES: dict[str, dict[str, Dim]] = {
    "global_mean": {},
    "popularity": {},
    "biases": {
        "reg_u": Float(0.5, 50.0, log=True),
        "reg_i": Float(0.5, 50.0, log=True),
        "epochs": Int(3, 30),
    },
    "item_knn": _KNN,
    "user_knn": _KNN,
    "content": {
        "genre_weight": Float(0.1, 3.0, log=True),
        "tag_weight": Float(0.1, 3.0, log=True),
        "title_weight": Float(0.05, 2.0, log=True),
        "year_weight": Float(0.05, 2.0, log=True),
        "interest_weight": Float(0.0, 1.0, only="rating"),
    },
    "ease": {"reg": Float(10.0, 5000.0, log=True)},
    "als": {
        "n_factors": Int(16, 256, log=True),
        "iterations": Int(5, 30),
        "reg": Float(0.01, 200.0, log=True),
        "alpha": Float(0.05, 20.0, log=True, only="ranking"),
    },
    "mf": _MF,
    "biased_mf": _MF,
    "embedding_net": {
        "n_factors": Int(8, 128, log=True),
        "lr": _LR,
        "weight_decay": _WD,
        "epochs": _EPOCHS,
        "embedding_dropout": Float(0.0, 0.3),
    },
    "ncf": {
        "n_factors": Int(8, 64, log=True),
        "lr": _LR,
        "weight_decay": _WD,
        "epochs": _EPOCHS,
        "dropout": Float(0.0, 0.5),
        "n_negatives": Int(1, 8, only="ranking"),
    },
    "two_tower": {
        "n_factors": Int(16, 128, log=True),
        "lr": _LR,
        "weight_decay": _WD,
        "epochs": _EPOCHS,
        "dropout": Float(0.0, 0.5),
        "temperature": Float(0.03, 0.5, log=True, only="ranking"),
    },
    "autorec": {
        "reg": Float(1.0, 1000.0, log=True),
        "lr": Float(3e-4, 1e-2, log=True),
        "epochs": Int(20, 120),
        "dropout": Float(0.0, 0.5),
    },
    "mult_vae": {**_AUTOENCODER, "beta_max": Float(0.05, 0.5)},
    "mult_dae": {**_AUTOENCODER, "reg": Float(1e-6, 1e-2, log=True)},
    # ---- peers (recforge.bench.peers)
    "surprise-baselineonly": {
        "reg_u": Float(0.5, 50.0, log=True),
        "reg_i": Float(0.5, 50.0, log=True),
        "n_epochs": Int(3, 30),
    },
    "surprise-svd": {
        "n_factors": Int(10, 200, log=True),
        "n_epochs": Int(10, 80),
        "lr_all": Float(1e-3, 2e-2, log=True),
        "reg_all": Float(5e-3, 0.2, log=True),
    },
    "surprise-svdpp": {
        "n_factors": Int(5, 60, log=True),
        "n_epochs": Int(10, 40),
        "lr_all": Float(1e-3, 2e-2, log=True),
        "reg_all": Float(5e-3, 0.2, log=True),
    },
    "surprise-knnbaseline": {
        "k": Int(10, 120, log=True),
        "sim_name": Choice(("msd", "pearson_baseline")),
        "user_based": Choice((True, False)),
        "shrinkage": Float(0.0, 200.0),
    },
    "implicit-als": {
        "factors": Int(16, 256, log=True),
        "regularization": Float(1e-3, 100.0, log=True),
        "alpha": Float(0.5, 100.0, log=True),
        "iterations": Int(5, 30),
    },
    "implicit-bpr": {
        "factors": Int(16, 256, log=True),
        "learning_rate": Float(1e-3, 0.1, log=True),
        "regularization": Float(1e-4, 0.1, log=True),
        "iterations": Int(20, 300, log=True),
    },
}


def search_space(model: str, task: Task | None = None) -> dict[str, Dim]:
    """The search space of ``model`` (restricted to ``task``'s dimensions when given).

    Raises:
        ConfigError: the model has no entry in :data:`SEARCH_SPACES`.
    """
    if model not in SEARCH_SPACES:
        raise ConfigError(
            f"no search space for model {model!r}; add it to recforge.tune.SEARCH_SPACES "
            f"(known: {', '.join(sorted(SEARCH_SPACES))})"
        )
    return {k: d for k, d in SEARCH_SPACES[model].items() if task is None or d.only in (None, task)}


# ====================================================================== models
def _is_peer(name: str) -> bool:
    from recforge.bench.peers import peer_names

    return name in peer_names()


def _model_class(name: str) -> type[Recommender]:
    if _is_peer(name):
        from recforge.bench.peers import peer_class

        return peer_class(name)
    from recforge.models.registry import get_class

    return get_class(name)


def _create(name: str, config: Mapping[str, Any]) -> Recommender:
    if _is_peer(name):
        from recforge.bench.peers import create_peer

        return create_peer(name, config)
    from recforge.models.registry import create

    return create(name, config)


# ====================================================================== result
@dataclass
class TuneResult:
    """What :func:`tune` found.

    Attributes:
        model, protocol, data: what was tuned, on which protocol and dataset.
        fold: the protocol fold whose training part was carved (e.g. ``"u1"``, ``"0"``).
        validation: the carved validation split's description.
        metric, higher_is_better: the protocol's primary metric and its direction.
        best_value: the best trial's validation value of ``metric``.
        best_trial: the best trial's number.
        best_params: the tuned hyper-parameters of the best trial.
        fixed: the hyper-parameters held fixed (``--set``).
        n_trials, n_complete, n_pruned, n_failed: trial counts by outcome.
        trials: one row per trial: number, state, value, params, seconds.
        command: the command line that reproduces the study.
        seed: the sampler seed.
    """

    model: str
    protocol: str
    data: str
    fold: str
    validation: str
    metric: str
    higher_is_better: bool
    best_value: float
    best_trial: int
    best_params: dict[str, Any]
    fixed: dict[str, Any]
    n_trials: int
    n_complete: int
    n_pruned: int
    n_failed: int
    trials: pd.DataFrame
    command: str
    seed: int
    best_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        """The best config: fixed parameters plus the tuned ones."""
        return {**self.fixed, **self.best_params}

    def header(self) -> str:
        """The comment block written above the TOML config."""
        direction = "higher" if self.higher_is_better else "lower"
        lines = [
            f"recforge tune: best config for {self.model}",
            f"protocol {self.protocol} (fold {self.fold}; tuned on {self.validation}); "
            f"data {self.data}",
            f"trials {self.n_trials} (complete {self.n_complete}, pruned {self.n_pruned}, "
            f"failed {self.n_failed}); TPE seed {self.seed}",
            f"best validation {self.metric} = {self.best_value:.6g} ({direction} is better; "
            f"trial {self.best_trial})",
            f"command: {self.command}",
        ]
        return "".join(f"# {line}\n" for line in lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (without the per-trial table)."""
        return {
            "model": self.model,
            "protocol": self.protocol,
            "data": self.data,
            "fold": self.fold,
            "validation": self.validation,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "best_value": self.best_value,
            "best_trial": self.best_trial,
            "best_metrics": self.best_metrics,
            "config": self.config,
            "n_trials": self.n_trials,
            "n_complete": self.n_complete,
            "n_pruned": self.n_pruned,
            "n_failed": self.n_failed,
            "seed": self.seed,
            "command": self.command,
        }


def write_best_config(result: TuneResult, path: str | Path) -> Path:
    """Write the best config as TOML (``model = ...`` and parameters) under a comment header."""
    from recforge._atomic import atomic_write_text

    p = Path(path)
    body = dump_toml({"model": result.model, **result.config})
    atomic_write_text(p, result.header() + body)
    return p


def read_tuned_config(path: str | Path) -> tuple[str, dict[str, Any]]:
    """``(model name, hyper-parameters)`` from a TOML written by :func:`write_best_config`."""
    values = load_config_file(path)
    model = values.pop("model", None)
    if not isinstance(model, str):
        raise ConfigError(f'{path}: no `model = "..."` line; is this a tuned config?')
    return model, values


# ====================================================================== the study
def _curve_value(row: Mapping[str, float], metric: str, maximize: bool) -> float | None:
    """The validation value a history row offers for pruning, in the study's direction."""
    for key in (f"valid_{metric}", metric):
        value = row.get(key)
        if value is not None and math.isfinite(float(value)):
            return float(value)
    loss = row.get("valid_loss")
    if loss is None or not math.isfinite(float(loss)):
        return None
    return -float(loss) if maximize else float(loss)


def _default_params(cls: type[Recommender], space: Mapping[str, Dim]) -> dict[str, Any]:
    """The model's defaults for the dimensions whose default lies in the space."""
    fields = cls.Config.model_fields
    out: dict[str, Any] = {}
    for name, dim in space.items():
        if name in fields and dim.contains(fields[name].default):
            out[name] = fields[name].default
    return out


def _command(
    model: str,
    protocol: str,
    data: str,
    trials: int,
    seed: int,
    timeout: float | None,
    fixed: Mapping[str, Any],
    out: str | Path | None,
) -> str:
    import json

    parts = ["recforge", "tune", "--model", model, "--protocol", protocol, "--trials", str(trials)]
    parts += ["--data", data, "--seed", str(seed)]
    if timeout is not None:
        parts += ["--timeout", f"{timeout:g}"]
    for key, value in fixed.items():
        raw = value if isinstance(value, str) else json.dumps(value)
        parts += ["--set", f"{key}={raw}"]
    if out is not None:
        parts += ["--out", str(out)]
    return shlex.join(parts)


def tune(
    model: str,
    protocol: str,
    *,
    data: str | Path | DataSource | Interactions = "ml-100k",
    trials: int = 20,
    timeout: float | None = None,
    seed: int = 0,
    fixed: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    space: Mapping[str, Dim] | None = None,
    fold: int | str = 0,
    pruner_startup_trials: int = 5,
    pruner_warmup_steps: int = 2,
    callback: Callable[[int, int, float | None], None] | None = None,
) -> TuneResult:
    """Tune ``model`` on ``protocol``'s validation split with seeded TPE and median pruning.

    Args:
        model: a registered model (``recforge models``) or a peer (``surprise-svd`` ...).
        protocol: a named protocol (see :mod:`recforge.eval.protocols`).
        data: dataset name/path or Interactions.
        trials: number of trials (capped at 1 when nothing is tuned).
        timeout: stop starting new trials after this many seconds.
        seed: TPE sampler seed (the model's own ``seed`` stays as configured).
        fixed: hyper-parameters held fixed in every trial (removed from the space).
        out: write the best config there as TOML (see :func:`write_best_config`).
        space: search space to use instead of :data:`SEARCH_SPACES` ``[model]``.
        fold: which protocol fold's training part to carve the validation split from.
        pruner_startup_trials, pruner_warmup_steps: MedianPruner's ``n_startup_trials`` and
            ``n_warmup_steps`` (epochs before a trial may be pruned).
        callback: ``callback(trial_number, n_trials, value)`` after each finished trial (progress
            bars); ``value`` is None for pruned or failed trials.

    Raises:
        ConfigError: unknown model/protocol, a model that cannot be scored by the protocol, a
            fixed parameter the model rejects, or trials < 1.
        ModelFitError: no trial completed (the first failure's message is included).
    """
    import optuna

    from recforge.eval.protocols import get_protocol

    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"--timeout must be > 0 seconds, got {timeout}")
    proto = get_protocol(protocol)
    cls = _model_class(model)
    fixed = dict(fixed or {})
    dims = _search_dims(model, proto, cls, fixed, space)
    n_trials = trials if dims else 1
    data_label, inter = _tuning_data(data)
    outer = proto.split(inter, fold)
    inner = proto.validation_split(outer)
    del outer  # only the training part was needed; nothing below may read the test part
    objective = _Objective(model, fixed, dims, proto, inner, _valid_part(inner.split))
    failures: list[str] = []

    def after(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        if frozen.state == optuna.trial.TrialState.FAIL and "error" in frozen.user_attrs:
            failures.append(frozen.user_attrs["error"])
        if callback is not None:
            callback(frozen.number, n_trials, frozen.value)

    pruning = (pruner_startup_trials, pruner_warmup_steps)
    defaults = _default_params(cls, dims)
    study = _run_study(objective, defaults, n_trials, timeout, seed, pruning, after)
    command = _command(model, protocol, data_label, trials, seed, timeout, fixed, out)
    result = _tune_result(study, model, proto, inner, data_label, fixed, failures, command, seed)
    if out is not None:
        write_best_config(result, out)
    return result


def _search_dims(
    model: str,
    proto: Any,
    cls: type[Recommender],
    fixed: Mapping[str, Any],
    space: Mapping[str, Dim] | None,
) -> dict[str, Dim]:
    """The dimensions to search (the space less the fixed parameters), all checked."""
    probe = _create(model, fixed)  # validates the fixed parameters before any work
    problem = proto.model_problem(probe)
    if problem:
        raise ConfigError(f"{proto.name}: {problem}; pick a protocol of the right kind")
    dims = dict(space) if space is not None else search_space(model, proto.kind)
    dims = {k: d for k, d in dims.items() if k not in fixed}
    unknown = sorted(set(dims) - set(cls.Config.model_fields))
    if unknown:
        raise ConfigError(f"search space of {model}: unknown parameters {', '.join(unknown)}")
    return dims


def _tuning_data(data: str | Path | DataSource | Interactions) -> tuple[str, Interactions]:
    """``(label for the report, the interactions)`` of ``tune``'s ``data`` argument."""
    if isinstance(data, Interactions):
        return data.source, data
    from recforge.data.sources import load_dataset

    label = data.path if isinstance(data, DataSource) else str(data)
    return label, load_dataset(data)


@dataclass
class _Objective:
    """One trial: fit the sampled config on the carve's train part, score its validation part.

    Each epoch's validation value is reported to the trial so the pruner can stop it early.
    """

    model: str
    fixed: dict[str, Any]
    dims: dict[str, Dim]
    proto: Any
    inner: Any
    valid: Interactions | None

    def __call__(self, trial: Any) -> float:
        params = {name: dim.suggest(trial, name) for name, dim in self.dims.items()}
        # An invalid combination of sampled values raises ConfigError: the trial fails, the
        # study goes on.
        candidate = _create(self.model, {**self.fixed, **params})
        from recforge.train.trainer import epoch_callback

        with epoch_callback(self._reporter(trial)):
            candidate.fit(self.inner.train, self.valid)
        result = self.proto.evaluate(candidate, self.inner)
        metric = self.proto.primary_metric
        value = float(result["metrics"][metric])
        if not math.isfinite(value):
            raise ModelFitError(f"validation {metric} is {value}")
        trial.set_user_attr("metrics", {k: float(v) for k, v in result["metrics"].items()})
        return value

    def _reporter(self, trial: Any) -> Callable[[int, Mapping[str, float]], None]:
        """The epoch callback that reports validation values and prunes below the median."""
        import optuna

        metric, maximize = self.proto.primary_metric, self.proto.higher_is_better
        step = 0

        def on_epoch(epoch: int, row: Mapping[str, float]) -> None:
            nonlocal step
            value = _curve_value(row, metric, maximize)
            if value is None:
                return
            step += 1  # a model may run several training loops (pretraining): keep steps unique
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: validation {value:.6g} below median")

        return on_epoch


def _run_study(
    objective: _Objective,
    defaults: dict[str, Any],
    n_trials: int,
    timeout: float | None,
    seed: int,
    pruning: tuple[int, int],
    after: Callable[[Any, Any], None],
) -> Any:
    """Run a seeded TPE study with median pruning (``pruning``: its startup trials and warm-up
    steps); the model's defaults are the first trial when they lie in the space."""
    import optuna

    old_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial is too chatty
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=pruning[0], n_warmup_steps=pruning[1])
    try:
        study = optuna.create_study(
            direction="maximize" if objective.proto.higher_is_better else "minimize",
            sampler=sampler,
            pruner=pruner,
        )
        if defaults:
            study.enqueue_trial(defaults, skip_if_exists=False)
        study.optimize(
            _record_errors(objective),
            n_trials=n_trials,
            timeout=timeout,
            catch=(RecError, FloatingPointError),
            callbacks=[after],
        )
    finally:
        optuna.logging.set_verbosity(old_verbosity)
    return study


def _tune_result(
    study: Any,
    model: str,
    proto: Any,
    inner: Any,
    data_label: str,
    fixed: dict[str, Any],
    failures: list[str],
    command: str,
    seed: int,
) -> TuneResult:
    """The study's summary; a study in which no trial completed is a ModelFitError."""
    import optuna

    states = [t.state for t in study.trials]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        first = failures[0] if failures else "every trial was pruned"
        raise ModelFitError(f"tune {model} on {proto.name}: no trial completed ({first})")
    best = study.best_trial
    assert best.value is not None
    return TuneResult(
        model=model,
        protocol=proto.name,
        data=data_label,
        fold=inner.fold.removesuffix("/valid"),
        validation=inner.split.protocol.describe(),
        metric=proto.primary_metric,
        higher_is_better=proto.higher_is_better,
        best_value=float(best.value),
        best_trial=best.number,
        best_params=dict(best.params),
        fixed=fixed,
        n_trials=len(study.trials),
        n_complete=len(done),
        n_pruned=states.count(optuna.trial.TrialState.PRUNED),
        n_failed=states.count(optuna.trial.TrialState.FAIL),
        trials=_trials_frame(study),
        command=command,
        seed=seed,
        best_metrics=dict(best.user_attrs.get("metrics", {})),
    )


def _valid_part(split: Any) -> Interactions | None:
    """The validation events given to ``fit`` for learning curves (None for held-out users).

    For row splits the carved split's ``test`` *is* the validation part. Held-out-user splits
    evaluate by fold-in on users the model never trains on, so there is no curve to give.
    """
    from recforge.data.split import Split

    return split.test if isinstance(split, Split) else None


def _record_errors(objective: Callable[[Any], float]) -> Callable[[Any], float]:
    """Store a failing trial's one-line error on the trial (Optuna only logs it)."""

    def wrapped(trial: Any) -> float:
        try:
            return objective(trial)
        except (RecError, FloatingPointError) as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise

    return wrapped


def _trials_frame(study: Any) -> pd.DataFrame:
    rows = []
    for t in study.trials:
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete is not None and t.datetime_start is not None
            else math.nan
        )
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value if t.value is not None else math.nan,
                "params": dict(t.params),
                "seconds": seconds,
                "error": t.user_attrs.get("error"),
            }
        )
    return pd.DataFrame(rows)
