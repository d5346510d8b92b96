"""Load test of `recforge serve` on loopback: p50/p99 latency and throughput.

Trains (or takes) an ML-100k biased_mf run, exports it to a SQLite store, starts the service as a
real uvicorn process (one worker) and drives it with ``c`` concurrent keep-alive connections, each
sending its next request when the previous answer arrives. The load generator is Debian's ``wrk``
(one thread, ``--duration`` seconds per row, Lua scripts in benchmarks/wrk/) when it is on PATH,
else an async httpx client sharing ``--requests`` requests (``--client`` forces either).
Scenarios: GET /users/{id}/recommendations in live and store mode, and
POST /recommendations (fold-in of 5 ratings), each at 1, 16 and 64 clients. User ids and rated
items rotate through the data so caches do not flatter the figures. Client and server share the
machine's cores, so the client's own cost is included in the latency.

    apt-get install -y wrk   # optional; without it the httpx client is used
    RECFORGE_DATA_DIR=../shared/data .venv/bin/python benchmarks/serve_load.py \
        --out docs/benchmarks/serve
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    args: list[str], workers: int = 1, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECFORGE_")}
    env.update(extra_env or {})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recforge.cli",
            "serve",
            *args,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--workers",
            str(workers),
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("service did not start")


async def drive(base: str, make: Any, clients: int, total: int) -> dict[str, float]:
    """``total`` requests from ``clients`` concurrent loops; latency in ms, throughput in req/s."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    # TCP_NODELAY: httpx writes a POST's headers and body separately; without it Nagle's
    # algorithm and the server's delayed ACK add ~40 ms to every POST on loopback.
    transport = httpx.AsyncHTTPTransport(
        limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    )
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=30) as client:

        async def loop() -> None:
            nonlocal errors
            for i in counter:
                method, path, body = make(i)
                t = time.perf_counter()
                try:
                    r = await client.request(method, path, json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - t) * 1000)
                errors += not ok

        # warm-up: connections and first-call costs
        warm = iter(range(min(total, 20 * clients)))
        counter, real = warm, counter
        await asyncio.gather(*(loop() for _ in range(clients)))
        latencies.clear()
        errors = 0
        counter = real
        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        wall = time.perf_counter() - t0
    lat = np.asarray(latencies)
    return {
        "requests": len(lat),
        "errors": errors,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "rps": len(lat) / wall,
    }


WRK_DIR = Path(__file__).parent / "wrk"


