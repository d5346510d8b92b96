"""Fit one config on chosen folds of a protocol and evaluate each, one JSON line per fold.

The same split, fit and evaluation as ``recforge benchmark`` (``Protocol.split`` →
``create(...).fit(train)`` → ``Protocol.evaluate``), for a subset of a protocol's folds, so that
the folds of a long benchmark can run side by side in separate processes::

    RECFORGE_DATA_DIR=../shared/data python benchmarks/protocol_folds.py --data ml-1m-ratings \\
      --protocol ml1m-90-10 --config configs/ml-1m-ratings/ml1m-90-10/blend-fwls.toml \\
      --folds 0 2 4 --threads 1 --log docs/benchmarks/suite/ml-1m-90-10-blend-fwls.jsonl

Fold indices are the protocol's (``ml1m-90-10``: 0..4 = seeds 42..46).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
import tomllib
from pathlib import Path

import torch

from recforge.data.sources import load_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create
from recforge.threads import set_forced_threads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--config", required=True, help="a model config TOML (with `model`)")
    parser.add_argument("--folds", nargs="+", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log", required=True, help="JSON lines, appended")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_forced_threads(args.threads)
    cfg = tomllib.loads(Path(args.config).read_text(encoding="utf-8"))
    name = cfg.pop("model")
    proto = get_protocol(args.protocol)
    data = load_dataset(args.data)
    for fold in args.folds:
        ps = proto.split(data, fold)
        t0 = time.perf_counter()
        model = create(name, cfg).fit(ps.train)
        fit_s = time.perf_counter() - t0
        result = proto.evaluate(model, ps)
        row = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "data": args.data,
            "protocol": args.protocol,
            "fold": ps.fold,
            "config": args.config,
            "metrics": result["metrics"],
            "fit_s": round(fit_s, 1),
            "threads": args.threads,
            "load": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(row), flush=True)
        with open(args.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
