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

from recforge.data.datasource import DataSource
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError
from recforge.models.base import Recommender

#: What ``train_run`` and the CLI accept as data.
DataSpec = str | Path | DataSource | Interactions

#: The split spec that trains on all the data (production runs).
ALL_DATA = "none"
#: Protocols that order events in time, refused on data without timestamps.
TEMPORAL_PROTOCOLS = frozenset({"temporal-user", "global-temporal", "leave-latest-out"})


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


@dataclass(frozen=True)
class AllDataSplit:
    """``--split none``: train on every event; ``valid`` (early stopping) when a ratio is given.

    ``test`` is None: nothing is held out, so the run has no test metrics and is marked
    "all data" in its manifest.
    """

    train: Interactions
    valid: Interactions | None
    protocol: Any
    test: None = None


def resolve_data(data: DataSpec) -> tuple[Interactions, DataSource | None]:
    """Interactions for ``data`` and the DataSource it was read from (None for in-memory data)."""
    if isinstance(data, Interactions):
        return data, None
    source = data if isinstance(data, DataSource) else DataSource.of(data)
    inter: Interactions = source.load()
    return inter, source


def all_data_split(data: Interactions, valid_ratio: float | None = None, seed: int = 42) -> Any:
    """Every event in train; with ``valid_ratio``, a random share of it held out for validation."""
    from recforge.data import split as splits

    if valid_ratio is None:
        return AllDataSplit(data, None, splits.Protocol("all-data", {}))
    if not 0.0 < valid_ratio < 1.0:
        raise ConfigError(f"--valid-ratio must be in (0, 1), got {valid_ratio}")
    carved = splits.carve_validation(data, "random", test_ratio=valid_ratio, seed=seed)
    protocol = splits.Protocol("all-data", {"valid_ratio": valid_ratio, "seed": seed})
    return AllDataSplit(carved.train, carved.test, protocol)


def files_split(train: DataSource, test: DataSource) -> Any:
    """The split two files give (what ``recforge data split`` writes), read with one mapping.

    Without a declared scale, the scale recorded in the ``split.json`` beside the files is used,
    else the (min, max) over both parts, so train and test are judged on the same scale; the
    title column it records gives the items' titles unless ``--items``, ``--title-col`` or
    ``--item-title-col`` say otherwise (the original's title column given again is the parts'
    ``title`` column, :func:`recforge.data.split_io.part_title_source`), and the count column
    it records the events' weights unless ``--count-col``/``--rating-col`` say otherwise. Event
    settings it records were applied when the parts were written: the same ones given again are
    not applied twice, others are refused
    (:func:`recforge.data.split_io.settled_events`).
    """
    from recforge.data import split as splits
    from recforge.data.split_io import read_split_meta, settled_events

    meta = read_split_meta(train.path) if not train.is_movielens else None
    if meta is not None and train.rating_scale is None and not train.implicit:
        # Files written by `recforge data split`: same scale (or implicit) as the original data.
        stored = meta.get("rating_scale")
        if isinstance(stored, list) and len(stored) == 2:
            train = train.replace(rating_scale=tuple(stored))
            test = test.replace(rating_scale=tuple(stored))
        elif meta.get("implicit"):
            train, test = train.replace(implicit=True), test.replace(implicit=True)
    told_titles = any(v is not None for v in (train.items, train.title_col, train.item_title_col))
    # "item_title_col": how split folders written before --title-col record the column.
    titled = ("title_col", "item_title_col")
    train, test = _recorded_column(meta, titled, (train, test), told=told_titles)
    told_counts = train.count_col is not None or train.rating_col is not None
    train, test = _recorded_column(meta, ("count_col",), (train, test), told=told_counts)
    if meta is not None and isinstance(meta.get("events"), dict):
        train, test = settled_events(train, meta["events"]), settled_events(test, meta["events"])
    tr, _ = resolve_data(train)
    te, _ = resolve_data(test)
    scale = train.rating_scale
    if scale is None and tr.rating_scale is not None and te.rating_scale is not None:
        scale = (
            min(tr.rating_scale[0], te.rating_scale[0]),
            max(tr.rating_scale[1], te.rating_scale[1]),
        )
    return splits.predefined(
        tr,
        te,
        name="files",
        params={"train": train.name, "test": test.name},
        rating_scale=scale,
        source=train.name,
    )


