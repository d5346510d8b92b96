"""Soak test of `recforge serve` in store mode: bounded load for a bounded time, two hot swaps.

Trains three small biased_mf runs (ML-100k when RECFORGE_DATA_DIR has it, else synthetic data;
different seeds, so each is a distinct model version), exports the first to a SQLite store and
starts ``recforge serve --store`` as a real uvicorn process on 127.0.0.1 with an API key
(RECFORGE_API_KEY, so the auth path is soaked too). An open-loop client then sends ``--rate``
requests per second (arrivals on a fixed schedule, not "next request when the last answer
arrives", so a slow server cannot lower the load) for ``--duration`` seconds:

* 85 % GET /users/{id}/recommendations?k=10 for a random known user (expect 200),
* 5 % the same for an unknown user (expect 404 with the stable detail),
* 5 % GET /items?query=<title word> (expect 200), 5 % GET /health (expect 200).

At 1/3 and 2/3 of the duration the next run is exported with ``recforge export`` (a separate
process writing to the same SQLite file while the server reads it), activated with
``recforge export --activate`` and picked up with ``POST /admin/reload``. An *error* is any
unexpected status, a transport error, or a recommendation list from a version that was not
active at some moment between sending the request and its answer (the previous one is allowed
while a reload is under way). Reported: requests, errors, per-minute p50/p99/max latency with
the server's CPU use and the machine's load, the time each swap took to show in responses, and
the server's RSS over time (sampled from /proc every 5 s).

    RECFORGE_DATA_DIR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/soak.py \\
        --duration 600 --rate 50 --out docs/benchmarks/soak
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from serve_load import free_port  # benchmarks/ is on sys.path when this script runs

_CLI = [sys.executable, "-m", "recforge.cli"]


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (None once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` so far (None once it has exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the ")" closing the command name: state is field 3, utime 14 and stime 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train_runs(root: Path, epochs: int) -> tuple[list[Path], str]:
    """Three biased_mf runs (seeds 0, 1, 2); ML-100k when available, else synthetic."""
    from recforge.pipeline import train_run

    data_dir = os.environ.get("RECFORGE_DATA_DIR")
    data: Any
    if data_dir and (Path(data_dir) / "ml-100k").is_dir():
        data, label = "ml-100k", "ML-100k"
    else:
        from recforge.data.synthetic import make_interactions

        data = make_interactions(943, 1682, density=0.063, seed=0).interactions
        label = "synthetic 943 x 1682 (RECFORGE_DATA_DIR unset)"
    runs = []
    for seed in range(3):
        out = root / f"mf-seed{seed}"
        train_run(
            "biased_mf", data, split="random:0.2", config={"epochs": epochs, "seed": seed}, out=out
        )
        runs.append(out)
    return runs, label


def cli(*args: str, nice: int = 0) -> dict[str, Any]:
    """Run a recforge command with --json (at ``nice`` priority); its parsed output."""
    prefix = ["nice", "-n", str(nice)] if nice else []
    res = subprocess.run(
        [*prefix, *_CLI, *args, "--json"], capture_output=True, text=True, check=True
    )
    parsed: dict[str, Any] = json.loads(res.stdout)
    return parsed


def start_server(db_url: str, key: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECFORGE_")}
    env |= {"RECFORGE_API_KEY": key, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*_CLI, "serve", "--store", db_url, "--port", str(port), "--log-level", "warning"], env=env
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"service did not start (exit code {proc.poll()})")


class Soak:
    """The open-loop client, the swaps and the measurements."""

    def __init__(self, base: str, key: str, users: list[str], words: list[str], seed: int):
        self.base = base
        self.key = key
        self.users = users
        self.words = words
        self.rng = np.random.default_rng(seed)
        self.t0 = 0.0
        # (send time s, latency ms, ok)
        self.samples: list[tuple[float, float, bool]] = []
        self.errors: list[str] = []
        self.late = 0
        self.versions: list[str] = []  # active versions, oldest first
        self.seen_version_at: dict[str, float] = {}

    def pick(self) -> tuple[str, int, str | None]:
        """(path, expected status, kind)."""
        r = self.rng.random()
        if r < 0.85:
            return f"/users/{self.rng.choice(self.users)}/recommendations?k=10", 200, "recs"
        if r < 0.90:
            unknown = f"no-such-user-{int(self.rng.integers(1_000_000_000))}"
            return f"/users/{unknown}/recommendations", 404, None
        if r < 0.95:
            return f"/items?query={self.rng.choice(self.words)}&limit=10", 200, None
        return "/health", 200, None

    async def one(self, client: httpx.AsyncClient, path: str, want: int, kind: str | None) -> None:
        sent = time.perf_counter() - self.t0
        n_at_send = len(self.versions)
        ok = True
        try:
            r = await client.get(path)
            ms = (time.perf_counter() - self.t0 - sent) * 1000
            if r.status_code != want:
                ok = False
                self.errors.append(f"{sent:.1f}s {path}: {r.status_code} {r.text[:120]}")
            elif kind == "recs":
                version = r.json()["model_version"]
                self.seen_version_at.setdefault(version, sent)
                # Allowed: the version active when the request was sent, the one before it (its
                # reload may still be under way), and any activated before the answer came (the
                # server picks the model when it handles the request, not when it is sent).
                allowed = set(self.versions[max(0, n_at_send - 2) :])
                if version not in allowed:
                    ok = False
                    self.errors.append(f"{sent:.1f}s {path}: stale version {version}")
        except httpx.HTTPError as exc:
            ms = (time.perf_counter() - self.t0 - sent) * 1000
            ok = False
            self.errors.append(f"{sent:.1f}s {path}: {type(exc).__name__} {exc}")
        self.samples.append((sent, ms, ok))

    async def drive(self, duration: float, rate: float, max_in_flight: int) -> None:
        # keepalive_expiry under uvicorn's 5 s keep-alive timeout: with both at 5 s, a pooled
        # connection can be reused just as the server closes it ("Server disconnected without
        # sending a response"), a client-side race that a soak run hit once in 30,000 requests.
        limits = httpx.Limits(
            max_connections=max_in_flight, max_keepalive_connections=16, keepalive_expiry=2.0
        )
        transport = httpx.AsyncHTTPTransport(
            limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
        headers = {"X-API-Key": self.key}
        in_flight: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(
            base_url=self.base, transport=transport, timeout=30, headers=headers
        ) as client:
            self.t0 = time.perf_counter()
            n = int(duration * rate)
            for i in range(n):
                due = self.t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(in_flight) >= max_in_flight:
                    self.late += 1  # the server is behind: skip this arrival, count it
                    continue
                task = asyncio.create_task(self.one(client, *self.pick()))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            await asyncio.gather(*in_flight)


async def swapper(
    soak: Soak,
    runs: list[Path],
    db_url: str,
    duration: float,
    k: int,
    nice: int,
    log: list[dict[str, Any]],
) -> None:
    """Export and activate runs[1] and runs[2] at 1/3 and 2/3 of the duration; reload."""
    for step, run in enumerate(runs[1:], start=1):
        await asyncio.sleep(max(0.0, soak.t0 + duration * step / 3 - time.perf_counter()))
        version = f"soak-v{step + 1}"
        t = time.perf_counter()
        exp = await asyncio.to_thread(
            cli, "export", str(run), "--db", db_url, "-k", str(k), "--version", version, nice=nice
        )
        t_export = time.perf_counter() - t
        await asyncio.to_thread(cli, "export", "--db", db_url, "--activate", version)
        soak.versions.append(version)
        t_activated = time.perf_counter() - soak.t0
        async with httpx.AsyncClient(base_url=soak.base, timeout=60) as client:
            r = await client.post("/admin/reload", headers={"X-API-Key": soak.key})
        body = r.json()
        log.append(
            {
                "version": version,
                "export_started_s": round(t - soak.t0, 1),
                "export_seconds": round(t_export, 2),
                "rows": exp["export"]["rows"],
                "activated_at_s": round(t_activated, 1),
                "reload_status": r.status_code,
                "reload_seconds": body.get("seconds"),
                "previous_version": body.get("previous_version"),
                "served_version": body.get("model_version"),
            }
        )


async def sample_rss(
    pid: int, soak: Soak, duration: float, out: list[tuple[float, int, float, float]]
) -> None:
    """Every 5 s: (seconds since the load started, server RSS KiB, server CPU seconds, the
    machine's 1-minute load average)."""
    while True:
        value, cpu = rss_kib(pid), cpu_seconds(pid)
        if value is not None and cpu is not None and soak.t0:
            out.append((time.perf_counter() - soak.t0, value, cpu, os.getloadavg()[0]))
        if soak.t0 and time.perf_counter() - soak.t0 > duration + 5:
            return
        await asyncio.sleep(5.0)


def summarise(
    soak: Soak, duration: float, proc_samples: list[tuple[float, int, float, float]]
) -> list[dict[str, Any]]:
    """Per-minute buckets (shorter runs: sixths of the duration), with the server's CPU use."""
    width = 60.0 if duration >= 180 else duration / 6
    arr = np.asarray([(s, ms, ok) for s, ms, ok in soak.samples], dtype=np.float64)
    rows = []
    for b in range(int(np.ceil(duration / width))):
        sel = arr[(arr[:, 0] >= b * width) & (arr[:, 0] < (b + 1) * width)]
        if not len(sel):
            continue
        lat = sel[:, 1]
        inside = [p for p in proc_samples if b * width <= p[0] <= (b + 1) * width]
        cpu = None
        load = round(float(np.mean([p[3] for p in inside])), 2) if inside else None
        if len(inside) >= 2:
            cpu = round(100 * (inside[-1][2] - inside[0][2]) / (inside[-1][0] - inside[0][0]), 1)
        rows.append(
            {
                "from_s": round(b * width),
                "to_s": round(min((b + 1) * width, duration)),
                "requests": len(sel),
                "errors": int((sel[:, 2] == 0).sum()),
                "p50_ms": round(float(np.percentile(lat, 50)), 2),
                "p99_ms": round(float(np.percentile(lat, 99)), 2),
                "max_ms": round(float(lat.max()), 2),
                "server_cpu_pct": cpu,
                "load_avg_1min": load,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second")
    ap.add_argument("--max-in-flight", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=5, help="training epochs per run")
    ap.add_argument("--k", type=int, default=50, help="exported list length")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--export-nice",
        type=int,
        default=0,
        help="run the exports under `nice -n N` (a batch job beside a latency-bound service)",
    )
    ap.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="recforge-soak-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        runs, data_label = train_runs(root, args.epochs)
        train_s = time.perf_counter() - t
        db_url = f"sqlite:///{root / 'recs.db'}"
        cli("export", str(runs[0]), "--db", db_url, "-k", str(args.k), "--version", "soak-v1")
        cli("export", "--db", db_url, "--activate", "soak-v1")
        from recforge.artifacts import load_run

        model = load_run(runs[0]).model
        users = [str(u) for u in model.users_.ids.tolist()]
        meta = model.item_meta_
        titles = meta["title"].dropna().tolist() if meta is not None and "title" in meta else []
        words = sorted({w.lower() for t in titles for w in str(t).split() if w.isalpha()})[:500]
        words = words or ["movie", "toy", "the"]
        del model

        key = secrets.token_urlsafe(24)
        proc, base = start_server(db_url, key)
        load_before = os.getloadavg()
        soak = Soak(base, key, users, words, args.seed)
        soak.versions.append("soak-v1")
        swaps: list[dict[str, Any]] = []
        rss: list[tuple[float, int, float, float]] = []

        async def everything() -> None:
            await asyncio.gather(
                soak.drive(args.duration, args.rate, args.max_in_flight),
                swapper(soak, runs, db_url, args.duration, args.k, args.export_nice, swaps),
                sample_rss(proc.pid, soak, args.duration, rss),
            )

        try:
            asyncio.run(everything())
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        load_after = os.getloadavg()

    for s in swaps:
        s["first_response_from_it_s"] = round(soak.seen_version_at.get(s["version"], -1.0), 1)
    lat = np.asarray([ms for _, ms, _ in soak.samples])
    rss_mib = [(round(s, 1), round(v / 1024, 1)) for s, v, _, _ in rss]
    first_min = [v for s, v in rss_mib if s <= 60] or [rss_mib[0][1]]
    report = {
        "command": " ".join(
            ["OMP_NUM_THREADS=1 .venv/bin/python benchmarks/soak.py"]
            + [f"--duration {args.duration:g} --rate {args.rate:g} --epochs {args.epochs}"]
            + [f"--k {args.k} --seed {args.seed} --export-nice {args.export_nice}"]
            + ([f"--out {args.out}"] if args.out else [])
        ),
        "data": data_label,
        "model": f"biased_mf, {args.epochs} epochs, seeds 0/1/2 (three versions)",
        "mode": "store (SQLite), API key on, 1 uvicorn worker",
        "export_nice": args.export_nice,
        "duration_s": args.duration,
        "rate_per_s": args.rate,
        "train_seconds": round(train_s, 1),
        "requests": len(soak.samples),
        "errors": len(soak.errors),
        "error_examples": soak.errors[:20],
        "skipped_arrivals_server_behind": soak.late,
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
        "buckets": summarise(soak, args.duration, rss),
        "swaps": swaps,
        "rss_mib": rss_mib,
        "rss_first_minute_max_mib": max(first_min),
        "rss_last_mib": rss_mib[-1][1] if rss_mib else None,
        "rss_max_mib": max(v for _, v in rss_mib) if rss_mib else None,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "machine": f"{platform.platform()}, {os.cpu_count()} cores",
    }
    print(
        f"{report['requests']} requests, {report['errors']} errors, p99 {report['p99_ms']} ms, "
        f"RSS {report['rss_first_minute_max_mib']} -> {report['rss_last_mib']} MiB"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(report))


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Soak test: store mode under steady load, two hot swaps",
        "",
        f"Command: `{r['command']}` (RECFORGE_DATA_DIR set for ML-100k).",
        "",
        f"Data: {r['data']}. Model: {r['model']}. Service: `recforge serve --store`, {r['mode']}, "
        "on 127.0.0.1; the client is an open-loop httpx client in the same machine (requests "
        "are sent on a fixed schedule whatever the answers' speed). Mix: 85 % known-user "
        "recommendations, 5 % unknown users (404 expected), 5 % title search, 5 % /health.",
        f"Machine: {r['machine']}, shared with other work; load average (1/5/15 min) before "
        f"{', '.join(f'{x:.2f}' for x in r['load_average_before'])}, after "
        f"{', '.join(f'{x:.2f}' for x in r['load_average_after'])}.",
        "",
        f"**{r['requests']} requests in {r['duration_s']:g} s at {r['rate_per_s']:g}/s: "
        f"{r['errors']} errors; p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms. "
        f"Server RSS {r['rss_first_minute_max_mib']} MiB (first minute) -> {r['rss_last_mib']} MiB "
        f"(end), max {r['rss_max_mib']} MiB.** Arrivals skipped because 32 requests were already "
        f"in flight: {r['skipped_arrivals_server_behind']}.",
        "",
        "An error is an unexpected status, a transport error, or an answer from a model version",
        "that was not active at some moment between sending the request and its answer (with",
        "the previous one allowed while a reload is under way). A version a swap left behind",
        "would count, as would a request answered by no model.",
        "",
        "## Latency over time",
        "",
        "Server CPU % is the server process's use of one core over the bucket (from /proc); the",
        "machine load is the 1-minute load average of the whole 2-core machine, which other",
        "work shares. Where p99 rises while the server's CPU use stays flat, requests waited for",
        "a core, not for the service.",
        "",
        "| from s | to s | requests | errors | p50 ms | p99 ms | max ms | server CPU % "
        "| machine load (1 min) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in r["buckets"]:
        lines.append(
            f"| {b['from_s']} | {b['to_s']} | {b['requests']} | {b['errors']} | {b['p50_ms']} | "
            f"{b['p99_ms']} | {b['max_ms']} | {b['server_cpu_pct']} | {b['load_avg_1min']} |"
        )
    lines += [
        "",
        "## Swaps (export with `recforge export`, `--activate`, then `POST /admin/reload`)",
        "",
        f"Exports ran at nice {r['export_nice']}. The first answer from a version is the first "
        "sampled recommendation request that returned it (none: the load had ended).",
        "",
        "| version | export started s | export s | rows | activated at s | reload | reload s "
        "| first answer from it at s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in r["swaps"]:
        lines.append(
            f"| {s['version']} | {s['export_started_s']} | {s['export_seconds']} | {s['rows']} | "
            f"{s['activated_at_s']} | {s['reload_status']} | {s['reload_seconds']} | "
            f"{s['first_response_from_it_s'] if s['first_response_from_it_s'] >= 0 else 'none'} |"
        )
    lines += ["", "## Server memory (RSS, MiB)", ""]
    rss = r["rss_mib"]
    step = max(1, len(rss) // 12)
    lines.append("| s | " + " | ".join(f"{s:g}" for s, _ in rss[::step]) + " |")
    lines.append("|---|" + "---:|" * len(rss[::step]))
    lines.append("| RSS | " + " | ".join(f"{v:g}" for _, v in rss[::step]) + " |")
    if r["error_examples"]:
        lines += ["", "## Errors (first 20)", ""] + [f"- `{e}`" for e in r["error_examples"]]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
