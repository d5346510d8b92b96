"""Screen rating-model configs on a validation carve of one protocol fold (never its test part).

For protocol ``P`` and fold ``F`` (``ml1m-90-10`` seed=42, ``ml100k-folds`` u1, ...): the fold's
training part is carved with ``Protocol.validation_split`` (the benchmark's own tuning rule: the
parent's random hold-out ratio and seed for ``ml1m-90-10``; a random 20% for the predefined u1..u5
files) into T (inner training) and V (validation). Each ``--spec`` (``name`` or
``name:{json config}``) is fitted on T and scored on V: RMSE/MAE of the clipped predictions, fit
wall seconds, and the load average (the machine is shared). One JSON line per spec is appended to
``--log``; the test part is never read.

Command (one thread; the machine is shared)::

    RECFORGE_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 nice -n 10 \\
      .venv/bin/python benchmarks/tuning/rating_screen.py --data ml-1m-ratings \\
      --protocol ml1m-90-10 --fold 0 --spec 'autorec:{"reg": 300}' ...
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from recforge.data.sources import load_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.registry import config_class, create


def render(log: Path) -> str:
    """The log as Markdown: one table per (data, protocol, fold), best validation RMSE first."""
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]
    groups: dict[tuple[str, str, str], list[dict[str, object]]] = {}
    for row in rows:
        groups.setdefault((str(row["data"]), str(row["protocol"]), str(row["fold"])), []).append(
            row
        )
    out = [
        "# Rating-model screening on validation carves (issue 18)",
        "",
        "Each row: the config fitted on the inner training part of the carve and scored on the",
        "carved validation ratings (RMSE/MAE of clipped predictions); the protocol's test part",
        "was never read. Written by `benchmarks/tuning/rating_screen.py` from",
        f"`{log.as_posix()}`; fit seconds are wall time on the shared 2-core machine at the",
        "load average shown (one torch thread, `nice -n 10`).",
    ]
    for (data, protocol, fold), group in groups.items():
        out += ["", f"## {data} · {protocol} · {fold}", "", f"Validation: {group[0]['valid']}", ""]
        out += [
            "| spec | valid RMSE | valid MAE | fit s | load (1 min) | when |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for row in sorted(group, key=lambda r: float(str(r["valid_rmse"]))):
            load = row["load"]
            assert isinstance(load, list)
            out.append(
                f"| `{row['spec']}` | {row['valid_rmse']} | {row['valid_mae']} | {row['fit_s']} "
                f"| {load[0]} | {row['time']} |"
            )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-1m-ratings")
    parser.add_argument("--protocol", default="ml1m-90-10")
    parser.add_argument("--fold", default="0", help="fold index or label (seed=42, u1)")
    parser.add_argument("--spec", nargs="*", default=[], help="name[:json config]")
    parser.add_argument("--md", default=None, help="render the log as Markdown here and exit")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log", default="docs/benchmarks/tuning_ml1m.jsonl")
    parser.add_argument("--save-preds", default=None, help="folder: keep V predictions (.npy)")
    args = parser.parse_args(argv)
    if args.md:
        Path(args.md).write_text(render(Path(args.log)), encoding="utf-8")
        return
    torch.set_num_threads(args.threads)
    proto = get_protocol(args.protocol)
    data = load_dataset(args.data)
    ps = proto.split(data, int(args.fold) if args.fold.isdigit() else args.fold)
    inner = proto.validation_split(ps)
    train, valid = inner.split.train, inner.split.test
    frame = valid.to_frame()
    users, items = frame["user_id"].to_numpy(), frame["item_id"].to_numpy()
    target = frame["rating"].to_numpy(dtype=np.float64)
    lo, hi = train.rating_scale or (1.0, 5.0)
    for spec in args.spec:
        name, _, raw = spec.partition(":")
        cfg = json.loads(raw) if raw else {}
        if "num_threads" in config_class(name).model_fields:
            # Two OpenMP threads on a loaded 2-core machine wait on each other at every barrier.
            cfg.setdefault("num_threads", args.threads)
        t0 = time.perf_counter()
        try:
            model = create(name, cfg).fit(train)
        except Exception as exc:  # a failed config is logged, not fatal to the screen
            print(f"{spec}: FAILED {exc}", flush=True)
            continue
        fit_s = time.perf_counter() - t0
        pred = model.predict(users, items)
        pred = np.clip(np.where(np.isfinite(pred), pred, train.global_mean), lo, hi)
        err = pred - target
        row = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "data": args.data,
            "protocol": args.protocol,
            "fold": ps.fold,
            "valid": inner.split.protocol.describe(),
            "spec": spec,
            "valid_rmse": round(float(np.sqrt(np.mean(err**2))), 5),
            "valid_mae": round(float(np.mean(np.abs(err))), 5),
            "fit_s": round(fit_s, 1),
            "threads": args.threads,
            "load": [round(x, 2) for x in os.getloadavg()],
        }
        if args.save_preds:
            out = Path(args.save_preds)
            out.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha1(spec.encode()).hexdigest()[:10]
            key = f"{args.protocol}_{ps.fold}_{digest}".replace("=", "")
            np.save(out / f"{key}.npy", pred)
            row["preds"] = str(out / f"{key}.npy")
        print(json.dumps(row), flush=True)
        with open(args.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
