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
flags again does not apply them twice, and other flags are refused
(:func:`recforge.pipeline.files_split`).

Titles travel as a column of the parts, not as a second file: when the data's item table has
titles, every row carries its item's title in a last ``title`` column (empty for an item
without one), and ``split.json`` says so (``"title_col": "title"``; folders written before
``--title-col`` say ``"item_title_col"``, still read), so reading the parts back
(``--train``/``--test``) takes that column as the titles even where its name alone would not
be trusted (titles that all look like codes). Each item has one title there, so the
most-frequent rule has nothing to decide. Other item metadata (categories) does not travel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge._atomic import atomic_path

#: The sidecar file :func:`write_split` writes and :func:`read_split_meta` reads.
SPLIT_META = "split.json"
#: The parts' column of item titles (recorded in ``split.json`` as ``title_col``, the
#: DataSource field that reads it back; older folders record ``item_title_col``).
TITLE_COLUMN = "title"
#: The parts' column of implicit event weights (recorded in ``split.json`` as ``count_col``).
COUNT_COLUMN = "count"


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
    split: Any, out: str | Path, *, events: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``train.csv``, ``test.csv`` (and ``valid.csv``) with raw ids into ``out``, each
    row with its item's title when the data's item table has titles; ``events`` (the source's
    :meth:`~recforge.data.datasource.DataSource.event_settings`) goes into ``split.json``.

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