def _recorded_column(
    meta: dict[str, Any] | None,
    keys: tuple[str, ...],
    parts: tuple[DataSource, DataSource],
    *,
    told: bool,
) -> tuple[DataSource, DataSource]:
    """Both parts with the column that ``split.json`` records under the first of ``keys`` it
    holds (the first key is also the name of the DataSource field it sets: ``title_col``,
    ``count_col``; later ones are older names of it), unless the user's own flags already
    ``told`` where that role comes from, or no column name is recorded."""
    recorded = (meta.get(key) for key in keys) if meta is not None else iter(())
    column = next((c for c in recorded if c is not None), None)
    if told or not isinstance(column, str):
        return parts
    field = keys[0]
    return parts[0].replace(**{field: column}), parts[1].replace(**{field: column})


def _check_time_needed(data: Interactions, what: str) -> None:
    if not data.has_timestamps:
        raise ConfigError(
            f"{what} orders events in time, but {data.source} has no timestamps; map its time "
            "column with --time-col, or use a random split (random:0.2)"
        )


def resolve_split(data: Interactions, spec: str, *, valid_ratio: float | None = None) -> Any:
    """Turn a split spec into a Split.

    ``none`` trains on everything (:func:`all_data_split`); ``ml100k:u1`` .. ``ml100k:u5``,
    ``ml100k:ua``/``ub`` select GroupLens' predefined ML-100k files; everything else goes to
    :func:`recforge.data.split.make_split` (``random:0.2``, ``kfold:5``...). Temporal protocols
    are refused on data without timestamps.
    """
    from recforge.data import split as splits

    if spec.strip().lower() == ALL_DATA:
        return all_data_split(data, valid_ratio)
    if valid_ratio is not None:
        raise ConfigError(
            "--valid-ratio goes with --split none; other splits carry their own "
            "(e.g. random:0.2:valid_ratio=0.1)"
        )
    if not spec.startswith("ml100k:"):
        name, _ = splits.parse_split_spec(spec)
        if name in TEMPORAL_PROTOCOLS:
            _check_time_needed(data, f"split {spec!r}")
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
    if isinstance(split, AllDataSplit):
        if len(train) == 0:  # type: ignore[arg-type]
            raise ConfigError(f"split {spec!r}: the data is empty; nothing to train on")
        return
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
    like_threshold: float | None = None,
    relevance_threshold: float | None = None,
) -> dict[str, Any]:
    """Rating metrics (rating models, explicit data) and full-ranking metrics on ``split.test``.

    ``memory_budget_bytes`` bounds one user chunk's scoring working set (default 512 MiB). Like
    and relevance thresholds follow the training data's rating scale
    (:func:`recforge.eval.thresholds.scale_thresholds`) unless overridden; the ``protocol`` line
    names them.
    """
    from recforge.eval.evaluate import evaluate_ranking, evaluate_ratings
    from recforge.eval.thresholds import thresholds_for
    from recforge.progress import line

    thr = thresholds_for(split.train, like=like_threshold, relevance=relevance_threshold)
    out: dict[str, Any] = {
        "protocol": f"{split.protocol.describe()}; {thr.describe()}",
        "thresholds": thr.to_dict(),
    }
    if isinstance(split, AllDataSplit):
        out["note"] = "all data: trained on every event, nothing held out to evaluate"
        return out
    explicit = split.train.rating_scale is not None
    if model.predicts_ratings and explicit:
        line("evaluate: rating metrics")
        like = 3.0 if thr.like is None else thr.like
        out["rating"] = evaluate_ratings(model, split.test, like_threshold=like).to_dict()
    line(f"evaluate: ranking metrics over {model.n_items} items")
    out["ranking"] = evaluate_ranking(
        model,
        split,
        ks=ks,
        relevance_threshold=thr.relevance,
        memory_budget_bytes=memory_budget_bytes,
        progress=True,  # a transient bar on a terminal; off one, lines in the CLI only
    ).to_dict()
    return out


