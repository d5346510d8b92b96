"""`recforge explain` and `recforge recommend --explain`: print why items are recommended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recforge.explain import Explanation


def because_line(exp: Explanation, n: int = 2) -> str:
    """``Because you rated X (+0.12) and Y (+0.08)`` (implicit feedback: ``Because of X (+0.12)
    and Y (+0.08) in your history``); says so when no history item raised it."""
    parts = [f"{c.title or c.item_id} ({c.weight:+.3g})" for c in exp.because(n)]
    if not parts:
        return "no history item raised this score (it comes from the residual)"
    return exp.because_phrase(parts)


def render_because(con: Any, recs: Any, explanations: list[Explanation]) -> None:
    """One "because" line per recommended item, under the list."""
    for rank, exp in enumerate(explanations, 1):
        con.print(f"  {rank:>2}. {exp.item_id}: {because_line(exp)}")


def render_explanation(con: Any, exp: Explanation) -> None:
    """A table of the top contributions, then the rest, the residual and the score."""
    from rich.table import Table

    who = "new user" if exp.user_id is None else f"user {exp.user_id}"
    table = Table(title=f"Why item {exp.item_id} for {who} ({exp.method})", title_justify="left")
    table.add_column("history item", justify="right")
    table.add_column("title")
    table.add_column("rating", justify="right")
    table.add_column("weight", justify="right")
    for c in exp.contributions:
        table.add_row(str(c.item_id), c.title or "", f"{c.rating:g}", f"{c.weight:+.4f}")
    table.add_row("", "other history items", "", f"{exp.rest:+.4f}")
    table.add_row("", "residual (not from history)", "", f"{exp.residual:+.4f}")
    con.print(table)
    space = " (logit; score = scaled sigmoid of it)" if exp.link == "scaled_sigmoid" else ""
    con.print(f"sum {exp.raw_score:.4f}{space}; score {exp.score:.4f}")
    if exp.attention is not None:
        # Beside the weights, never instead: attention is what the state reads, not a share of
        # this item's score, and only the occlusion weights above are tested for faithfulness.
        att = Table(
            title="Attention of the model's last state over the history (not an attribution)",
            title_justify="left",
        )
        att.add_column("history item", justify="right")
        att.add_column("title")
        att.add_column("attention", justify="right")
        for c in exp.attention:
            att.add_row(str(c.item_id), c.title or "", f"{c.weight:.3f}")
        con.print(att)


def explain_command(run: Path, user: str, items: list[str], k: int, json_out: bool) -> None:
    """Load ``run`` and explain ``items`` for ``user`` (raw ids given as text)."""
    from recforge.artifacts import load_run
    from recforge.cli._output import console, emit_json
    from recforge.cli.render import coerce_ids

    model = load_run(run).model
    uid = coerce_ids([user], model.users_.ids)[0]
    item_ids = coerce_ids(items, model.items_.ids)
    explanations = model.explain_batch(uid, item_ids, k=k)
    if json_out:
        emit_json([e.to_dict() for e in explanations])
        return
    con = console()
    for exp in explanations:
        render_explanation(con, exp)
