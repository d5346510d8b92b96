"""Collect the sequential benchmark runs into docs/benchmarks/sequential.{md,json}.

Reads ``docs/benchmarks/sequential/<dataset>-<protocol>/benchmark.json`` (written by the
``recforge benchmark`` commands listed in the report) and writes one table per (dataset,
protocol) with NDCG@10, HR@10, fit seconds, the seed spread of the SASRec rows and the load
average recorded by each run. Rows that did not finish are listed as such.

    python benchmarks/sequential_report.py
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs" / "benchmarks" / "sequential"
METRICS = ("ndcg@10", "hit_rate@10")


def _cell(row: dict[str, Any], key: str) -> float:
    cells = [c for c in row.get("cells", []) if c.get("error") is None]
    if not cells:
        return math.nan
    if key == "fit_seconds":
        return float(cells[0]["fit_seconds"])
    value = cells[0]["metrics"].get(key)
    return math.nan if value is None else float(value)


def _fmt(x: float, digits: int = 4) -> str:
    return "–" if not math.isfinite(x) else f"{x:.{digits}f}"


def collect() -> dict[str, Any]:
    out: dict[str, Any] = {"tables": []}
    for path in sorted(RUNS.glob("*/benchmark.json")):
        payload = json.loads(path.read_text(encoding="utf-8"))
        rows = []
        for row in payload["rows"]:
            done = row["status"] == "ok" and any(c.get("error") is None for c in row["cells"])
            rows.append(
                {
                    "label": row["label"],
                    "model": row["model"],
                    "config_source": row["config_source"],
                    "status": row["status"] if done else (row.get("reason") or "did not finish"),
                    **{m: _cell(row, m) for m in (*METRICS, "fit_seconds")},
                }
            )
        seeds = [r for r in rows if r["model"] == "sasrec" and math.isfinite(r["ndcg@10"])]
        spread = None
        if seeds:
            vals = [r["ndcg@10"] for r in seeds]
            spread = {
                "n_seeds": len(vals),
                "mean": statistics.fmean(vals),
                "sd": statistics.stdev(vals) if len(vals) > 1 else None,
                "min": min(vals),
                "max": max(vals),
            }
        env = payload["environment"]
        out["tables"].append(
            {
                "dataset": payload["dataset"],
                "protocol": next(iter(payload["protocols"])),
                "command": payload["command"],
                "created_at": payload["created_at"],
                "finished_at": payload.get("finished_at"),
                "load_average_start": env.get("load_average_start"),
                "load_average_end": env.get("load_average_end"),
                "machine": env.get("machine"),
                "rows": rows,
                "sasrec_seed_spread": spread,
            }
        )
    return out


def _family(label: str) -> str:
    """A row's config family: its label without a seed suffix (``-seed-N`` or ``:seed=N``)."""
    return re.sub(r"(-seed-\d+|:seed=\d+)$", "", label)


def seed_spreads(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Mean and sd of NDCG@10 / HR@10 over the seed rows of each (dataset, protocol, family).

    Seeds of one config may run in separate ``recforge benchmark`` commands (side by side, to
    share a loaded machine), so rows are grouped across tables.
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for t in data["tables"]:
        for r in t["rows"]:
            if math.isfinite(r["ndcg@10"]):
                key = (t["dataset"], t["protocol"], _family(r["label"]))
                groups.setdefault(key, []).append(r)
    out = []
    for (dataset, protocol, family), rows in sorted(groups.items()):
        stats: dict[str, Any] = {
            "dataset": dataset,
            "protocol": protocol,
            "family": family,
            "n_seeds": len(rows),
        }
        for m in (*METRICS, "fit_seconds"):
            vals = [r[m] for r in rows]
            stats[m] = statistics.fmean(vals)
            stats[f"{m}_sd"] = statistics.stdev(vals) if len(vals) > 1 else None
        out.append(stats)
    return out


def _mean_sd(stats: dict[str, Any], metric: str) -> str:
    sd = stats[f"{metric}_sd"]
    return f"{stats[metric]:.4f}" + ("" if sd is None else f" ± {sd:.4f}")


def _spread_table(spreads: list[dict[str, Any]]) -> list[str]:
    lines = [
        "### Every row over its seeds (mean ± sd; one seed: no sd)",
        "",
        "| data set | protocol | config family | seeds | NDCG@10 | HR@10 | fit s (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in spreads:
        lines.append(
            f"| {s['dataset']} | {s['protocol']} | {s['family']} | {s['n_seeds']} | "
            f"{_mean_sd(s, 'ndcg@10')} | {_mean_sd(s, 'hit_rate@10')} | {s['fit_seconds']:.0f} |"
        )
    return [*lines, ""]


def to_markdown(data: dict[str, Any]) -> str:
    lines = _spread_table(data.get("seed_spreads") or seed_spreads(data))
    for t in data["tables"]:
        lines += [
            f"### {t['dataset']} · {t['protocol']}",
            "",
            f"`{t['command']}`",
            "",
            f"{t['machine']}; load average at start {t['load_average_start']}, at end "
            f"{t['load_average_end'] or '(run stopped before the end)'}; "
            f"{t['created_at']} → {t['finished_at'] or 'stopped'}.",
            "",
            "| model | NDCG@10 | HR@10 | fit s | config |",
            "|---|---|---|---|---|",
        ]
        for r in t["rows"]:
            status = "" if r["status"] == "ok" else f" ({r['status']})"
            lines.append(
                f"| {r['label']}{status} | {_fmt(r['ndcg@10'])} | {_fmt(r['hit_rate@10'])} | "
                f"{_fmt(r['fit_seconds'], 0)} | {r['config_source']} |"
            )
        s = t["sasrec_seed_spread"]
        if s:
            sd = "–" if s["sd"] is None else f"{s['sd']:.4f}"
            lines += [
                "",
                f"SASRec over {s['n_seeds']} seed(s): NDCG@10 mean {s['mean']:.4f}, sd {sd}, "
                f"range {s['min']:.4f}–{s['max']:.4f}.",
            ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    data = collect()
    data["seed_spreads"] = seed_spreads(data)
    (ROOT / "docs" / "benchmarks" / "sequential.json").write_text(
        json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8"
    )
    tables = to_markdown(data)
    doc = ROOT / "docs" / "benchmarks" / "sequential.md"
    text = doc.read_text(encoding="utf-8") if doc.exists() else "<!-- tables -->\n"
    head, _sep, _ = text.partition("<!-- tables -->")
    doc.write_text(head + "<!-- tables -->\n\n" + tables, encoding="utf-8")


if __name__ == "__main__":
    main()
