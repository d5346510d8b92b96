"""End-to-end jobs the CLI exposes: load → split → fit → evaluate → save.

Each function here is what one CLI command calls; the CLI only parses options and prints.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError
from recforge.models.base import Recommender

#: Relevance threshold used when ranking is evaluated on explicit ratings (documented in protocols).
EXPLICIT_RELEVANCE_THRESHOLD = 4.0


@dataclass
class TrainResult:
    """What :func:`train_run` produced."""

    model: Recommender
    split: Any
    metrics: dict[str, Any]
    run_dir: Path | None
    history: pd.DataFrame | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: torchrun rank that produced this (only rank 0 evaluates and writes; others have no metrics).
    rank: int = 0


def resolve_split(data: Interactions, spec: str) -> Any:
    """Turn a split spec into a Split.

    ``ml100k:u1`` .. ``ml100k:u5``, ``ml100k:ua``/``ub`` select GroupLens' predefined ML-100k files;
    everything else goes to :func:`recforge.data.split.make_split` (``random:0.2``, ``kfold:5``...).
    """
    from recforge.data import split as splits

    if spec.startswith("ml100k:"):
        from recforge.data.movielens import load_movielens_fold

        fold = spec.split(":", 1)[1]
        train_df, test_df = load_movielens_fold("ml-100k", fold)
        return splits.predefined(
            train_df,
            test_df,
            name=f"ml100k-{fold}",
            item_meta=data.item_meta,
            user_meta=data.user_meta,
            rating_scale=data.rating_scale,
            source=data.source,
        )
    result = splits.make_split(data, spec)
    if isinstance(result, list):
        raise ConfigError(
            f"split {spec!r} yields several folds; use the benchmark command for k-fold runs"
        )
    return result


def check_split(split: Any, spec: str) -> None:
    """Refuse, before any fitting, a split that leaves nothing to train on or nothing to evaluate.

    Raises:
        ConfigError: the train or test part is empty, or none of the test users is in the train
            part (every metric would come out empty, after a whole training run).
    """
    train, test = getattr(split, "train", None), getattr(split, "test", None)
    if not isinstance(train, Interactions) or not isinstance(test, Interactions):
        return  # held-out-user splits have their own fold-in evaluation
    for part, inter in (("train", train), ("test", test)):
        if len(inter) == 0:
            raise ConfigError(
                f"split {spec!r} of {train.source}: the {part} part is empty; "
                "use more data or another split"
            )
    import numpy as np

    users = test.users.lookup(np.unique(test.user_idx))
    if not (train.users.index(users, missing="negative") >= 0).any():
        raise ConfigError(
            f"split {spec!r} of {train.source}: none of the {len(users)} test users is in the "
            "train part, so nothing can be evaluated; use more data or a per-user split "
            "(temporal-user:0.2, loo)"
        )


def evaluate_model(
    model: Recommender,
    split: Any,
    ks: tuple[int, ...] = (10,),
    *,
    memory_budget_bytes: int | None = None,
) -> dict[str, Any]:
    """Rating metrics (rating models, explicit data) and full-ranking metrics on ``split.test``.

    ``memory_budget_bytes`` bounds one user chunk's scoring working set (default 512 MiB).
    """
    from recforge.eval.evaluate import evaluate_ranking, evaluate_ratings

    out: dict[str, Any] = {"protocol": split.protocol.describe()}
    explicit = split.train.rating_scale is not None
    if model.predicts_ratings and explicit:
        out["rating"] = evaluate_ratings(model, split.test).to_dict()
    threshold = EXPLICIT_RELEVANCE_THRESHOLD if explicit else None
    out["ranking"] = evaluate_ranking(
        model,
        split,
        ks=ks,
        relevance_threshold=threshold,
        memory_budget_bytes=memory_budget_bytes,
    ).to_dict()
    return out


def train_run(
    model_name: str,
    data: str | Path | Interactions,
    *,
    split: str = "random:0.2",
    config: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    ks: tuple[int, ...] = (10,),
    checkpoint_every_epochs: int | None = None,
    checkpoint_every_minutes: float | None = None,
    resume: bool = False,
    distributed: bool = False,
) -> TrainResult:
    """Train ``model_name`` on ``data`` with the given split, evaluate on its test part, save a run.

    Args:
        model_name: a registered model (see ``recforge.models.available()``).
        data: MovieLens release name, ratings file path, or Interactions.
        split: split spec (see :func:`resolve_split`).
        config: model hyper-parameters (validated by the model's config class).
        out: run directory to write (atomically); nothing is written when None.
        checkpoint_every_epochs: checkpoint the training every N epochs into
            :func:`checkpoint_dir` ``(out)`` (needs ``out``).
        checkpoint_every_minutes: checkpoint at the first epoch end M minutes after the last one.
        resume: continue from the checkpoints in :func:`checkpoint_dir` ``(out)`` (see
            :func:`resume_run`, which also restores the arguments).
        distributed: train data-parallel under torchrun (DDP; see
            :mod:`recforge.train.distributed`). Every rank trains; only rank 0 evaluates, writes
            checkpoints and the run; the other ranks return a result with empty ``metrics``.

    Raises:
        ConfigError: checkpointing or resuming without ``out``; ``distributed`` for a model the
            Trainer does not train, or outside torchrun.
    """
    from recforge.data.sources import load_dataset
    from recforge.models.registry import create
    from recforge.train.checkpoint import CheckpointPolicy, training_context

    timings: dict[str, float] = {}
    model = create(model_name, dict(config or {}))  # validate the config before any work
    checkpointing = resume or checkpoint_every_epochs is not None or checkpoint_every_minutes
    rank = _check_distributed(model, model_name) if distributed else 0
    policy: CheckpointPolicy | None = None
    if checkpointing:
        if out is None:
            raise ConfigError("checkpoints and --resume need a run directory; pass --out")
        policy = CheckpointPolicy(
            checkpoint_dir(out),
            every_epochs=checkpoint_every_epochs,
            every_minutes=checkpoint_every_minutes,
            resume=resume,
        )
    t0 = time.perf_counter()
    inter = data if isinstance(data, Interactions) else load_dataset(data)
    sp = resolve_split(inter, split)
    check_split(sp, split)
    timings["load_split_s"] = time.perf_counter() - t0
    if policy is not None and not resume and rank == 0:
        _write_run_spec(
            policy,
            model_name=model_name,
            data=data,
            inter=inter,
            split=split,
            config=dict(config or {}),
            ks=ks,
        )
    elif policy is not None:
        _check_run_spec(policy.directory, inter)
    t0 = time.perf_counter()
    if distributed:
        from recforge.train.distributed import distributed_session

        # The process group lives for the fit only; rank 0 evaluates and saves on its own.
        with (
            distributed_session(str(getattr(model.config, "device", "auto"))) as dinfo,
            training_context(checkpoints=policy, distributed=dinfo),
        ):
            model.fit(sp.train, sp.valid)
    else:
        with training_context(checkpoints=policy):
            model.fit(sp.train, sp.valid)
    timings["fit_s"] = time.perf_counter() - t0
    if rank != 0:
        history_r: pd.DataFrame | None = getattr(model, "history_", None)
        return TrainResult(model, sp, {}, None, history_r, timings, rank=rank)
    t0 = time.perf_counter()
    metrics = evaluate_model(model, sp, ks)
    timings["evaluate_s"] = time.perf_counter() - t0
    metrics["timings"] = timings
    history: pd.DataFrame | None = getattr(model, "history_", None)
    run_dir = None
    if out is not None:
        run_dir = save_trained_run(
            out,
            model,
            metrics,
            data=data,
            inter=inter,
            extra={"split_spec": split, "split": sp.protocol.describe()},
        )
    if policy is not None:
        # The run directory is complete; its checkpoints have nothing left to restore.
        shutil.rmtree(policy.directory, ignore_errors=True)
    return TrainResult(model, sp, metrics, run_dir, history, timings)


def save_trained_run(
    out: str | Path,
    model: Recommender,
    metrics: Mapping[str, Any],
    *,
    data: str | Path | Interactions,
    inter: Interactions,
    extra: Mapping[str, Any],
) -> Path:
    """Write a fitted model's run directory (atomically) plus its learning-curve plot.

    Args:
        out: run directory to write.
        model: the fitted model; its ``history_`` (if any) is saved and plotted.
        metrics: what the evaluation produced (saved as metrics.json).
        data: the data spec the caller was given (recorded so ``evaluate``/``report`` can reload).
        inter: the loaded data (its fingerprint is recorded).
        extra: more manifest entries (split spec, protocol record, ...).
    """
    from recforge.artifacts import save_run

    history: pd.DataFrame | None = getattr(model, "history_", None)
    run_dir = save_run(
        out,
        model,
        metrics=dict(metrics),
        history=history,
        data_fingerprint=inter.fingerprint(),
        extra={
            "data": str(data) if not isinstance(data, Interactions) else inter.source,
            **extra,
        },
    )
    if history is not None and len(history):
        from recforge.viz.plots import learning_curve

        learning_curve(history, run_dir / "learning_curve.png")
    return run_dir


def _check_distributed(model: Recommender, model_name: str) -> int:
    """This process's torchrun rank, after checking that ``model`` can train data-parallel."""
    import os

    from recforge.models.neural import NeuralRecommender
    from recforge.train.distributed import require_torchrun

    if not isinstance(model, NeuralRecommender):
        raise ConfigError(
            f"model {model_name!r} is not trained by recforge's Trainer (closed-form or "
            "neighbourhood model); drop --distributed and run it in one process"
        )
    require_torchrun()
    return int(os.environ["RANK"])


#: Name of the run description inside a checkpoint directory.
RUN_SPEC = "run.json"


def checkpoint_dir(out: str | Path) -> Path:
    """Where the checkpoints of run directory ``out`` live while it trains: ``<out>.ckpt``."""
    p = Path(out)
    return p.with_name(p.name + ".ckpt")


def _write_run_spec(
    policy: Any,
    *,
    model_name: str,
    data: str | Path | Interactions,
    inter: Interactions,
    split: str,
    config: dict[str, Any],
    ks: tuple[int, ...],
) -> None:
    """Start a fresh checkpoint directory holding what :func:`resume_run` needs."""
    from recforge._atomic import atomic_write_text

    if isinstance(data, Interactions):
        data_spec: str | None = None  # resumable from Python (same Interactions), not the CLI
    else:
        path = Path(data).expanduser()
        data_spec = str(path.resolve()) if path.exists() else str(data)
    directory = Path(policy.directory)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("fit-*.safetensors"):  # leftovers of an abandoned earlier run
        old.unlink()
    spec = {
        "model": model_name,
        "data": data_spec,
        "data_fingerprint": inter.fingerprint(),
        "split": split,
        "config": config,
        "ks": list(ks),
        "checkpoint_every_epochs": policy.every_epochs,
        "checkpoint_every_minutes": policy.every_minutes,
    }
    atomic_write_text(directory / RUN_SPEC, json.dumps(spec, indent=2, default=str) + "\n")


def _read_run_spec(directory: Path) -> dict[str, Any]:
    path = directory / RUN_SPEC
    try:
        spec: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no checkpoint to resume (was the run started with --checkpoint-every?)"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable run description ({exc})") from None
    return spec


