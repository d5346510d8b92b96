"""ANN recall@10 against exact search, and query latency of both modes, on a synthetic catalogue.

Item vectors: 200 Gaussian clusters in d dimensions plus noise, scaled by a log-normal "popularity"
norm (so inner-product search is not just cosine search). Queries: fresh Gaussian vectors.

    .venv/bin/python benchmarks/ann_recall.py --items 100000 --dim 64 --out docs/benchmarks/ann
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from recforge.index import ItemIndex, recall_at_k


def catalogue(n: int, d: int, seed: int) -> np.ndarray:
    """Clustered item vectors with log-normal norms."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, d))
    vecs = centres[rng.integers(0, 200, n)] + 0.5 * rng.normal(size=(n, d))
    vecs *= rng.lognormal(0.0, 0.3, size=(n, 1))
    return vecs.astype(np.float32)


def per_query_ms(index: ItemIndex, queries: np.ndarray, k: int) -> tuple[float, float]:
    """Median and p99 latency of single-query searches, in milliseconds."""
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q, k)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times)), float(np.percentile(times, 99))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--ef", type=int, nargs="*", default=[64, 128, 256, 512])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/ann"))
    args = ap.parse_args()

    vecs = catalogue(args.items, args.dim, 0)
    queries = np.random.default_rng(1).normal(size=(args.queries, args.dim)).astype(np.float32)
    exact = ItemIndex(vecs, mode="exact")
    truth, _ = exact.search(queries, args.k)
    ex_p50, ex_p99 = per_query_ms(exact, queries[:200], args.k)
    rows: list[dict[str, Any]] = [
        {
            "mode": "exact",
            "param": "-",
            "build_s": 0.0,
            "recall": 1.0,
            "p50_ms": ex_p50,
            "p99_ms": ex_p99,
        }
    ]
    t = time.perf_counter()
    hnsw = ItemIndex(vecs, mode="hnsw", threads=args.threads)
    build = time.perf_counter() - t
    default_ef = hnsw.ef_search
    for ef in args.ef:
        hnsw.ef_search = ef
        got, _ = hnsw.search(queries, args.k)
        p50, p99 = per_query_ms(hnsw, queries[:200], args.k)
        rows.append(
            {
                "mode": "hnsw",
                "param": f"ef_search={ef}" + (" (default)" if ef == default_ef else ""),
                "build_s": build,
                "recall": recall_at_k(got, truth),
                "p50_ms": p50,
                "p99_ms": p99,
            }
        )
    t = time.perf_counter()
    ivf = ItemIndex(vecs, mode="ivf", threads=args.threads)
    build = time.perf_counter() - t
    got, _ = ivf.search(queries, args.k)
    p50, p99 = per_query_ms(ivf, queries[:200], args.k)
    rows.append(
        {
            "mode": "ivf",
            "param": f"nprobe={ivf._faiss_index.nprobe} (default)",
            "build_s": build,
            "recall": recall_at_k(got, truth),
            "p50_ms": p50,
            "p99_ms": p99,
        }
    )

    meta = {
        "items": args.items,
        "dim": args.dim,
        "queries": args.queries,
        "k": args.k,
        "threads": args.threads,
        "machine": platform.platform(),
        "processor": platform.processor(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# ANN retrieval: recall@10 against exact search",
        "",
        f"Synthetic catalogue: {args.items} items x {args.dim} dims"
        " (200 clusters, log-normal norms),"
        f" {args.queries} Gaussian queries, k={args.k}, faiss threads={args.threads}.",
        "Latency: single-query `ItemIndex.search` calls (200 queries), milliseconds.",
        "",
        "Command: `.venv/bin/python benchmarks/ann_recall.py "
        f"--items {args.items} --dim {args.dim} --out {args.out}`",
        "",
        "| mode | setting | build s | recall@10 | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['param']} | {r['build_s']:.1f} | {r['recall']:.4f} | "
            f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
