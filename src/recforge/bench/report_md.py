"""Tables of a benchmark result (``benchmark.json`` payload) as Markdown and as plain cells.

:func:`table_cells` gives one protocol's header and rows as strings; ``benchmark.md``
(:func:`to_markdown`) and the rich table of the CLI both render those same cells, so the
terminal and the file never disagree. Every table is headed by its protocol's label and
description, and sampled metrics say "sampled" in their column names.
"""

from __future__ import annotations

import json
import math
from typing import Any

_NAMES = {
    "rmse": "RMSE",
    "mae": "MAE",
    "like_accuracy": "like-acc",
    "recall": "Recall",
    "ndcg": "NDCG",
    "hit_rate": "HR",
    "precision": "Prec",
    "mrr": "MRR",
    "coverage": "Cov",
    "sampled_hit_rate": "HR",
    "sampled_ndcg": "NDCG",
}


def metric_title(key: str) -> str:
    """``ndcg@10`` -> ``NDCG@10``; sampled metrics get a ``(sampled)`` suffix."""
    base, _, k = key.partition("@")
    title = _NAMES.get(base, base) + (f"@{k}" if k else "")
    return f"{title} (sampled)" if base.startswith("sampled_") else title


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def mean_sd(stat: dict[str, Any] | None, digits: int = 4) -> str:
    """``0.9123 ± 0.0041`` (the mean alone for a single fold; ``–`` when nothing ran)."""
    if not stat or not stat.get("n"):
        return "–"
    text = _num(stat.get("mean"), digits)
    sd = stat.get("sd")
    if sd is not None and isinstance(sd, float) and math.isfinite(sd):
        text += f" ± {_num(sd, digits)}"
    return text


def table_cells(payload: dict[str, Any], protocol: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows (strings) of one protocol's table."""
    info = payload["protocols"][protocol]
    metrics: list[str] = list(info["metrics"])
    u1 = protocol == "ml100k-folds" and "u1" in info.get("folds", [])
    header = ["model", "config"]
    header += [f"{metric_title(m)} (mean ± sd)" for m in metrics]
    if u1:
        header += [f"{metric_title(m)} u1" for m in metrics]
    header += ["folds", "fit s", "eval s", "peak MiB", "status"]
    rows: list[list[str]] = []
    for row in payload["rows"]:
        if row["protocol"] != protocol:
            continue
        summary = row.get("summary") or {}
        label = row["label"] + (" [peer]" if row.get("peer") else "")
        cells = [label, row.get("config_source", "")]
        cells += [mean_sd(summary.get(m)) for m in metrics]
        if u1:
            first = next(
                (c for c in row["cells"] if c["fold"] == "u1" and c.get("error") is None), None
            )
            cells += [_num((first or {}).get("metrics", {}).get(m)) for m in metrics]
        n_ok = sum(1 for c in row["cells"] if c.get("error") is None)
        cells.append(str(n_ok))
        cells.append(mean_sd(summary.get("fit_seconds"), 2))
        cells.append(mean_sd(summary.get("evaluate_seconds"), 2))
        cells.append(_num((summary.get("peak_rss_mib") or {}).get("max"), 0))
        status = row["status"] if not row.get("reason") else f"{row['status']}: {row['reason']}"
        cells.append(status)
        rows.append(cells)
    return header, rows


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(payload: dict[str, Any]) -> str:
    """The whole ``benchmark.md``: command, environment, then one table per protocol."""
    env = payload.get("environment", {})
    lines = [
        f"# recforge benchmark: {payload['suite']} suite on {payload['dataset']}",
        "",
        f"Command: `{payload.get('command', '')}`",
        "",
        f"- Started {payload.get('created_at')}, finished "
        f"{payload.get('finished_at') or '(still running)'}.",
        f"- Machine: {env.get('machine')} ({env.get('platform')}); python {env.get('python')}, "
        f"torch {env.get('torch')}, recforge {env.get('recforge')}; the process's torch threads "
        f"at start {env.get('torch_threads')} (a model's own num_threads config overrides it "
        f"while it runs); thread variables {env.get('thread_env') or 'unset'}.",
        f"- Load average (1, 5, 15 min) at start {env.get('load_average_start')}, at end "
        f"{env.get('load_average_end')}; timings are wall seconds on this machine.",
        f"- Figures are mean ± sd over the folds/seeds listed per protocol (sample sd; one "
        f"fold shows the value alone). Peak MiB: process peak resident memory during fit + "
        f"evaluate ({env.get('peak_memory_method')}), including interpreter, torch and data.",
        "- Config: the tuned file a row used (or `defaults` / `inline` overrides); the resolved "
        "config of every row is in benchmark.json.",
    ]
    for name, why in (payload.get("skipped_protocols") or {}).items():
        lines.append(f"- Protocol `{name}` not run: {why}.")
    for name, info in payload["protocols"].items():
        header, rows = table_cells(payload, name)
        lines += [
            "",
            f"## {info['label']}",
            "",
            info["description"],
            "",
            f"Folds/seeds: {', '.join(info.get('folds', []))}. Primary metric: "
            f"{metric_title(info['primary_metric'])} "
            f"({'higher' if info['higher_is_better'] else 'lower'} is better).",
            "",
            "| " + " | ".join(header) + " |",
            "|"
            + "|".join(
                "---" if i < 2 or i == len(header) - 1 else "---:" for i in range(len(header))
            )
            + "|",
        ]
        lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
    configs = [
        f"- `{r['label']}` on {r['protocol']}: {r['model']} `{json.dumps(r['config'])}`"
        for r in payload["rows"]
        if r.get("config_source") not in (None, "-", "defaults")
    ]
    if configs:
        lines += ["", "## Resolved configs", "", *configs]
    return "\n".join(lines) + "\n"