def train_run(
    model_name: str,
    data: DataSpec,
    *,
    split: str = "random:0.2",
    config: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    ks: tuple[int, ...] = (10,),
    checkpoint_every_epochs: int | None = None,
    checkpoint_every_minutes: float | None = None,
    resume: bool = False,
    distributed: bool = False,
    test_data: DataSource | None = None,
    valid_ratio: float | None = None,
    like_threshold: float | None = None,
    relevance_threshold: float | None = None,
) -> TrainResult:
    """Train ``model_name`` on ``data`` with the given split, evaluate on its test part, save a run.

    Args:
        model_name: a registered model (see ``recforge.models.available()``).
        data: MovieLens release name, ratings file path, :class:`DataSource`, or Interactions.
        split: split spec (see :func:`resolve_split`); ``"none"`` trains on all the data (no
            test metrics; the run is marked "all data").
        test_data: a test file (with ``data`` the train file, e.g. both written by
            ``recforge data split``); ``split`` is then ignored.
        valid_ratio: with ``split="none"``, the random share held out for early stopping.
        like_threshold, relevance_threshold: overrides of the scale-derived thresholds
            (:mod:`recforge.eval.thresholds`); recorded in the run.
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
    from recforge.models.registry import create
    from recforge.progress import line

    timings: dict[str, float] = {}
    model = create(model_name, dict(config or {}))  # validate the config before any work
    rank = _check_distributed(model, model_name) if distributed else 0
    policy = _checkpoint_policy(
        out, test_data, resume, checkpoint_every_epochs, checkpoint_every_minutes
    )
    t0 = time.perf_counter()
    sp, inter, source, split = _load_split(data, split, test_data, valid_ratio)
    check_split(sp, split)
    _check_recency(model, inter)
    timings["load_split_s"] = time.perf_counter() - t0
    line(f"train: {len(sp.train)} training events ({sp.protocol.describe()}); fitting {model_name}")
    recorded = source if source is not None else data  # what the run records as its data
    if policy is not None and not resume and rank == 0:
        params = dict(config or {})
        _write_run_spec(policy, model_name, recorded, inter, split, params, ks, valid_ratio)
    elif policy is not None:
        _check_run_spec(policy.directory, inter)
    timings["fit_s"] = _fit(model, sp, policy, distributed)
    if rank != 0:
        return TrainResult(model, sp, {}, None, getattr(model, "history_", None), timings, rank)
    thresholds = (like_threshold, relevance_threshold)
    metrics = _evaluate_timed(model, sp, ks, thresholds, timings)
    history: pd.DataFrame | None = getattr(model, "history_", None)
    run_dir = None
    if out is not None:
        extra = _run_record(sp, split, ks, valid_ratio, test_data, thresholds)
        run_dir = save_trained_run(out, model, metrics, data=recorded, inter=inter, extra=extra)
    if policy is not None:
        # The run directory is complete; its checkpoints have nothing left to restore.
        shutil.rmtree(policy.directory, ignore_errors=True)
    return TrainResult(model, sp, metrics, run_dir, history, timings)


def _evaluate_timed(
    model: Recommender,
    sp: Any,
    ks: tuple[int, ...],
    thresholds: tuple[float | None, float | None],
    timings: dict[str, float],
) -> dict[str, Any]:
    """:func:`evaluate_model` on the fitted model, timed; the metrics carry all ``timings``.

    A run on all the data (``--split none``) has nothing to evaluate: its metrics are the
    protocol line and the note saying so, and ``timings`` gets no ``evaluate_s``.
    """
    from recforge.progress import line

    held = getattr(sp, "test", None)  # None when trained on all the data
    tail = f"; evaluating on {len(held)} test events" if held is not None else ""
    line(f"train: fitted in {timings['fit_s']:.1f} s{tail}")
    t0 = time.perf_counter()
    like, relevance = thresholds
    metrics = evaluate_model(model, sp, ks, like_threshold=like, relevance_threshold=relevance)
    if held is not None:
        timings["evaluate_s"] = time.perf_counter() - t0
    metrics["timings"] = timings
    return metrics


def _checkpoint_policy(
    out: str | Path | None,
    test_data: DataSource | None,
    resume: bool,
    every_epochs: int | None,
    every_minutes: float | None,
) -> Any:
    """The CheckpointPolicy of a checkpointed or resumed run (None when neither)."""
    if not (resume or every_epochs is not None or every_minutes):
        return None
    from recforge.train.checkpoint import CheckpointPolicy

    if test_data is not None:
        raise ConfigError(
            "checkpoints and --resume do not combine with --test yet; "
            "train on the train file with --split none, or drop --test"
        )
    if out is None:
        raise ConfigError("checkpoints and --resume need a run directory; pass --out")
    return CheckpointPolicy(
        checkpoint_dir(out), every_epochs=every_epochs, every_minutes=every_minutes, resume=resume
    )


def _load_split(
    data: DataSpec, split: str, test_data: DataSource | None, valid_ratio: float | None
) -> tuple[Any, Interactions, DataSource | None, str]:
    """``(split, the loaded data, its DataSource, the split spec)`` of ``train_run``'s arguments.

    With ``test_data`` the split is the two files' (spec ``"files"``), else ``split`` of ``data``.
    """
    if test_data is None:
        inter, source = resolve_data(data)
        return resolve_split(inter, split, valid_ratio=valid_ratio), inter, source, split
    if isinstance(data, Interactions):
        raise ConfigError("test_data needs the train part as a file (DataSource), too")
    source = data if isinstance(data, DataSource) else DataSource.of(data)
    sp = files_split(source, test_data)
    return sp, sp.train, source, "files"


def _fit(model: Recommender, sp: Any, policy: Any, distributed: bool) -> float:
    """Fit on the split's train (and valid) part, checkpointed and/or data-parallel; seconds."""
    from recforge.train.checkpoint import training_context

    t0 = time.perf_counter()
    if not distributed:
        with training_context(checkpoints=policy):
            model.fit(sp.train, sp.valid)
        return time.perf_counter() - t0
    from recforge.train.distributed import distributed_session

    # The process group lives for the fit only; rank 0 evaluates and saves on its own.
    with (
        distributed_session(str(getattr(model.config, "device", "auto"))) as dinfo,
        training_context(checkpoints=policy, distributed=dinfo),
    ):
        model.fit(sp.train, sp.valid)
    return time.perf_counter() - t0


