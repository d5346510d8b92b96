"""pandas DataFrames in: the Python path from a user's own frame to :class:`Interactions`.

``model.fit(df, columns={"user": "customer", "item": "product", "rating": "stars"})`` lands here.
The frame is validated by :func:`recforge.data.io.read_frame`, the same column mapping, id,
rating, timestamp and duplicate rules that :func:`~recforge.data.io.read_ratings` applies to a
file, then encoded by :meth:`Interactions.from_frame`; there is no second parser.

Column mappings accept the canonical names (``user_id``, ``item_id``, ``rating``,
``timestamp``) and the short ones a person types (``user``, ``item``, ``rating``, ``time``),
plus ``title``: a column of the items' titles (found by its name when not mapped, as in a file),
``count``: a column of per-row counts (``plays``, ``qty``; found by its name too), which
makes the data implicit, each row weighing its count, and ``event``: a column of event kinds
(``view``, ``transaction``; found by its name too), weighed by ``event_weights=`` or filtered by
``events=`` (:mod:`recforge.data.events`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import pandas as pd

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError

__all__ = ["as_training_data", "canonical_columns", "frame_to_interactions"]

_SHORT_KEYS = {
    "user": "user_id",
    "user_id": "user_id",
    "item": "item_id",
    "item_id": "item_id",
    "rating": "rating",
    "time": "timestamp",
    "timestamp": "timestamp",
    "title": "title",
    "count": "count",
    "event": "event",
}


def canonical_columns(columns: Mapping[str, str | int] | None) -> dict[str, str | int] | None:
    """``{"user": "customer"}`` → ``{"user_id": "customer"}``; ConfigError on an unknown key."""
    if columns is None:
        return None
    out: dict[str, str | int] = {}
    for key, value in columns.items():
        canon = _SHORT_KEYS.get(str(key).lower())
        if canon is None:
            raise ConfigError(
                f"columns: unknown key {key!r}; use user, item, rating, time, title, count, event "
                "(or user_id, item_id, rating, timestamp)"
            )
        if canon in out:
            raise ConfigError(f"columns: {canon} is mapped twice ({key!r} and another alias)")
        out[canon] = value
    return out


def frame_to_interactions(
    df: pd.DataFrame,
    *,
    columns: Mapping[str, str | int] | None = None,
    implicit: bool = False,
    rating_scale: tuple[float, float] | None = None,
    duplicates: Any = None,
    time_format: str = "auto",
    item_meta: pd.DataFrame | None = None,
    source: str = "DataFrame",
    event_weights: Mapping[str, float] | None = None,
    events: Collection[str] | None = None,
) -> Interactions:
    """Validate and encode a DataFrame of events.

    Args:
        df: one row per event; columns found by ``columns`` or by their usual names
            (``userId``, ``customer_id``, ``movieId``, ``stars``, ``timestamp``...).
        columns: role → column name (or 0-based position), e.g.
            ``{"user": "customer", "item": "product", "rating": "stars", "time": "ts"}``;
            ``"title"`` names a column of the items' titles (unmapped, one named like titles
            holding text is used, as in a file: :func:`recforge.data.io.read_ratings`).
        implicit: ignore any rating column (every event weighs 1.0).
        rating_scale: declared ``(low, high)``; inferred from the data's min and max otherwise
            (a constant column is implicit feedback, no scale).
        duplicates: repeated (user, item) pairs, as in :func:`~recforge.data.io.read_ratings`
            (default: repeats counted as weights on implicit data, the last rating otherwise).
        time_format: how to read the time column, as in :func:`~recforge.data.io.read_ratings`.
        item_meta: optional item metadata indexed by raw item id (``title``, ``genres``...);
            its titles come first, then the frame's title column; when the item column is
            named like titles (``title``, ``movie``...) and holds text, each id is also the
            title of its item unless one of those gives one
            (:func:`recforge.data.items.titled_items`, as for a file).
        source: name used in error messages and reports.
        event_weights: kind -> weight of each event kind in the ``event`` column (implicit
            data; 0 drops a kind), as ``--event-weights`` (:mod:`recforge.data.events`).
        events: the event kinds to keep, as ``--events``.
    """
    from recforge.data.io import _read_frame, ready_for_interactions

    # The frame and each item's one title from its title column, chosen once while reading.
    frame, by_item = _read_frame(
        df,
        columns=canonical_columns(columns),
        rating_scale=rating_scale,
        duplicates=duplicates,
        implicit=implicit,
        time_format=time_format,
        label=source,
        event_weights=event_weights,
        events=events,
    )
    frame, scale = ready_for_interactions(frame, rating_scale, implicit)
    from recforge.data.items import titled_items

    # The given table's titles first, then the frame's title column, then ids that are titles:
    # the same order as a file's item table.
    item_meta, _ = titled_items(frame, item_meta, by_item)
    return Interactions.from_frame(frame, item_meta=item_meta, rating_scale=scale, source=source)


def as_training_data(
    train: Interactions | pd.DataFrame,
    valid: Interactions | pd.DataFrame | None = None,
    *,
    columns: Mapping[str, str | int] | None = None,
    **read: Any,
) -> tuple[Interactions, Interactions | None]:
    """What :meth:`Recommender.fit` trains on: Interactions as given, DataFrames encoded.

    Column roles may also come as keywords (``user="customer", item="product",
    rating="stars", time="ts", count="plays", title="name", event="event_type"``), merged into
    ``columns`` (with ``event_weights={"view": 1, "purchase": 5}`` or ``events=[...]``). A
    validation frame is read with the same mapping and encoded with the training vocabularies
    (rows with ids unseen in training are dropped: they cannot be scored).
    """
    roles: dict[str, str | int] = {
        key: read.pop(key)
        for key in ("user", "item", "rating", "time", "count", "title", "event")
        if key in read
    }
    if roles:
        mapped = canonical_columns(columns) or {}
        both = sorted(k for k in roles if _SHORT_KEYS[k] in mapped)
        if both:
            raise ConfigError(f"fit: {', '.join(both)} given both as a keyword and in columns=")
        columns = {**(columns or {}), **roles}
    if isinstance(train, Interactions):
        if columns is not None or read:
            names = ", ".join(sorted(["columns", *read] if columns is not None else read))
            raise ConfigError(
                f"fit: {names} apply to a DataFrame; this training set is already Interactions"
            )
    elif isinstance(train, pd.DataFrame):
        train = frame_to_interactions(train, columns=columns, **read)
    else:
        raise DataError(
            f"fit: expected Interactions or a pandas DataFrame, got {type(train).__name__}; "
            "for a file use recforge.read_ratings(path) or recforge.load_dataset(path)"
        )
    if isinstance(valid, pd.DataFrame):
        from recforge.data.io import read_frame

        opts = {k: v for k, v in read.items() if k in ("implicit", "duplicates", "time_format")}
        mapping = {k: v for k, v in (canonical_columns(columns) or {}).items() if k != "title"}
        # Titles come from the training data; the validation frame needs no title column.
        canon = read_frame(valid, columns=mapping or None, label="valid", **opts)
        valid = Interactions.from_frame(
            canon,
            users=train.users,
            items=train.items,
            unknown="drop",
            item_meta=train.item_meta,
            rating_scale=train.rating_scale,
            source="valid",
        )
    return train, valid
