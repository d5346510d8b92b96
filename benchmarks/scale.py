"""Scale benchmark: ML-20M-sized and 100M-rating synthetic logs on one machine.

For each size it measures, each phase in its own Python process so that every phase reports its
own peak RSS (``ru_maxrss``) and nothing one phase allocated inflates the next:

* ``generate``: :func:`recforge.data.synthetic.make_interactions` (power-law popularity, the
  ``sampled`` generator at these sizes), :meth:`Interactions.save` (``.npy`` folder) and a Parquet
  copy of the canonical frame (``user_id, item_id, rating``; written in row groups);
* ``load``: :func:`recforge.data.read_ratings` on the Parquet file (column-wise) plus
  :meth:`Interactions.from_frame` — the path a user's file takes — and
  :meth:`Interactions.open` with ``mmap=True`` for comparison;
* ``train:<model>``: one epoch of ``biased_mf`` / ``ncf`` / ``two_tower`` on the memory-mapped
  log (explicit MSE, SparseAdam on the embedding tables, batches of ``--batch-size``), then
  full-ranking evaluation (every item ranked, seen items excluded) for a random sample of users
  and an export of a sample of users' top-100 to SQLite;
* ``sparse``: SparseAdam (sparse embedding gradients) against AdamW (dense) on the same full-size
  tables for a ``--sparse-events`` sample of events at batch 1024 (many steps: the regime where
  touching every row each step hurts).

Usage (the figures in docs/benchmarks/scale.md)::

    .venv/bin/python benchmarks/scale.py --sizes 20M 100M --threads 1 \
        --out docs/benchmarks/scale.json --md docs/benchmarks/scale.md

On a CUDA machine, the same phases on the GPU (add ``--precision bf16`` for autocast)::

    python benchmarks/scale.py --sizes 20M --device cuda --skip load sparse \
        --out scale_gpu.json --md scale_gpu.md

``--render FILE.json --md FILE.md`` re-renders the Markdown from a saved JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: name -> (users, items, target events). 20M is MovieLens-20M's shape.
SIZES: dict[str, tuple[int, int, int]] = {
    "1M": (20_000, 8_000, 1_000_000),  # smoke test of the script itself
    "20M": (138_000, 27_000, 20_000_000),
    "100M": (700_000, 50_000, 100_000_000),
}
MODELS_BY_SIZE = {"1M": ["biased_mf", "ncf", "two_tower"], "20M": ["biased_mf", "ncf", "two_tower"]}
MODELS_BY_SIZE["100M"] = ["biased_mf"]


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def _gpu() -> str:
    import torch

    if not torch.cuda.is_available():
        return "no GPU"
    return f"GPU {torch.cuda.get_device_name(0)}"


def _load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ====================================================================== phases (child processes)
def phase_generate(size: str, work: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recforge.data.synthetic import make_interactions

    n_users, n_items, events = SIZES[size]
    t0 = time.perf_counter()
    data = make_interactions(
        n_users, n_items, density=events / (n_users * n_items), seed=0, timestamps=False
    ).interactions
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    data.save(work / "inter")
    t_save = time.perf_counter() - t0
    t0 = time.perf_counter()
    step = 10_000_000
    schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("rating", pa.float32())])
    with pq.ParquetWriter(work / "ratings.parquet", schema) as writer:
        for s in range(0, len(data), step):
            writer.write_table(
                pa.table(
                    {
                        "user_id": data.users.lookup(data.user_idx[s : s + step]),
                        "item_id": data.items.lookup(data.item_idx[s : s + step]),
                        "rating": data.rating[s : s + step],
                    },
                    schema=schema,
                )
            )
    t_parquet = time.perf_counter() - t0
    return {
        "events": len(data),
        "users": data.n_users,
        "items": data.n_items,
        "top_item_share": float(np.sort(data.item_counts())[-data.n_items // 100 :].sum())
        / len(data),
        "interactions_bytes": data.nbytes,
        "parquet_bytes": (work / "ratings.parquet").stat().st_size,
        "generate_s": t_gen,
        "save_npy_s": t_save,
        "write_parquet_s": t_parquet,
    }


def phase_load(size: str, work: Path) -> dict[str, Any]:
    from recforge.data import read_ratings
    from recforge.data.interactions import Interactions

    t0 = time.perf_counter()
    frame = read_ratings(work / "ratings.parquet", rating_scale=(1.0, 5.0), duplicates="error")
    t_read = time.perf_counter() - t0
    t1 = time.perf_counter()
    data = Interactions.from_frame(frame, rating_scale=(1.0, 5.0))
    t_encode = time.perf_counter() - t1
    del frame
    out = {
        "events": len(data),
        "read_parquet_s": t_read,
        "encode_s": t_encode,
        "load_total_s": t_read + t_encode,
    }
    del data
    t0 = time.perf_counter()
    mapped = Interactions.open(work / "inter", mmap=True)
    out["open_mmap_s"] = time.perf_counter() - t0
    out["mmap_is_memmap"] = isinstance(mapped.user_idx, np.memmap)
    return out


def _split(data: Any, n_eval_users: int, seed: int = 0) -> tuple[Any, Any, np.ndarray]:
    """Random 2% of events held out; evaluation restricted to a sample of the test users."""
    rng = np.random.default_rng(seed)
    is_test = rng.random(len(data)) < 0.02
    train = data.subset(~is_test)
    test_all = data.subset(is_test)
    users = np.unique(test_all.user_idx)
    sample = np.sort(rng.choice(users, size=min(n_eval_users, len(users)), replace=False))
    test = test_all.subset(np.isin(test_all.user_idx, sample))
    return train, test, sample


def phase_train(size: str, work: Path, model_name: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from recforge.data.interactions import Interactions
    from recforge.eval.evaluate import evaluate_ranking
    from recforge.export import export_model
    from recforge.models import create
    from recforge.store import open_store

    torch.set_num_threads(args.threads)
    data = Interactions.open(work / "inter", mmap=True)
    train, test, sample = _split(data, args.eval_users)
    del data
    config: dict[str, Any] = {
        "epochs": 1,
        "batch_size": args.batch_size,
        "optimizer": "sparse_adam",
        "weight_decay": 0.0,
        "lr": 1e-2,
        "num_threads": args.threads,
        "verbose": False,
        "seed": 0,
        "device": args.device,
        "precision": args.precision,
    }
    model = create(model_name, **config)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(train)
    t_fit = time.perf_counter() - t0
    c_fit = time.process_time() - c0
    result = model.train_result_
    out: dict[str, Any] = {
        "model": model_name,
        "train_events": len(train),
        "config": config,
        "epoch_s": result.train_seconds,
        "fit_total_s": t_fit,
        # CPU seconds of the whole fit (tensor setup included): on a shared, oversubscribed
        # machine this is what an idle one would take, wall time is inflated by waiting.
        "fit_cpu_s": c_fit,
        "samples_per_s": result.samples_per_second,
        "train_loss": float(result.history["train_loss"].iloc[0]),
    }
    t0, c0 = time.perf_counter(), time.process_time()
    report = evaluate_ranking(
        model,
        (train, test),
        ks=(10,),
        relevance_threshold=4.0,
        memory_budget_bytes=args.memory_budget,
    )
    out["eval_users"] = len(sample)
    out["eval_s"] = time.perf_counter() - t0
    out["eval_cpu_s"] = time.process_time() - c0
    out["eval_users_per_s"] = len(sample) / out["eval_s"]
    out["ndcg@10"] = float(report.summary.get("ndcg@10", float("nan")))
    users = model.users_.lookup(sample)
    db = work / f"{model_name}.db"
    with open_store(f"sqlite:///{db}") as store:
        t0, c0 = time.perf_counter(), time.process_time()
        exp = export_model(model, store, "bench", k=100, users=users)
        out["export_s"] = time.perf_counter() - t0
        out["export_cpu_s"] = time.process_time() - c0
    out["export_users"] = len(users)
    out["export_rows"] = exp.rows
    out["export_users_per_s"] = len(users) / out["export_s"]
    return out


def phase_sparse(size: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from recforge.data.interactions import Interactions
    from recforge.models import create

    torch.set_num_threads(args.threads)
    data = Interactions.open(work / "inter", mmap=True)
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(len(data), size=min(args.sparse_events, len(data)), replace=False))
    part = data.subset(rows)
    out: dict[str, Any] = {"events": len(part), "users": part.n_users, "items": part.n_items}
    for opt in ("adamw", "sparse_adam"):
        c0 = time.process_time()
        model = create(
            "biased_mf",
            epochs=1,
            batch_size=1024,
            optimizer=opt,
            weight_decay=0.0,
            schedule="constant",
            num_threads=args.threads,
            verbose=False,
            seed=0,
        )
        model.fit(part)
        out[f"{opt}_epoch_s"] = model.train_result_.train_seconds
        out[f"{opt}_fit_cpu_s"] = time.process_time() - c0
        out[f"{opt}_train_loss"] = float(model.train_result_.history["train_loss"].iloc[0])
    out["speedup"] = out["adamw_epoch_s"] / out["sparse_adam_epoch_s"]
    return out


def _child(argv: list[str]) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    work = Path(args.work)
    phase = args.phase
    t0, c0 = time.perf_counter(), time.process_time()
    if phase == "generate":
        out = phase_generate(args.size, work)
    elif phase == "load":
        out = phase_load(args.size, work)
    elif phase == "sparse":
        out = phase_sparse(args.size, work, args)
    else:
        out = phase_train(args.size, work, phase.split(":", 1)[1], args)
    out["phase"] = phase
    out["wall_s"] = time.perf_counter() - t0
    out["cpu_s"] = time.process_time() - c0
    out["peak_rss_gb"] = _rss_gb()
    out["load_avg_after"] = _load_avg()
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")


# ====================================================================== driver
def run_phase(size: str, phase: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--phase",
        phase,
        "--size",
        size,
        "--work",
        str(work),
        "--threads",
        str(args.threads),
        "--batch-size",
        str(args.batch_size),
        "--eval-users",
        str(args.eval_users),
        "--sparse-events",
        str(args.sparse_events),
        "--memory-budget",
        str(args.memory_budget),
        "--device",
        args.device,
        "--precision",
        args.precision,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    load_before = _load_avg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {
            "phase": phase,
            "failed": True,
            "returncode": proc.returncode,
            "stderr_tail": proc.stderr[-2000:],
            "wall_s": wall,
            "load_avg_before": load_before,
        }
    out: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    out["load_avg_before"] = load_before
    return out


def _fmt(x: Any, nd: int = 1) -> str:
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Scale benchmark (synthetic, one machine)",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {result['machine']}; torch threads per process: {result['threads']}; "
        f"started {result['started']}, load average at start {result['load_avg_start']} "
        f"(the machine is shared; each row lists the 1/5/15-minute load average before it ran).",
        "",
    ]
    for size, res in result["sizes"].items():
        lines += [f"## {size}", ""]
        lines += ["| phase | figures | peak RSS (GB) | load avg before |", "|---|---|---:|---|"]
        for ph in res["phases"]:
            if ph.get("failed"):
                figs = f"FAILED (exit {ph['returncode']}): {ph['stderr_tail'][-200:]!r}"
            elif ph["phase"] == "generate":
                figs = (
                    f"{ph['events']:,} events, {ph['users']:,} users × {ph['items']:,} items; "
                    f"top 1% of items hold {ph['top_item_share']:.0%} of events; generate "
                    f"{ph['generate_s']:.1f} s, save .npy {ph['save_npy_s']:.1f} s, write Parquet "
                    f"{ph['write_parquet_s']:.1f} s ({ph['parquet_bytes'] / 1e6:,.0f} MB); arrays "
                    f"{ph['interactions_bytes'] / 1e9:.2f} GB"
                )
            elif ph["phase"] == "load":
                figs = (
                    f"read Parquet {ph['read_parquet_s']:.1f} s + encode {ph['encode_s']:.1f} s "
                    f"= **{ph['load_total_s']:.1f} s**; Interactions.open(mmap) "
                    f"{ph['open_mmap_s'] * 1000:.0f} ms"
                )
            elif ph["phase"] == "sparse":
                figs = (
                    f"{ph['events']:,} events, tables {ph['users']:,} × {ph['items']:,}, batch "
                    f"1024: AdamW (dense) {ph['adamw_epoch_s']:.1f} s vs SparseAdam "
                    f"{ph['sparse_adam_epoch_s']:.1f} s per epoch: **{ph['speedup']:.1f}×**"
                )
            else:
                cpu = f", fit CPU {ph['fit_cpu_s']:.1f} s" if "fit_cpu_s" in ph else ""
                figs = (
                    f"**epoch {ph['epoch_s']:.1f} s** ({ph['samples_per_s']:,.0f} samples/s, "
                    f"{ph['train_events']:,} events, batch {ph['config']['batch_size']}{cpu}); "
                    f"full-ranking eval of {ph['eval_users']:,} sampled users "
                    f"{ph['eval_s']:.1f} s ({ph['eval_users_per_s']:,.0f} users/s); export "
                    f"top-100 of {ph['export_users']:,} sampled users to SQLite "
                    f"{ph['export_s']:.1f} s ({ph['export_users_per_s']:,.0f} users/s)"
                )
            lines.append(
                f"| {ph['phase']} | {figs} | {_fmt(ph.get('peak_rss_gb', float('nan')), 2)} | "
                f"{ph.get('load_avg_before')} |"
            )
        lines += ["", f"Peak RSS over all phases: **{res['peak_rss_gb']:.2f} GB**.", ""]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["20M"], choices=sorted(SIZES))
    ap.add_argument("--threads", type=int, default=2, help="torch threads per process")
    ap.add_argument("--batch-size", type=int, default=65_536)
    ap.add_argument("--eval-users", type=int, default=5_000)
    ap.add_argument("--sparse-events", type=int, default=1_000_000)
    ap.add_argument("--memory-budget", type=int, default=512 * 1024**2, help="bytes")
    ap.add_argument("--models", nargs="*", default=None, help="override the models per size")
    ap.add_argument("--device", default="auto", help="torch device of the train phases")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--skip", nargs="*", default=[], help="phases to skip (load, sparse)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    ap.add_argument("--render", type=Path, default=None, help="re-render --md from this JSON")
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", default=None, help=argparse.SUPPRESS)
    return ap


def main() -> None:
    args = _parser().parse_args()
    if args.render:
        md = to_markdown(json.loads(args.render.read_text()))
        if args.md:
            args.md.write_text(md)
        else:
            sys.stdout.write(md)
        return
    if args.phase:
        _child(sys.argv[1:])
        return
    result: dict[str, Any] = {
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {_gpu()}",
        "threads": args.threads,
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_start": _load_avg(),
        "sizes": {},
    }
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix=f"scale{size}.") as tmp:
            work = Path(tmp)
            phases = ["generate"]
            if "load" not in args.skip:
                phases.append("load")
            if "sparse" not in args.skip and size != "100M":
                phases.append("sparse")
            models = args.models if args.models is not None else MODELS_BY_SIZE[size]
            phases += [f"train:{m}" for m in models]
            res: dict[str, Any] = {"phases": []}
            for phase in phases:
                out = run_phase(size, phase, work, args)
                res["phases"].append(out)
                sys.stderr.write(f"[{size}] {json.dumps(out)}\n")
                if phase == "generate" and out.get("failed"):
                    break
                result["sizes"][size] = res
                res["peak_rss_gb"] = max(p.get("peak_rss_gb", 0.0) for p in res["phases"])
                if args.out:  # written after every phase: a long run leaves partial results
                    args.out.write_text(json.dumps(result, indent=1) + "\n")
                if args.md:
                    args.md.write_text(to_markdown(result))
    if not args.out:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
