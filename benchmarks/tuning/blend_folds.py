"""Choose the members of a ``blend`` for ``ml100k-folds`` on a validation carve (never on test).

For fold ``uN`` (default u1): the training file ``uN.base`` is carved with
``recforge.data.split.carve_validation`` (the same rule the benchmark's tuning uses for the
predefined folds: a random 20% hold-out, seed 42) into T (inner training) and V (validation).
Each candidate member is then handled exactly as :class:`recforge.models.blend.Blend` would
handle it when fitted on T: fitted on T minus the blend's own carve C
(``random_holdout(T, valid_ratio, seed=42)``) to predict C (for the weights), and refitted on
all of T to predict V. Member predictions are cached (``--cache``), so every subset of members
and every ridge value is scored on V without refitting. The test file is never read.

Command (one thread; the machine is shared)::

    RECFORGE_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
      .venv/bin/python benchmarks/tuning/blend_folds.py --fold u1 \\
      --members autorec biased_mf 'item_knn:{"similarity": "pearson_baseline"}' ...

Prints each member's validation RMSE and the best subsets; appends JSON lines to ``--log``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.data.movielens import load_movielens_fold
from recforge.data.split import carve_validation, random_holdout
from recforge.models.blend import ridge_blend_weights
from recforge.models.registry import create


def _predict(model: Any, part: Interactions, fallback: float) -> np.ndarray:
    frame = part.to_frame()
    p = model.predict(frame["user_id"].to_numpy(), frame["item_id"].to_numpy())
    return np.where(np.isfinite(p), p, fallback).astype(np.float64)


def member_predictions(
    spec: str, inner: Interactions, carve_c: Any, valid: Interactions, cache: Path
) -> tuple[np.ndarray, np.ndarray]:
    """(predictions on C from a fit on T∖C, predictions on V from a fit on T), cached."""
    key = hashlib.sha1((spec + inner.fingerprint() + valid.fingerprint()).encode()).hexdigest()[:16]
    path = cache / f"{key}.npz"
    if path.exists():
        z = np.load(path)
        return z["c"], z["v"]
    name, _, raw = spec.partition(":")
    cfg = json.loads(raw) if raw else {}
    t0 = time.perf_counter()
    m1 = create(name, cfg).fit(carve_c.train)
    pc = _predict(m1, carve_c.test, carve_c.train.global_mean)
    m2 = create(name, cfg).fit(inner)
    pv = _predict(m2, valid, inner.global_mean)
    np.savez(path, c=pc, v=pv)
    print(f"  fitted {spec} twice in {time.perf_counter() - t0:.1f}s", flush=True)
    return pc, pv


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold", default="u1")
    parser.add_argument("--members", nargs="+", required=True, help="name[:json config]")
    parser.add_argument("--valid-ratio", type=float, default=0.1, help="the blend's own carve")
    parser.add_argument("--ridges", default="0,0.001,0.01")
    parser.add_argument("--max-size", type=int, default=6)
    parser.add_argument("--cache", default="/tmp/recforge_blend_cache")
    parser.add_argument("--log", default="docs/benchmarks/tuning_blend.jsonl")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    data_dir = os.environ.get("RECFORGE_DATA_DIR")
    base_df, _ = load_movielens_fold("ml-100k", args.fold, data_dir=data_dir, download=False)
    base = Interactions.from_frame(base_df, rating_scale=(1.0, 5.0), source=f"ml-100k/{args.fold}")
    outer = carve_validation(base)
    inner, valid = outer.train, outer.test
    carve_c = random_holdout(inner, test_ratio=args.valid_ratio, seed=42)
    yc = carve_c.test.rating.astype(np.float64)
    yv = valid.rating.astype(np.float64)
    preds = {s: member_predictions(s, inner, carve_c, valid, cache) for s in args.members}
    rows: list[dict[str, Any]] = []
    for spec, (_, pv) in preds.items():
        rmse = float(np.sqrt(np.mean((np.clip(pv, 1, 5) - yv) ** 2)))
        rows.append({"members": [spec], "ridge": None, "valid_rmse": rmse})
    specs = list(preds)
    for size in range(2, min(args.max_size, len(specs)) + 1):
        for subset in itertools.combinations(specs, size):
            pc = np.column_stack([preds[s][0] for s in subset])
            pv = np.column_stack([preds[s][1] for s in subset])
            for ridge in (float(r) for r in args.ridges.split(",")):
                w0, w = ridge_blend_weights(pc, yc, ridge)
                rmse = float(np.sqrt(np.mean((np.clip(w0 + pv @ w, 1, 5) - yv) ** 2)))
                rows.append(
                    {
                        "members": list(subset),
                        "ridge": ridge,
                        "valid_rmse": rmse,
                        "weights": [round(w0, 4), *np.round(w, 4).tolist()],
                    }
                )
    rows.sort(key=lambda r: r["valid_rmse"])
    singles = [r for r in rows if r["ridge"] is None]
    with Path(args.log).open("a", encoding="utf-8") as fh:
        for r in singles + rows[:15]:
            r = {"fold": args.fold, "on": "valid", **r}
            print(json.dumps(r), flush=True)
            fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
