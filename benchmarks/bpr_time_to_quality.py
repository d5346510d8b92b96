"""BPR on a large log: fit time against NDCG@10 for recforge and implicit, a few budgets each.

The speed suite pairs recforge ``mf`` loss=bpr at 20 epochs with implicit's BPR at 100
iterations (``recforge benchmark --suite speed``). On the 10M-event synthetic log the two are
far apart in quality at those budgets, so this script draws each side's time-quality curve:
recforge at a few epoch counts, 20 among them (each a full one-cycle schedule of that length,
as a user would set it), and implicit at a few iteration counts, 100 among them; the points
interleaved (one fit each, seed 0, after an untimed warm-up of both sides), every fit on the
speed suite's ``temporal-user-80-20`` training part, scored by NDCG@10 on its test part. The
figure to read: the time each side needs to reach the other's quality.

Usage: ``python benchmarks/bpr_time_to_quality.py [DATASET [THREADS [OUT [EPOCHS [ITERATIONS]]]]]``
(defaults: ``synthetic-10m``, 2 threads, ``docs/benchmarks/speed_bpr_10m_quality``, recforge
epochs ``2,5,10,20``, implicit iterations ``25,50,100``; the budgets as comma lists). Writes
``OUT/bpr_time_to_quality.{json,md}``.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recforge._atomic import atomic_write_text
from recforge.bench.speed import (
    _all_threads,
    _fit_eval,
    _loadavg,
    _machine,
    _peer,
    load_speed_dataset,
)
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create

PROTOCOL = "temporal-user-80-20"
RECFORGE_EPOCHS = (2, 5, 10, 20)
IMPLICIT_ITERATIONS = (25, 50, 100)


def _points(
    epochs_list: tuple[int, ...] = RECFORGE_EPOCHS,
    iterations_list: tuple[int, ...] = IMPLICIT_ITERATIONS,
) -> list[tuple[str, int]]:
    """The fits in run order: recforge and implicit budgets alternating, small to large."""
    out: list[tuple[str, int]] = []
    for epochs, iterations in itertools.zip_longest(epochs_list, iterations_list):
        out += [("recforge", epochs)] if epochs else []
        out += [("implicit", iterations)] if iterations else []
    return out


def _factory(side: str, budget: int) -> Any:
    if side == "recforge":
        return lambda t, s: create(
            "mf", loss="bpr", n_factors=64, epochs=budget, seed=s, num_threads=t, verbose=False
        )
    return lambda t, s: _peer("implicit-bpr", factors=64, iterations=budget, num_threads=t, seed=s)


def run(dataset: str, threads: int, points: list[tuple[str, int]]) -> dict[str, Any]:
    ps = get_protocol(PROTOCOL).split(load_speed_dataset(dataset))
    result: dict[str, Any] = {
        "command": "python benchmarks/bpr_time_to_quality.py " + " ".join(sys.argv[1:]),
        "dataset": dataset,
        "protocol": PROTOCOL,
        "threads": threads,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_start": _loadavg(),
        "machine": _machine(),
        "points": [],
    }
    # Untimed warm-up of both sides on a small slice (library loading, compiled kernels).
    tiny = ps.train.subset(np.arange(min(len(ps.train), 3000))).compact()
    for side, budget in dict(points).items():  # each side once, at its last budget
        with _all_threads(threads):
            _factory(side, budget)(threads, 0).fit(tiny)
    for side, budget in points:
        seconds, ndcg, cpu, _, _ = _fit_eval(
            _factory(side, budget), threads, 0, ps, PROTOCOL, "ndcg@10"
        )
        point = {"side": side, "budget": budget, "seconds": seconds, "cpu_seconds": cpu,
                 "ndcg@10": ndcg}  # fmt: skip
        print(point, flush=True)
        result["points"].append(point)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["load_average_end"] = _loadavg()
    return result


def markdown(result: dict[str, Any]) -> str:
    unit = {"recforge": "epochs", "implicit": "iterations"}
    lines = [
        f"# BPR time against quality: recforge vs implicit on {result['dataset']}",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Run {result['started_at']} → {result['finished_at']}; load average "
        f"{result['load_average_start']} at the start, {result['load_average_end']} at the end; "
        f"{result['threads']} threads both sides; one fit a point (seed 0), interleaved; "
        f"NDCG@10 on {result['protocol']}. recforge: `mf` loss=bpr, 64 factors, its defaults "
        "otherwise (AdamW, one-cycle over the given epochs, 4 negatives a positive); implicit: "
        "`BayesianPersonalizedRanking`, 64 factors, its defaults otherwise.",
        "",
        "| side | budget | fit s | process CPU s | NDCG@10 |",
        "|---|---|---|---|---|",
    ]
    for p in result["points"]:
        lines.append(
            f"| {p['side']} | {p['budget']} {unit[p['side']]} | {p['seconds']:.1f} | "
            f"{p['cpu_seconds']:.1f} | {p['ndcg@10']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bpr_time_to_quality.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "bpr_time_to_quality.md", markdown(result))


if __name__ == "__main__":
    args = sys.argv[1:]
    name = args[0] if args else "synthetic-10m"
    n_threads = int(args[1]) if len(args) > 1 else 2
    target = Path(args[2]) if len(args) > 2 else Path("docs/benchmarks/speed_bpr_10m_quality")
    budgets = [tuple(int(x) for x in a.split(",")) for a in args[3:5]]
    write(run(name, n_threads, _points(*budgets)), target)