def _check_run_spec(directory: Path, inter: Interactions) -> None:
    spec = _read_run_spec(directory)
    if spec.get("data_fingerprint") != inter.fingerprint():
        raise DataError(
            f"{directory / RUN_SPEC}: the training data changed since the checkpoint was "
            "written; restore the original data or start a new run"
        )


def resume_run(out: str | Path, *, distributed: bool = False) -> TrainResult:
    """Continue the interrupted ``recforge train --out <out>`` from its last checkpoint.

    Everything needed (model, config, data, split, checkpoint cadence) is read from
    ``<out>.ckpt/run.json``; the result equals that of an uninterrupted run (bit-identical
    weights on CPU).

    A data-parallel run resumes with ``distributed=True`` under torchrun with the same number of
    processes (the checkpoint records the world size and refuses another one).

    Raises:
        ConfigError: there is no checkpoint directory, or its data was an in-memory object.
    """
    spec = _read_run_spec(checkpoint_dir(out))
    if spec.get("data") is None:
        raise ConfigError(
            f"{checkpoint_dir(out) / RUN_SPEC}: the run trained on in-memory data; resume it "
            "from Python with train_run(..., resume=True) and the same Interactions"
        )
    return train_run(
        str(spec["model"]),
        str(spec["data"]),
        split=str(spec["split"]),
        config=dict(spec.get("config") or {}),
        out=out,
        ks=tuple(int(k) for k in spec.get("ks", [10])),
        checkpoint_every_epochs=spec.get("checkpoint_every_epochs"),
        checkpoint_every_minutes=spec.get("checkpoint_every_minutes"),
        resume=True,
        distributed=distributed,
    )
