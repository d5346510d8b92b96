"""Rating accuracy and training speed of any registered models on ML-100k's u1..u5 folds.

For each model given on the command line and each predefined fold (``u1.base``/``u1.test`` ...,
GroupLens' five disjoint 80/20 splits): fit on the ``.base`` file, predict every ``.test`` rating
(unknown users/items fall back to the model's global mean, via
:func:`recforge.eval.evaluate.evaluate_ratings`), and record RMSE, MAE, fit seconds and — for
neural models — training seconds per epoch and training samples (ratings) per second.

Run from the repository root::

    RECFORGE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/ml100k_folds.py \\
        biases biased_mf mf embedding_net --threads 1

A model spec is a registry name optionally followed by config overrides,
``name:key=value,key=value`` (values parsed as JSON when possible, e.g.
``biased_mf:n_factors=100,epochs=15`` or ``embedding_net:hidden=[100,200,300]``).

Writes ``<out>.json`` and ``<out>.md`` (default ``docs/benchmarks/ml100k_folds``) with mean ± sd
over the folds, per-fold numbers, the machine's load and the exact command. Not a test: nothing
here asserts; timings depend on the machine and on what else runs on it (the load average at the
start is recorded for that reason).
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
from recforge.data.movielens import load_movielens, load_movielens_fold
from recforge.eval.evaluate import evaluate_ratings
from recforge.models.registry import config_class, create

FOLDS = ("u1", "u2", "u3", "u4", "u5")


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=value,key=value"`` → (name, overrides); values are JSON where they parse."""
    name, _, rest = spec.partition(":")
    overrides: dict[str, Any] = {}
    if rest:
        # Split on commas that are not inside [...] so list values survive.
        parts, depth, cur = [], 0, ""
        for ch in rest:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += ch == "["
            depth -= ch == "]"
            cur += ch
        parts.append(cur)
        for part in parts:
            key, _, raw = part.partition("=")
            try:
                overrides[key.strip()] = json.loads(raw)
            except json.JSONDecodeError:
                overrides[key.strip()] = raw
    return name, overrides


def run_model(
    spec: str, folds: list[str], data_dir: str | None, threads: int | None
) -> dict[str, Any]:
    name, overrides = parse_spec(spec)
    rows: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    fields = config_class(name).model_fields
    extra: dict[str, Any] = {"verbose": False} if "verbose" in fields else {}
    if threads is not None and "num_threads" in fields:
        extra["num_threads"] = threads
    # Untimed warm-up on a slice of the first fold: torch imports parts of itself lazily on the
    # first optimizer step, which would otherwise be billed to the first fold's fit time.
    # Item metadata (titles, genres, years) for content models; ids are the same in every fold.
    meta = load_movielens("ml-100k", data_dir=data_dir, download=False).item_meta
    warm_df, _ = load_movielens_fold("ml-100k", folds[0], data_dir=data_dir, download=False)
    warm = Interactions.from_frame(warm_df.iloc[:2000], rating_scale=(1.0, 5.0), item_meta=meta)
    warm_over = {"epochs": 1} if "epochs" in fields else {}
    create(name, {**overrides, **extra, **warm_over}).fit(warm)
    for fold in folds:
        train_df, test_df = load_movielens_fold("ml-100k", fold, data_dir=data_dir, download=False)
        train = Interactions.from_frame(
            train_df, rating_scale=(1.0, 5.0), source=f"ml-100k/{fold}", item_meta=meta
        )
        test = Interactions.from_frame(test_df, rating_scale=(1.0, 5.0), source=f"ml-100k/{fold}")
        model = create(name, {**overrides, **extra})
        config = model.config.model_dump()
        t0 = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - t0
        report = evaluate_ratings(model, test, fallback="global_mean")
        row: dict[str, Any] = {
            "fold": fold,
            "rmse": float(report.summary["rmse"]),
            "mae": float(report.summary["mae"]),
            "n_test": int(report.summary["n_ratings"]),
            "n_fallback": int(report.summary["n_fallback"]),
            "fit_s": fit_s,
            "n_train": len(train),
        }
        result = getattr(model, "train_result_", None)
        if result is not None:
            epochs = len(result.history)
            row.update(
                epochs=epochs,
                train_s=result.train_seconds,
                s_per_epoch=result.train_seconds / epochs,
                samples_per_s=result.samples_per_second,
            )
        rows.append(row)
        print(
            f"  {spec} {fold}: rmse {row['rmse']:.4f} mae {row['mae']:.4f} fit {fit_s:.2f}s"
            + (f" ({row['s_per_epoch']:.3f} s/epoch)" if "s_per_epoch" in row else ""),
            flush=True,
        )
    summary: dict[str, Any] = {}
    for key in ("rmse", "mae", "fit_s", "s_per_epoch", "samples_per_s"):
        vals = np.array([r[key] for r in rows if key in r], dtype=np.float64)
        if len(vals):
            summary[key] = {
                "mean": float(vals.mean()),
                "sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
            }
    return {"spec": spec, "model": name, "config": config, "folds": rows, "summary": summary}


