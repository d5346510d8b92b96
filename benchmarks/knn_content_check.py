"""Benchmark figures for the neighbourhood and content-based models (issue 4).

Measures, on MovieLens 100k (``$RECFORGE_DATA_DIR/ml-100k``):

1. the u1..u5 rating table: RMSE / MAE per fold and mean (models that predict ratings);
2. the ranking table: per-user temporal 80/20 split (each user's latest 20 % of ratings to test,
   ties by item id), full ranking over all training items minus the user's training items,
   NDCG@10 and Recall@10 (every test item relevant, no rating threshold);
3. fold-in latency: median milliseconds of ``recommend_for_ratings`` for a new user with 10
   ratings on a model fitted on the whole of ML-100k.

Run from the repository root::

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/knn_content_check.py \\
        [--out benchmarks/results/knn_content]

It writes ``<out>.json`` and ``<out>.md`` (default ``benchmarks/results/knn_content``) and prints
the Markdown tables. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge.data.interactions import Interactions
from recforge.data.movielens import load_movielens, load_movielens_fold
from recforge.data.split import temporal_user
from recforge.eval.evaluate import evaluate_ranking
from recforge.models.registry import create

#: (label, model name, config) of the rating table.
RATING_MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("biases (reference)", "biases", {}),
    ("item_knn cosine", "item_knn", {"similarity": "cosine"}),
    ("item_knn adjusted_cosine", "item_knn", {"similarity": "adjusted_cosine"}),
    ("item_knn pearson_baseline", "item_knn", {"similarity": "pearson_baseline"}),
    (
        "item_knn pearson_baseline k=40",
        "item_knn",
        {"similarity": "pearson_baseline", "k_neighbors": 40},
    ),
    ("user_knn cosine", "user_knn", {"similarity": "cosine"}),
    ("user_knn adjusted_cosine", "user_knn", {"similarity": "adjusted_cosine"}),
    ("user_knn pearson_baseline", "user_knn", {"similarity": "pearson_baseline"}),
    ("content", "content", {}),
    (
        "content + item_knn hybrid",
        "content",
        {"hybrid_with": "item_knn", "hybrid_config": {"similarity": "pearson_baseline"}},
    ),
]

#: (label, model name, config) of the ranking table.
RANKING_MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("popularity (reference)", "popularity", {}),
    ("item_knn implicit k=40", "item_knn", {"feedback": "implicit"}),
    ("item_knn implicit k=20", "item_knn", {"feedback": "implicit", "k_neighbors": 20}),
    ("item_knn implicit k=40 normalize", "item_knn", {"feedback": "implicit", "normalize": True}),
    (
        "item_knn explicit pearson_baseline (ranked by predicted rating)",
        "item_knn",
        {"similarity": "pearson_baseline"},
    ),
    ("user_knn implicit k=40", "user_knn", {"feedback": "implicit"}),
    ("content implicit", "content", {"feedback": "implicit"}),
    ("content explicit (ranked by predicted rating)", "content", {}),
    (
        "content implicit + item_knn hybrid w=0.7",
        "content",
        {
            "feedback": "implicit",
            "hybrid_with": "item_knn",
            "hybrid_weight": 0.7,
            "hybrid_config": {"feedback": "implicit"},
        },
    ),
]

FOLD_IN_MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("item_knn explicit", "item_knn", {"similarity": "pearson_baseline"}),
    ("item_knn implicit", "item_knn", {"feedback": "implicit"}),
    ("user_knn explicit", "user_knn", {"similarity": "pearson_baseline"}),
    ("user_knn implicit", "user_knn", {"feedback": "implicit"}),
    ("content explicit", "content", {}),
    ("content + item_knn hybrid", "content", {"hybrid_with": "item_knn"}),
]


def data_dir() -> Path:
    """``$RECFORGE_DATA_DIR`` (SystemExit with a message when it holds no ml-100k)."""
    root = os.environ.get("RECFORGE_DATA_DIR")
    if not root or not (Path(root) / "ml-100k" / "u.data").is_file():
        raise SystemExit("set RECFORGE_DATA_DIR to a folder holding ml-100k/ (u.data, u1.base...)")
    return Path(root)


def rating_table(root: Path, meta: pd.DataFrame | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for label, name, cfg in RATING_MODELS:
        rmse, mae, fit_s = [], [], []
        for fold in range(1, 6):
            train_df, test_df = load_movielens_fold(
                "ml-100k", f"u{fold}", data_dir=root, download=False
            )
            train = Interactions.from_frame(
                train_df, item_meta=meta, rating_scale=(1.0, 5.0), source=f"ml-100k u{fold}.base"
            )
            t0 = time.perf_counter()
            model = create(name, cfg).fit(train)
            fit_s.append(time.perf_counter() - t0)
            pred = model.predict(test_df["user_id"].to_numpy(), test_df["item_id"].to_numpy())
            # Unknown test users/items (a handful per fold) get the training mean, as Surprise does.
            pred = np.where(np.isfinite(pred), pred, train.global_mean)
            err = pred.astype(np.float64) - test_df["rating"].to_numpy(dtype=np.float64)
            rmse.append(float(np.sqrt(np.mean(err**2))))
            mae.append(float(np.mean(np.abs(err))))
        rows.append(
            {
                "model": label,
                "name": name,
                "config": cfg,
                "rmse": rmse,
                "mae": mae,
                "rmse_mean": float(np.mean(rmse)),
                "mae_mean": float(np.mean(mae)),
                "fit_seconds_mean": float(np.mean(fit_s)),
            }
        )
    return rows


def ranking_table(data: Interactions) -> list[dict[str, Any]]:
    split = temporal_user(data, 0.2)
    rows: list[dict[str, Any]] = []
    for label, name, cfg in RANKING_MODELS:
        t0 = time.perf_counter()
        model = create(name, cfg).fit(split.train)
        fit_s = time.perf_counter() - t0
        rep = evaluate_ranking(model, split, ks=(10,))
        rows.append(
            {
                "model": label,
                "name": name,
                "config": cfg,
                "ndcg@10": float(rep.summary["ndcg@10"]),
                "recall@10": float(rep.summary["recall@10"]),
                "fit_seconds": fit_s,
            }
        )
    return rows


def fold_in_latency(data: Interactions, n_users: int = 50, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    items = data.items.ids
    requests = []
    for _ in range(n_users):
        pick = rng.choice(len(items), 10, replace=False)
        requests.append(
            dict(
                zip(
                    items[pick].tolist(), rng.integers(1, 6, 10).astype(float).tolist(), strict=True
                )
            )
        )
    rows: list[dict[str, Any]] = []
    for label, name, cfg in FOLD_IN_MODELS:
        model = create(name, cfg).fit(data)
        model.recommend_for_ratings(requests[0], k=10)  # warm caches outside the timing
        times = []
        for req in requests:
            t0 = time.perf_counter()
            model.recommend_for_ratings(req, k=10)
            times.append((time.perf_counter() - t0) * 1000)
        rows.append(
            {
                "model": label,
                "median_ms": float(np.median(times)),
                "p90_ms": float(np.percentile(times, 90)),
            }
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "## ML-100k u1..u5 rating table (RMSE / MAE; unknown pairs get the training mean)",
        "",
        "| model | RMSE u1..u5 | mean RMSE | mean MAE | fit s |",
        "|---|---|---|---|---|",
    ]
    for r in result["rating"]:
        folds = " ".join(f"{x:.4f}" for x in r["rmse"])
        lines.append(
            f"| {r['model']} | {folds} | {r['rmse_mean']:.4f} | {r['mae_mean']:.4f} "
            f"| {r['fit_seconds_mean']:.2f} |"
        )
    lines += [
        "",
        "## ML-100k per-user temporal 80/20, full ranking (all test items relevant)",
        "",
        "| model | NDCG@10 | Recall@10 | fit s |",
        "|---|---|---|---|",
    ]
    for r in result["ranking"]:
        lines.append(
            f"| {r['model']} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['fit_seconds']:.2f} |"
        )
    lines += [
        "",
        "## Fold-in latency: one new user with 10 ratings, model fitted on all of ML-100k",
        "",
        "| model | median ms | p90 ms |",
        "|---|---|---|",
    ]
    for r in result["fold_in"]:
        lines.append(f"| {r['model']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/knn_content")
    parser.add_argument("--skip", nargs="*", default=[], choices=["rating", "ranking", "fold_in"])
    args = parser.parse_args()
    root = data_dir()
    data = load_movielens("ml-100k", data_dir=root, download=False)
    result: dict[str, Any] = {
        "dataset": "ml-100k",
        "rating_protocol": "ml100k u1..u5 predefined folds",
        "ranking_protocol": "temporal-user(test_ratio=0.2), full ranking, candidates=train items",
    }
    result["rating"] = [] if "rating" in args.skip else rating_table(root, data.item_meta)
    result["ranking"] = [] if "ranking" in args.skip else ranking_table(data)
    result["fold_in"] = [] if "fold_in" in args.skip else fold_in_latency(data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    text = markdown(result)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
