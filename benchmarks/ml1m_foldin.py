"""ML-1M: a new user folded in from 5 ratings, without retraining — how well are the rest predicted?

The tutorial's question ("a new user rates a few movies; what does the autoencoder predict?"),
measured as a protocol: ``heldout_users`` on ``ml-1m-ratings`` (every rating kept; 10% of the
users with >= 20 ratings held out, seed 42, no validation users), each held-out user gives exactly
5 random ratings as fold-in and the rest are targets. Each model is fitted on the training users
only; :func:`recforge.eval.foldin.evaluate_foldin_ratings` folds every held-out user in from their
5 ratings and reports RMSE, MAE and like-accuracy (rating > 3) over all target ratings.

Command (writes docs/benchmarks/ml1m_foldin.{json,md}):

    RECFORGE_DATA_DIR=<data> OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ml1m_foldin.py \
        --out docs/benchmarks/ml1m_foldin
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from recforge.data.movielens import load_movielens
from recforge.data.split import heldout_users
from recforge.eval.foldin import evaluate_foldin_ratings
from recforge.models.registry import create

#: (label, model name, config). The tutorial's 20-10-20 user autoencoder is autorec variant=user.
MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("biases", "biases", {}),
    ("biased_mf", "biased_mf", {}),
    ("I-AutoRec", "autorec", {}),
    ("U-AutoRec 20-10-20 (tutorial)", "autorec", {"variant": "user"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--given", type=int, default=5, help="fold-in ratings per new user")
    parser.add_argument("--test-users", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="docs/benchmarks/ml1m_foldin")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_movielens("ml-1m-ratings")
    split = heldout_users(
        data,
        valid_users=0,
        test_users=args.test_users,
        seed=args.seed,
        min_events=20,
        foldin_events=args.given,
    )
    rows = []
    for label, name, config in MODELS:
        t0 = time.perf_counter()
        model = create(name, config).fit(split.train)
        fit_s = time.perf_counter() - t0
        report = evaluate_foldin_ratings(model, split)
        row = {"label": label, "model": name, "config": config, "fit_s": fit_s} | {
            k: report.summary[k] for k in ("rmse", "mae", "like_accuracy", "n_users_evaluated")
        }
        print(json.dumps(row))
        rows.append(row)
    protocol = (
        f"ml-1m-ratings, heldout_users(test_users={args.test_users}, valid_users=0, "
        f"min_events=20, foldin_events={args.given}, seed={args.seed}): models fitted on the "
        f"{split.train.n_users} training users; each of {split.test_foldin.n_users} new users "
        f"folded in from {args.given} random ratings; RMSE/MAE/like-accuracy (rating > 3) over "
        f"their {len(split.test_target)} other ratings; 1 thread"
    )
    command = (
        "RECFORGE_DATA_DIR=<data> OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ml1m_foldin.py "
        f"--given {args.given} --out {args.out}"
    )
    result = {
        "protocol": protocol,
        "command": command,
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
        f"# ML-1M: new users folded in from {args.given} ratings",
        "",
        f"Protocol: {protocol}.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {os.cpu_count()} CPUs shared with other jobs (load average at end "
        f"{[round(x, 2) for x in os.getloadavg()]}), torch {torch.__version__}.",
        "",
        "| model | RMSE | MAE | like-accuracy | new users | fit s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['label']} | {r['rmse']:.4f} | {r['mae']:.4f} | {r['like_accuracy']:.4f} | "
        f"{int(r['n_users_evaluated'])} | {r['fit_s']:.0f} |"
        for r in rows
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
