"""``recforge report RUN``: the HTML report of a saved run (body of the command)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recforge.data.datasource import DataSource


def report_command(
    run: Path, out: Path | None, data: str | DataSource | None, json_out: bool
) -> None:
    """Write ``report.html`` and its PNGs for run directory ``run`` and print where they are.

    Args:
        run: run directory written by ``recforge train``.
        out: output folder (default ``RUN/report``).
        data: data source to rebuild the test split from, when the run's own cannot be loaded.
        json_out: print ``{"html": ..., "images": [...], "notes": [...]}`` instead of text.
    """
    from recforge.cli._output import console, emit_json
    from recforge.viz.report import write_report

    result = write_report(run, out, data=data)
    summary: dict[str, Any] = {
        "html": str(result.html),
        "images": [str(p) for p in result.images],
        "notes": result.notes,
    }
    if json_out:
        emit_json(summary)
        return
    con = console()
    con.print(f"report -> {result.html}")
    con.print(f"  {len(result.images)} figures: {', '.join(p.name for p in result.images)}")
    for note in result.notes:
        con.print(f"  [dim]note: {note}[/dim]")
