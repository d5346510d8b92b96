"""Latency of new-user recommendations (fold-in, no retraining) for every model family.

Each model is fitted once on all of ML-100k with its default config (rating models on the
explicit ratings; ``--implicit`` models with the given config). Then, for ``--users`` randomly
chosen users, a "new user" is made from 10 of their ratings and ``recommend_for_ratings(..., k=10)``
is timed (one call per user, single-threaded). Reports p50/p90/max milliseconds.

Command (writes docs/benchmarks/foldin_latency.{json,md}):

    RECFORGE_DATA_DIR=<data> .venv/bin/python benchmarks/foldin_latency.py \
        --out docs/benchmarks/foldin_latency
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.data.movielens import load_movielens
from recforge.models.registry import config_class, create

DEFAULT_MODELS: list[tuple[str, dict[str, Any]]] = [
    ("biases", {}),
    ("biased_mf", {}),
    ("mf", {}),
    ("embedding_net", {}),
    ("ncf", {}),
    ("two_tower", {}),
    ("autorec", {}),
    ("autorec", {"variant": "user"}),
    ("als", {"objective": "explicit"}),
    ("item_knn", {}),
    ("user_knn", {}),
    ("content", {}),
    ("ease", {}),
    ("als", {}),
    ("mult_vae", {}),
    ("mf", {"loss": "bce", "epochs": 20, "lr": 0.02, "weight_decay": 0.0}),
    ("ncf", {"loss": "bce"}),
    ("two_tower", {"loss": "softmax"}),
]


def measure(
    name: str, config: dict[str, Any], data: Any, users: np.ndarray, n_ratings: int
) -> dict[str, Any]:
    fields = config_class(name).model_fields
    extra = {"verbose": False} if "verbose" in fields else {}
    model = create(name, {**config, **extra}).fit(data)
    csr = data.csr()
    rng = np.random.default_rng(0)
    times = []
    for u in users:
        lo, hi = csr.indptr[u], csr.indptr[u + 1]
        pick = rng.choice(np.arange(lo, hi), size=min(n_ratings, hi - lo), replace=False)
        ratings = dict(
            zip(data.items.lookup(csr.indices[pick]).tolist(), csr.data[pick].tolist(), strict=True)
        )
        t0 = time.perf_counter()
        rec = model.recommend_for_ratings(ratings, k=10)
        times.append((time.perf_counter() - t0) * 1000)
        assert len(rec) == 10
    arr = np.asarray(times[1:])  # the first call pays one-off lazy setup
    return {
        "model": name,
        "config": config,
        "p50_ms": float(np.percentile(arr, 50)),
        "p90_ms": float(np.percentile(arr, 90)),
        "max_ms": float(arr.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=51)
    parser.add_argument("--ratings", type=int, default=10)
    parser.add_argument("--out", default="docs/benchmarks/foldin_latency")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_movielens("ml-100k")
    users = np.random.default_rng(1).choice(data.n_users, size=args.users, replace=False)
    rows = []
    for name, config in DEFAULT_MODELS:
        row = measure(name, config, data, users, args.ratings)
        print(
            f"{name} {json.dumps(config)}: p50 {row['p50_ms']:.2f} ms  p90 {row['p90_ms']:.2f} ms"
        )
        rows.append(row)
    result = {
        "protocol": f"ML-100k, fit on all ratings, new user = {args.ratings} ratings of an "
        "existing user, "
        f"recommend_for_ratings(k=10), {args.users - 1} timed calls, 1 thread",
        "command": "RECFORGE_DATA_DIR=<data> .venv/bin/python benchmarks/foldin_latency.py "
        f"--out {args.out}",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average": list(os.getloadavg()),
        },
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# New-user recommendations (fold-in): latency",
        "",
        f"Protocol: {result['protocol']}. Goal: under 50 ms for one new user with 10 ratings.",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, load average at end "
        f"{[round(x, 2) for x in os.getloadavg()]}.",
        "",
        "| model | config | p50 ms | p90 ms | max ms |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        cfg = json.dumps(r["config"]) if r["config"] else "defaults"
        lines.append(
            f"| {r['model']} | `{cfg}` | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} "
            f"| {r['max_ms']:.2f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
