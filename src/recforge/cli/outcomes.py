"""Text renderings of the results of ``recforge evaluate`` and ``recforge export``."""

from __future__ import annotations

from typing import Any


def render_evaluation(con: Any, result: dict[str, Any]) -> None:
    """The metrics; for a named protocol, a note when the run was not trained on its fold."""
    from recforge.cli.render import render_metrics

    render_metrics(con, result)
    trained = result.get("trained_on")
    if trained is not None and not trained["matches_protocol_train"]:
        con.print(
            "[yellow]note:[/yellow] the run was not trained on exactly this fold's training "
            f"part (recorded: {trained['recorded']}); none of the test events was in its training"
        )


def render_export(con: Any, out: dict[str, Any]) -> None:
    """One section per step that ran: export, activation, pruning, the version list."""
    if "export" in out:
        e = out["export"]
        con.print(
            f"exported {e['version']}: {e['rows']} rows for {e['users']} users (k={e['k']}) "
            f"in {e['seconds_total']:.1f} s ({e['rows_per_second']:.0f} rows/s)"
            + ("  [active]" if e["active"] else "")
        )
    if "activated" in out:
        con.print(f"active version: {out['activated']}")
    if "pruned" in out:
        pruned = out["pruned"]
        con.print(f"pruned {len(pruned)} version(s)" + "".join(f"\n  {v}" for v in pruned))
    if "versions" in out:
        if not out["versions"]:
            con.print("no versions stored")
        for v in out["versions"]:
            mark = "*" if v["active"] else " "
            con.print(
                f"{mark} {v['model_version']:<40} {v['exported_at'][:19]}  {v['model_name']:<14} "
                f"k={v['k']:<5} users={v['n_users']:<8} rows={v['n_rows']}"
            )