def _run_record(
    sp: Any,
    split: str,
    ks: tuple[int, ...],
    valid_ratio: float | None,
    test_data: DataSource | None,
    thresholds: tuple[float | None, float | None],
) -> dict[str, Any]:
    """The manifest entries that let ``evaluate``/``report`` rebuild the run's split."""
    extra: dict[str, Any] = {
        "split_spec": split,
        "split": "all data (no test split)"
        if isinstance(sp, AllDataSplit)
        else sp.protocol.describe(),
        "all_data": isinstance(sp, AllDataSplit),
        "thresholds": {"like": thresholds[0], "relevance": thresholds[1]},
        "ks": list(ks),
    }
    if valid_ratio is not None:
        extra["valid_ratio"] = valid_ratio
    if test_data is not None:
        extra["test_source"] = test_data.to_json_dict()
    return extra


def save_trained_run(
    out: str | Path,
    model: Recommender,
    metrics: Mapping[str, Any],
    *,
    data: DataSpec,
    inter: Interactions,
    extra: Mapping[str, Any],
) -> Path:
    """Write a fitted model's run directory (atomically) plus its learning-curve plot.

    Args:
        out: run directory to write.
        model: the fitted model; its ``history_`` (if any) is saved and plotted.
        metrics: what the evaluation produced (saved as metrics.json).
        data: the data spec the caller was given (recorded so ``evaluate``/``report`` can reload:
            a file or DataSource is stored as ``data_source`` with its absolute path).
        inter: the loaded data (its fingerprint is recorded).
        extra: more manifest entries (split spec, protocol record, ...).
    """
    from recforge.artifacts import save_run

    history: pd.DataFrame | None = getattr(model, "history_", None)
    recorded: dict[str, Any] = {"data": inter.source}
    if not isinstance(data, Interactions):
        source = data if isinstance(data, DataSource) else DataSource.of(data)
        # The absolute path: `recforge evaluate RUN` works from any directory.
        recorded = {"data": source.path, "data_source": source.to_json_dict()}
    run_dir = save_run(
        out,
        model,
        metrics=dict(metrics),
        history=history,
        data_fingerprint=inter.fingerprint(),
        extra={**recorded, **extra},
    )
    # A history without a loss (e.g. ALS fitted without tracking it) has no curve to draw.
    if history is not None and len(history) and "train_loss" in history.columns:
        from recforge.viz.plots import learning_curve

        learning_curve(history, run_dir / "learning_curve.png")
    return run_dir


