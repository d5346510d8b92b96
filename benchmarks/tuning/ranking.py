"""Validation grids and final test runs for the `temporal-user-80-20` ranking protocol.

Protocol: ``recforge.data.split.temporal_user(data, 0.2)`` (per-user last 20% by time, ties by
item id; users with < 5 events stay in train); every held-out rating is a positive; full ranking
over the items present in train minus the user's training items; NDCG@10 / Recall@10
(``recforge.eval.evaluate_ranking``).

``--on valid`` (default) scores on ``carve_validation(split)``: the same protocol applied to the
training part only (hyper-parameters are chosen there); ``--on test`` scores the real test split
and should be run once per chosen configuration.

Command (one BLAS thread: the machine is shared)::

    RECFORGE_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
      .venv/bin/python benchmarks/tuning/ranking.py --data ml-100k --on valid \\
      --models 'ease:{"reg": 300, "recency_tau": 10}' 'mult_vae:{"recency_tau": 10}'

``--ease-grid`` runs the EASE λ × τ grid instead of ``--models``; for speed, one ``B`` is fitted
per λ and each τ only re-weights the scoring rows (exactly what ``fit`` with that τ computes).
Results are appended as JSON lines to ``--log`` (default docs/benchmarks/tuning_ranking.jsonl).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from recforge.data.movielens import load_movielens
from recforge.data.split import Split, carve_validation, temporal_user
from recforge.eval.evaluate import evaluate_ranking
from recforge.models.base import Recommender
from recforge.models.recency import recency_matrix
from recforge.models.registry import create


def make_split(name: str, on: str) -> Split:
    """The temporal 80/20 split of ``name``, or its validation carve."""
    data = load_movielens(name, data_dir=os.environ.get("RECFORGE_DATA_DIR"), download=False)
    split = temporal_user(data, 0.2)
    return carve_validation(split) if on == "valid" else split


def score(model: Recommender, split: Split) -> dict[str, float]:
    """NDCG@10, Recall@10 of a fitted model on ``split.test``."""
    rep = evaluate_ranking(model, split, ks=(10,))
    return {k: float(rep.summary[k]) for k in ("ndcg@10", "recall@10")}


def log(row: dict[str, Any], path: Path) -> None:
    """Print and append one result row."""
    print(json.dumps(row), flush=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def ease_grid(split: Split, regs: list[float], taus: list[float | None]) -> list[dict[str, Any]]:
    """EASE over λ × τ; ``B`` is fitted once per λ (τ changes only the scoring rows)."""
    rows = []
    for reg in regs:
        t0 = time.perf_counter()
        base = create("ease", {"reg": reg}).fit(split.train)
        fit_s = time.perf_counter() - t0
        for tau in taus:
            model = copy.copy(base)
            model.config = model.config.model_copy(update={"recency_tau": tau})
            model.user_matrix_ = recency_matrix(split.train, tau)
            rows.append(
                {"model": "ease", "config": {"reg": reg, "recency_tau": tau}, "fit_s": fit_s}
                | score(model, split)
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-100k")
    parser.add_argument("--on", choices=["valid", "test"], default="valid")
    parser.add_argument("--models", nargs="*", default=[], help="name[:json config]")
    parser.add_argument("--ease-grid", action="store_true")
    parser.add_argument("--regs", default="200,300,500,1000")
    parser.add_argument("--taus", default="none,5,10,20,40")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per neural config")
    parser.add_argument("--log", default="docs/benchmarks/tuning_ranking.jsonl")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    split = make_split(args.data, args.on)
    out = Path(args.log)
    common = {"data": args.data, "on": args.on, "load": round(os.getloadavg()[0], 2)}
    if args.ease_grid:
        taus = [None if t == "none" else float(t) for t in args.taus.split(",")]
        for row in ease_grid(split, [float(r) for r in args.regs.split(",")], taus):
            log(common | row, out)
    for spec in args.models:
        name, _, raw = spec.partition(":")
        cfg = json.loads(raw) if raw else {}
        for seed in range(args.seeds):
            c = dict(cfg)
            if args.seeds > 1:
                c["seed"] = seed
            t0 = time.perf_counter()
            model = create(name, c).fit(split.train)
            fit_s = time.perf_counter() - t0
            log(
                common
                | {"model": name, "config": c, "fit_s": round(fit_s, 2)}
                | score(model, split),
                out,
            )


if __name__ == "__main__":
    main()
