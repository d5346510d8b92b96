"""Collects the BPR rows of the issue-16 speed-suite runs into docs/benchmarks/speed_bpr16.json.

Usage: ``python benchmarks/collect_bpr16.py RUN_DIR...`` (each a ``--out`` folder of
``recforge benchmark --suite speed --models bpr``); prints the JSON and writes it.
Per run, dataset and thread count: the paired ratio recforge/implicit (median, min, max), the
process-CPU ratio, both sides' median seconds and NDCG@10 (median, min, max), and the run's
start/end time and load average.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

STATS = ("median", "min", "max")


def collect(runs: list[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for run in runs:
        data = json.loads((run / "speed.json").read_text())
        rows: dict[str, Any] = {}
        for row in data["rows"]:
            if row["pair"] != "bpr":
                continue
            for threads, cell in row["by_threads"].items():
                rows[f"{row['dataset']} {threads} thr"] = {
                    "ratio": [cell["ratio_median"], cell["ratio_min"], cell["ratio_max"]],
                    "cpu_ratio": cell["cpu_ratio_median"],
                    "recforge_s": cell["ours"]["seconds_median"],
                    "implicit_s": cell["peer"]["seconds_median"],
                    "recforge_ndcg10": [
                        cell["ours"][f"metric_{k}"] for k in ("median", "min", "max")
                    ],
                    "implicit_ndcg10": [
                        cell["peer"][f"metric_{k}"] for k in ("median", "min", "max")
                    ],
                }
        out[run.name] = {
            "command": data["command"],
            "started_at": data["started_at"],
            "finished_at": data["finished_at"],
            "load_average": [data["load_average_start"], data["load_average_end"]],
            "bpr": rows,
        }
    return out


if __name__ == "__main__":
    result = collect([Path(p) for p in sys.argv[1:]])
    text = json.dumps(result, indent=1)
    Path("docs/benchmarks/speed_bpr16.json").write_text(text + "\n")
    print(text)