def _check_recency(model: Recommender, data: Interactions) -> None:
    """A model asked to weight histories by recency needs timestamps to order them."""
    tau = getattr(model.config, "recency_tau", None)
    if tau is not None and not data.has_timestamps:
        raise ConfigError(
            f"recency_tau={tau:g} weights each history by recency, but {data.source} has no "
            "timestamps; map its time column with --time-col, or drop recency_tau"
        )


def run_split(
    manifest: Mapping[str, Any],
    *,
    data: DataSpec | None = None,
    split: str | None = None,
    test_data: DataSource | None = None,
) -> tuple[Any, Interactions]:
    """Rebuild the split a saved run was evaluated on (or another one, when given).

    The run's own data is its stored ``data_source`` (absolute path), or an old run's ``data``
    string; a run trained on two files (``test_source``) gets the same two files again.

    Raises:
        ConfigError: the run records no data/split, or it was trained on all the data and no
            other data is given (its events are not a test set).
    """
    stored_test = manifest.get("test_source")
    if test_data is None and data is None and isinstance(stored_test, dict):
        test_data = DataSource(**stored_test)
    if data is None and test_data is not None:
        data = DataSource.from_manifest(dict(manifest))
    if test_data is not None:
        if data is None:
            raise ConfigError("the run does not record its data; pass --data")
        source = data if isinstance(data, DataSource) else DataSource.of(str(data))
        sp = files_split(source, test_data)
        return sp, sp.train
    given_data = data is not None
    all_data = str(manifest.get("split_spec", "")).strip().lower() == ALL_DATA
    if data is None:
        data = DataSource.from_manifest(dict(manifest))
    spec = split or manifest.get("split_spec")
    if not spec:
        raise ConfigError("the run does not record its split; pass --split")
    if (all_data and not given_data) or str(spec).strip().lower() == ALL_DATA:
        raise ConfigError(
            "the run was trained on all the data (--split none), so it has no test part; "
            "evaluate it on new data with --data FILE --split random:0.2 (or --test FILE)"
        )
    if data is None:
        raise ConfigError("the run does not record its data; pass --data")
    inter, _ = resolve_data(data)
    return resolve_split(inter, str(spec)), inter


