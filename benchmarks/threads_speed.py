"""Two threads vs one for every model type: short fits, interleaved, in one process (issue 16).

For each model, repetition ``r`` fits it three ways on the same training part (ML-100k,
``temporal-user-80-20``), in an order that rotates with ``r`` so none always runs first:

- ``1``: one thread, forced (``recforge --threads 1``);
- ``2``: two threads, forced (``--threads 2``);
- ``default``: no thread setting at all, what a user gets on this machine (the CPUs available,
  or a model's own derived count, e.g. one thread for small ``mf`` tables). For most models it
  is the same setting as ``2`` here, so the two columns also show the run-to-run noise.

Reported per model: median fit seconds of each, and the medians of the paired ratios
``2 / 1`` and ``default / 1`` (<= 1.0: more threads did not slow the model down). Fits are
shortened (a few epochs) to keep the run short; the per-epoch cost is what threads change.

Usage (from the repository root):
    RECFORGE_DATA_DIR=../shared/data nice -n 10 .venv/bin/python benchmarks/threads_speed.py \
        --reps 3 --out docs/benchmarks/threads.json --md docs/benchmarks/threads.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Short fits: (model, config). Epoch counts keep one fit to a few seconds on ML-100k.
MODELS: list[tuple[str, dict[str, Any]]] = [
    ("als", {"iterations": 15}),
    ("ease", {}),
    ("autorec", {"epochs": 4}),
    ("mult_vae", {"epochs": 8}),
    ("ncf", {"epochs": 2, "pretrain_epochs": 1}),
    ("two_tower", {"epochs": 5}),
    ("sasrec", {"epochs": 1}),
]


def _fit_seconds(name: str, cfg: dict[str, Any], train: Any, setting: str, seed: int) -> float:
    from recforge.models.registry import create
    from recforge.threads import forced_threads

    forced = None if setting == "default" else int(setting)
    model = create(name, seed=seed, **cfg)
    if "verbose" in type(model.config).model_fields:
        model = create(name, seed=seed, verbose=False, **cfg)
    with forced_threads(forced):
        t0 = time.perf_counter()
        model.fit(train)
        return time.perf_counter() - t0


def run(reps: int, models: list[str] | None) -> dict[str, Any]:
    """Fit every model ``reps`` times per setting, interleaved; the JSON-ready result."""
    from recforge.data.sources import load_dataset
    from recforge.eval.protocols import get_protocol
    from recforge.threads import available_cpus

    data = load_dataset("ml-100k")
    train = get_protocol("temporal-user-80-20").split(data).train
    tiny = train.subset(np.arange(3000)).compact()
    settings = ["1", "2", "default"]
    out: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "cpus_available": available_cpus(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "reps": reps,
        "rows": [],
    }
    for name, cfg in MODELS:
        if models and name not in models:
            continue
        _fit_seconds(name, cfg, tiny, "1", 0)  # warm-up: imports, first-call costs
        secs: dict[str, list[float]] = {s: [] for s in settings}
        for rep in range(reps):
            order = settings[rep % 3 :] + settings[: rep % 3]
            for setting in order:
                secs[setting].append(_fit_seconds(name, cfg, train, setting, rep))
        row = {
            "model": name,
            "config": cfg,
            "seconds": secs,
            "median": {s: statistics.median(v) for s, v in secs.items()},
            "ratio_2_over_1": statistics.median(
                [a / b for a, b in zip(secs["2"], secs["1"], strict=True)]
            ),
            "ratio_default_over_1": statistics.median(
                [a / b for a, b in zip(secs["default"], secs["1"], strict=True)]
            ),
            "load_average": [round(v, 2) for v in os.getloadavg()],
        }
        print(json.dumps({k: row[k] for k in ("model", "median", "ratio_2_over_1")}), flush=True)
        out["rows"].append(row)
    out["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return out


def to_markdown(result: dict[str, Any], command: str) -> str:
    """The report: one row per model."""
    lines = [
        "# Two threads vs one, every model type (short fits, interleaved)",
        "",
        f"Command: `{command}`",
        "",
        f"Run {result['started_at']} → {result['finished_at']}; load average "
        f"{result['load_average_start']} at the start, {result['load_average_end']} at the end, "
        f"on {result['cpus_available']} available CPUs; OMP_WAIT_POLICY="
        f"{result['omp_wait_policy']}. ML-100k, temporal-user-80-20 training part; per "
        "repetition each model is fitted with 1 thread, 2 threads (both forced) and with no "
        "thread setting ('default'), the order rotating; seed = repetition. Ratios are medians of "
        f"the paired ratios over {result['reps']} repetitions (≤ 1.0: not slower than 1 thread). "
        "The machine is shared (load far above its 2 CPUs): single times are noisy.",
        "",
        "| model | short fit | 1 thr (s) | 2 thr (s) | default (s) | 2 / 1 | default / 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        m = row["median"]
        cfg = ", ".join(f"{k}={v}" for k, v in row["config"].items()) or "defaults"
        lines.append(
            f"| {row['model']} | {cfg} | {m['1']:.2f} | {m['2']:.2f} | {m['default']:.2f} | "
            f"**{row['ratio_2_over_1']:.2f}** | **{row['ratio_default_over_1']:.2f}** |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--md", type=Path, required=True)
    args = parser.parse_args()
    command = "python benchmarks/threads_speed.py " + " ".join(sys.argv[1:])
    result = run(args.reps, args.models)
    result["command"] = command
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.md.write_text(to_markdown(result, command))


if __name__ == "__main__":
    main()
