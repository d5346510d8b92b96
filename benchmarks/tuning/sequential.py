"""Tune sequential models on the validation carve of a named protocol (test never touched).

For each config given (JSON objects on the command line, one per trial), the model is fitted on
the protocol's validation carve (:meth:`Protocol.validation_split`: the same rule applied to the
training part) and scored on the carved part; one JSON line per trial is appended to ``--out``.

    nice -n 10 python benchmarks/tuning/sequential.py --data ml-100k \
        --protocol temporal-user-80-20 --model sasrec \
        --out docs/benchmarks/tuning_sequential.jsonl \
        '{"max_len": 50}' '{"max_len": 100}'
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from recforge.data.sources import load_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.registry import config_class, create


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("configs", nargs="+", help="JSON config overrides, one trial each")
    args = ap.parse_args()
    proto = get_protocol(args.protocol)
    inner = proto.validation_split(proto.split(load_dataset(args.data)))
    for text in args.configs:
        cfg = json.loads(text)
        t0 = time.perf_counter()
        quiet = {"verbose": False} if "verbose" in config_class(args.model).model_fields else {}
        model = create(args.model, {**quiet, **cfg}).fit(inner.train)
        fit_s = time.perf_counter() - t0
        metrics = proto.evaluate(model, inner)["metrics"]
        row = {
            "data": args.data,
            "protocol": args.protocol,
            "part": "validation carve",
            "model": args.model,
            "config": cfg,
            "fit_seconds": round(fit_s, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            **{k: round(v, 4) for k, v in metrics.items()},
        }
        print(json.dumps(row), flush=True)
        with args.out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