def drive_wrk(
    base: str,
    script: str,
    env: dict[str, str],
    clients: int,
    seconds: float,
    after_warm_up: Any = None,
) -> dict[str, float]:
    """``clients`` connections for ``seconds`` (after a 1 s warm-up, then ``after_warm_up()``
    when given) with one wrk thread."""

    def once(duration: float) -> dict[str, float]:
        cmd = ["wrk", "-t1", f"-c{clients}", f"-d{duration:g}s", "--latency", "--timeout", "10s"]
        cmd += ["-s", str(WRK_DIR / script), base]
        out = subprocess.run(
            cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True
        ).stdout
        found = re.search(r"^WRK_JSON (\{.*\})$", out, re.M)
        if found is None:
            raise RuntimeError(f"wrk printed no summary:\n{out}")
        return dict(json.loads(found.group(1)))

    once(1)
    if after_warm_up is not None:
        after_warm_up()
    r = once(seconds)
    return {
        "requests": r["requests"],
        "errors": r["errors"],
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "rps": r["requests"] / (r["duration_us"] / 1e6),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, help="Run directory (default: train biased_mf on ML-100k).")
    ap.add_argument("--requests", type=int, default=3000, help="Requests per row (httpx client).")
    ap.add_argument("--duration", type=float, default=5.0, help="Seconds per row (wrk).")
    ap.add_argument("--client", choices=["auto", "wrk", "httpx"], default="auto")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes.")
    ap.add_argument("--clients", type=int, nargs="*", default=[1, 16, 64])
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/serve"))
    args = ap.parse_args()
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)

    work = Path(tempfile.mkdtemp(prefix="recforge-load-"))
    run = args.run
    if run is None:
        from recforge.pipeline import train_run

        run = work / "ml100k-biased_mf"
        train_run("biased_mf", "ml-100k", split="random:0.2", out=run)
    from recforge.artifacts import load_run
    from recforge.export import export_run

    model = load_run(run).model
    users = [str(u) for u in model.users_.ids.tolist()]
    items = [str(i) for i in model.items_.ids.tolist()]
    url = f"sqlite:///{work / 'recs.db'}"
    export_run(run, url, 100)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(items), size=(10_000, 5))

    def get_recs(i: int) -> tuple[str, str, None]:
        return "GET", f"/users/{users[i % len(users)]}/recommendations?k=10", None

    def post_recs(i: int) -> tuple[str, str, dict[str, Any]]:
        row = picks[i % len(picks)]
        ratings = {items[j]: float(1 + (j + i) % 5) for j in row}
        return "POST", "/recommendations", {"ratings": ratings, "k": 10}

    # the same ids and bodies for wrk's Lua scripts, one per line
    ids_file, bodies_file = work / "users.txt", work / "bodies.txt"
    ids_file.write_text("\n".join(users) + "\n")
    bodies_file.write_text("\n".join(json.dumps(post_recs(i)[2]) for i in range(len(picks))) + "\n")

    get_wrk = ("get_recs.lua", {"WRK_IDS": str(ids_file)})
    post_wrk = ("post_recs.lua", {"WRK_BODIES": str(bodies_file)})
    scenarios: list[tuple[str, str, list[str], Any, tuple[str, dict[str, str]]]] = [
        ("GET /users/{id}/recommendations", "live", [str(run)], get_recs, get_wrk),
        ("GET /users/{id}/recommendations", "store", ["--store", url], get_recs, get_wrk),
        ("POST /recommendations (5 ratings)", "live", [str(run)], post_recs, post_wrk),
    ]
    rows: list[dict[str, Any]] = []
    for name, mode, serve_args, make, (script, env) in scenarios:
        proc, base = start(serve_args, args.workers)
        try:
            for c in args.clients:
                if use_wrk:
                    res = drive_wrk(base, script, env, c, args.duration)
                else:
                    res = asyncio.run(drive(base, make, c, args.requests))
                rows.append({"endpoint": name, "mode": mode, "clients": c, **res})
                print(rows[-1], flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    client = (
        f"wrk -t1 -c<clients> -d{args.duration:g}s --latency (after a 1 s warm-up)"
        if use_wrk
        else f"httpx.AsyncClient, closed loop, {args.requests} requests per row"
    )
    meta = {
        "model": "biased_mf, ML-100k random:0.2",
        "requests_per_row": None if use_wrk else args.requests,
        "seconds_per_row": args.duration if use_wrk else None,
        "server": f"recforge serve (uvicorn, {args.workers} worker(s), --log-level warning)",
        "client": client,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# Service load: latency and throughput on loopback",
        "",
        f"biased_mf trained on ML-100k (random:0.2 split); store: SQLite, k=100 exported. "
        f"uvicorn workers: {args.workers}; load generator: {client}, in a second process on "
        f"the same {os.cpu_count()}-core machine, loopback only.",
        "",
        "Command: `RECFORGE_DATA_DIR=../shared/data .venv/bin/python benchmarks/serve_load.py "
        f"--client {'wrk' if use_wrk else 'httpx'} "
        + (f"--duration {args.duration:g} " if use_wrk else f"--requests {args.requests} ")
        + (f"--workers {args.workers} " if args.workers > 1 else "")
        + f"--out {args.out}`",
        "",
        "| endpoint | mode | clients | requests | errors | p50 ms | p99 ms | req/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['endpoint']} | {r['mode']} | {r['clients']} | {r['requests']} | "
            f"{r['errors']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps']:.0f} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
