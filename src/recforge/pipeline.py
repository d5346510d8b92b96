"""End-to-end jobs the CLI exposes: load → split → fit → evaluate → save.

Each function here is what one CLI command calls; the CLI only parses options and prints.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
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


def evaluate_model(model: Recommender, split: Any, ks: tuple[int, ...] = (10,)) -> dict[str, Any]:
    """Rating metrics (rating models, explicit data) and full-ranking metrics on ``split.test``."""
    from recforge.eval.evaluate import evaluate_ranking, evaluate_ratings

    out: dict[str, Any] = {"protocol": split.protocol.describe()}
    explicit = split.train.rating_scale is not None
    if model.predicts_ratings and explicit:
        out["rating"] = evaluate_ratings(model, split.test).to_dict()
    threshold = EXPLICIT_RELEVANCE_THRESHOLD if explicit else None
    out["ranking"] = evaluate_ranking(model, split, ks=ks, relevance_threshold=threshold).to_dict()
    return out


def train_run(
    model_name: str,
    data: str | Path | Interactions,
    *,
    split: str = "random:0.2",
    config: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    ks: tuple[int, ...] = (10,),
) -> TrainResult:
    """Train ``model_name`` on ``data`` with the given split, evaluate on its test part, save a run.

    Args:
        model_name: a registered model (see ``recforge.models.available()``).
        data: MovieLens release name, ratings file path, or Interactions.
        split: split spec (see :func:`resolve_split`).
        config: model hyper-parameters (validated by the model's config class).
        out: run directory to write (atomically); nothing is written when None.
    """
    from recforge.artifacts import save_run
    from recforge.data.sources import load_dataset
    from recforge.models.registry import create

    timings: dict[str, float] = {}
    model = create(model_name, dict(config or {}))  # validate the config before any work
    t0 = time.perf_counter()
    inter = data if isinstance(data, Interactions) else load_dataset(data)
    sp = resolve_split(inter, split)
    timings["load_split_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.fit(sp.train, sp.valid)
    timings["fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = evaluate_model(model, sp, ks)
    timings["evaluate_s"] = time.perf_counter() - t0
    metrics["timings"] = timings
    history: pd.DataFrame | None = getattr(model, "history_", None)
    run_dir = None
    if out is not None:
        run_dir = save_run(
            out,
            model,
            metrics=metrics,
            history=history,
            data_fingerprint=inter.fingerprint(),
            extra={
                "data": str(data) if not isinstance(data, Interactions) else inter.source,
                "split_spec": split,
                "split": sp.protocol.describe(),
            },
        )
        if history is not None and len(history):
            from recforge.viz.plots import learning_curve

            learning_curve(history, run_dir / "learning_curve.png")
    return TrainResult(model, sp, metrics, run_dir, history, timings)
