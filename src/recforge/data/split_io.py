"""Write a Split's parts to disk as canonical CSV files (atomically), readable back as a split.

Explicit data is written as ``user_id,item_id,rating[,timestamp][,title]``. Implicit data has
no rating column; when some event weighs other than 1 (repeats counted, or a count column such
as ``plays``, whose fractional counts rows could not repeat), every part gets a ``count`` column
holding each event's weight, recorded in ``split.json`` as ``"count_col": "count"``, so reading
the parts back gives the same weights (the name alone is also found as a count column). A
``split.json`` beside the parts records the rating scale (``recforge train --train/--test``
uses it when no ``--rating-scale`` is given) and a ``protocol.txt`` how the split was made.

Event settings (``--event-weights``, ``--events``) are applied before the split: the parts hold
no event column, the weights are in their ``count`` column and the dropped kinds are gone.
``split.json`` records the settings (``"events"``), so reading the parts back with the same
flags again does not apply them twice, and other flags are refused (:func:`settled_events`,
for ``--train/--test`` and ``--data <part>`` alike).

Titles travel as a column of the parts, not as a second file: when the data's item table has
titles, every row carries its item's title in a last ``title`` column (empty for an item
without one), and ``split.json`` says so (``"title_col": "title"``; folders written before
``--title-col`` say ``"item_title_col"``, still read), so reading the parts back
(``--train``/``--test``) takes that column as the titles even where its name alone would not
be trusted (titles that all look like codes). Each item has one title there, so the
most-frequent rule has nothing to decide. Other item metadata (categories) does not travel.
``split.json`` also records the title column the original was read with (``"source_title_col"``,
as given to ``--title-col``, else as found by its name), so the same flag given again for the
parts reads their ``title`` column (:func:`part_title_source`) rather than failing on a column
the parts do not have.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recforge._atomic import atomic_path
from recforge.errors import ConfigError

if TYPE_CHECKING:
    from recforge.data.datasource import DataSource

#: The sidecar file :func:`write_split` writes and :func:`read_split_meta` reads.
SPLIT_META = "split.json"
#: The parts' column of item titles (recorded in ``split.json`` as ``title_col``, the
#: DataSource field that reads it back; older folders record ``item_title_col``).
TITLE_COLUMN = "title"
#: The parts' column of implicit event weights (recorded in ``split.json`` as ``count_col``).
COUNT_COLUMN = "count"
#: The files :func:`write_split` writes beside its ``split.json`` (which says nothing of others).
PART_FILES = ("train.csv", "valid.csv", "test.csv")


def _weighted(split: Any) -> bool:
    """Whether an implicit split's events carry weights other than 1 (so a count column)."""
    parts = (getattr(split, name, None) for name in ("train", "valid", "test"))
    return any(bool((p.rating != 1).any()) for p in parts if p is not None and len(p))


def _titles(item_meta: pd.DataFrame | None) -> pd.Series | None:
    """Item id → title of an item table, or None when it gives no title at all."""
    if item_meta is None or "title" not in item_meta.columns:
        return None
    titles = item_meta["title"]
    titles = titles[~titles.index.duplicated()]
    return titles if titles.notna().any() else None


def write_split(
    split: Any,
    out: str | Path,
    *,
    events: dict[str, Any] | None = None,
    title_from: str | int | None = None,
) -> dict[str, Path]:
    """Write ``train.csv``, ``test.csv`` (and ``valid.csv``) with raw ids into ``out``, each
    row with its item's title when the data's item table has titles; ``events`` (the source's
    :meth:`~recforge.data.datasource.DataSource.event_settings`) and ``title_from`` (the
    ratings file's title column it was read with, ``--title-col``) go into ``split.json``.

    Each file is written to a temporary name and renamed, so an interrupted run never leaves a
    half-written part.
    """
    folder = Path(out)
    written: dict[str, Path] = {}
    scale = split.train.rating_scale
    titles = _titles(split.train.item_meta)
    counts = scale is None and _weighted(split)
    for name in ("train", "valid", "test"):
        part = getattr(split, name, None)
        if part is None:
            continue
        frame = part.to_frame()
        if titles is not None:
            frame["title"] = frame["item_id"].map(titles)
        if not part.has_timestamps:  # zeros would read back as real (1970) times
            frame = frame.drop(columns="timestamp")
        if scale is None:
            weights = frame.pop("rating").to_numpy()
            if counts:  # whole counts written as integers (3, not 3.0)
                whole = bool(np.all(weights == np.round(weights)))
                frame[COUNT_COLUMN] = weights.astype(np.int64) if whole else weights
        target = folder / f"{name}.csv"
        with atomic_path(target) as tmp:
            frame.to_csv(tmp, index=False)
        written[name] = target
    meta = {
        "rating_scale": list(scale) if scale is not None else None,
        "implicit": scale is None,
        "protocol": split.protocol.describe(),
        "source": split.train.source,
        "title_col": TITLE_COLUMN if titles is not None else None,
        "source_title_col": title_from if titles is not None else None,
        "count_col": COUNT_COLUMN if counts else None,
        "events": events,
    }
    with atomic_path(folder / SPLIT_META) as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    with atomic_path(folder / "protocol.txt") as tmp:
        tmp.write_text(split.protocol.describe() + "\n", encoding="utf-8")
    return written


