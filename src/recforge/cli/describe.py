"""Text form of ``recforge data describe``: sizes, how the file was read, scale and time range."""

from __future__ import annotations

import datetime as _dt
from typing import Any


def _when(ts: int) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="seconds")


def _conflicts(read: dict[str, Any]) -> str:
    """What the title line says about items with several titles (nothing when none had)."""
    n = int(read.get("title_conflicts") or 0)
    if not n:
        return ""
    items = "1 item had" if n == 1 else f"{n} items had"
    return f"  ({items} conflicting titles: each got its most frequent, a tie the latest row's)"


def _counts_line(read: dict[str, Any]) -> str:
    """The feedback line of data weighted by a count column (and rows dropped for count 0)."""
    name = read["count_column"]
    how = read.get("duplicates") or "count"
    times = " times the event weights" if read.get("event_weights") else ""
    line = f"feedback implicit (counts from column {name!r}{times} are confidence weights" + (
        ")" if how == "count" else f"; duplicates: {how})"
    )
    zeros = int(read.get("zero_counts") or 0)
    if zeros:
        rows = "1 row" if zeros == 1 else f"{zeros} rows"
        line += f"\ndropped  {rows} with count 0 in column {name!r} (no interaction)"
    return line


#: Most event kinds listed on the ``kinds`` line (a mapped column may hold many).
_KINDS_SHOWN = 12


def _kinds_lines(read: dict[str, Any]) -> list[str]:
    """The event kinds line (each kind's rows, weight, whether dropped) and, when no event
    setting was given, a hint naming the flags that use them."""
    kinds: dict[str, int] = read["event_kinds"]
    weights: dict[str, float] | None = read.get("event_weights")
    kept = read.get("events_kept")
    parts = []
    for kind, rows in list(kinds.items())[:_KINDS_SHOWN]:
        weight = 1.0 if weights is None else weights.get(kind, 0.0)
        dropped = (kept is not None and kind not in kept) or weight == 0
        mark = " dropped" if dropped else f" x{weight:g}" if weights is not None else ""
        parts.append(f"{kind} {rows}{mark}")
    more = len(kinds) - _KINDS_SHOWN
    how = [f"column {read['event_column']!r}"]
    how += ["--event-weights"] if weights is not None else []
    how += ["--events"] if kept is not None else []
    dropped_rows = int(read.get("event_dropped") or 0)
    how += [f"{dropped_rows} rows dropped"] if dropped_rows else []
    line = "kinds    " + "  ".join(parts) + (f"  ... {more} more" if more > 0 else "")
    lines = [f"{line}  ({'; '.join(how)})"]
    if weights is None and kept is None:
        names = list(kinds)
        pairs = ",".join(f"{k}=1" for k in names) if more <= 0 else "KIND=W,... (every kind)"
        lines.append(
            f"         each kind weighs 1: weigh them with --event-weights {pairs}"
            f"\n         (raise the kinds that matter more, 0 drops one), or keep only some "
            f"with --events {names[-1]}"
        )
    return lines


def render_describe(con: Any, stats: dict[str, Any]) -> None:
    """Print what :func:`recforge.data.describe.describe` (plus ``read`` info) returned."""
    read = stats.get("read") or {}
    con.print(f"[bold]{stats['source']}[/bold]  ({read.get('path', stats['source'])})")
    mapping = read.get("mapping") or {}
    if mapping:
        con.print(
            "columns  "
            + "  ".join(f"{canon.removesuffix('_id')}={col}" for canon, col in mapping.items())
        )
    if "timestamp" not in mapping:
        con.print("time     none (temporal splits are refused; map one with --time-col)")
    con.print(f"users    {stats['n_users']}")
    con.print(f"items    {stats['n_items']}")
    con.print(f"events   {stats['n_ratings']}")
    con.print(f"density  {stats['density']:.4%}")
    ts_range = stats.get("timestamp_range")
    if ts_range:
        fmt = read.get("time_format") or "?"
        con.print(f"time     {_when(ts_range[0])} .. {_when(ts_range[1])}  (read as {fmt})")
    if stats["explicit"]:
        lo, hi = stats["rating_scale"]
        from recforge.eval.thresholds import scale_thresholds

        thr = scale_thresholds((lo, hi))
        con.print(
            f"scale    {lo:g}..{hi:g}   mean {stats['rating_mean']:.3f}   evaluation: like > "
            f"{thr.like:g}, relevant >= {thr.relevance:g}"
        )
        total = max(stats["n_ratings"], 1)
        for value, count in stats["rating_histogram"].items():
            bar = "█" * round(40 * count / total)
            con.print(f"  {value:>4} {count:>9}  {bar}")
    elif read.get("count_column"):
        con.print(_counts_line(read))
    elif read.get("event_weights"):
        how = read.get("duplicates") or "count"
        con.print(
            "feedback implicit (event weights are confidence weights"
            + (", summed per user and item)" if how == "count" else f"; duplicates: {how})")
        )
    else:
        weights = stats.get("rating_histogram") or {}
        repeated = sum(c for v, c in weights.items() if float(v) > 1)
        how = read.get("duplicates") or "count"
        con.print(
            f"feedback implicit (duplicates: {how}; {repeated} events repeated, their counts "
            "are confidence weights)"
            if how == "count"
            else f"feedback implicit (duplicates: {how})"
        )
    if read.get("event_kinds"):
        for line in _kinds_lines(read):
            con.print(line)
    if read.get("items"):
        con.print(f"items from {read['items']}")
    if read.get("titles_column"):
        con.print(f"titles   column {read['titles_column']!r}" + _conflicts(read))
    if read.get("titles_from"):
        con.print(f"titles   the item ids (column {read['titles_from']!r} holds titles)")
    q = stats["ratings_per_user"]
    con.print(
        "events per user: "
        + "  ".join(f"{k}={v:g}" for k, v in q.items() if k != "mean")
        + f"  mean={q['mean']:.1f}"
    )
