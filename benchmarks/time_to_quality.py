"""Fit time against quality on a large log, recforge against its speed-suite peer, a few budgets.

The speed suite (``recforge benchmark --suite speed``) times each pair at one nominal budget:
``bpr`` pairs recforge ``mf`` loss=bpr at 20 epochs with implicit's BPR at 100 iterations;
``biased_mf`` pairs recforge ``biased_mf`` (10 epochs) with Surprise ``SVD`` (20 epochs). On the
10M-event synthetic log the two sides are far apart in quality at those budgets, so this script
draws each side's time-quality curve: recforge at a few epoch counts (each a full one-cycle
schedule of that length, as a user would set it) and the peer at a few budgets; the points
interleaved (one fit each, seed 0, after an untimed warm-up of both sides), every fit on the
pair's protocol's training part, scored on its test part (NDCG@10 on ``temporal-user-80-20``
for ``bpr``, RMSE on ``random-80-20`` for ``biased_mf``). The figure to read: the time each
side needs to reach the other's quality.

Usage: ``python benchmarks/time_to_quality.py FAMILY [DATASET [THREADS [OUT [OURS [PEER]]]]]``
with FAMILY ``bpr`` or ``biased_mf`` (defaults: ``synthetic-10m``, 2 threads,
``docs/benchmarks/speed_<FAMILY>_10m_quality``, the family's budgets; OURS and PEER as comma
lists of recforge epochs and peer budgets). Writes ``OUT/<FAMILY>_time_to_quality.{json,md}``.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from recforge.models.base import Recommender
from recforge.models.registry import create

Factory = Callable[[int, int], Recommender]  # (threads, seed) -> unfitted model


@dataclass(frozen=True)
class Family:
    """One speed-suite pair, its budgets swept: who, how it is scored, and the defaults."""

    title: str
    protocol: str
    metric: str  # a key of the protocol's metrics
    peer: str  # the peer's short name in the table
    units: tuple[str, str]  # what a budget counts, recforge side and peer side
    budgets: tuple[tuple[int, ...], tuple[int, ...]]
    ours: Callable[[int], Factory]
    theirs: Callable[[int], Factory]
    setup: str  # the two sides' settings, for the Markdown


FAMILIES = {
    "bpr": Family(
        "BPR time against quality: recforge vs implicit",
        "temporal-user-80-20",
        "ndcg@10",
        "implicit",
        ("epochs", "iterations"),
        ((2, 5, 10, 20), (25, 50, 100)),
        lambda n: (
            lambda t, s: create(
                "mf", loss="bpr", n_factors=64, epochs=n, seed=s, num_threads=t, verbose=False
            )
        ),
        lambda n: (
            lambda t, s: _peer("implicit-bpr", factors=64, iterations=n, num_threads=t, seed=s)
        ),
        "recforge: `mf` loss=bpr, 64 factors, its defaults otherwise (AdamW, one-cycle over the "
        "given epochs, 4 negatives a positive); implicit: `BayesianPersonalizedRanking`, 64 "
        "factors, its defaults otherwise.",
    ),
    "biased_mf": Family(
        "biased MF time against quality: recforge vs Surprise",
        "random-80-20",
        "rmse",
        "surprise",
        ("epochs", "epochs"),
        ((1, 2, 5, 10), (5, 10, 20, 40)),
        lambda n: lambda t, s: create("biased_mf", epochs=n, seed=s, num_threads=t, verbose=False),
        lambda n: lambda t, s: _peer("surprise-svd", n_epochs=n, seed=s),
        "recforge: `biased_mf` at its defaults but the epochs (50 factors, AdamW, one-cycle over "
        "the given epochs, lazy Adam 'auto'); Surprise: `SVD` at its defaults but `n_epochs` "
        "(100 factors, SGD lr 0.005, reg 0.02). Both single-threaded.",
    ),
}


def points(
    family: Family, ours: tuple[int, ...] | None = None, theirs: tuple[int, ...] | None = None
) -> list[tuple[str, int]]:
    """The fits in run order: recforge and peer budgets alternating, small to large."""
    out: list[tuple[str, int]] = []
    ours, theirs = ours or family.budgets[0], theirs or family.budgets[1]
    for epochs, budget in itertools.zip_longest(ours, theirs):
        out += [("recforge", epochs)] if epochs else []
        out += [(family.peer, budget)] if budget else []
    return out


def _factory(family: Family, side: str, budget: int) -> Factory:
    return family.ours(budget) if side == "recforge" else family.theirs(budget)


def run(
    family: Family, dataset: str, threads: int, fits: list[tuple[str, int]], command: str
) -> dict[str, Any]:
    """Every point of ``fits`` timed and scored; the result as plain data."""
    ps = get_protocol(family.protocol).split(load_speed_dataset(dataset))
    result: dict[str, Any] = {
        "command": command,
        "dataset": dataset,
        "protocol": family.protocol,
        "metric": family.metric,
        "threads": threads,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_start": _loadavg(),
        "machine": _machine(),
        "points": [],
    }
    # Untimed warm-up of both sides on a small slice (library loading, compiled kernels).
    tiny = ps.train.subset(np.arange(min(len(ps.train), 3000))).compact()
    for side, budget in dict(fits).items():  # each side once, at its last budget
        with _all_threads(threads):
            _factory(family, side, budget)(threads, 0).fit(tiny)
    for side, budget in fits:
        seconds, value, cpu, _, _ = _fit_eval(
            _factory(family, side, budget), threads, 0, ps, family.protocol, family.metric
        )
        point = {"side": side, "budget": budget, "seconds": seconds, "cpu_seconds": cpu,
                 family.metric: value}  # fmt: skip
        print(point, flush=True)
        result["points"].append(point)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["load_average_end"] = _loadavg()
    return result


def markdown(family: Family, result: dict[str, Any]) -> str:
    """The result as a Markdown page: the command, the conditions, one row a fit."""
    unit = {"recforge": family.units[0], family.peer: family.units[1]}
    label = family.metric.upper() if family.metric == "rmse" else "NDCG@10"
    lines = [
        f"# {family.title} on {result['dataset']}",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Run {result['started_at']} → {result['finished_at']}; load average "
        f"{result['load_average_start']} at the start, {result['load_average_end']} at the end; "
        f"{result['threads']} threads both sides; one fit a point (seed 0), interleaved; "
        f"{label} on {result['protocol']}. {family.setup}",
        "",
        f"| side | budget | fit s | process CPU s | {label} |",
        "|---|---|---|---|---|",
    ]
    for p in result["points"]:
        lines.append(
            f"| {p['side']} | {p['budget']} {unit[p['side']]} | {p['seconds']:.1f} | "
            f"{p['cpu_seconds']:.1f} | {p[family.metric]:.4f} |"
        )
    return "\n".join(lines) + "\n"


def write(name: str, result: dict[str, Any], out: Path) -> None:
    """``OUT/<name>_time_to_quality.{json,md}``, each written whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{name}_time_to_quality"
    atomic_write_text(out / f"{stem}.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / f"{stem}.md", markdown(FAMILIES[name], result))


def main(name: str, args: list[str], command: str) -> None:
    """Run family ``name`` with the positional ``args`` DATASET THREADS OUT OURS PEER."""
    family = FAMILIES[name]
    dataset = args[0] if args else "synthetic-10m"
    threads = int(args[1]) if len(args) > 1 else 2
    out = Path(args[2]) if len(args) > 2 else Path(f"docs/benchmarks/speed_{name}_10m_quality")
    budgets = [tuple(int(x) for x in a.split(",")) for a in args[3:5]]
    fits = points(family, *budgets)
    write(name, run(family, dataset, threads, fits, command), out)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in FAMILIES:
        sys.exit(f"usage: time_to_quality.py {{{','.join(FAMILIES)}}} [DATASET [THREADS [OUT]]]")
    command = "python benchmarks/time_to_quality.py " + " ".join(sys.argv[1:])
    main(sys.argv[1], sys.argv[2:], command)
