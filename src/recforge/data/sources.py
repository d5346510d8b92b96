"""Resolve a data *spec* (a MovieLens release name, a file path or a DataSource) into Interactions.

The CLI and the pipeline accept any of these, e.g. ``ml-100k``, ``~/logs/ratings.parquet`` or a
:class:`~recforge.data.datasource.DataSource` built from ``--user-col``/``--sep``/... flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recforge.data.datasource import DataSource
from recforge.data.interactions import Interactions


def is_movielens_name(spec: str) -> bool:
    """True when ``spec`` names a registered MovieLens release (e.g. ``ml-100k``)."""
    from recforge.data.movielens import MOVIELENS

    return spec in MOVIELENS


def as_source(spec: str | Path | DataSource, **read_kwargs: Any) -> DataSource:
    """``spec`` as a DataSource; ``read_kwargs`` (``read_ratings`` names) override its fields."""
    fields = dict(read_kwargs)
    columns = fields.pop("columns", None) or {}
    for canon, key in (
        ("user_id", "user_col"),
        ("item_id", "item_col"),
        ("rating", "rating_col"),
        ("timestamp", "time_col"),
        ("title", "title_col"),
        ("count", "count_col"),
        ("event", "event_col"),
    ):
        if canon in columns:
            fields[key] = columns[canon]
    return DataSource.of(spec, **fields)


def load_dataset(spec: str | Path | DataSource, **read_kwargs: Any) -> Interactions:
    """Load a MovieLens release by name, or a ratings file by path or DataSource, as Interactions.

    Args:
        spec: ``ml-100k``-style release name, a path to CSV/TSV/.dat/Parquet(/.gz), or a
            :class:`DataSource` (column mapping, separator, scale, item file...).
        **read_kwargs: :func:`recforge.data.io.read_ratings` options for files (``rating_scale``,
            ``columns``, ``sep``, ``duplicates``, ``implicit``, ``time_format``...), applied on
            top of the DataSource's fields.

    The rating scale is the declared one, else the data's (min, max) for explicit files; implicit
    files (``implicit=True`` or no rating column) have none. Files without a time column give
    Interactions without timestamps, so temporal splits are refused rather than run on zeros.
    """
    return load_with_info(as_source(spec, **read_kwargs))[0]


def load_with_info(source: DataSource) -> tuple[Interactions, dict[str, Any]]:
    """Interactions plus how the file was read (what ``recforge data describe`` prints).

    The info holds ``path``, ``mapping`` (canonical column → file column), ``implicit``,
    ``time_format`` (how times were parsed, None without a time column), ``duplicates``,
    ``items`` (the item file, or None), ``titles_column`` (the ratings file's column of item
    titles, named or found by its name; None without one), ``count_column`` (the column of
    per-row counts that weigh the events, named or found by its name; None without one),
    ``zero_counts`` (rows dropped for a count of 0), ``event_column`` (the column of event
    kinds, named or found by its name; None without one), ``event_kinds`` (kind -> rows in
    the file, most rows first), ``event_weights`` and ``events_kept`` (the event settings
    applied, None when not given), ``event_dropped`` (rows dropped by them),
    ``title_conflicts`` (how many items
    had different titles in it; each got its most frequent) and ``titles_from`` (the item
    column whose ids are the items' titles, :func:`recforge.data.items.id_titles`; None when
    they are not).
    """
    if source.is_movielens:
        from recforge.data.movielens import load_movielens

        inter = load_movielens(source.path)
        timed = inter.has_timestamps  # ml-1m-ratings has none
        info = {
            "path": source.path,
            "mapping": {"user_id": "userId", "item_id": "movieId", "rating": "rating"}
            | ({"timestamp": "timestamp"} if timed else {}),
            "implicit": False,
            "time_format": "epoch-s" if timed else None,
            "duplicates": "error",
            "items": "MovieLens item file",
        }
        return inter, info
    from recforge.data.io import _read_source, ready_for_interactions

    path = Path(source.path)
    # The frame and each item's one title from its title column, chosen once while reading.
    frame, by_item = _read_source(source)
    implicit = bool(frame.attrs.get("implicit", source.implicit))
    frame, scale = ready_for_interactions(frame, source.rating_scale, implicit)
    from recforge.data.items import item_table

    item_meta, titles_from = item_table(source, frame, by_item)
    inter = Interactions.from_frame(
        frame, rating_scale=scale, source=path.name, item_meta=item_meta
    )
    info = {
        "path": str(path),
        "mapping": dict(frame.attrs.get("mapping", {})),
        "implicit": implicit or scale is None,
        "time_format": frame.attrs.get("time_format"),
        "duplicates": frame.attrs.get("duplicates"),
        "items": source.items,
        "titles_column": frame.attrs.get("title_column"),
        "title_conflicts": frame.attrs.get("title_conflicts", 0),
        "count_column": frame.attrs.get("count_column"),
        "zero_counts": frame.attrs.get("zero_counts", 0),
        "event_column": frame.attrs.get("event_column"),
        "event_kinds": frame.attrs.get("event_kinds"),
        "event_weights": frame.attrs.get("event_weights"),
        "events_kept": frame.attrs.get("events_kept"),
        "event_dropped": frame.attrs.get("event_dropped", 0),
        # The item column whose ids are also the items' titles (None when they are not).
        "titles_from": titles_from,
    }
    return inter, info
