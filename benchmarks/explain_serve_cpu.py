"""Server CPU per explained request, in process, and whether two versions serve the same answers.

Latency at 16 clients on a shared 2-core machine moves with the other agents' load; the CPU time
the service spends on one request moves much less. This calls the ASGI app of ``recforge serve``
directly (no HTTP server, no client: a hand-made ASGI scope per request, the lifespan run once)
and reports the process CPU time per request (``time.process_time``; torch and BLAS one thread,
as the service runs) of three requests per model — GET top-10 without and with ``explain=true``
(known users in id order) and POST ``/recommendations`` of a new user (10 random 1-5★ ratings,
``explain: true``) — after 50 warm-up requests. With ``--baseline-src OTHER/src`` every
measurement also runs against that source tree, the two interleaved ``--reps`` times (each in a
fresh process) and the best of each kept; the SHA-256 of every response body of a row (same
requests, same order) says whether both versions served the same bytes.

    RECFORGE_DATA_DIR=../shared/data .venv/bin/python benchmarks/explain_serve_cpu.py \\
        --runs RUNS --models item_knn mult_vae --baseline-src ../main/src \\
        --out docs/benchmarks/explain_serve_cpu

``RUNS`` holds runs named by label, as ``explain_serve.py --runs`` (trained there when absent,
with the same settings: ML-100k ``random:0.2``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCENARIOS = ("get", "get_explain", "post_explain")
TITLES = {
    "get": "GET known user, no explain",
    "get_explain": "GET known user, explain=true",
    "post_explain": "POST new user (10 ratings), explain=true",
}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def _measure(run: str, scenario: str, n: int) -> dict[str, Any]:
    """One scenario against the app of ``run`` in this process (the worker side)."""
    import numpy as np
    import torch

    from recforge.serve.app import create_app
    from recforge.serve.settings import Settings

    torch.set_num_threads(1)
    app = create_app(Settings(run=run, web=False))

    async def call(method: str, path: str, query: bytes, body: bytes) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": [
                (b"host", b"bench"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)  # pragma: no cover - a route never reads twice
            return {"type": "http.disconnect"}

        async def send(msg: dict[str, Any]) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            elif msg["type"] == "http.response.body":
                chunks.append(msg.get("body", b""))

        await app(scope, receive, send)
        return status, b"".join(chunks)

    async with app.router.lifespan_context(app):
        model = app.state.service.live.model
        users = [str(u) for u in model.users_.ids.tolist()]
        items = [str(i) for i in model.items_.ids.tolist()]
        rng = np.random.default_rng(0)
        picks = rng.choice(len(items), size=(2000, 10))
        stars = rng.integers(1, 6, size=(2000, 10))
        bodies = [
            json.dumps(
                {"ratings": {items[j]: float(s) for j, s in zip(p, r, strict=True)}, "k": 10}
                | {"explain": True}
            ).encode()
            for p, r in zip(picks.tolist(), stars.tolist(), strict=True)
        ]

        def request(i: int) -> tuple[str, str, bytes, bytes]:
            if scenario == "post_explain":
                return "POST", "/recommendations", b"", bodies[i % len(bodies)]
            query = b"k=10&explain=true" if scenario == "get_explain" else b"k=10"
            return "GET", f"/users/{users[i % len(users)]}/recommendations", query, b""

        for i in range(50):
            status, _ = await call(*request(i))
            if status != 200:
                raise SystemExit(f"{scenario}: warm-up request {i} answered {status}")
        digest = hashlib.sha256()
        c0, w0 = time.process_time(), time.perf_counter()
        for i in range(n):
            status, out = await call(*request(i))
            digest.update(status.to_bytes(2, "big") + out)
        c1, w1 = time.process_time(), time.perf_counter()
    return {
        "cpu_us_per_request": 1e6 * (c1 - c0) / n,
        "wall_us_per_request": 1e6 * (w1 - w0) / n,
        "answers_sha256": digest.hexdigest(),
    }


def _one(src: str | None, run: Path, scenario: str, n: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (``src`` first on its path)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if src is not None:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, __file__, "--worker", str(run), scenario, str(n)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"worker failed ({run.name}, {scenario}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        run, scenario, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(json.dumps(asyncio.run(_measure(run, scenario, n))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="Folder of runs named by label.")
    ap.add_argument("--models", nargs="+", default=["item_knn", "mult_vae"])
    ap.add_argument("--requests", type=int, default=1000, help="Timed requests per row.")
    ap.add_argument("--reps", type=int, default=3, help="Interleaved repeats; best kept.")
    ap.add_argument("--baseline-src", type=Path, help="Another version's src/ folder.")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/explain_serve_cpu"))
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from explain_serve import MODELS

    from recforge.pipeline import train_run

    versions: list[tuple[str, str | None]] = [("current", os.environ.get("PYTHONPATH"))]
    if args.baseline_src is not None:
        versions.insert(0, ("baseline", str(args.baseline_src.resolve())))
    rows: list[dict[str, Any]] = []
    for label, name, config, method in MODELS:
        if label not in args.models:
            continue
        run = args.runs / label
        if not (run / "manifest.json").exists():
            train_run(name, "ml-100k", split="random:0.2", config=config, out=run)
        for scenario in SCENARIOS:
            n = args.requests if method == "exact" or scenario == "get" else args.requests // 5
            best: dict[str, dict[str, Any]] = {}
            before = load()
            for _ in range(args.reps):
                for version, src in versions:
                    got = _one(src, run, scenario, n)
                    old = best.get(version)
                    if old is not None and old["answers_sha256"] != got["answers_sha256"]:
                        raise SystemExit(f"{label} {scenario} {version}: answers changed")
                    if old is None or got["cpu_us_per_request"] < old["cpu_us_per_request"]:
                        best[version] = got
            for version, _ in versions:
                row = {
                    "model": label,
                    "method": method,
                    "request": TITLES[scenario],
                    "version": version,
                    "requests": n,
                    **best[version],
                    "load_before": before,
                    "load_after": load(),
                }
                if "baseline" in best:
                    row["same_answers_as_baseline"] = (
                        best[version]["answers_sha256"] == best["baseline"]["answers_sha256"]
                    )
                rows.append(row)
                print(json.dumps(row), flush=True)
    _write(args, rows)


def _write(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    import recforge

    command = (
        "RECFORGE_DATA_DIR=../shared/data .venv/bin/python benchmarks/explain_serve_cpu.py "
        f"--runs RUNS --models {' '.join(args.models)} --requests {args.requests} "
        f"--reps {args.reps} "
        + (f"--baseline-src {args.baseline_src} " if args.baseline_src is not None else "")
        + f"--out {args.out}"
    )
    meta = {
        "command": command,
        "source": str(Path(recforge.__file__).resolve().parent),
        "data": "ML-100k, random:0.2 split, models fitted on the train part",
        "machine": f"{platform.platform()}, {os.cpu_count()} cores, shared with other agents",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# Server CPU per request, in process (ASGI app called directly)",
        "",
        f"Command: `{command}`",
        "",
        f"{meta['data']}; torch/BLAS one thread; best of {args.reps} interleaved repeats, each in "
        "a fresh process after 50 warm-up requests; `same answers`: the SHA-256 of every "
        "response body of the row equals the baseline's.",
        "",
        "| model | method | request | version | requests | CPU µs/req | wall µs/req | "
        "same answers | load before / after |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        same = r.get("same_answers_as_baseline")
        lines.append(
            f"| {r['model']} | {r['method']} | {r['request']} | {r['version']} | "
            f"{r['requests']} | {r['cpu_us_per_request']:.0f} | {r['wall_us_per_request']:.0f} | "
            f"{'' if same is None else ('yes' if same else 'no')} | "
            f"{r['load_before']} / {r['load_after']} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
