"""ML-100k ranking table (per-user temporal 80/20, full ranking) for any registered models.

Protocol (DESIGN.md §4), stated in every output:

- data: MovieLens 100k ``u.data`` (943 users, 1682 items, 100 000 ratings);
- split: per-user temporal 80/20 (``recforge.data.split.temporal_user``): each user's ratings
  sorted by timestamp, ties by item id; the last ``ceil(0.2·n)`` (at least 1) go to test; users
  with fewer than 5 ratings stay wholly in train;
- relevance: every test rating is a positive (no threshold);
- ranking: full ranking over every item with a training interaction, minus the user's own
  training items; NDCG@10 (binary gains, ideal DCG over min(10, |test|)) and Recall@10
  (hits / min(10, |test|)), averaged over test users (``recforge.eval.evaluate_ranking``);
- fold-in latency: median milliseconds of ``recommend_for_ratings`` (k=10) for a new user with
  10 ratings, on the model fitted on the training part (200 random users' first 10 train ratings).

``--on valid`` evaluates instead on a validation split carved from the training part with the
same protocol (``carve_validation``), which is where hyper-parameters were chosen; the test
split is touched only by the default ``--on test`` run.

Run from the repository root (the committed figures used one BLAS/OpenMP thread, because the
2-core machine was shared with other jobs and spinning thread pools then dominate small ops)::

    RECFORGE_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
        .venv/bin/python benchmarks/ml100k_ranking.py [--on valid]

Writes ``docs/benchmarks/ml100k_ranking[_valid].json`` and ``.md`` and prints the Markdown table.
Models can be chosen with ``--models 'ease' 'als:{"n_factors": 128}'`` (name, optionally ``:`` and a
JSON config). Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.data.movielens import load_movielens
from recforge.data.split import Split, carve_validation, temporal_user
from recforge.eval.evaluate import evaluate_ranking
from recforge.models.base import Recommender
from recforge.models.registry import create

#: (label, model name, config) of the test table.
TEST_MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("popularity (reference)", "popularity", {}),
    ("ease (defaults: λ=300, binary)", "ease", {}),
    ("ease λ=500", "ease", {"reg": 500.0}),
    ("als implicit (defaults: k=64, λ=20, α=0.3, rating confidence, cg)", "als", {}),
    ("als implicit, cholesky", "als", {"solver": "cholesky"}),
    ("als implicit, binary confidence α=2", "als", {"weighting": "binary", "alpha": 2.0}),
    ("als explicit (ALS-WR, ranked by predicted rating)", "als", {"objective": "explicit"}),
]


#: Environment variables that set BLAS / OpenMP thread counts (numpy's OpenBLAS and torch).
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _valid_grid() -> list[tuple[str, str, dict[str, Any]]]:
    """The neighbourhood of the defaults searched on the validation carve."""
    grid: list[tuple[str, str, dict[str, Any]]] = [("popularity", "popularity", {})]
    for reg in (100.0, 200.0, 300.0, 500.0, 800.0):
        grid.append((f"ease λ={reg:g}", "ease", {"reg": reg}))
    for reg in (500.0, 1500.0):
        grid.append((f"ease λ={reg:g} rating", "ease", {"reg": reg, "weighting": "rating"}))
    for alpha in (0.1, 0.3, 0.5, 1.0):
        for reg in (10.0, 20.0, 30.0):
            grid.append(
                (f"als implicit α={alpha:g} λ={reg:g}", "als", {"alpha": alpha, "reg": reg})
            )
    for alpha in (1.0, 2.0):
        cfg = {"alpha": alpha, "reg": 20.0, "weighting": "binary"}
        grid.append((f"als implicit binary α={alpha:g} λ=20", "als", cfg))
    grid.append(("als implicit k=128", "als", {"n_factors": 128}))
    return grid


def _parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    name, _, cfg = spec.partition(":")
    return spec, name, json.loads(cfg) if cfg else {}


def _fold_in_ms(model: Recommender, train: Interactions, n_users: int = 200) -> float:
    """Median wall milliseconds of one ``recommend_for_ratings`` call with 10 ratings."""
    csr = train.csr()
    rng = np.random.default_rng(0)
    eligible = np.flatnonzero(np.diff(csr.indptr) >= 10)
    users = rng.choice(eligible, size=min(n_users, len(eligible)), replace=False)
    times = []
    for u in users:
        lo = csr.indptr[u]
        ratings = dict(
            zip(
                train.items.lookup(csr.indices[lo : lo + 10]).tolist(),
                csr.data[lo : lo + 10].tolist(),
                strict=True,
            )
        )
        t0 = time.perf_counter()
        model.recommend_for_ratings(ratings, k=10)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)


def run(models: list[tuple[str, str, dict[str, Any]]], split: Split) -> list[dict[str, Any]]:
    """Fit and evaluate each model on ``split``; one result row per model."""
    rows = []
    for label, name, cfg in models:
        model = create(name, cfg)
        t0 = time.perf_counter()
        model.fit(split.train)
        fit_s = time.perf_counter() - t0
        report = evaluate_ranking(model, split, ks=(10,))
        row = {
            "label": label,
            "model": name,
            "config": cfg,
            "ndcg@10": report.summary["ndcg@10"],
            "recall@10": report.summary["recall@10"],
            "fit_seconds": fit_s,
            "fold_in_ms": _fold_in_ms(model, split.train),
            "n_users_evaluated": report.summary["n_users_evaluated"],
        }
        rows.append(row)
        print(
            f"{label}: NDCG@10 {row['ndcg@10']:.4f}  Recall@10 {row['recall@10']:.4f}  "
            f"fit {fit_s:.2f}s  fold-in {row['fold_in_ms']:.2f} ms",
            file=sys.stderr,
            flush=True,
        )
    return rows


def to_markdown(result: dict[str, Any]) -> str:
    """The Markdown report: protocol, command, environment, table."""
    p = result["protocol"]
    lines = [
        f"# ML-100k ranking: every ranking model vs popularity ({result['on']} split)",
        "",
        f"Command: `{result['command']}`",
        "",
        f"- Data: {p['dataset']}; split: {p['split']}.",
        f"- Train events: {p['n_train']}; {result['on']} events: {p['n_eval']}; "
        f"users evaluated: {result['rows'][0]['n_users_evaluated']}.",
        "- Relevance: every held-out rating; full ranking over all training items minus the "
        "user's training items; NDCG@10 binary gains (ideal DCG over min(10, |test|)); "
        "Recall@10 = hits / min(10, |test|).",
        "- Fold-in: median ms of `recommend_for_ratings` (k=10) for a new user with 10 ratings.",
        "- Defaults were chosen on the validation carve of the training part "
        "(`--on valid`, docs/benchmarks/ml100k_ranking_valid.md), never on test. Explicit ALS "
        "is a rating model: ranking by predicted rating favours rarely rated items, hence its "
        "low figures here.",
        f"- Environment: {result['environment']['machine']}, torch threads "
        f"{result['environment']['torch_threads']}, thread variables "
        f"{result['environment']['thread_env'] or 'unset'}, load average at start "
        f"{result['environment']['load_average']} (fit seconds are wall time on a shared "
        "machine).",
        "",
        "| model | config | NDCG@10 | Recall@10 | fit s | fold-in ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        cfg = json.dumps(r["config"]) if r["config"] else "defaults"
        lines.append(
            f"| {r['label']} | `{cfg}` | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | "
            f"{r['fit_seconds']:.2f} | {r['fold_in_ms']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--on", choices=["test", "valid"], default="test")
    parser.add_argument("--models", nargs="*", help="name[:json config] specs (default: a set)")
    parser.add_argument("--data-dir", default=os.environ.get("RECFORGE_DATA_DIR"))
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--out", default=None, help="output path without suffix")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_movielens("ml-100k", data_dir=args.data_dir, download=False)
    split = temporal_user(data, 0.2)
    if args.on == "valid":
        split = carve_validation(split)
    if args.models:
        models = [_parse_spec(s) for s in args.models]
    else:
        models = TEST_MODELS if args.on == "test" else _valid_grid()
    out = Path(args.out or f"docs/benchmarks/ml100k_ranking{'' if args.on == 'test' else '_valid'}")

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    # Thread settings change timings a lot on a shared 2-core machine; record them.
    thread_env = {k: os.environ[k] for k in _THREAD_VARS if k in os.environ}
    rows = run(models, split)
    result = {
        "on": args.on,
        "command": " ".join(
            ["RECFORGE_DATA_DIR=<data>"]
            + [f"{k}={v}" for k, v in thread_env.items()]
            + [".venv/bin/python", "benchmarks/ml100k_ranking.py"]
            + [shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])]
        ),
        "protocol": {
            "dataset": "ml-100k",
            "split": split.protocol.describe(),
            "n_train": len(split.train),
            "n_eval": len(split.test),
            "relevance": "every held-out rating",
            "candidates": "train_items minus the user's training items",
            "metrics": ["ndcg@10", "recall@10 (hits / min(10, |test|))"],
        },
        "environment": {
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "thread_env": thread_env,
            "load_average": [round(x, 2) for x in load],
        },
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md = to_markdown(result)
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
