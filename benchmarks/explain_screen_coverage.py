"""Mult-VAE/DAE's screened `because` against the full occlusion: how often the lists agree.

The service lists, per recommended item, the ``n`` history items with the largest positive
drop-one weights (:func:`recforge.explain.because_idx`). Mult-VAE/DAE compute those weights
exactly only for the history rows a first-order screen keeps (``explain_history_top``, ``keep``
rows per item, :func:`recforge.models.vae._screen_rows`). For every ``--every``-th known user of
the run (ML-100k ``random:0.2``, trained here with ``explain_serve.py``'s settings when
``--runs`` lacks it) and each of their top-10 items, this compares the screened list with the
one the full path (``explain_history``: every drop-one row) gives, for several ``keep``, and
reports the share of equal lists (items and order), the largest weight difference of listed
items and the mean number of rows occluded per user.

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python benchmarks/explain_screen_coverage.py \\
        --runs RUNS --out docs/benchmarks/explain_screen_coverage
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--model", default="mult_vae", choices=["mult_vae"])
    ap.add_argument("--every", type=int, default=1, help="Every k-th known user.")
    ap.add_argument("--n", type=int, default=3, help="Items per `because` list.")
    ap.add_argument("--keeps", type=int, nargs="+", default=[3, 5, 6, 8])
    ap.add_argument(
        "--refines",
        type=int,
        nargs="+",
        default=[0],
        help="Rows per item the second screen passes on (0: the default, _refine_rows(n)).",
    )
    ap.add_argument("--reps", type=int, default=3, help="Timed calls per user (best kept).")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/explain_screen_coverage"))
    args = ap.parse_args()

    import torch

    import recforge.models.vae as vae
    from recforge.artifacts import load_run
    from recforge.explain import _history, because_idx
    from recforge.pipeline import train_run

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from explain_serve import MODELS
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    torch.set_num_threads(1)
    threadpool_limits(limits=1, user_api="blas")  # as the service runs
    run = args.runs / args.model
    if not (run / "manifest.json").exists():
        _, name, config, _ = next(m for m in MODELS if m[0] == args.model)
        train_run(name, "ml-100k", split="random:0.2", config=config, out=run)
    model: Any = load_run(run).model
    before = load()
    cases = []
    full_s: list[float] = []
    for uid in model.users_.ids.tolist()[:: args.every]:
        hist = _history(model, uid)
        targets = model.items_.index(np.asarray(model.recommend([uid], 10)[0].item_ids))
        start = time.process_time()
        full = model.explain_history(hist.items, hist.ratings, targets)[1]
        full_s.append(time.process_time() - start)
        w = np.where(full > 0, full, -np.inf)
        pos = np.arange(w.shape[1])
        want = []
        for p in range(len(targets)):
            top = np.lexsort((pos, -w[p]))[: args.n]
            want.append([(int(hist.items[j]), float(full[p, j])) for j in top if w[p, j] > 0])
        cases.append((uid, targets, want, len(hist.items)))
    rows = []
    screen_rows, refine_rows = vae._screen_rows, vae._refine_rows
    try:
        for keep, refine in itertools.product(args.keeps, args.refines):
            vae._screen_rows = lambda n, k=keep: k  # type: ignore[assignment]
            vae._refine_rows = (  # type: ignore[assignment]
                refine_rows if refine <= 0 else (lambda n, k=refine: k)
            )
            equal = pairs = 0
            diff = 0.0
            occluded = []
            spent = 0.0
            for uid, targets, want, _ in cases:
                got = because_idx(model, uid, targets, args.n)
                hist = _history(model, uid)
                best = math.inf
                for _ in range(args.reps):
                    start = time.process_time()
                    top = model.explain_history_top(hist.items, hist.ratings, targets, args.n)
                    best = min(best, time.process_time() - start)
                spent += best
                occluded.append(int(np.isfinite(top).any(axis=0).sum()))
                for g, wnt in zip(got, want, strict=True):
                    pairs += 1
                    same = [i for i, _ in g] == [i for i, _ in wnt]
                    equal += same
                    if same and g:
                        diff = max(diff, max(abs(a[1] - b[1]) for a, b in zip(g, wnt, strict=True)))
            rows.append(
                {
                    "keep": keep,
                    "refine": refine if refine > 0 else refine_rows(args.n),
                    "pairs": pairs,
                    "equal": equal,
                    "equal_share": equal / max(pairs, 1),
                    "max_weight_diff": diff,
                    "mean_rows_occluded": float(np.mean(occluded)),
                    "ms_per_user": 1e3 * spent / max(len(cases), 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        vae._screen_rows, vae._refine_rows = screen_rows, refine_rows
    lengths = [c[3] for c in cases]
    command = (
        "RECFORGE_DATA_DIR=../shared/data .venv/bin/python benchmarks/explain_screen_coverage.py "
        f"--runs RUNS --every {args.every} --n {args.n} "
        f"--keeps {' '.join(map(str, args.keeps))} "
        f"--refines {' '.join(map(str, args.refines))} --reps {args.reps} --out {args.out}"
    )
    meta = {
        "command": command,
        "model": args.model,
        "data": "ML-100k, random:0.2 split, the model fitted on the train part",
        "users": len(cases),
        "mean_history": float(np.mean(lengths)),
        "default_keep": screen_rows(args.n),
        "default_refine": refine_rows(args.n),
        "full_path_ms_per_user": 1e3 * float(np.mean(full_s)),
        "load_before_after": f"{before} / {load()}",
        "machine": f"{platform.platform()}, {os.cpu_count()} cores",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        f"# Screened `because` of {args.model} against the full occlusion",
        "",
        f"Command: `{command}`",
        "",
        f"{meta['data']}; {len(cases)} known users (every {args.every}th; mean "
        f"history {meta['mean_history']:.1f}), each with their top-10 items; `because` of "
        f"{args.n}. The service's default keeps {meta['default_keep']} screened rows per item "
        f"(first screen) and occludes {meta['default_refine']} of them exactly (second screen). "
        "`ms per user`: CPU time of the screened explanation of a user's top-10, best of "
        f"{args.reps} calls, averaged over users (torch and BLAS one thread, as served); the full "
        f"path (`explain_history`, every drop-one row) took {meta['full_path_ms_per_user']:.2f} "
        f"ms per user (one call). Load average before / after: {meta['load_before_after']}.",
        "",
        "| rows kept per item | rows occluded per item | pairs | lists equal | share | "
        "max weight diff (equal lists) | rows occluded per user | ms per user |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['keep']} | {r['refine']} | {r['pairs']} | {r['equal']} | "
            f"{r['equal_share']:.4f} | "
            f"{r['max_weight_diff']:.1e} | {r['mean_rows_occluded']:.1f} | "
            f"{r['ms_per_user']:.2f} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