def _pm(summary: dict[str, Any], key: str, fmt: str) -> str:
    if key not in summary:
        return "–"
    s = summary[key]
    return f"{s['mean']:{fmt}} ± {s['sd']:{fmt}}"


def to_markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "# ML-100k u1..u5: rating accuracy and training speed",
        "",
        "Protocol: GroupLens' predefined folds u1..u5 (disjoint 80/20 splits of `u.data`); fit on",
        "`uN.base`, predict every rating of `uN.test`, clipped to 1-5; users/items unknown to the",
        "model fall back to its global training mean. Mean ± sample sd over the folds.",
        "`s/epoch` and `samples/s` count training steps only (no validation, no data preparation);",
        "each model first runs one untimed warm-up fit on 2,000 ratings (torch's lazy imports).",
        "",
        "Command:",
        "",
        "```",
        result["command"],
        "```",
        "",
        f"Machine: {env['cpu_count']} CPUs, torch {env['torch']} ({env['torch_threads']} "
        f"intra-op threads while training: {env['threads_arg']}), "
        f"load average at start {env['load_average_start']}.",
        "",
        "| model | RMSE | MAE | fit s | s/epoch | samples/s | RMSE u1..u5 |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in result["models"]:
        s = m["summary"]
        per_fold = " ".join(f"{r['rmse']:.4f}" for r in m["folds"])
        sps = f"{s['samples_per_s']['mean']:,.0f}" if "samples_per_s" in s else "–"
        lines.append(
            f"| `{m['spec']}` | {_pm(s, 'rmse', '.4f')} | {_pm(s, 'mae', '.4f')} | "
            f"{_pm(s, 'fit_s', '.2f')} | {_pm(s, 's_per_epoch', '.3f')} | {sps} | {per_fold} |"
        )
    lines += ["", "Resolved configurations:", ""]
    for m in result["models"]:
        cfg = {k: v for k, v in m["config"].items() if k not in ("verbose",)}
        lines.append(f"- `{m['spec']}`: `{json.dumps(cfg, sort_keys=True)}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model specs: name[:key=value,...]")
    parser.add_argument("--folds", default=",".join(FOLDS), help="comma-separated, default u1..u5")
    parser.add_argument("--threads", type=int, default=None, help="torch threads while training")
    parser.add_argument("--out", default="docs/benchmarks/ml100k_folds", help="output path stem")
    parser.add_argument("--data-dir", default=None, help="defaults to $RECFORGE_DATA_DIR")
    args = parser.parse_args(argv)
    folds = [f.strip() for f in args.folds.split(",") if f.strip()]
    data_dir = args.data_dir or os.environ.get("RECFORGE_DATA_DIR")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    models = []
    for spec in args.models:
        print(f"{spec}:", flush=True)
        models.append(run_model(spec, folds, data_dir, args.threads))
    result = {
        "command": "RECFORGE_DATA_DIR=<data> .venv/bin/python benchmarks/ml100k_folds.py "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "dataset": "ml-100k",
        "protocol": {"folds": folds, "fallback": "global_mean", "clip": [1.0, 5.0]},
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "threads_arg": args.threads if args.threads is not None else "torch default",
            "load_average_start": load,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "models": models,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md = to_markdown(result)
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
