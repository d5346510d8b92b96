"""Data-parallel training (DDP, gloo) with 2 processes against 1, on one 2-core machine.

For each dataset, three runs of ``recforge train`` with the same model, config and seed:

* ``plain``: one process, no process group (the ordinary Trainer);
* ``ddp-1``: ``torchrun --nproc_per_node=1 ... --distributed`` (DDP overhead, no parallelism);
* ``ddp-2``: ``torchrun --nproc_per_node=2 ... --distributed`` (the global batch is split in two).

Every process runs one torch thread (``OMP_NUM_THREADS=1``, ``num_threads=1``), so ``ddp-2`` uses
both cores and the others one. Reported: wall time of the fit (process-group set-up included),
median epoch time from the run's history, training rows per second, test RMSE, and the load
average before and after (the machine is shared; compare rows of one table only).

    .venv/bin/python benchmarks/ddp.py --epochs 5 --out docs/benchmarks/ddp
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(
    kind: str, data: str, split: str, model: str, sets: list[str], out: Path
) -> dict[str, Any]:
    train = ["-m", "recforge.cli", "train", "-m", model, "-d", data, "-s", split, "-o", str(out)]
    train += [a for s in sets for a in ("--set", s)] + ["--json"]
    if kind == "plain":
        cmd = [sys.executable, *train]
    else:
        n = kind.split("-")[1]
        torchrun = [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={n}"]
        cmd = [*torchrun, *train, "--distributed"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:  # reported, not hidden: the table says which run failed and how
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-12:]
        return {
            "kind": kind,
            "command": " ".join(cmd),
            "failed": f"exit {proc.returncode}",
            "stderr_tail": tail,
            "process_wall_s": round(wall, 2),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
        }
    metrics = json.loads(proc.stdout)
    history = pd.read_csv(out / "history.csv")
    epoch_s = float(history["seconds"].median())
    return {
        "kind": kind,
        "command": " ".join(cmd[cmd.index("-m") :] if kind == "plain" else cmd),
        "process_wall_s": round(wall, 2),
        "fit_s": round(float(metrics["timings"]["fit_s"]), 2),
        "epoch_s_median": round(epoch_s, 3),
        "epochs": len(history),
        "test_rmse": round(float(metrics["rating"]["summary"]["rmse"]), 4),
        "final_train_loss": round(float(history["train_loss"].iloc[-1]), 4),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def synthetic_csv(n_users: int, n_items: int, density: float, path: Path) -> Path:
    """A seeded explicit-rating CSV from the planted-structure generator."""
    from recforge.data.synthetic import make_interactions

    inter = make_interactions(n_users=n_users, n_items=n_items, density=density, seed=0)
    inter.interactions.to_frame().to_csv(path, index=False)
    return path


def main() -> None:
    """Run the comparison and write ``<out>.json`` and ``<out>.md``."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--model", default="biased_mf")
    ap.add_argument("--synthetic-users", type=int, default=20_000)
    ap.add_argument("--synthetic-items", type=int, default=5_000)
    ap.add_argument("--synthetic-density", type=float, default=0.01)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument(
        "--optimizers",
        default="adamw,sparse_adam",
        help="Comma-separated: adamw (the default; dense gradients: DDP all-reduces whole "
        "embedding tables "
        "every step) and/or sparse_adam (sparse gradients: only the rows a batch touched).",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "ddp")
    args = ap.parse_args()
    sets = [
        f"epochs={args.epochs}",
        f"batch_size={args.batch_size}",
        "num_threads=1",
        "verbose=false",
        "seed=0",
    ]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "model": args.model,
        "config": sets,
        "optimizers": args.optimizers.split(","),
        "datasets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        datasets: list[tuple[str, str, str]] = []
        if os.environ.get("RECFORGE_DATA_DIR"):
            datasets.append(("ml-100k (u1.base)", "ml-100k", "ml100k:u1"))
        if not args.skip_synthetic:
            csv = synthetic_csv(
                args.synthetic_users,
                args.synthetic_items,
                args.synthetic_density,
                Path(tmp) / "synthetic.csv",
            )
            n_rows = sum(1 for _ in csv.open()) - 1
            datasets.append((f"synthetic {n_rows:,} ratings", str(csv), "random:0.2"))
        for label, data, split in datasets:
            rows = []
            for opt in args.optimizers.split(","):
                extra = [f"optimizer={opt}"] + (["weight_decay=0"] if opt == "sparse_adam" else [])
                for kind in ("plain", "ddp-1", "ddp-2"):
                    out = Path(tmp) / f"{label.split()[0]}-{opt}-{kind}"
                    row = _run(kind, data, split, args.model, sets + extra, out)
                    rows.append({"optimizer": opt, **row})
            results["datasets"][label] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(results))


def _markdown(results: dict[str, Any]) -> str:
    lines = [
        "# DDP: 2 processes against 1 on this 2-core machine",
        "",
        f"Model `{results['model']}`, `{' '.join('--set ' + s for s in results['config'])}`.",
        "One torch thread per process. `plain` = ordinary Trainer; `ddp-N` = `torchrun",
        "--nproc_per_node=N ... --distributed` (gloo). The global batch is the configured one.",
        "",
    ]
    for label, rows in results["datasets"].items():
        lines += [
            f"## {label}",
            "",
            "| optimizer | run | fit s | median epoch s | test RMSE | final train loss "
            "| load avg before → after"
            " |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            if "failed" in r:
                lines.append(
                    f"| {r['optimizer']} | {r['kind']} | failed ({r['failed']}) | | | | "
                    f"{r['load_before'][0]} → {r['load_after'][0]} |"
                )
                continue
            lines.append(
                f"| {r['optimizer']} | {r['kind']} | {r['fit_s']} | {r['epoch_s_median']} | "
                f"{r['test_rmse']} | "
                f"{r['final_train_loss']} | {r['load_before'][0]} → {r['load_after'][0]} |"
            )
        lines.append("")
    lines += [
        "Command: `.venv/bin/python benchmarks/ddp.py` (RECFORGE_DATA_DIR set for ML-100k).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