def evaluate_saved_run(
    run: str | Path,
    *,
    protocol: str | None = None,
    fold: str | None = None,
    data: DataSpec | None = None,
    split: str | None = None,
    test_data: DataSource | None = None,
    ks: tuple[int, ...] | None = None,
    memory_budget_bytes: int | None = None,
    like_threshold: float | None = None,
    relevance_threshold: float | None = None,
    data_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``recforge evaluate``: re-score a saved run on a named protocol or a split (never trains).

    A named protocol (``protocol``, else the run's own when it was trained with one and no
    ``split`` is given) goes to :func:`recforge.eval.protocols.evaluate_run` (``fold``, ``data``).
    Otherwise the run's split is rebuilt (:func:`run_split`; ``data``, ``split``, ``test_data``
    replace the recorded ones) and :func:`evaluate_model` scores it with the run's cut-offs and
    thresholds unless ``ks``, ``like_threshold`` or ``relevance_threshold`` are given.

    Args:
        data_options: DataSource fields (``sep``, column mapping ...) to re-read the run's own
            data with, when ``data`` is not given.

    Raises:
        ConfigError: both ``protocol`` and ``split``, ``fold`` without a protocol, or what
            :func:`run_split` and ``evaluate_run`` refuse.
    """
    chosen = _evaluation_protocol(run, protocol, fold, split)
    if chosen is not None:
        from recforge.eval.protocols import evaluate_run

        return evaluate_run(
            run, chosen, fold=fold, data=str(data) if isinstance(data, Path) else data
        )
    from recforge.artifacts import load_run

    loaded = load_run(run)
    manifest = loaded.manifest
    if data is None and data_options:
        stored = DataSource.from_manifest(manifest)
        data = DataSource.of(stored, **data_options) if stored is not None else None
    sp, _ = run_split(manifest, data=data, split=split, test_data=test_data)
    stored_thr = manifest.get("thresholds") or {}
    return evaluate_model(
        loaded.model,
        sp,
        ks or tuple(manifest.get("ks") or (10,)),
        memory_budget_bytes=memory_budget_bytes,
        like_threshold=like_threshold if like_threshold is not None else stored_thr.get("like"),
        relevance_threshold=relevance_threshold
        if relevance_threshold is not None
        else stored_thr.get("relevance"),
    )


def _evaluation_protocol(
    run: str | Path, protocol: str | None, fold: str | None, split: str | None
) -> str | None:
    """The named protocol to score ``run`` on: ``protocol``, else the run's own unless a split is
    given; None means "rebuild a split"."""
    from recforge.artifacts import read_manifest

    if protocol is not None:
        if split is not None:
            raise ConfigError("give --protocol or --split, not both")
        return protocol
    recorded = read_manifest(run).get("protocol")
    if split is not None or not isinstance(recorded, dict):
        if fold is not None:
            raise ConfigError("--fold needs --protocol (or a run trained with --protocol)")
        return None
    return str(recorded["name"])


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
    if getattr(model.config, "batch_size", 0) == 1:
        # DDP all-reduces every step's gradient: one rating a step (funk_svd) would spend the
        # fit on communication, far slower than the compiled one-process epoch.
        raise ConfigError(
            f"model {model_name!r} takes one SGD step per rating (batch_size 1), which "
            "data-parallel training would all-reduce rating by rating; drop --distributed (its "
            "compiled epoch runs in one process), or set batch_size to 256 or more"
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
    model_name: str,
    data: DataSpec,
    inter: Interactions,
    split: str,
    config: dict[str, Any],
    ks: tuple[int, ...],
    valid_ratio: float | None = None,
) -> None:
    """Start a fresh checkpoint directory holding what :func:`resume_run` needs."""
    from recforge._atomic import atomic_write_text

    data_source: dict[str, Any] | None = None
    if isinstance(data, Interactions):
        data_spec: str | None = None  # resumable from Python (same Interactions), not the CLI
    else:
        source = data if isinstance(data, DataSource) else DataSource.of(data)
        data_spec, data_source = source.path, source.to_json_dict()
    directory = Path(policy.directory)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("fit-*.safetensors"):  # leftovers of an abandoned earlier run
        old.unlink()
    spec = {
        "model": model_name,
        "data": data_spec,
        "data_source": data_source,
        "data_fingerprint": inter.fingerprint(),
        "split": split,
        "config": config,
        "ks": list(ks),
        "valid_ratio": valid_ratio,
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
    stored = spec.get("data_source")
    return train_run(
        str(spec["model"]),
        DataSource(**stored) if isinstance(stored, dict) else str(spec["data"]),
        split=str(spec["split"]),
        config=dict(spec.get("config") or {}),
        out=out,
        ks=tuple(int(k) for k in spec.get("ks", [10])),
        checkpoint_every_epochs=spec.get("checkpoint_every_epochs"),
        checkpoint_every_minutes=spec.get("checkpoint_every_minutes"),
        resume=True,
        distributed=distributed,
        valid_ratio=spec.get("valid_ratio"),
    )
