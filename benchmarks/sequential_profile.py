"""Where one sequential fit's CPU time goes: torch's profiler table, ops by self CPU time.

Fits the model on the ``loo-latest`` training part with one torch thread under
``torch.profiler`` and prints the top operators (the session-19 profile of SASRec on
ml-latest-small that led to :mod:`recforge.train.softmax_ce`):

    python benchmarks/sequential_profile.py --data ml-latest-small --model sasrec --epochs 1 \
        --set max_len=50 --set batch_size=64
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.profiler import ProfilerActivity, profile

from recforge.data.sources import load_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="ml-latest-small")
    ap.add_argument("--model", default="sasrec")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="KEY=JSON config value")
    ap.add_argument("--rows", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    train = get_protocol("loo-latest").split(load_dataset(args.data)).train
    model = create(args.model, epochs=args.epochs, seed=0, num_threads=1, verbose=False, **extra)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.fit(train)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print(f"fit {time.perf_counter() - start:.1f} s (profiled)")


if __name__ == "__main__":
    main()
