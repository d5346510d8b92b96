"""Human-readable rendering of CLI results (rich tables)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def coerce_ids(raw: list[str], known: np.ndarray[Any, Any]) -> list[Any]:
    """CLI ids arrive as strings; convert to int when the vocabulary holds integers."""
    if known.dtype.kind in "iu":
        out: list[Any] = []
        for value in raw:
            try:
                out.append(int(value))
            except ValueError:
                from recforge.errors import UnknownIdError

                raise UnknownIdError(
                    f"unknown id {value!r}: this model's ids are integers"
                ) from None
        return out
    return list(raw)


def item_info(meta: pd.DataFrame | None, item_id: Any) -> dict[str, Any]:
    """Title/year/genres of one item, when metadata knows it (``title`` None where the
    metadata has a title column but no title for this item: null in JSON, not 'nan')."""
    if meta is None or item_id not in meta.index:
        return {}
    row = meta.loc[item_id]
    info: dict[str, Any] = {}
    if "title" in row.index:
        title = row["title"]
        info["title"] = None if title is None or pd.isna(title) else str(title)
    if "year" in row.index and pd.notna(row["year"]):
        info["year"] = int(row["year"])
    if "genres" in row.index and row["genres"] is not None:
        info["genres"] = [str(g) for g in row["genres"]]
    return info


def reclist_json(
    rec: Any, model: Any, key: str = "user_id", explanations: Sequence[Any] = ()
) -> dict[str, Any]:
    """JSON of one RecList: the queried id under ``key`` (``user_id`` for recommend,
    ``item_id`` for similar, whose RecList holds the item in ``user_id``) and the ranked items,
    each with its :class:`~recforge.explain.Explanation` when ``explanations`` are given."""
    items = [
        {"item_id": iid, "score": float(s), **item_info(model.item_meta_, iid)}
        for iid, s in zip(rec.item_ids.tolist(), rec.scores.tolist(), strict=True)
    ]
    for item, exp in zip(items, explanations, strict=False):
        item["explanation"] = exp.to_dict()
    return {key: rec.user_id, "items": items}


def render_reclist(
    con: Any, heading: str, rec: Any, meta: pd.DataFrame | None, score_label: str = "score"
) -> None:
    """Print a ranked list with titles and categories (the domain's words: "genres" for movies)."""
    from rich.table import Table

    from recforge.data.domain import nouns_for

    words = nouns_for(meta)
    infos = [item_info(meta, iid) for iid in rec.item_ids.tolist()]
    # Columns the data can fill: a file without an item file has ids and scores only, and a
    # title column that repeats the ids (an item column of titles, data.items.id_titles) is left
    # out of the table; --json still carries the titles. The test is on the titles, not on
    # where they came from: split parts write those ids again as a title column, so a run
    # trained from them has no mark of ids-as-titles left, and a title equal to its id adds
    # nothing to the table whatever gave it.
    has_title = any(
        info.get("title") not in (None, str(iid)) or "year" in info
        for iid, info in zip(rec.item_ids.tolist(), infos, strict=True)
    )
    has_categories = meta is not None and "genres" in meta.columns
    table = Table(title=heading, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column(words.item, justify="right")
    if has_title:
        table.add_column("title")
    if has_categories:
        table.add_column(words.categories)
    table.add_column(score_label, justify="right")
    for rank, (iid, score, info) in enumerate(
        zip(rec.item_ids.tolist(), rec.scores.tolist(), infos, strict=True), 1
    ):
        title = info.get("title") or ""
        if "year" in info:
            title = f"{title} ({info['year']})"
        cells = [str(rank), str(iid)]
        cells += [title] if has_title else []
        cells += [", ".join(info.get("genres", []))] if has_categories else []
        table.add_row(*cells, f"{score:.3f}")
    con.print(table)


def render_metrics(con: Any, metrics: dict[str, Any]) -> None:
    """Print rating and ranking metric summaries, each with its protocol."""
    extra = f"; {metrics['threshold_text']}" if metrics.get("threshold_text") else ""
    con.print(f"[bold]protocol[/bold] {metrics.get('protocol', '?')}{extra}")
    if metrics.get("note"):  # e.g. an all-data run: nothing held out, no test metrics
        con.print(f"[dim]{metrics['note']}[/dim]")
    for part in ("rating", "ranking"):
        report = metrics.get(part)
        if not report:
            continue
        summary = report.get("summary", {})
        proto = report.get("protocol", {})
        extra = ", ".join(f"{k}={v}" for k, v in proto.items() if k not in {"name", "split"})
        con.print(
            f"[bold]{part} metrics[/bold] ({extra})" if extra else f"[bold]{part} metrics[/bold]"
        )
        counts = []
        for name, value in summary.items():
            if isinstance(value, float) and not name.startswith("n_"):
                con.print(f"  {name:<16} {value:.4f}")
            elif value:
                counts.append(f"{name.removeprefix('n_')}={value:g}")
        if counts:
            con.print(f"  [dim]counts: {', '.join(counts)}[/dim]")


def render_train_result(result: Any) -> None:
    """Learning-curve summary, test metrics and where the run was saved."""
    con = _console()
    model = result.model
    con.print(f"[bold]{model.name}[/bold] {model!r}")
    hist = result.history
    if hist is not None and len(hist):
        wanted = ("epoch", "train_loss", "valid_loss", "valid_rmse", "lr", "seconds")
        # Runs without a validation split have all-NaN valid_* columns: leave them out.
        cols = [c for c in wanted if c in hist.columns and hist[c].notna().any()]
        step = max(1, len(hist) // 10)
        shown = pd.concat([hist.iloc[::step], hist.iloc[[-1]]]).drop_duplicates()
        con.print("learning curve:")
        for _, row in shown[cols].iterrows():
            con.print("  " + "  ".join(f"{c}={_fmt(row[c])}" for c in cols))
    render_metrics(con, result.metrics)
    con.print(_timing_line(result.timings))
    if result.run_dir is not None:
        con.print(f"saved run -> {result.run_dir}")


def _timing_line(timings: dict[str, float]) -> str:
    """``fit 1.20s, evaluate 0.30s``; the fit alone when nothing was evaluated (a run on all
    the data has no held-out part, so it has no evaluate step)."""
    text = f"fit {timings.get('fit_s', 0):.2f}s"
    if "evaluate_s" in timings:
        text += f", evaluate {timings['evaluate_s']:.2f}s"
    return text


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)


def _console() -> Any:
    from recforge.cli._output import console

    return console()
