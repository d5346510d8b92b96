"""Export benchmark: top-k for every user into SQLite and PostgreSQL; rows/s, scoring vs writing.

Datasets:
    ml100k     biased_mf trained on all of ML-100k (943 × 1,682; needs RECFORGE_DATA_DIR).
    synthetic  a biased_mf with random factors (n_factors 32) for 200,000 users × 20,000 items and
               20 random "seen" items per user, saved as a run directory: the same code path as a
               trained model (load_run → recommend_all → store), at a scale we cannot train here.

PostgreSQL runs in a throwaway cluster (initdb/pg_ctl in a temp dir, durable defaults: fsync on).

Usage:
    RECFORGE_DATA_DIR=../shared/data .venv/bin/python benchmarks/export_bench.py \
        --datasets ml100k synthetic --backends sqlite postgresql --out docs/benchmarks/export.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]


def _pgcluster() -> Any:
    spec = importlib.util.spec_from_file_location("pgcluster", REPO / "tests/store/pgcluster.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ml100k_run(out: Path) -> Path:
    """Train biased_mf on all of ML-100k (default hyper-parameters) and save the run."""
    from recforge.artifacts import save_run
    from recforge.data.sources import load_dataset
    from recforge.models.mf import BiasedMF

    model = BiasedMF(seed=0).fit(load_dataset("ml-100k"))
    return save_run(out, model)


def synthetic_run(
    out: Path, n_users: int, n_items: int, n_factors: int = 32, seen: int = 20
) -> Path:
    """A biased_mf with random (N(0, d^-1/2)) factors and biases, saved as a run directory."""
    from recforge.artifacts import save_run
    from recforge.data.vocab import IdVocab
    from recforge.models.mf import BiasedMF

    rng = np.random.default_rng(0)
    model = BiasedMF(n_factors=n_factors, y_range="none", seed=0)
    model.users_ = IdVocab(np.arange(1, n_users + 1))
    model.items_ = IdVocab(np.arange(1, n_items + 1))
    cols = rng.integers(0, n_items, size=(n_users, seen))
    seen_m = sp.csr_matrix(
        (np.ones(cols.size, np.float32), cols.ravel(), np.arange(0, cols.size + 1, seen)),
        shape=(n_users, n_items),
    )
    seen_m.sum_duplicates()
    seen_m.data[:] = 1.0
    model.seen_ = seen_m
    model.global_mean_ = 3.5
    model.rating_scale_ = (1.0, 5.0)
    model.item_meta_ = None
    state = {}
    for name, arr in model._new_module().state_dict().items():
        std = 0.1 if "bias" in name else n_factors**-0.25
        state[f"module.{name}"] = rng.normal(0, std, tuple(arr.shape)).astype(np.float32)
    model.set_state(state)
    return save_run(out, model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["ml100k", "synthetic"])
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    ap.add_argument("--n-users", type=int, default=200_000)
    ap.add_argument("--n-items", type=int, default=20_000)
    ap.add_argument("-k", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from recforge.export import export_run

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp_s:
        tmp = Path(tmp_s)
        runs: dict[str, Path] = {}
        for ds in args.datasets:
            t0 = time.perf_counter()
            if ds == "ml100k":
                runs[ds] = ml100k_run(tmp / "ml100k")
            else:
                runs[ds] = synthetic_run(tmp / "synthetic", args.n_users, args.n_items)
            print(f"{ds}: run ready in {time.perf_counter() - t0:.1f} s", flush=True)
        pg_ctx = None
        pg_base = None
        if "postgresql" in args.backends:
            pg = _pgcluster()
            pg_ctx = pg.pg_cluster(fast=False)
            pg_base = pg_ctx.__enter__()
        try:
            for ds, run in runs.items():
                for backend in args.backends:
                    if backend == "sqlite":
                        url = f"sqlite:///{tmp / f'{ds}.db'}"
                    else:
                        url = _pgcluster().create_database(pg_base, f"bench_{ds}")
                    load_before = os.getloadavg()
                    res = export_run(
                        run, url, k=args.k, batch_size=args.batch_size, version=f"{ds}-bench"
                    )
                    row = {
                        "dataset": ds,
                        "backend": backend,
                        **res.as_dict(),
                        "db": backend,
                        "loadavg_before": [round(x, 2) for x in load_before],
                        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                    }
                    if backend == "sqlite":
                        db_file = tmp / f"{ds}.db"
                        row["db_bytes"] = db_file.stat().st_size
                    results.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            if pg_ctx is not None:
                pg_ctx.__exit__(None, None, None)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "k": args.k,
        "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
