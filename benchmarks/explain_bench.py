"""Explanations on ML-100k: faithfulness per family, personalisation of the page's default, latency.

Protocol: ML-100k, ``temporal-user-80-20`` (fold 0: each user's last 20% in time is test; users
with < 5 events stay in train). Every model is fitted on the train part only.

* **Faithfulness** (per registered family): ``--pairs`` (user, recommended item) pairs, users
  drawn with seed 0 among train users with >= 6 train events, the item drawn from the user's
  top-10. The explanation's top-3 history items are removed and the item's fold-in score is
  recomputed; so is the score with 3 random history items removed (seed 0). A pair counts as a
  win when the top-3 removal lowers the score more. Scores come from the model's own fold-in
  (``fold_in_scores_batch``), the path explanations are defined on. Families whose fold-in does
  not depend on the history (global mean, popularity) are reported as n/a.
* **Personalisation**: share of train users whose top-10 (seen items excluded) holds the single
  most common recommended item, and NDCG@10 of the protocol, for EASE, recency-weighted EASE
  (the page's default, ``make demo``) and biased MF (the former default).
* **Latency**: in-process (FastAPI TestClient, one client, no network): GET
  ``/users/{u}/recommendations?k=10&explain=true`` and POST ``/recommendations`` with 10 ratings
  and ``explain: true``; p50/p99 over ``--requests`` requests. A live 16-client uvicorn test was
  too costly on the shared 2-core machine.

Command (writes docs/benchmarks/explain.{json,md}):

    RECFORGE_DATA_DIR=../shared/data OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python \
        benchmarks/explain_bench.py --out docs/benchmarks/explain
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge.eval.protocols import get_protocol
from recforge.models.base import Recommender
from recforge.models.registry import create

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ml-100k" / "temporal-user-80-20"


def _toml(name: str) -> dict[str, Any]:
    cfg = tomllib.loads((CONFIGS / f"{name}.toml").read_text())
    cfg.pop("model", None)
    return cfg


#: (label, registry name, config): every registered family; neural ones with small epochs.
FAMILIES: list[tuple[str, str, dict[str, Any]]] = [
    ("global_mean", "global_mean", {}),
    ("biases", "biases", {}),
    ("popularity", "popularity", {}),
    ("item_knn", "item_knn", _toml("item_knn")),
    ("user_knn", "user_knn", {"feedback": "implicit"}),
    ("content", "content", {"feedback": "implicit"}),
    ("ease", "ease", _toml("ease")),
    ("als", "als", {}),
    ("mf", "mf", {"epochs": 5}),
    ("biased_mf", "biased_mf", {"epochs": 5}),
    ("embedding_net", "embedding_net", {"epochs": 3}),
    ("ncf", "ncf", {"epochs": 3}),
    ("two_tower", "two_tower", {"epochs": 3}),
    ("autorec", "autorec", {"epochs": 10}),
    ("mult_vae", "mult_vae", {"epochs": 20}),
    ("mult_dae", "mult_dae", {"epochs": 20}),
    (
        "blend",
        "blend",
        {
            "members": [
                {"model": "biases"},
                {"model": "biased_mf", "config": {"epochs": 5}},
                {"model": "item_knn", "config": {"similarity": "pearson_baseline"}},
            ]
        },
    ),
    # Sequential families with the benchmark configs, fewer epochs (faithfulness, not accuracy).
    ("sasrec", "sasrec", _toml("sasrec") | {"epochs": 5}),
    ("gru4rec", "gru4rec", _toml("gru4rec") | {"epochs": 5}),
    ("bert4rec", "bert4rec", _toml("bert4rec") | {"epochs": 5}),
]


#: Families whose fold-in is an iterative gradient fit per user (occlusion: |history| + 1 of them,
#: one row-wise batch since recforge.train.rowwise): measured on ``--slow-pairs`` pairs.
SLOW = {"embedding_net", "ncf", "two_tower"}


def _history(model: Recommender, u: int) -> tuple[np.ndarray, np.ndarray]:
    seen = model.seen_
    lo, hi = int(seen.indptr[u]), int(seen.indptr[u + 1])
    order = np.argsort(model.seen_order_[lo:hi], kind="stable")
    return (
        seen.indices[lo:hi][order].astype(np.int64),
        np.asarray(model.seen_ratings_[lo:hi], np.float32)[order],
    )


def _rows(parts: list[tuple[np.ndarray, np.ndarray]], n_items: int) -> sp.csr_matrix:
    """CSR with one row per (items, ratings) part, entries in the given (timeline) order."""
    ind = np.concatenate([p[0] for p in parts]).astype(np.int32)
    dat = np.concatenate([p[1] for p in parts]).astype(np.float32)
    ptr = np.concatenate([[0], np.cumsum([len(p[0]) for p in parts])]).astype(np.int64)
    return sp.csr_matrix((dat, ind, ptr), shape=(len(parts), n_items))


def faithfulness(model: Recommender, n_pairs: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    counts = np.diff(model.seen_.indptr)
    users = rng.choice(np.flatnonzero(counts >= 6), size=n_pairs, replace=False)
    top_idx, _ = model.recommend_idx(users, 10)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    targets, methods, explain_s, all_zero = [], set(), [], []
    # Attention models: also remove the 3 items their attention ranks highest (shown beside the
    # occlusion weights; measured here, not assumed, to say how far attention tracks the score).
    hook = getattr(model, "attention_to_history", None)
    has_att = hook is not None and hook(np.array([0], np.int64)) is not None
    per = 4 if has_att else 3
    for u, top in zip(users.tolist(), top_idx, strict=True):
        t = int(rng.choice(top[top >= 0]))
        idx, vals = _history(model, u)
        uid = model.users_.ids[u]
        start = time.perf_counter()
        exp = model.explain(uid.item() if hasattr(uid, "item") else uid, model.items_.ids[t], k=3)
        explain_s.append(time.perf_counter() - start)
        methods.add(exp.method)
        all_zero.append(all(abs(c.weight) <= 1e-12 for c in exp.contributions))
        top3 = model.items_.index([c.item_id for c in exp.contributions])
        rand3 = rng.choice(idx, size=3, replace=False)
        removals = [np.zeros(0, np.int64), top3, rand3]
        if has_att:
            assert exp.attention is not None
            removals.append(model.items_.index([c.item_id for c in exp.attention]))
        for removed in removals:
            keep = ~np.isin(idx, removed)
            parts.append((idx[keep], vals[keep]))
        targets.append(t)
    scores = np.empty((len(parts), len(targets)), dtype=np.float64)
    step = 96
    for a in range(0, len(parts), step):
        block = model.fold_in_scores_batch(_rows(parts[a : a + step], model.n_items))
        scores[a : a + step] = np.asarray(block, np.float64)[:, targets]
    p = np.arange(len(targets))
    full, no_top, no_rand = scores[per * p, p], scores[per * p + 1, p], scores[per * p + 2, p]
    drop_top, drop_rand = full - no_top, full - no_rand
    moved = ~np.asarray(all_zero)
    out: dict[str, Any] = {
        "method": "/".join(sorted(methods)),
        "pairs": len(targets),
        "pairs_with_history_effect": int(moved.sum()),
        "explain_ms_p50": 1000 * float(np.median(explain_s)),
        "explain_ms_p90": 1000 * float(np.percentile(explain_s, 90)),
        "history_len_median": float(np.median(counts[users])),
    }
    if has_att:
        drop_att = full - scores[per * p + 3, p]
        out |= {
            "attention_win_rate": float(np.mean(drop_att[moved] > drop_rand[moved])),
            "attention_vs_occlusion_ties_or_wins": float(np.mean(drop_att >= drop_top - 1e-9)),
            "mean_drop_attention3": float(np.mean(drop_att[moved])),
        }
    if not moved.any():
        return out | {"win_rate": None, "mean_drop_top3": 0.0, "mean_drop_random3": 0.0}
    return out | {
        "win_rate": float(np.mean(drop_top[moved] > drop_rand[moved])),
        "mean_drop_top3": float(np.mean(drop_top[moved])),
        "mean_drop_random3": float(np.mean(drop_rand[moved])),
    }


def personalisation(ps: Any, proto: Any) -> list[dict[str, Any]]:
    rows = []
    for label, name, cfg in [
        ("ease", "ease", _toml("ease")),
        ("ease-recency (page default)", "ease", _toml("ease-recency")),
        ("biased_mf (former default)", "biased_mf", {}),
    ]:
        model = create(name, cfg).fit(ps.train)
        idx, _ = model.recommend_idx(np.arange(model.n_users), 10)
        counts = np.bincount(idx[idx >= 0], minlength=model.n_items)
        top = int(counts.argmax())
        metrics = proto.evaluate(model, ps)["metrics"]
        rows.append(
            {
                "model": label,
                "config": cfg,
                "ndcg@10": float(metrics["ndcg@10"]),
                "most_common_item": str(model.items_.ids[top]),
                "share_of_users_with_it": float(counts[top] / model.n_users),
            }
        )
    return rows


def latency(ps: Any, n_requests: int) -> list[dict[str, Any]]:
    from fastapi.testclient import TestClient

    from recforge.serve import Settings, create_app

    rows = []
    rng = np.random.default_rng(1)
    specs = [
        ("ease", "ease", _toml("ease-recency")),
        ("item_knn", "item_knn", _toml("item_knn")),
        ("als", "als", {}),
        ("biased_mf", "biased_mf", {"epochs": 5}),
        ("mult_vae (occlusion)", "mult_vae", {"epochs": 20}),
    ]
    for label, name, cfg in specs:
        model = create(name, cfg).fit(ps.train)
        with tempfile.TemporaryDirectory() as tmp:
            run = model.save(Path(tmp) / "run")
            app = create_app(Settings(run=str(run)))
            with TestClient(app) as client:
                users = rng.choice(model.users_.ids, size=n_requests)
                times_get, times_post, times_plain = [], [], []
                for uid in users.tolist():
                    # The same request without explanations, interleaved: the overhead under
                    # the same machine load (this machine is shared, absolute times drift).
                    t0 = time.perf_counter()
                    client.get(f"/users/{uid}/recommendations?k=10")
                    times_plain.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    r = client.get(f"/users/{uid}/recommendations?k=10&explain=true")
                    times_get.append(time.perf_counter() - t0)
                    assert r.status_code == 200 and r.json()["items"][0]["because"] is not None
                    u = int(model.users_.index_one(uid))
                    idx, vals = _history(model, u)
                    ratings = {
                        str(model.items_.ids[i]): float(v)
                        for i, v in zip(idx[-10:], vals[-10:], strict=True)
                    }
                    t0 = time.perf_counter()
                    r = client.post(
                        "/recommendations", json={"ratings": ratings, "k": 10, "explain": True}
                    )
                    times_post.append(time.perf_counter() - t0)
                    assert r.status_code == 200
        for kind, times in (
            ("GET known user, no explain", times_plain),
            ("GET known user", times_get),
            ("POST 10 ratings", times_post),
        ):
            ms = 1000 * np.asarray(times)
            rows.append(
                {
                    "model": label,
                    "request": kind,
                    "p50_ms": float(np.percentile(ms, 50)),
                    "p99_ms": float(np.percentile(ms, 99)),
                    "n": len(ms),
                }
            )
    return rows


def _opt(row: dict[str, Any], key: str, fmt: str) -> str:
    return "" if row.get(key) is None else format(row[key], fmt)


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Explanations on ML-100k (temporal-user-80-20, fold 0, train part)",
        "",
        f"Command: `{result['command']}`",
        "",
        *(f"Re-run of some parts: `{r}`" for r in result.get("reruns", [])),
        "",
        f"Machine: {result['machine']}; load average at the start of the last run "
        f"{result['load_start']}, at its end {result['load_end']} (rows of earlier runs: their "
        "own load column, where it has one).",
        "",
        "## Faithfulness: removing the top-3 explained history items vs 3 random ones",
        "",
        f"{result['pairs']} (user, recommended item) pairs per family (seed 0; "
        f"{result['slow_pairs']} for {', '.join(sorted(SLOW))}, whose gradient fold-ins are the "
        "slowest to explain); a win is a larger fold-in score drop for the top-3. Target: win "
        "rate >= 0.90. Explain time: one `model.explain(user, item, k=3)` call, wall clock, torch "
        "1 thread; load: the machine's load average when the family's row was written (the "
        "machine is shared with other agents; rows without one predate this column).",
        "",
        "| family | method | win rate | mean drop top-3 | mean drop random-3 | pairs (moved) |"
        " explain p50 ms | p90 ms | median history | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["faithfulness"]:
        if "error" in row:
            lines.append(f"| {row['family']} | error: {row['error']} | | | | | | | | |")
            continue
        rate = "n/a" if row["win_rate"] is None else f"{row['win_rate']:.3f}"
        lines.append(
            f"| {row['family']} | {row['method']} | {rate} | {row['mean_drop_top3']:.4g} | "
            f"{row['mean_drop_random3']:.4g} | {row['pairs']} ({row['pairs_with_history_effect']})"
            f" | {row['explain_ms_p50']:.1f} | {_opt(row, 'explain_ms_p90', '.1f')} | "
            f"{_opt(row, 'history_len_median', 'g')} | {row.get('load', '')} |"
        )
    att_rows = [r for r in result["faithfulness"] if "attention_win_rate" in r]
    if att_rows:
        lines += [
            "",
            "Attention models: removing the 3 history items their *attention* ranks highest "
            "(`Explanation.attention`, shown beside the occlusion weights) vs 3 random ones, on "
            "the same pairs; and how often attention's top-3 lowers the score at least as much "
            "as occlusion's top-3.",
            "",
            "| family | attention win rate | mean drop attention-3 | attention >= occlusion |",
            "|---|---:|---:|---:|",
        ]
        for r in att_rows:
            lines.append(
                f"| {r['family']} | {r['attention_win_rate']:.3f} | "
                f"{r['mean_drop_attention3']:.4g} | "
                f"{r['attention_vs_occlusion_ties_or_wins']:.3f} |"
            )
    lines += [
        "",
        "## Personalisation of the page's default model",
        "",
        "Share of the 943 train users whose top-10 holds the single most common recommended "
        "item (target <= 0.25), and the protocol's NDCG@10 (target: no lower than EASE's).",
        "",
        "| model | NDCG@10 | most common item | share of users |",
        "|---|---:|---:|---:|",
    ]
    for row in result["personalisation"]:
        lines.append(
            f"| {row['model']} | {row['ndcg@10']:.4f} | {row['most_common_item']} | "
            f"{row['share_of_users_with_it']:.3f} |"
        )
    lines += [
        "",
        "## Latency with explain=true, top-10 (in-process TestClient, one client)",
        "",
        "| model | request | p50 ms | p99 ms | n |",
        "|---|---|---:|---:|---:|",
    ]
    for row in result["latency"]:
        lines.append(
            f"| {row['model']} | {row['request']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['n']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/benchmarks/explain")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--slow-pairs", type=int, default=50, help="pairs for SLOW families")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--families", nargs="*", default=[f[0] for f in FAMILIES])
    parser.add_argument("--skip", nargs="*", default=[], help="parts: faith, person, latency")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from recforge.data.sources import load_dataset

    data = load_dataset("ml-100k")
    proto = get_protocol("temporal-user-80-20")
    ps = proto.split(data, 0)
    result: dict[str, Any] = {
        "command": "nice -n 10 python benchmarks/explain_bench.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if v and k not in ("skip", "families")
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch 1 thread",
        "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "protocol": proto.to_dict(),
        "pairs": args.pairs,
        "slow_pairs": args.slow_pairs,
        "faithfulness": [],
        "personalisation": [],
        "latency": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = set(args.families) != {f[0] for f in FAMILIES}
    old_rows: list[dict[str, Any]] = []
    if partial and out.with_suffix(".json").exists():
        # Re-running some families keeps the others' committed rows, in the family order.
        old_rows = json.loads(out.with_suffix(".json").read_text()).get("faithfulness", [])
    if (args.skip or partial) and out.with_suffix(".json").exists():
        # Re-running some parts keeps the others' committed results (and their command).
        old = json.loads(out.with_suffix(".json").read_text())
        parts = (("faith", "faithfulness"), ("person", "personalisation"), ("latency", "latency"))
        for part, key in parts:
            if part in args.skip:
                result[key] = old.get(key, [])
        rerun = result["command"]
        if partial:
            rerun += " --families " + " ".join(args.families)
        if args.skip:
            rerun += " --skip " + " ".join(args.skip)
        # The same command run again is listed once.
        result["reruns"] = list(dict.fromkeys([*old.get("reruns", []), rerun]))
        result["command"] = old.get("command", result["command"])

    def save() -> None:
        result["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
        out.with_suffix(".md").write_text(_markdown(result))

    if "faith" not in args.skip:
        for label, name, cfg in FAMILIES:
            if label not in args.families:
                continue
            t0 = time.perf_counter()
            try:
                model = create(name, cfg).fit(ps.train)
                n = min(args.pairs, args.slow_pairs) if label in SLOW else args.pairs
                row = {"family": label, "config": cfg} | faithfulness(model, n)
            except Exception as exc:  # a family that fails is reported, not hidden
                row = {"family": label, "config": cfg, "error": f"{type(exc).__name__}: {exc}"}
            row["seconds"] = time.perf_counter() - t0
            row["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(json.dumps(row, default=str), flush=True)
            result["faithfulness"].append(row)
            if old_rows:
                order = [f[0] for f in FAMILIES]
                done = {r["family"]: r for r in result["faithfulness"]}
                kept = {r["family"]: r for r in old_rows if r["family"] not in done}
                merged = {**kept, **done}
                result["faithfulness"] = [merged[f] for f in order if f in merged]
            save()
    if "person" not in args.skip:
        result["personalisation"] = personalisation(ps, proto)
        print(json.dumps(result["personalisation"]), flush=True)
        save()
    if "latency" not in args.skip:
        result["latency"] = latency(ps, args.requests)
        print(json.dumps(result["latency"]), flush=True)
    save()


if __name__ == "__main__":
    main()
