"""Peak memory of hostile inputs after the issue-17 fixes (one fresh process per case).

Cases: a 3 MB gzip of 3 GiB of newlines (the probe's bomb), a 4.7 MB gzip of 3 GiB of rating rows,
a 100 MB file of blank lines around 3 rows, and a crafted run directory (150k users,
n_factors 4096 declared, ~2 MB on disk). Each is read (``read_ratings`` / ``load_run``) in a
fresh Python process whose peak RSS (``ru_maxrss``) is reported with the process's baseline
(imports only).

Command (writes docs/benchmarks/input_memory.{json,md}):

    RECFORGE_DATA_DIR=<data> nice -n 10 .venv/bin/python benchmarks/input_memory.py \
        --out docs/benchmarks/input_memory
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

READ = """
import resource, sys, time
from recforge.data.io import read_ratings
from recforge.errors import RecError
t0 = time.perf_counter()
try:
    outcome = f"{len(read_ratings(sys.argv[1]))} rows"
except RecError as exc:
    outcome = f"refused: {exc}"
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t0)
print(outcome)
"""
LOAD = """
import resource, sys, time
from recforge.artifacts import load_run
from recforge.errors import RecError
t0 = time.perf_counter()
try:
    load_run(sys.argv[1]); outcome = "loaded"
except RecError as exc:
    outcome = f"refused: {exc}"
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t0)
print(outcome)
"""
BASELINE_DATA = """
import resource
import recforge.data.io
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, 0.0)
print("imports only: recforge.data.io (the reading cases)")
"""
BASELINE_RUN = """
import resource
import recforge.artifacts, recforge.models.mf, safetensors.numpy
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, 0.0)
print("imports only: recforge.artifacts, torch models (the crafted run)")
"""


def _measure(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, **(env or {})},
    )
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or len(lines) < 2:
        return {"error": out.stderr[-500:]}
    peak, seconds = lines[-2].split()
    return {"peak_rss_kib": int(peak), "seconds": round(float(seconds), 2), "outcome": lines[-1]}


def _files(folder: Path) -> dict[str, Path]:
    blank = folder / "bomb_blank.csv.gz"
    with gzip.open(blank, "wb", compresslevel=9) as fh:
        fh.write(b"user,item,rating\n1,2,3\n")
        for _ in range(3 * 1024):
            fh.write(b"\n" * (1 << 20))
    rows = folder / "bomb_rows.csv.gz"
    with gzip.open(rows, "wb", compresslevel=9) as fh:
        fh.write(b"user,item,rating\n")
        for _ in range(3 * 1024):
            fh.write(b"1,2,3\n" * 174763)
    plain = folder / "blank100.csv"
    with open(plain, "wb") as fh:
        fh.write(b"1,10,4\n")
        for _ in range(100):
            fh.write(b"\n" * (1 << 20))
        fh.write(b"2,20,3\n3,30,5\n")
    return {"bomb_blank": blank, "bomb_rows": rows, "blank100": plain}


def _crafted_run(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from recforge.artifacts import save_run
    from recforge.models import create
    from test_artifacts_hardening import _data, _inflate  # the regression test's own recipe

    run = save_run(folder / "run", create("biased_mf", epochs=1, n_factors=4, seed=0).fit(_data()))
    _inflate(run, 150_000, 4096)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/input_memory"))
    args = parser.parse_args()
    results: dict[str, Any] = {
        "baseline_data": _measure(BASELINE_DATA),
        "baseline_run": _measure(BASELINE_RUN),
    }
    with tempfile.TemporaryDirectory(prefix="recforge-input-memory-") as tmp:
        files = _files(Path(tmp))
        sizes = {name: path.stat().st_size for name, path in files.items()}
        for name, path in files.items():
            results[name] = _measure(READ, str(path)) | {"file_bytes": sizes[name]}
        results["bomb_blank_cap_4e9"] = _measure(
            READ, str(files["bomb_blank"]), env={"RECFORGE_MAX_INPUT_BYTES": "4000000000"}
        ) | {"file_bytes": sizes["bomb_blank"]}
        run = _crafted_run(Path(tmp))
        run_bytes = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
        results["crafted_run"] = _measure(LOAD, str(run)) | {"file_bytes": run_bytes}
    report = {
        "command": "benchmarks/input_memory.py --out " + str(args.out),
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Hostile inputs: peak memory after the issue-17 fixes",
        "",
        "Command: `RECFORGE_DATA_DIR=<data> nice -n 10 .venv/bin/python "
        "benchmarks/input_memory.py --out docs/benchmarks/input_memory`",
        "",
        f"One fresh process per case, peak RSS from `ru_maxrss`; load average "
        f"{', '.join(f'{x:.1f}' for x in report['load_average'])}.",
        "",
        "| case | on disk | peak RSS | seconds | outcome |",
        "|---|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        disk = f"{r['file_bytes'] / 1e6:.1f} MB" if "file_bytes" in r else ""
        if "error" in r:
            lines.append(f"| {name} | {disk} | error | | {r['error'][-120:]} |")
            continue
        outcome = r["outcome"].replace("|", "/")
        if len(outcome) > 140:
            outcome = outcome[:137] + "..."
        lines.append(
            f"| {name} | {disk} | {r['peak_rss_kib'] / 1024:.0f} MiB | {r['seconds']} | {outcome} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
