"""Fit time of one sequential model on a protocol's training part: wall and CPU seconds.

On a shared, loaded machine the wall time of a fit says more about the neighbours than about the
model; the process CPU time (``time.process_time``: user + system of every thread) does not, and
with ``num_threads = 1`` it is what the fit takes on one idle core. Both are written, with the
load average before and after.

    nice -n 10 python benchmarks/sequential_fit_time.py --data ml-100k \
        --protocol temporal-user-80-20 --model sasrec \
        --config configs/ml-100k/temporal-user-80-20/sasrec.toml \
        --out docs/benchmarks/sequential_fit_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from recforge.config import load_config_file
from recforge.data.sources import load_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cfg = load_config_file(args.config)
    cfg.pop("model", None)
    ps = get_protocol(args.protocol).split(load_dataset(args.data))
    model = create(args.model, {**cfg, "verbose": False})
    load0 = [round(x, 2) for x in os.getloadavg()]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    model.fit(ps.train)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    row = {
        "data": args.data,
        "protocol": args.protocol,
        "model": args.model,
        "config": str(args.config),
        "n_train_events": len(ps.train),
        "epochs": len(model.history_),
        "fit_wall_seconds": round(wall, 1),
        "fit_cpu_seconds": round(cpu, 1),
        "torch_threads": getattr(model.config, "num_threads", None) or torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_before": load0,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(row))
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.write_text(json.dumps([*rows, row], indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
