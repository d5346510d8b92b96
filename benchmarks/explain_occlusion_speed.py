"""Occlusion explanations in one process: each family's own path against the batched fold-ins.

For every occlusion family with a closed-form path (Mult-VAE/DAE, I-AutoRec, U-AutoRec) and,
as the reference only, the gradient fold-ins (embedding net, NCF, two-tower): ML-100k,
``random:0.2`` split, models fitted on the train part (the runs of ``explain_serve.py``, trained
here when ``--runs`` lacks them). For ``--users`` known users (seed 0) the explanation the
service computes for a GET with ``explain=true`` — the user's training history against their
top-10 — is timed through ``model.explain_rows`` (the family's path) and through
``recforge.explain.occlusion`` (``|H| + 1`` fold-ins in one ``fold_in_scores_batch``), the two
interleaved per user so that both see the same machine load; torch runs one thread. Reported:
p50 / p90 ms of each, the ratio of the medians, and the largest difference between the two
paths' scores and weights (they compute the same quantity).

    RECFORGE_DATA_DIR=../shared/data nice -n 10 .venv/bin/python \\
        benchmarks/explain_occlusion_speed.py --out docs/benchmarks/explain_occlusion_speed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: (label, registry name, config, whether the family has its own occlusion path).
MODELS: list[tuple[str, str, dict[str, Any], bool]] = [
    ("mult_vae", "mult_vae", {"epochs": 20}, True),
    ("mult_dae", "mult_dae", {"epochs": 20}, True),
    ("autorec", "autorec", {"epochs": 10}, True),
    ("autorec_user", "autorec", {"variant": "user", "epochs": 10}, True),
    ("embedding_net", "embedding_net", {"epochs": 3}, False),
    ("ncf", "ncf", {"epochs": 3}, False),
    ("two_tower", "two_tower", {"epochs": 3}, False),
]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(model: Any, n_users: int, own: bool) -> dict[str, Any]:
    from recforge.explain import _history, _row, occlusion

    rng = np.random.default_rng(0)
    users = rng.choice(model.n_users, size=min(n_users, model.n_users), replace=False)
    t_own, t_ref, d_score, d_weight, lengths = [], [], [], [], []
    for u in users.tolist():
        uid = model.users_.ids[u]
        top, _ = model.recommend_idx(np.array([u]), 10)
        hist = _history(model, uid.item() if hasattr(uid, "item") else uid)
        row = _row(hist, model.n_items)
        row_of = np.zeros(len(top[0]), np.int64)
        lengths.append(len(hist.items))
        t0 = time.perf_counter()
        ref = occlusion(model, row, row_of, top[0])
        t_ref.append(time.perf_counter() - t0)
        if own:
            t0 = time.perf_counter()
            fast = model.explain_rows(row, row_of, top[0])
            t_own.append(time.perf_counter() - t0)
            d_score.append(float(np.abs(fast.score - ref.score).max()))
            d_weight.append(
                max(
                    float(np.abs(a - b).max())
                    for a, b in zip(fast.weights, ref.weights, strict=True)
                )
            )
    out: dict[str, Any] = {
        "users": len(users),
        "history_median": float(np.median(lengths)),
        "reference_p50_ms": 1000 * float(np.median(t_ref)),
        "reference_p90_ms": 1000 * float(np.percentile(t_ref, 90)),
    }
    if own:
        out |= {
            "own_p50_ms": 1000 * float(np.median(t_own)),
            "own_p90_ms": 1000 * float(np.percentile(t_own, 90)),
            "speedup_p50": float(np.median(t_ref) / np.median(t_own)),
            "max_score_diff": max(d_score),
            "max_weight_diff": max(d_weight),
        }
    return out


def service(run: Path, n_users: int) -> dict[str, Any]:
    """Server-side time of a GET with explain=true (``LiveBackend.recommend`` + ``add_because``,
    no HTTP), the family's path and the reference interleaved per user."""
    from recforge.models.base import Recommender
    from recforge.serve.live import LiveBackend
    from recforge.serve.settings import Settings

    live = LiveBackend(run, Settings(run=str(run)))
    model = live.model
    reference = types.MethodType(Recommender.explain_rows, model)
    # The users measure() draws (seed 0), after five warm-up ones.
    rng = np.random.default_rng(0)
    drawn = rng.choice(live.model.n_users, size=min(n_users, live.model.n_users), replace=False)
    ids = live.model.users_.ids
    users = [str(u) for u in ids[:5].tolist()] + [str(ids[u]) for u in drawn.tolist()]
    t_own, t_ref = [], []
    for k, uid in enumerate(users):
        for use_reference, times in ((False, t_own), (True, t_ref)):
            if use_reference:  # an instance attribute shadows the family's method
                model.__dict__["explain_rows"] = reference
            t0 = time.perf_counter()
            items = live.recommend(uid, 10, True)
            assert items is not None
            live.add_because(uid, items)
            model.__dict__.pop("explain_rows", None)
            if k >= 5:  # the first users warm both paths up
                times.append(time.perf_counter() - t0)
    return {
        "service_own_p50_ms": 1000 * float(np.median(t_own)),
        "service_reference_p50_ms": 1000 * float(np.median(t_ref)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=[m[0] for m in MODELS])
    ap.add_argument("--runs", type=Path, help="Folder of runs named by label (trained if absent).")
    ap.add_argument("--users", type=int, default=50, help="Known users per closed-form family.")
    ap.add_argument("--slow-users", type=int, default=5, help="Users per gradient family.")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/explain_occlusion_speed"))
    args = ap.parse_args()
    import torch

    import recforge
    from recforge.artifacts import load_run
    from recforge.pipeline import train_run

    torch.set_num_threads(1)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="recforge-occlusion-"))
    rows = []
    for label, name, config, own in MODELS:
        if label not in args.models:
            continue
        run = runs / label
        if not run.exists():
            train_run(name, "ml-100k", split="random:0.2", config=config, out=run)
        model = load_run(run).model
        before = load()
        row = {"model": label, "config": config, "own_path": own}
        row |= measure(model, args.users if own else args.slow_users, own)
        if own:
            row |= service(run, args.users)
        row |= {"load_before": before, "load_after": load()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    command = (
        "RECFORGE_DATA_DIR=../shared/data nice -n 10 .venv/bin/python "
        f"benchmarks/explain_occlusion_speed.py --users {args.users} "
        f"--slow-users {args.slow_users} "
        + (f"--models {' '.join(args.models)} " if len(args.models) < len(MODELS) else "")
        + f"--out {args.out}"
    )
    meta = {
        "command": command,
        "source": str(Path(recforge.__file__).resolve().parent),
        "data": "ML-100k, random:0.2 split, models fitted on the train part",
        "machine": f"{platform.platform()}, {os.cpu_count()} cores, shared with other agents; "
        "torch 1 thread",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# Occlusion explanations in one process: own path vs the batched fold-ins",
        "",
        f"Command: `{command}`",
        "",
        f"{meta['data']}; {meta['machine']}. Per known user (seed 0): the training history "
        "against the user's top-10, as a GET with explain=true computes it; the family's "
        "`explain_rows` and the reference `recforge.explain.occlusion` interleaved per user "
        "(same load). Differences: the largest absolute difference of the two paths' scores "
        "and weights. Service: the server-side work of a GET with explain=true "
        "(`LiveBackend.recommend` + `add_because`, no HTTP) with each path, interleaved per user; "
        "at 16 closed-loop clients on one worker p99 is roughly 16x the per-request time.",
        "",
        "| model | own path | users | median history | own p50 ms | own p90 ms | reference p50 "
        "ms | reference p90 ms | speed-up (p50) | max score diff | max weight diff | service p50 "
        "ms own / reference | load before / after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        own_cols = (
            f"{r['own_p50_ms']:.2f} | {r['own_p90_ms']:.2f}"
            if r["own_path"]
            else "(reference) | (reference)"
        )
        extra = (
            f"{r['speedup_p50']:.1f}x | {r['max_score_diff']:.1e} | {r['max_weight_diff']:.1e}"
            if r["own_path"]
            else " | | "
        )
        svc = (
            f"{r['service_own_p50_ms']:.2f} / {r['service_reference_p50_ms']:.2f}"
            if "service_own_p50_ms" in r
            else ""
        )
        lines.append(
            f"| {r['model']} | {'yes' if r['own_path'] else 'no'} | {r['users']} | "
            f"{r['history_median']:g} | {own_cols} | {r['reference_p50_ms']:.2f} | "
            f"{r['reference_p90_ms']:.2f} | {extra} | {svc} | {r['load_before']} / "
            f"{r['load_after']} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
