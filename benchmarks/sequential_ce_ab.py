"""A/B of two source trees on one sequential fit: process CPU seconds, final loss, peak memory.

Each repetition fits the model once per tree, in a fresh subprocess with that tree first on
``PYTHONPATH`` (the trees alternate, the first one flips on odd repetitions), one torch thread,
on the ``loo-latest`` training part. CPU seconds (``time.process_time``) rather than wall time:
the machine is shared, and one thread's CPU time is what the fit costs on an idle core.

    python benchmarks/sequential_ce_ab.py --old /tmp/old/src --new src --data ml-latest-small \
        --model sasrec --epochs 2 --reps 2 --out docs/benchmarks/sequential_ce_ab

writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = """
import json, resource, sys, time
import torch
from recforge.data.sources import load_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create
torch.set_num_threads(1)
data, model, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
train = get_protocol("loo-latest").split(load_dataset(data)).train
extra = {} if model == "bert4rec" else {"loss": "ce"}
m = create(model, epochs=epochs, seed=0, num_threads=1, verbose=False, **extra)
t = time.process_time()
m.fit(train)
cpu = time.process_time() - t
print(json.dumps({"cpu_s": round(cpu, 2),
                  "loss": float(m.history_["train_loss"].iloc[-1]),
                  "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def _fit(tree: str, data: str, model: str, epochs: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve()), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, data, model, str(epochs)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="src folder of the baseline tree")
    ap.add_argument("--new", required=True, help="src folder of the changed tree")
    ap.add_argument("--data", default="ml-latest-small")
    ap.add_argument("--model", default="sasrec")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    load0 = [round(x, 2) for x in os.getloadavg()]
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for rep in range(args.reps):
        order = ("old", "new") if rep % 2 == 0 else ("new", "old")
        for side in order:
            runs[side].append(_fit(getattr(args, side), args.data, args.model, args.epochs))
            print(side, runs[side][-1], flush=True)
    summary = {
        side: {
            key: statistics.median(r[key] for r in rows) for key in ("cpu_s", "loss", "peak_mib")
        }
        for side, rows in runs.items()
    }
    ratio = summary["new"]["cpu_s"] / summary["old"]["cpu_s"]
    payload = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "data": args.data,
        "model": args.model,
        "epochs": args.epochs,
        "load_average_before": load0,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "runs": runs,
        "median": summary,
        "cpu_ratio_new_over_old": round(ratio, 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    lines = [
        f"# {args.model} on {args.data}: old vs new tree, {args.epochs} epochs, 1 thread",
        "",
        f"Command: `{payload['command']}`; load average {load0} before, "
        f"{payload['load_average_after']} after.",
        "",
        "| tree | CPU s (each rep) | median | final train loss | peak MiB |",
        "|---|---|---|---|---|",
    ]
    for side, rows in runs.items():
        each = " / ".join(f"{r['cpu_s']:.1f}" for r in rows)
        med = summary[side]
        lines.append(
            f"| {side} | {each} | {med['cpu_s']:.1f} | {med['loss']:.6f} | {med['peak_mib']:.0f} |"
        )
    lines += ["", f"CPU new / old: **{ratio:.2f}**", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines), "utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
