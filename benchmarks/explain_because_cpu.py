"""CPU time of the service's `because` for known users, per source version, in fresh processes.

What ``GET /users/{id}/recommendations?explain=true`` adds to a request is
:meth:`recforge.serve.live.LiveBackend.add_because` on the user's top-10. On a shared machine a
request's mean CPU time moves with other agents' bursts by more than the changes measured here;
this takes, per user, the least CPU time of ``--calls`` calls (bursts rarely hit them all) and
averages that over ``--users`` known users, in a fresh process per version (``src`` first on its
path), the versions alternating ``--reps`` times (best kept). Torch and BLAS one thread, as the
service runs. Against the first version: whether every ``because`` list is the same bytes (ids
and rounded weights as served), the share of (user, item) lists with the same items in the same
order, and the largest weight difference within those.

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python benchmarks/explain_because_cpu.py \\
        --runs RUNS --model mult_vae --src ../main/src src --out docs/benchmarks/explain_because_cpu
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _worker(run: str, users: int, calls: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from recforge.serve.live import LiveBackend
    from recforge.serve.settings import Settings

    torch.set_num_threads(1)
    backend = LiveBackend(run, Settings(run=run, web=False))
    ids = [str(u) for u in backend.model.users_.ids.tolist()[:users]]
    recs = {u: backend.recommend(u, 10, True) for u in ids}
    for u in ids[:20]:  # warm-up
        backend.add_because(u, recs[u] or [])
    best = np.full(len(ids), np.inf)
    digest = hashlib.sha256()
    served: list[list[list[Any]]] = []
    for call in range(calls):
        for i, u in enumerate(ids):
            start = time.process_time()
            backend.add_because(u, recs[u] or [])
            best[i] = min(best[i], time.process_time() - start)
            if call == 0:
                lists = [[(b.item_id, b.weight) for b in it.because or []] for it in recs[u] or []]
                digest.update(json.dumps(lists).encode())
                served.extend(lists)
    return {"us_per_user": 1e6 * float(best.mean()), "sha256": digest.hexdigest(), "lists": served}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        out = _worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        print(json.dumps(out))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="Folder of runs named by label.")
    ap.add_argument("--model", default="mult_vae")
    ap.add_argument("--src", nargs="+", required=True, help="src/ folders, first = reference.")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--calls", type=int, default=3, help="Calls per user (least kept).")
    ap.add_argument("--reps", type=int, default=2, help="Alternating fresh processes.")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/explain_because_cpu"))
    args = ap.parse_args()
    run = args.runs / args.model
    before = load()
    best: dict[str, dict[str, Any]] = {}
    for _ in range(args.reps):
        for src in args.src:
            env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=src)
            cmd = [sys.executable, __file__, "--worker", str(run), str(args.users), str(args.calls)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"worker failed ({src}):\n{done.stderr[-3000:]}")
            got = json.loads(done.stdout.strip().splitlines()[-1])
            if src not in best or got["us_per_user"] < best[src]["us_per_user"]:
                best[src] = got
            print(src, f"{got['us_per_user']:.0f} us per user", flush=True)
    ref = best[args.src[0]]

    def agreement(lists: list[list[Any]]) -> tuple[float, float]:
        """Share of (user, item) lists with the reference's items in its order, and the
        largest weight difference within those."""
        same, diff = 0, 0.0
        for a, b in zip(lists, ref["lists"], strict=True):
            if [i for i, _ in a] == [i for i, _ in b]:
                same += 1
                diff = max([diff, *(abs(x[1] - y[1]) for x, y in zip(a, b, strict=True))])
        return same / max(len(lists), 1), diff

    rows = []
    for src in args.src:
        share, diff = agreement(best[src]["lists"])
        rows.append(
            {
                "src": src,
                "us_per_user": best[src]["us_per_user"],
                "ratio": best[src]["us_per_user"] / ref["us_per_user"],
                "same_because_as_first": best[src]["sha256"] == ref["sha256"],
                "lists_equal_share": share,
                "max_weight_diff_equal_lists": diff,
            }
        )
    command = (
        "RECFORGE_DATA_DIR=../shared/data .venv/bin/python benchmarks/explain_because_cpu.py "
        f"--runs RUNS --model {args.model} --src {' '.join(args.src)} --users {args.users} "
        f"--calls {args.calls} --reps {args.reps} --out {args.out}"
    )
    meta = {
        "command": command,
        "data": "ML-100k, random:0.2 split, the model fitted on the train part",
        "load_before_after": f"{before} / {load()}",
        "machine": f"{platform.platform()}, {os.cpu_count()} cores, shared with other agents",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        f"# CPU time of the served `because` ({args.model}, known users, top-10)",
        "",
        f"Command: `{command}`",
        "",
        f"{meta['data']}; the first {args.users} known users, each one's top-10 from "
        "`LiveBackend.recommend`; per user the least CPU time of "
        f"{args.calls} `add_because` calls, averaged; best of {args.reps} alternating fresh "
        f"processes per version; torch and BLAS one thread. Load average before / after: "
        f"{meta['load_before_after']}.",
        "",
        "| source | µs per user | ratio to the first | same bytes as the first | lists with the "
        "first's items, in order | max weight diff there |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        same = "yes" if r["same_because_as_first"] else "no"
        lines.append(
            f"| {r['src']} | {r['us_per_user']:.0f} | {r['ratio']:.2f} | {same} | "
            f"{r['lists_equal_share']:.4f} | {r['max_weight_diff_equal_lists']:.1e} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