def read_split_meta(part: str | Path) -> dict[str, Any] | None:
    """The ``split.json`` beside a part written by :func:`write_split`, or None."""
    path = Path(part).parent / SPLIT_META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def part_title_source(source: DataSource) -> DataSource:
    """``source`` reading its titles from the part's ``title`` column when it is a part
    :func:`write_split` wrote and its ratings-file title column (``--title-col X``, or
    ``--item-title-col X`` alone) is the one ``split.json`` records the original was read
    with: the flags given to ``data split``, given again for its parts, are not a column the
    parts lack. Any other source comes back as it is.

    Raises:
        ConfigError: the part's titles came from another column than the one given, or
            ``split.json`` records none (an item file's titles, or a folder split before it
            recorded the column).
    """
    given = (source.columns() or {}).get("title")
    if given is None or given == TITLE_COLUMN or Path(source.path).name not in PART_FILES:
        return source
    meta = read_split_meta(source.path)
    # "item_title_col": how folders split before --title-col record the parts' column.
    if meta is None or TITLE_COLUMN not in (meta.get("title_col"), meta.get("item_title_col")):
        return source  # no titles in the parts: the reader names the missing column itself
    recorded = meta.get("source_title_col")
    if given != recorded:
        flag = "--title-col" if source.title_col is not None else "--item-title-col"
        was = (
            f"the titles read from column {recorded!r}, not from {given!r}"
            if recorded is not None
            else "the titles, and records no column of the original they came from"
        )
        raise ConfigError(
            f"{source.path}: split.json says this part's {TITLE_COLUMN!r} column holds {was}; "
            f"drop {flag} (the part's titles are read anyway), or split the original file again "
            f"with {flag} {shlex.quote(str(given))}"
        )
    # --item-title-col alone is the same column; kept beside title_col it would be refused.
    item_title_col = source.item_title_col if source.items is not None else None
    return source.replace(title_col=TITLE_COLUMN, item_title_col=item_title_col)


def settled_events(part: DataSource, recorded: dict[str, Any]) -> DataSource:
    """A split part read without the event settings its ``split.json`` records as applied (its
    weights are in its count column, the dropped kinds gone): given again they would find no
    event column.

    Raises:
        ConfigError: other event settings are given; they need a new split of the original.
    """
    given = part.event_settings()
    if given is None:
        return part
    same = given["event_weights"] == recorded.get("event_weights") and given["events"] == (
        recorded.get("events")
    )
    if not same:
        flags = " ".join(
            f"--{key.replace('_', '-')} {_flag_text(value)}"
            for key, value in recorded.items()
            if key != "event_col" and value is not None
        )
        raise ConfigError(
            f"{part.path}: the split parts were written with {flags} already applied (the "
            "weights are in their count column); drop --event-weights/--events, or split the "
            "original file again with the new ones (recforge data split)"
        )
    return part.replace(event_col=None, event_weights=None, events=None)


def _flag_text(value: Any) -> str:
    """A recorded event setting as typed on the command line (``view=1,addtocart=3``)."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v:g}" for k, v in value.items())
    return ",".join(str(v) for v in value)


def part_source(source: DataSource) -> DataSource:
    """``source`` read as the flags given to ``data split`` mean for one of its parts: the
    original's title column is the part's ``title`` column (:func:`part_title_source`) and the
    event settings recorded as applied are not applied again (:func:`settled_events`). What
    ``recforge train --data <part>`` reads; any other source comes back as it is."""
    source = part_title_source(source)
    if source.event_settings() is None or Path(source.path).name not in PART_FILES:
        return source
    meta = read_split_meta(source.path)
    if meta is None or not isinstance(meta.get("events"), dict):
        return source
    return settled_events(source, meta["events"])
