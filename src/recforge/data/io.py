"""Reading rating files into the canonical frame.

:func:`read_ratings` is the one entry point from a file on disk to the canonical frame
(``user_id, item_id, rating, timestamp``) that :meth:`Interactions.from_frame` encodes.

How it works, and why:

* **Sniff on a sample, parse with the C engine.** The first 64 KiB (decompressed) decide the
  compression, encoding, delimiter, header and column mapping; the whole file is then parsed once by
  pandas' C parser (no per-row Python), so a 20M-row file costs what ``pd.read_csv`` costs.
* **MovieLens ``::``.** pandas only runs multi-character separators in its slow Python engine, so
  ``::`` files are parsed with ``sep=":"`` by the C engine; the empty fields between the two colons
  are read too and must be empty, which proves no value contained a stray ``:``.
* **Line numbers are file lines.** Blank (whitespace-only) lines never reach the parser: the
  stream skips them and remembers only where each run of them was (``data/_stream.py``), and the
  parse index is set back to line offsets, so row ``k`` of the parse is line
  ``first_data_line + k`` of the file and every error can name the line a user sees in an editor
  (quoted values spanning several lines would shift this; rating files do not have them).
* **One handle, bounded memory.** The sample and the parse read one open handle, and a file
  changed in place meanwhile is refused; compressed input expands only up to a cap
  (``max_input_bytes`` / ``RECFORGE_MAX_INPUT_BYTES``); see :mod:`recforge.data._stream`.
* **Errors are one line.** Every problem a user can cause raises
  :class:`~recforge.errors.DataError` with the file, the 1-based line (or Parquet row), the column
  and a fix. Non-UTF-8 bytes are an error naming the encoding and the ``encoding=`` fix rather than
  a silent latin-1 fallback: guessing an encoding would quietly change string ids, which then never
  match the ids a user types.
* **Ids.** Ids are ``int64`` when every value is integral, else strings (so ``"007"`` and ``7``
  are the same id only in files where all ids are numbers; pass string ids through Parquet to keep
  them exact). An id written like one of pandas' missing-value words (``NA``, ``null``,
  ``None``) is that id: only an empty cell is missing in an id, title or event column. Numeric
  ids that cannot be kept exactly are refused rather than silently changed: negative ids, ids
  beyond ``int64`` (they would wrap or round), and ids in scientific notation (``1.23457E+11``
  is how spreadsheets print a rounded 12-digit id). String ids longer than 1,000 characters,
  ids holding a byte-order mark (two files concatenated) and a data row that repeats the header
  are refused too.
* **What is accepted.** CRLF and CR line endings, a UTF-8/UTF-16 BOM at the start, a trailing
  separator on *every* line (an empty extra column), ISO dates as timestamps, and ratings in
  scientific notation (``4e0`` is exactly 4; only ids are refused in that form) load normally.
"""

from __future__ import annotations

import codecs
import csv
import lzma
import os
import re
import shlex
import warnings
import zlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from recforge.data._stream import TextSource, max_input_bytes
from recforge.data.datasource import TIME_FORMATS, DataSource
from recforge.data.events import (
    Kinds,
    check_event_weights,
    check_events,
    read_kinds,
    why_not_events,
)
from recforge.data.items import RowTitles, all_codes, resolve_titles
from recforge.data.split_io import part_source
from recforge.errors import ConfigError, DataError, DataWarning

__all__ = [
    "CANONICAL_COLUMNS",
    "COLUMN_ALIASES",
    "COUNT_ALIASES",
    "EVENT_ALIASES",
    "DuplicatePolicy",
    "names_title_column",
    "names_titles",
    "read_frame",
    "read_ratings",
]

CANONICAL_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
DuplicatePolicy = Literal["error", "last", "mean", "count"]

#: The CLI flag that maps each canonical column, named in error messages and warnings.
COLUMN_FLAGS = {
    "user_id": "--user-col",
    "item_id": "--item-col",
    "rating": "--rating-col",
    "timestamp": "--time-col",
    "title": "--title-col",
    "count": "--count-col",
    "event": "--event-col",
}
#: Keys of a column mapping: the canonical columns, the ratings' own title column, a column
#: of per-row counts (implicit data, each row's weight) and a column of event kinds (``view``,
#: ``transaction``: :mod:`recforge.data.events`).
_MAPPABLE = (*CANONICAL_COLUMNS, "title", "count", "event")
#: Header names that look like a time (``clicked_at``, ``event_time``, ``when``, ``date``...).
_TIME_NAME = re.compile(
    r"(time|date|when|day|_at$|ts$|^at$|created|updated|epoch|zeit|datum|fecha)", re.I
)
_ISO_VALUE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}.*)?$")

#: Header names recognised for each canonical column, compared case-insensitively with
#: ``_``, ``-``, spaces and dots removed (so ``userId``, ``user_id`` and ``User ID`` all match).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": (
        "user_id",
        "userId",
        "user",
        "uid",
        "users",
        "customer_id",
        "visitor_id",
        "customer",
        "client_id",
        "member_id",
        "account_id",
        "visitor",
        "shopper",
        "reader_id",
        # Listening, viewing, learning and session logs (a session stands for its user).
        "listener_id",
        "listener",
        "viewer_id",
        "viewer",
        "subscriber_id",
        "subscriber",
        "player_id",
        "student_id",
        "learner_id",
        "person_id",
        "profile_id",
        "session_id",
    ),
    "item_id": (
        "item_id",
        "itemId",
        "item",
        "movieId",
        "movie_id",
        "movie",
        "iid",
        "product_id",
        "product",
        "sku",
        "article_id",
        "track_id",
        "song_id",
        "book_id",
        "isbn",
        "asin",
        "video_id",
        "content_id",
        "track",
        "song",
        "episode_id",
        "podcast_id",
        "course_id",
        "recipe_id",
        "game_id",
        "app_id",
        "anime_id",
        "business_id",
        "restaurant_id",
        "hotel_id",
        "place_id",
        "venue_id",
        "post_id",
        "news_id",
        "job_id",
        # Last: a listening log's item when it has no track column (Last.fm's user, artist, plays).
        "artist_id",
        "artist",
    ),
    "rating": ("rating", "ratings", "score", "stars", "preference"),
    "timestamp": (
        "timestamp",
        "time",
        "ts",
        "datetime",
        "date",
        "unix_time",
        # When the event happened, by its verb (a log's created_at / updated_at may be the
        # record's, not the event's: those stay a warning with a --time-col hint).
        "event_time",
        "event_timestamp",
        "event_date",
        "interaction_time",
        "clicked_at",
        "viewed_at",
        "watched_at",
        "listened_at",
        "played_at",
        "rated_at",
        "purchased_at",
        "ordered_at",
        "order_date",
        "purchase_date",
        "rating_date",
        "review_date",
    ),
}

_SAMPLE_BYTES = 1 << 16
_WHITESPACE = r"\s+"
_SNIFF_ORDER = ("\t", ",", ";", "|")
_MAX_SHOWN = 40  # longest cell value quoted in an error message
_MAX_ID_CHARS = 1000  # longer string ids are a broken file (a quote swallowing lines, ...)
_INT64_MAX = str(np.iinfo(np.int64).max)
_INT_TEXT = r"[+-]?\d+(?:\.0*)?"  # integral id text, "12" or "12.0"
_SCI_TEXT = r"[+-]?(?:\d+\.?\d*|\.\d+)[eE][+-]?\d+"
_MARKUP = ("<!doctype", "<html", "<?xml", "{", "[")
_ANNOTATION = re.compile(r"\s*[(\[][^()\[\]]*[)\]]\s*$")
#: Header names that look like ratings (``Bewertung``, ``score``, ``stars``...), for the warning
#: when none is mapped.
_RATING_NAME = re.compile(
    r"(rating|score|stars?|grade|vote|bewertung|sterne|punkte|note|valoraci|calificaci|"
    r"puntuaci|avis|voto)",
    re.I,
)
#: Words that say "title" (compared after :func:`_norm`), and nouns for works that name a work
#: by its title (``movie``, ``Buch``...).
_TITLE_WORDS = r"title|titel|titre|t[ií]tulo|titolo|name|nombre"
_WORK_NOUNS = r"movie|film|pel[ií]cula|book|buch|libro|song|album"
#: Header names of an item column that holds titles, compared after :func:`_norm` (``Titel``,
#: ``movie_title``, ``Filmname``, ``Book``): its text ids are the items' titles when nothing else
#: names them (:func:`recforge.data.items.id_titles`).
_TITLE_NAME = re.compile(rf"({_TITLE_WORDS}|{_WORK_NOUNS})s?$")
#: Header names of a column *beside* the item column that gives the items' titles (``title``,
#: ``name``, ``item_name``, ``product_name``, ``movie_title``, ``Titel``, ``Filmtitel``): a title
#: word, after nothing or a word naming the items; ``username`` or ``artist_name`` is no title.
_TITLE_COLUMN = re.compile(
    rf"(?:{_WORK_NOUNS}|item|product|produkt|producto|produit|article|artikel|track|video)?"
    rf"(?:{_TITLE_WORDS})s?"
)
_TITLE_WORD = re.compile(rf"(?:{_TITLE_WORDS})s?")
#: What an item id column's name ends in after the noun (``recipe_id`` → ``recipe``).
_ID_SUFFIX = re.compile(r"(ids?|codes?|no|nr|numbers?|keys?)$")
#: Spreadsheet workbooks (zip or OLE2 files) by extension: say "save as CSV", not "extract".
_WORKBOOKS = (".xlsx", ".xlsm", ".xlsb", ".xls", ".ods", ".numbers")


def _norm(name: str) -> str:
    """A header name compared with the aliases: a trailing annotation in brackets dropped
    (``Rating (1-10)``, ``Order Date [UTC]``), case, spaces, ``_``, ``-`` and ``.`` ignored."""
    bare = _ANNOTATION.sub("", name)
    return re.sub(r"[\s_\-.]", "", bare if bare.strip() else name).lower()


#: Header names of a column of per-row counts (``user, artist, plays``; ``customer, sku, qty``),
#: compared after :func:`_norm`: unmapped, with no rating column, and holding numbers >= 0, such
#: a column is read as each row's count (kept apart from :data:`COLUMN_ALIASES`: a count is no
#: canonical column of the frame, it becomes the implicit event's weight).
COUNT_ALIASES: tuple[str, ...] = (
    "plays",
    "play_count",
    "playcount",
    "count",
    "counts",
    "n",
    "clicks",
    "click_count",
    "views",
    "view_count",
    "listens",
    "quantity",
    "qty",
    "purchases",
    "times",
    "frequency",
    "freq",
    "visits",
)
_COUNT_NAMES = frozenset(_norm(a) for a in COUNT_ALIASES)
_COUNT_FIX = (
    "counts must be numbers >= 0 (fix the value or drop the row, or map another column with "
    "--count-col)"
)

#: Header names of a column of event kinds (``view``, ``addtocart``, ``transaction``), compared
#: after :func:`_norm`: unmapped and holding text with few distinct values
#: (:func:`recforge.data.events.why_not_events`), such a column is read as each row's kind.
#: (``events`` and ``interaction`` alone are left out: as often a number of events or a 0/1.)
EVENT_ALIASES: tuple[str, ...] = (
    "event",
    "event_type",
    "event_name",
    "event_kind",
    "action",
    "action_type",
    "behavior",
    "behaviour",
    "behavior_type",
    "behaviour_type",
    "interaction_type",
    "activity",
    "activity_type",
)
_EVENT_NAMES = frozenset(_norm(a) for a in EVENT_ALIASES)
_EVENT_FIX = "give each kind a weight (0 drops it)"

_ALIAS_LOOKUP = {canon: {_norm(a) for a in aliases} for canon, aliases in COLUMN_ALIASES.items()}
_ALL_ALIASES = set().union(*_ALIAS_LOOKUP.values())


def names_titles(column: object) -> bool:
    """Whether a header name says the column holds titles: it ends in ``title``, ``name``,
    ``movie``, ``film``, ``book``, ``song`` or ``album`` (or ``Titel``, ``titre``, ``título``,
    ``titolo``, ``nombre``, ``película``, ``Buch``, ``libro``), optionally plural, with case,
    separators and a bracketed note ignored. A position (a file without a header) never does."""
    return isinstance(column, str) and bool(_TITLE_NAME.search(_norm(column)))


def names_title_column(column: object, item_column: object = None) -> bool:
    """Whether a header name says the column holds the titles of the items in ``item_column``
    (an unmapped column of a ratings file, taken as its title column when it holds text).

    It is a title word (``title``, ``name``, ``Titel``, ``titre``, ``título``, ``titolo``,
    ``nombre``, optionally plural), alone or after a word naming the items (``item``,
    ``product``, ``movie``, ``film``, ``book``, ``song``, ``album``, ``track``, ``article``,
    ``video``...) or after the item column's own noun (``recipe_name`` beside ``recipe_id``);
    case, separators and a bracketed note are ignored. ``username``, ``artist_name`` and a
    position (a file without a header) never are.
    """
    if not isinstance(column, str):
        return False
    name = _norm(column)
    if _TITLE_COLUMN.fullmatch(name):
        return True
    noun = _ID_SUFFIX.sub("", _norm(item_column)) if isinstance(item_column, str) else ""
    return bool(noun) and name.startswith(noun) and bool(_TITLE_WORD.fullmatch(name[len(noun) :]))


# ---------------------------------------------------------------------------------------------
# public entry point
# ---------------------------------------------------------------------------------------------
def read_ratings(
    path: str | os.PathLike[str] | DataSource,
    *,
    sep: str | None = None,
    columns: Mapping[str, str | int] | None = None,
    header: bool | None = None,
    rating_scale: tuple[float, float] | None = None,
    duplicates: DuplicatePolicy | None = None,
    encoding: str | None = None,
    implicit: bool = False,
    time_format: str = "auto",
    max_input_bytes: int | None = None,
    event_weights: Mapping[str, float] | None = None,
    events: Collection[str] | None = None,
) -> pd.DataFrame:
    """Read a ratings file into the canonical frame.

    Formats: CSV, TSV, MovieLens ``.dat`` (``::``), whitespace-separated (ML-100k ``u.data``),
    Parquet (by content, whatever the suffix), and gzip/bz2/xz-compressed text (by content).

    Args:
        path: the file, or a :class:`~recforge.data.datasource.DataSource` (whose mapping,
            separator, scale... are then used instead of the keyword arguments).
        sep: field separator; ``None`` sniffs one of ``","``, ``"\\t"``, ``"::"``, ``";"``,
            ``"|"`` or whitespace (``" "`` or ``r"\\s+"``) from the first lines.
        columns: canonical name → source column name (files with a header) or 0-based position,
            e.g. ``{"user_id": "userId", "item_id": "movieId"}``. Unmapped canonical columns are
            found by :data:`COLUMN_ALIASES` (header) or by position 0..3 (no header: 2 columns are
            user, item; 3 add rating; 4 or more add timestamp). ``"title"``: the items' titles
            (unmapped: a text column named like them, :func:`names_title_column`); ``"count"``:
            each row's count, its weight (unmapped: a column named like counts, no rating);
            ``"event"``: each row's kind (unmapped: a text column named like :data:`EVENT_ALIASES`
            with at most 50 kinds).
        header: whether the first non-blank line names the columns; ``None`` detects it (a first
            row with a known column name, or with text where the second row has numbers or
            dates). A mapping by column name requires a header: it is then assumed, and a first
            row holding numbers is refused with the fix.
        rating_scale: declared ``(low, high)``; ratings outside it are a :class:`DataError`.
        duplicates: repeated (user, item) pairs: ``"error"``, keep the ``"last"`` in file order
            (warns with the count), ``"mean"`` of the ratings (latest timestamp; warns too), or
            ``"count"``: implicit data only, one event per pair weighing its number of rows or
            the sum of their counts (latest timestamp). ``None``: ``"count"`` if implicit.
        encoding: text encoding; ``None`` is UTF-8 (a UTF-8 or UTF-16 byte-order mark honoured).
        implicit: ignore any rating column: every row weighs 1.0, or its count (the default
            without a rating column, or with a count column).
        time_format: ``"auto"`` (epoch s/ms/us/ns by magnitude, spreadsheet serial dates
            refused; ISO-8601 text), ``"s"``, ``"ms"``, ``"us"``, ``"ns"``, ``"excel"`` (days
            since 1899-12-30), ``"iso"``, or a strftime pattern (``"%d/%m/%Y %H:%M"``).
        max_input_bytes: cap on the bytes a compressed file may expand to (a decompression
            bomb stops there with a DataError); None reads ``RECFORGE_MAX_INPUT_BYTES``, else
            32 times the compressed size within [64 MiB, 2 GiB] (:mod:`recforge.data._stream`).
        event_weights: kind -> weight >= 0 of every event kind in the event column: each row
            weighs its kind's weight (times its count), 0 drops the kind; implicit data only.
        events: the event kinds to keep (other rows dropped); :mod:`recforge.data.events`.

    Returns:
        A frame with columns ``user_id`` and ``item_id`` (``int64`` when all integral, else
        strings), ``rating`` (``float32``) and ``timestamp`` (``int64`` seconds, 0 when absent),
        in file order with a fresh ``RangeIndex`` (and ``title``, each row its item's title,
        with a title column: :func:`_attach_titles`). ``attrs["source"]`` holds the path,
        ``attrs["mapping"]`` the file column used for each canonical one, ``attrs["implicit"]``
        whether ratings were absent or ignored, ``attrs["has_timestamps"]`` whether a time
        column was read, ``attrs["time_format"]`` how it was parsed and ``attrs["event_*"]``
        the event column, its kinds and rows, and the event settings applied.

    Raises:
        DataError: the file is missing, empty, binary, truncated, wrongly delimited or encoded,
            lacks a column, or has an empty, non-numeric or out-of-scale value, or a duplicate
            under ``duplicates="error"``. The message names the file, line and column.
        ConfigError: an argument is invalid (unknown policy, bad mapping key, bad scale).
    """
    if isinstance(path, DataSource):
        return _read_source(path)[0]
    options = _check_arguments(
        columns, rating_scale, duplicates, time_format, implicit, event_weights, events
    )
    raw = _read_raw(Path(path), sep, columns, header, encoding, max_input_bytes)
    return _finish(raw, options)[0]


def _read_raw(
    p: Path,
    sep: str | None,
    columns: Mapping[str, str | int] | None,
    header: bool | None,
    encoding: str | None,
    max_bytes: int | None,
) -> _Raw:
    """The parsed file, Parquet (by its magic bytes or suffix) or text."""
    label = str(p)
    magic = _magic_bytes(p, label)
    if magic[:4] == b"PAR1" or p.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(p, label, columns)
    return _read_text(p, label, magic, sep, columns, header, encoding, max_bytes)


def _read_source(source: DataSource) -> tuple[pd.DataFrame, pd.Series | None]:
    """:func:`read_ratings` of a DataSource (its own settings; no keyword arguments mixed in),
    and the title each item got from the file's title column (:func:`_finish`): what
    :func:`recforge.data.sources.load_with_info` builds the item table from."""
    if source.is_movielens:
        raise ConfigError(f"{source.path} is a MovieLens release; use load_dataset for it")
    # A split part given the original's --title-col or event flags again reads its own
    # 'title' column and does not weigh its events twice.
    source = part_source(source)
    read = source.read_kwargs()
    sep, header, encoding = read.pop("sep"), read.pop("header"), read.pop("encoding")
    # The settings are checked before the file is opened, as read_ratings does.
    options = _check_arguments(**read)
    raw = _read_raw(Path(source.path), sep, read["columns"], header, encoding, None)
    return _finish(raw, options)


def _magic_bytes(p: Path, label: str) -> bytes:
    """The first 8 bytes of an existing, non-empty regular file (they tell its format)."""
    if not p.exists():
        raise DataError(f"{label}: file not found; check the path (relative to {Path.cwd()})")
    if p.is_dir():
        raise DataError(f"{label}: is a directory; pass the ratings file inside it")
    with open(p, "rb") as fh:
        magic = fh.read(8)
    if not magic:
        raise DataError(f"{label}: file is empty; expected a header and/or rating rows")
    return magic


def _finish(raw: _Raw, opts: _Options) -> tuple[pd.DataFrame, pd.Series | None]:
    """Validate a parsed file or frame into the canonical frame (shared by both readers), and
    the one title each of its items got from the data's title column (item id → title, items
    without one left out; None without a title column).

    The titles travel beside the frame, not in its ``attrs``: pandas deep-copies ``attrs`` on
    every operation, and the frame already carries them per row (its public ``title``)."""
    label = raw.label
    _settle_counts(raw)
    _settle_events(raw)
    _warn_unmapped_columns(raw, opts)
    frame, time_used = _canonicalize(raw, opts)
    # Before merging duplicates: every row's title counts (most frequent per item wins).
    frame, title_column, found = _attach_titles(raw, frame)
    frame, events_read = _apply_events(raw, frame, opts)
    frame, zero_counts = _drop_zero_counts(raw, frame)
    by_item = None if found is None else found.by_item
    if by_item is not None and (zero_counts or events_read["event_dropped"]):
        # Items whose every row was dropped are no items of the data: no title for them.
        # (Merging repeats below keeps a row of every pair, so no item goes there.)
        by_item = by_item[by_item.index.isin(frame["item_id"])]
    counted = "count" in raw.columns
    # Counts and event weights are weights of implicit events: ratings beside them are unread.
    unrated = opts.implicit or counted or opts.weighted
    is_implicit = unrated or "rating" not in raw.columns
    policy: DuplicatePolicy = opts.duplicates or ("count" if is_implicit else "last")
    if policy == "count" and not is_implicit:
        raise ConfigError(
            f"{label}: duplicates='count' turns repeats into weights of implicit events, but "
            f"the data has ratings ({raw.source_names['rating']}); pass implicit=True "
            "(--implicit) or use 'last'/'mean'"
        )
    frame = _apply_duplicates(frame, raw, policy)
    frame.attrs["source"] = label
    frame.attrs["mapping"] = {
        c: col
        for c, col in raw.mapped.items()
        if c in (*CANONICAL_COLUMNS, "count", "event")
        and c in raw.columns
        and not (unrated and c == "rating")
    }
    frame.attrs["implicit"] = is_implicit
    frame.attrs["has_timestamps"] = "timestamp" in raw.columns
    frame.attrs["time_format"] = time_used
    frame.attrs["duplicates"] = policy
    frame.attrs["title_column"] = title_column
    frame.attrs["title_conflicts"] = 0 if found is None else found.conflicts
    frame.attrs["count_column"] = raw.mapped["count"] if counted else None
    frame.attrs["zero_counts"] = zero_counts
    frame.attrs.update(events_read)
    return frame, by_item


def read_frame(
    df: pd.DataFrame,
    *,
    columns: Mapping[str, str | int] | None = None,
    rating_scale: tuple[float, float] | None = None,
    duplicates: DuplicatePolicy | None = None,
    implicit: bool = False,
    time_format: str = "auto",
    label: str = "DataFrame",
    event_weights: Mapping[str, float] | None = None,
    events: Collection[str] | None = None,
) -> pd.DataFrame:
    """Validate an in-memory frame into the canonical frame, exactly as :func:`read_ratings`.

    The frame's columns go through the same mapping (``columns``, else
    :data:`COLUMN_ALIASES`), id, rating, timestamp (numbers, ISO strings or ``datetime64``;
    ``time_format`` as in :func:`read_ratings`), duplicate (``None``: counts for implicit data,
    last rating otherwise), event (``event_weights``, ``events``) and unmapped-time-column rules
    as a file's, so a DataFrame and the CSV written from it load identically.
    Errors name ``label`` and the 1-based row.

    Raises:
        DataError: not a DataFrame, no rows, a missing column or a bad value.
        ConfigError: an argument is invalid.
    """
    return _read_frame(
        df,
        columns=columns,
        label=label,
        rating_scale=rating_scale,
        duplicates=duplicates,
        implicit=implicit,
        time_format=time_format,
        event_weights=event_weights,
        events=events,
    )[0]


def _read_frame(
    df: pd.DataFrame,
    *,
    columns: Mapping[str, str | int] | None = None,
    label: str = "DataFrame",
    **settings: Any,
) -> tuple[pd.DataFrame, pd.Series | None]:
    """:func:`read_frame` (``settings``: its other keywords), and the title each item got from
    the frame's title column (:func:`_finish`): what
    :func:`recforge.data.frames.frame_to_interactions` builds the item table from."""
    options = _check_arguments(columns, **settings)
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"{label}: expected a pandas DataFrame, got {type(df).__name__}; for a file use "
            "recforge.read_ratings(path)"
        )
    if len(df) == 0:
        raise DataError(f"{label}: the frame has no rows")
    names = [str(c) for c in df.columns]
    positions, shown = _resolve_columns(label, names, len(names), columns, 0)
    cols = {canon: df.iloc[:, pos].reset_index(drop=True) for canon, pos in positions.items()}
    dtypes = list(df.dtypes)
    time_like, rating_like = _unmapped_hints(
        names,
        positions,
        lambda i: f"its type {dtypes[i]}" if dtypes[i].kind == "M" else None,
        lambda i: f"its type {dtypes[i]}" if dtypes[i].kind in "iuf" else None,
    )
    raw = _Raw(label, cols, shown, 0, {}, time_like, rating_like)
    raw.mapped = {c: names[pos] for c, pos in positions.items()}
    raw.title_auto = _title_found(positions, columns)
    _note_counts(raw, names, positions, columns)
    return _finish(raw, options)


def ready_for_interactions(
    frame: pd.DataFrame, rating_scale: tuple[float, float] | None, implicit: bool
) -> tuple[pd.DataFrame, tuple[float, float] | None]:
    """A canonical frame (:func:`read_ratings`, :func:`read_frame`) ready for
    :meth:`~recforge.data.interactions.Interactions.from_frame`, and its rating scale.

    The scale is ``rating_scale`` when given; else, for explicit data, the ratings' min..max.
    Implicit data (no rating column, ``implicit=True``, counts or event weights) has none,
    even when repeats were counted into weights, and neither has a column of one value (a
    log of 1.0s is implicit feedback). A frame read without a time column loses its
    placeholder ``timestamp`` column. Files (:mod:`recforge.data.sources`) and DataFrames
    (:mod:`recforge.data.frames`) both come here, so the two cannot drift apart.
    """
    scale = rating_scale
    if scale is None and not frame.attrs.get("implicit", implicit) and len(frame):
        lo, hi = float(frame["rating"].min()), float(frame["rating"].max())
        scale = (lo, hi) if lo < hi else None
    if not frame.attrs.get("has_timestamps", True):
        frame = frame.drop(columns="timestamp")
    return frame, scale


# ---------------------------------------------------------------------------------------------
# shared plumbing
# ---------------------------------------------------------------------------------------------
@dataclass
class _Raw:
    """A parsed file before validation: canonical-named columns plus how to name a row."""

    label: str
    # canonical name -> column, for the canonical columns the file has; the columns share one
    # index, the parse row number (a dict, not a DataFrame: building a frame copies every column).
    columns: dict[str, pd.Series]
    source_names: dict[str, str]  # canonical -> "column 'userId' (user_id)", for messages
    first_line: int  # file line (1-based) of parse row 0; 0 means rows are not lines (Parquet)
    header: dict[str, str] = field(default_factory=dict)  # canonical -> header text, if any
    # unmapped columns that look like a time: name -> why (name or a date-like value)
    time_like: dict[str, str] = field(default_factory=dict)
    # unmapped columns that look like ratings (name and a numeric value): name -> why
    rating_like: dict[str, str] = field(default_factory=dict)
    mapped: dict[str, str] = field(default_factory=dict)  # canonical -> file column, for reports
    title_auto: bool = False  # the title column was found by its name, not mapped
    count_auto: bool = False  # the count column was found by its name, not mapped
    event_auto: bool = False  # the event column was found by its name, not mapped
    event_unread: str = ""  # why a column named like event kinds was not read as them
    kinds: Kinds | None = None  # the event column's kinds, once read
    count_like: list[str] = field(default_factory=list)  # unread columns named like counts
    counts: npt.NDArray[np.float64] | None = None  # the count column's values, once read
    # Parse row numbers of the frame's rows once some were dropped (event kinds, zero counts):
    # the frame is what is filtered, ``columns`` keep every parsed row. None: all are kept.
    kept_rows: pd.Index | None = None

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def row(self, pos: int) -> Any:
        """Parse row number of the ``pos``-th kept row (of the frame, once rows were dropped)."""
        rows = self.kept_rows
        return (next(iter(self.columns.values())).index if rows is None else rows)[pos]

    def position(self, row: Any) -> str:
        """``line N`` of a text file or ``row N`` of a Parquet file, for parse row ``row``."""
        return f"line {self.first_line + int(row)}" if self.first_line else f"row {int(row) + 1}"

    def where(self, row: Any, canon: str | None = None) -> str:
        pos = self.position(row)
        if canon is None:
            return f"{self.label}, {pos}"
        return f"{self.label}, {pos}, {self.source_names.get(canon, f'column {canon!r}')}"


@dataclass(frozen=True)
class _Options:
    """The reader's checked settings (:func:`_check_arguments`), the same for both readers."""

    implicit: bool
    rating_scale: tuple[float, float] | None
    duplicates: DuplicatePolicy | None
    time_format: str
    event_weights: dict[str, float] | None = None  # kind -> weight, kinds stripped
    events: tuple[str, ...] | None = None  # the kinds to keep

    @property
    def weighted(self) -> bool:
        """Whether event weights are given (they make the data implicit, as counts do)."""
        return self.event_weights is not None


def _check_arguments(
    columns: Mapping[str, str | int] | None,
    rating_scale: tuple[float, float] | None,
    duplicates: str | None,
    time_format: str,
    implicit: bool = False,
    event_weights: Mapping[str, float] | None = None,
    events: Collection[str] | None = None,
) -> _Options:
    if duplicates not in (None, "error", "last", "mean", "count"):
        raise ConfigError(
            f"duplicates must be 'error', 'last', 'mean' or 'count', got {duplicates!r}"
        )
    if time_format not in TIME_FORMATS and "%" not in time_format:
        raise ConfigError(
            f"time_format must be {', '.join(TIME_FORMATS)} or a strftime pattern, "
            f"got {time_format!r}"
        )
    if columns is not None:
        for key, value in columns.items():
            if key not in _MAPPABLE:
                raise ConfigError(f"columns: unknown key {key!r}; use {', '.join(_MAPPABLE)}")
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise ConfigError(f"columns[{key!r}] must be a column name or a 0-based position")
    weights = None if event_weights is None else check_event_weights(event_weights)
    _check_implicit_weights(columns, implicit, weights is not None)
    if rating_scale is not None:
        lo, hi = rating_scale
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ConfigError(
                f"rating_scale must be (low, high) with low < high, got {rating_scale}"
            )
    return _Options(
        implicit,
        rating_scale,
        cast(DuplicatePolicy | None, duplicates),
        time_format,
        weights,
        None if events is None else check_events(events),
    )


def _check_implicit_weights(
    columns: Mapping[str, str | int] | None, implicit: bool, weighted: bool = False
) -> None:
    """A count column or event weights make the data implicit: a rating column mapped beside
    them would be silently ignored, so that takes ``implicit=True`` (``--implicit``)."""
    if not columns or "rating" not in columns or implicit:
        return
    if "count" in columns:
        what = f"a count column ({columns['count']!r}) makes"
    elif weighted:
        what = "event weights (--event-weights, event_weights=) make"
    else:
        return
    raise ConfigError(
        f"columns: {what} the data implicit, so the rating column ({columns['rating']!r}) "
        "would be ignored; drop --rating-col (columns['rating']) or pass --implicit "
        "(implicit=True)"
    )


def _shown(value: Any) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _resolve_columns(
    label: str,
    names: list[str] | None,
    n_fields: int,
    columns: Mapping[str, str | int] | None,
    header_line: int,
) -> tuple[dict[str, int], dict[str, str]]:
    """Map canonical names to 0-based field positions; also return how to call each one."""
    mapping = dict(columns or {})
    where = f"{label}, line {header_line}" if header_line else label
    positions = {
        canon: _mapped_position(where, names, n_fields, canon, ref)
        for canon, ref in mapping.items()
    }
    _add_default_positions(positions, names, n_fields)
    if names is not None:
        _refuse_twins(where, names, positions, mapping)
    _require_ids(where, names, n_fields, positions)
    if names is not None and "title" not in positions:
        _add_title_position(positions, names)
    if names is not None and "count" not in positions and "rating" not in positions:
        _add_count_position(positions, names)
    if names is not None and "event" not in positions:
        hit = _first_free(names, set(positions.values()), names_events)
        if hit is not None:  # whether it holds kinds is judged once read (_settle_events)
            positions["event"] = hit
    return positions, _shown_names(names, positions)


def _add_title_position(positions: dict[str, int], names: list[str]) -> None:
    """The first unmapped column named like the items' titles (:func:`names_title_column`) as
    ``positions["title"]``; whether it holds titles is judged once it is read
    (:func:`_attach_titles`)."""
    item = names[positions["item_id"]]
    hit = _first_free(names, set(positions.values()), lambda n: names_title_column(n, item))
    if hit is not None:
        positions["title"] = hit


def names_counts(column: object) -> bool:
    """Whether a header name says the column holds per-row counts (:data:`COUNT_ALIASES`:
    ``plays``, ``play_count``, ``views``, ``qty``...; case, separators and a bracketed note
    ignored). A position (a file without a header) never does."""
    return isinstance(column, str) and _norm(column) in _COUNT_NAMES


def names_events(column: object) -> bool:
    """Whether a header name says the column holds event kinds (:data:`EVENT_ALIASES`:
    ``event``, ``event_type``, ``action``, ``behavior``...; case, separators and a bracketed
    note ignored). A position (a file without a header) never does."""
    return isinstance(column, str) and _norm(column) in _EVENT_NAMES


def _add_count_position(positions: dict[str, int], names: list[str]) -> None:
    """The first unmapped column named like counts (:func:`names_counts`) as
    ``positions["count"]`` (only while no rating column is mapped); whether it holds counts is
    judged once it is read (:func:`_settle_counts`)."""
    hit = _first_free(names, set(positions.values()), names_counts)
    if hit is not None:
        positions["count"] = hit


def _note_counts(
    raw: _Raw, names: list[str] | None, positions: dict[str, int], columns: Mapping[str, Any] | None
) -> None:
    """Record on ``raw`` whether its count and event columns were found by their names, and
    which unmapped columns are named like counts but left unread (a rating column is mapped)."""
    raw.count_auto = "count" in positions and "count" not in (columns or {})
    raw.event_auto = "event" in positions and "event" not in (columns or {})
    used = set(positions.values())
    raw.count_like = [n for i, n in enumerate(names or []) if i not in used and names_counts(n)]


def _title_found(positions: dict[str, int], columns: Mapping[str, str | int] | None) -> bool:
    """Whether the title column was found by its name (:func:`_add_title_position`)."""
    return "title" in positions and "title" not in (columns or {})


def _mapped_position(
    where: str, names: list[str] | None, n_fields: int, canon: str, ref: str | int
) -> int:
    """The field position of one explicit mapping ``columns[canon] = ref``."""
    if isinstance(ref, int):
        if not 0 <= ref < n_fields:
            raise DataError(
                f"{where}: columns[{canon!r}] = {ref} is out of range; the file has "
                f"{n_fields} columns (positions 0..{n_fields - 1})"
            )
        return ref
    if names is None:
        raise DataError(
            f"{where}: the file has no header row (its first line holds numbers), so "
            f"{COLUMN_FLAGS[canon]} {ref} cannot be found; map by 0-based position "
            f"({COLUMN_FLAGS[canon]} 0) or add a header line"
        )
    hits = [i for i, n in enumerate(names) if n == ref]
    if not hits:
        hits = [i for i, n in enumerate(names) if _norm(n) == _norm(ref)]
    if not hits:
        raise DataError(
            f"{where}: missing column {ref!r} for {canon}; the file has columns: "
            f"{', '.join(names)}; fix {COLUMN_FLAGS[canon]} (columns[{canon!r}])"
        )
    return hits[0]


def _add_default_positions(
    positions: dict[str, int], names: list[str] | None, n_fields: int
) -> None:
    """Fill the unmapped canonical columns: by alias (header) or by position 0..3 (no header)."""
    taken = set(positions.values())
    for canon in CANONICAL_COLUMNS:
        if canon in positions:
            continue
        if names is not None:
            hit = _alias_hit(names, canon, taken)
        else:
            default = CANONICAL_COLUMNS.index(canon)
            hit = default if default < n_fields and default not in taken else None
        if hit is not None:
            positions[canon] = hit
            taken.add(hit)


def _alias_hit(names: list[str], canon: str, taken: set[int]) -> int | None:
    """The free column named by ``canon``'s earliest alias in :data:`COLUMN_ALIASES` (so a file
    with ``session_id`` before ``user_id`` takes ``user_id`` as its users), or None."""
    for alias in COLUMN_ALIASES[canon]:
        key = _norm(alias)
        hit = _first_free(names, taken, lambda n: _norm(n) == key)  # noqa: B023 (called now)
        if hit is not None:
            return hit
    return None


def _first_free(names: list[str], taken: set[int], wanted: Callable[[str], bool]) -> int | None:
    """The first column not in ``taken`` whose header name is ``wanted``, or None."""
    return next((i for i, n in enumerate(names) if i not in taken and wanted(n)), None)


def _refuse_twins(
    where: str, names: list[str], positions: dict[str, int], mapping: Mapping[str, str | int]
) -> None:
    """A column chosen by name must not appear twice (after normalisation) in the header."""
    normed = [_norm(n) for n in names]
    for canon, pos in positions.items():
        twins = [i for i, n in enumerate(normed) if n == normed[pos] and i != pos]
        if twins and not isinstance(mapping.get(canon), int):
            raise DataError(
                f"{where}: column {names[pos]!r} appears twice (fields {pos + 1} and "
                f"{twins[0] + 1}), so {canon} is ambiguous; rename one or pass "
                f"columns={{'{canon}': <0-based position>}}"
            )


def _require_ids(
    where: str, names: list[str] | None, n_fields: int, positions: dict[str, int]
) -> None:
    """Both id columns must be mapped; one error names every one that is not."""
    missing = [c for c in ("user_id", "item_id") if c not in positions]
    if not missing:
        return
    found = ", ".join(names) if names is not None else f"{n_fields} unnamed columns"
    looked = "; ".join(f"{c}: {', '.join(COLUMN_ALIASES[c][:5])}, ..." for c in missing)
    flags = " ".join(f"{COLUMN_FLAGS[c]} <column>" for c in missing)
    mapping = ", ".join(f"'{c}': '<your column>'" for c in missing)
    what = " and ".join(repr(c) for c in missing)
    raise DataError(
        f"{where}: missing column{'s' if len(missing) > 1 else ''} {what} (looked for "
        f"{looked}; the file has: {found}); pass {flags} (columns={{{mapping}}})"
    )


def _shown_names(names: list[str] | None, positions: dict[str, int]) -> dict[str, str]:
    """How messages call each mapped column: ``column 'userId' (user_id)``, ``column 0 (...)``."""
    shown = {}
    for canon, pos in positions.items():
        if names is None:
            shown[canon] = f"column {pos} ({canon})"
        elif names[pos] == canon:
            shown[canon] = f"column {canon!r}"
        else:
            shown[canon] = f"column {names[pos]!r} ({canon})"
    return shown


# ---------------------------------------------------------------------------------------------
# text files
# ---------------------------------------------------------------------------------------------
_COMPRESSIONS: dict[bytes, str] = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
}
_CORRUPT = (EOFError, zlib.error, OSError, lzma.LZMAError)


def _read_text(
    p: Path,
    label: str,
    magic: bytes,
    sep: str | None,
    columns: Mapping[str, str | int] | None,
    header: bool | None,
    encoding: str | None,
    max_bytes: int | None = None,
) -> _Raw:
    compression = next((c for m, c in _COMPRESSIONS.items() if magic.startswith(m)), None)
    if p.suffix.lower() in _WORKBOOKS or magic.startswith(b"\xd0\xcf\x11\xe0"):
        raise DataError(
            f"{label}: is a spreadsheet workbook, not a text file; save the sheet as CSV "
            "(File > Save As > CSV) or load it with pandas.read_excel and pass the DataFrame"
        )
    if magic.startswith(b"PK\x03\x04"):
        raise DataError(
            f"{label}: is a zip archive; extract the ratings file first "
            "(for MovieLens releases use recforge.data.load_movielens)"
        )
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        raise DataError(f"{label}: is zstd-compressed; decompress it or convert it to gzip")
    # One open handle for the sample and the parse, capped and blank-line free (_stream.py).
    cap = max_input_bytes(max_bytes, p.stat().st_size)
    with TextSource(p, label, compression, cap) as src:
        raw = _read_text_source(src, label, sep, columns, header, encoding)
        src.check_unchanged()
    return raw


def _read_text_source(
    src: TextSource,
    label: str,
    sep: str | None,
    columns: Mapping[str, str | int] | None,
    header: bool | None,
    encoding: str | None,
) -> _Raw:
    lines, enc, complete = _sample_lines(src, label, encoding)
    nonblank = _nonblank_lines(label, lines)
    first_line = nonblank[0][0]
    probe = [ln for _, ln in nonblank[:50]]
    sep = _choose_sep(label, sep, probe, [n for n, _ in nonblank[:50]], first_line)
    rows = [_split(ln, sep) for ln in probe[:2]]
    has_header = _has_header(label, header, columns, rows, first_line)
    names = [_clean_name(n) for n in rows[0]] if has_header else None
    n_fields = len(names) if names is not None else len(rows[0])
    _check_sample_widths(label, nonblank[1:50], sep, n_fields, first_line)
    positions, shown = _resolve_columns(label, names, n_fields, columns, first_line)
    data_line = first_line + (1 if has_header else 0)
    if has_header and complete and len(nonblank) == 1:
        raise _header_only(label, first_line)
    cols = _parse(src, label, sep, positions, n_fields, data_line - 1, enc, src.compression)
    n_rows = len(next(iter(cols.values())))
    if has_header and n_rows == 0:
        raise _header_only(label, first_line)
    if n_rows == 0:
        raise DataError(f"{label}: file is empty; expected a header and/or rating rows")
    header_names = {c: names[pos] for c, pos in positions.items()} if names is not None else {}
    time_like, rating_like = _text_hints(names, positions, rows) if names is not None else ({}, {})
    raw = _Raw(label, cols, shown, data_line, header_names, time_like, rating_like)
    raw.mapped = header_names or {c: f"column {pos}" for c, pos in positions.items()}
    raw.title_auto = _title_found(positions, columns)
    _note_counts(raw, names, positions, columns)
    return raw


def _sample_lines(src: TextSource, label: str, encoding: str | None) -> tuple[list[str], str, bool]:
    """The decoded lines of the first 64 KiB, the encoding, and whether that is the whole file.

    A cut sample loses its last (maybe partial) line; binary content and bad bytes are refused.
    """
    sample, complete = _read_sample(src, label, src.compression)
    if not sample.strip():
        raise DataError(f"{label}: file is empty; expected a header and/or rating rows")
    enc = encoding or _encoding_from_bom(sample)
    if encoding is None and not enc.startswith("utf-16"):
        _refuse_binary(label, sample)
    text = _decode_sample(label, sample, enc, complete, explicit=encoding is not None)
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines()
    if not complete and lines:
        lines = lines[:-1]  # the last line of a cut sample may be partial
        if not any(ln.strip() for ln in lines):
            raise DataError(
                f"{label}: no line break in the first {_SAMPLE_BYTES // 1024} KiB; this is not a "
                "ratings file (one event per line), or its line endings are broken"
            )
    return lines, enc, complete


def _nonblank_lines(label: str, lines: list[str]) -> list[tuple[int, str]]:
    """``(1-based line number, line)`` of the non-blank sample lines; markup is refused."""
    nonblank = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    if not nonblank:
        raise DataError(f"{label}: file is empty; expected a header and/or rating rows")
    first_line, first = nonblank[0]
    if first.lstrip().lower().startswith(_MARKUP):
        raise DataError(
            f"{label}, line {first_line}: looks like an HTML, XML or JSON document, not a ratings "
            "table (a failed download or an error page?); give the CSV/TSV/.dat/Parquet file"
        )
    return nonblank


def _choose_sep(
    label: str, sep: str | None, probe: list[str], line_nos: list[int], first_line: int
) -> str:
    """The given separator (normalised) or a sniffed one; either must give >= 2 fields."""
    sep = _normalise_sep(sep) if sep is not None else _sniff_sep(label, probe, line_nos)
    width = max(len(_split(ln, sep)) for ln in probe)
    if width < 2:
        guess = _sniff_sep(None, probe)
        hint = (
            f"is the delimiter {_sep_name(guess)}? (pass sep={guess!r}, or sep=None to detect it)"
            if guess is not None and guess != sep
            else "expected at least user and item columns; pass sep= with the file's delimiter"
        )
        raise DataError(f"{label}, line {first_line}: only 1 column found with sep={sep!r}; {hint}")
    return sep


def _has_header(
    label: str,
    header: bool | None,
    columns: Mapping[str, str | int] | None,
    rows: list[list[str]],
    first_line: int,
) -> bool:
    """``header`` if given; else a mapping by name implies one, else it is detected."""
    named = sorted({v for v in (columns or {}).values() if isinstance(v, str)})
    if header is None and named:
        # A mapping by name needs a header; a first row with numbers cannot be one.
        first = [_clean_name(f) for f in rows[0]]
        if any(_is_number(f) for f in first) and not any(f in named for f in first):
            raise DataError(
                f"{label}, line {first_line}: columns are mapped by name ({', '.join(named)}) "
                "but the first line holds numbers, so the file has no header row; map by 0-based "
                "position (--user-col 0 --item-col 1 ...) or add a header line"
            )
        return True
    return _detect_header(rows) if header is None else header


def _check_sample_widths(
    label: str, lines: list[tuple[int, str]], sep: str, n_fields: int, first_line: int
) -> None:
    """No sample line may have more fields than the first (a separator inside a value)."""
    for line_no, line in lines:
        if len(_split(line, sep)) > n_fields:
            raise DataError(
                f"{label}, line {line_no}: {len(_split(line, sep))} fields where line "
                f"{first_line} has {n_fields}; fix the line or quote values containing the "
                "separator"
            )


def _header_only(label: str, first_line: int) -> DataError:
    return DataError(
        f"{label}: has a header (line {first_line}) but no data rows; "
        "add rating rows or check that the right file was given"
    )


def _unmapped_hints(
    names: list[str],
    positions: dict[str, int],
    time_evidence: Callable[[int], str | None],
    number_evidence: Callable[[int], str | None],
) -> tuple[dict[str, str], dict[str, str]]:
    """``(time_like, rating_like)``: the unmapped columns that look like a time (by the
    reader's ``time_evidence`` for column ``i``, a date-like value or type, else the name) and
    those named like ratings that hold numbers (``number_evidence``), each name -> why. Only
    while no time (no rating) column is mapped."""
    time_like: dict[str, str] = {}
    rating_like: dict[str, str] = {}
    used = set(positions.values())
    for i, name in enumerate(names):
        if i in used:
            continue
        if "timestamp" not in positions:
            why = time_evidence(i) or ("its name" if _TIME_NAME.search(name) else None)
            if why is not None:
                time_like[name] = why
        if "rating" not in positions and _RATING_NAME.search(name):
            number = number_evidence(i)
            if number is not None:
                rating_like[name] = f"its name and {number}"
    return time_like, rating_like


def _text_hints(
    names: list[str], positions: dict[str, int], rows: list[list[str]]
) -> tuple[dict[str, str], dict[str, str]]:
    """:func:`_unmapped_hints` of a text file, from its first data row."""
    second_row = rows[1] if len(rows) > 1 else []

    def value(i: int) -> str:
        return _clean_name(second_row[i]) if i < len(second_row) else ""

    return _unmapped_hints(
        names,
        positions,
        lambda i: f"values like {value(i)!r}" if _ISO_VALUE.match(value(i)) else None,
        lambda i: f"values like {value(i)!r}" if _is_number(value(i).replace(",", ".")) else None,
    )


def _read_sample(src: TextSource, label: str, compression: str | None) -> tuple[bytes, bool]:
    """First 64 KiB of (decompressed) content and whether that is the whole file."""
    try:
        return src.sample(_SAMPLE_BYTES)
    except _CORRUPT as exc:
        raise _corrupt_error(label, compression, exc) from None


def _corrupt_error(label: str, compression: str | None, exc: BaseException) -> DataError:
    kind = compression or "compressed"
    return DataError(
        f"{label}: {kind} stream is truncated or corrupt ({type(exc).__name__}: {exc}); "
        "re-download or re-create the file"
    )


def _encoding_from_bom(sample: bytes) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8"


def _refuse_binary(label: str, sample: bytes) -> None:
    arr = np.frombuffer(sample, dtype=np.uint8)
    control = (arr < 32) & (arr != 9) & (arr != 10) & (arr != 13)
    if (arr == 0).any() or control.mean() > 0.01:
        offset = int(np.flatnonzero(control)[0])
        raise DataError(
            f"{label}: does not look like a text ratings file (binary byte 0x{arr[offset]:02x} "
            f"at offset {offset}); expected CSV, TSV, .dat, Parquet or gzip-compressed text"
        )


def _decode_sample(label: str, sample: bytes, enc: str, complete: bool, *, explicit: bool) -> str:
    try:
        decoder = codecs.getincrementaldecoder(enc)(errors="strict")
    except LookupError:
        raise ConfigError(f"unknown encoding {enc!r}; use e.g. 'utf-8' or 'latin-1'") from None
    try:
        return str(decoder.decode(sample, final=complete))
    except UnicodeDecodeError as exc:
        raise _encoding_error(label, sample, exc, enc, explicit=explicit) from None


def _encoding_error(
    label: str, raw: bytes, exc: UnicodeDecodeError, enc: str, *, explicit: bool
) -> DataError:
    line = raw.count(b"\n", 0, exc.start) + 1
    bad = raw[exc.start : exc.start + 1]
    name = "UTF-8" if enc.replace("-", "").lower().startswith("utf8") else enc
    fix = (
        "pass the file's real encoding"
        if explicit
        else "pass encoding='latin-1' (or the file's real encoding), or re-save it as UTF-8"
    )
    # The separator is not known yet; the first common one present in the line counts fields.
    start = raw.rfind(b"\n", 0, exc.start) + 1
    end = raw.find(b"\n", exc.start)
    text_line = raw[start : end if end >= 0 else len(raw)]
    sep = next((c for c in (b"\t", b",", b";", b"|") if c in text_line), None)
    where = f", field {raw.count(sep, start, exc.start) + 1}" if sep is not None else ""
    return DataError(f"{label}, line {line}{where}: byte 0x{bad.hex()} is not valid {name}; {fix}")


def _normalise_sep(sep: str) -> str:
    if sep == "" or (sep.strip() == "" and sep != "\t") or sep in (r"\s+", r"\s"):
        return _WHITESPACE
    return sep


def _sep_name(sep: str | None) -> str:
    if sep == _WHITESPACE:
        return "whitespace"
    return repr(sep)


def _split(line: str, sep: str) -> list[str]:
    if sep == _WHITESPACE:
        return line.split()
    if len(sep) == 1:
        return next(csv.reader([line], delimiter=sep, skipinitialspace=True))
    return line.split(sep)


def _sniff_sep(label: str | None, lines: list[str], line_nos: list[int] | None = None) -> str:
    """The separator that splits every sample line into the same number (>= 2) of fields."""
    if all("::" in ln for ln in lines):
        return "::"
    loose: str | None = None
    for cand in _SNIFF_ORDER:
        counts = {len(_split(ln, cand)) for ln in lines}
        if min(counts) >= 2:
            if len(counts) == 1:
                return cand
            loose = loose or cand
    if loose is not None:
        return loose
    if all(len(ln.split()) >= 2 for ln in lines):
        return _WHITESPACE
    if label is None:
        return ""  # used only to build a hint
    for cand in _SNIFF_ORDER:
        # The first line splits but a later one does not: the file mixes delimiters.
        width = len(_split(lines[0], cand))
        if width >= 2 and line_nos is not None:
            bad = next(i for i, ln in enumerate(lines) if len(_split(ln, cand)) < 2)
            raise DataError(
                f"{label}, line {line_nos[bad]}: 1 field with sep={cand!r} where line "
                f"{line_nos[0]} has {width} (mixed delimiters?); use one delimiter throughout"
            )
    raise DataError(
        f"{label}: only 1 column found; separate user and item columns by ',', tab, '::', ';', "
        "'|' or spaces (or pass sep=)"
    )


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _clean_name(name: str) -> str:
    return name.strip().strip('"').strip()


def _detect_header(rows: list[list[str]]) -> bool:
    """A header names a known column, or is all text where the next row has a number or a date
    or looks different.

    A first row holding any number is data (``u1,i9,4``: string ids with a rating).
    """
    first = [_clean_name(f) for f in rows[0]]
    if any(_norm(f) in _ALL_ALIASES for f in first):
        return True
    if any(_is_number(f) for f in first):
        return False
    if len(rows) < 2:
        return True
    # Text over numbers or dates: ``customer,product,clicked_at`` over ``c1,p9,2024-05-01T10:00``.
    second = [_clean_name(b) for b in rows[1]]
    if any(_is_number(b) or _ISO_VALUE.match(b) is not None for b in second):
        return True
    # All text in both rows: a header unless the rows look alike (``u1,i9`` over ``u2,i7`` is
    # data; ``customer,product`` over ``c1,p9`` is a header).
    return [_shape(f) for f in first] != [_shape(b) for b in second]


def _shape(text: str) -> str:
    """Coarse form of a value: runs of digits -> 9, runs of letters -> a (``u17x`` -> ``a9a``)."""
    return re.sub(r"[^\W\d_]+", "a", re.sub(r"\d+", "9", text))


def _out_of_memory(label: str) -> DataError:
    # Not "check sep= and quoting": the rows are fine, there are just more than fit.
    return DataError(
        f"{label}: ran out of memory while parsing; the file holds more rows than this process "
        "can hold (blank lines cost nothing): use a machine with more memory or a smaller file"
    )


def _parse(
    src: TextSource,
    label: str,
    sep: str,
    positions: dict[str, int],
    n_fields: int,
    skiprows: int,
    enc: str,
    compression: str | None,
) -> dict[str, pd.Series]:
    """Parse with the C engine; blank lines dropped, index = row number.

    Every field is parsed (no ``usecols``) so that a line with more fields than the first one is
    an error rather than silently cut: extra fields mean a separator inside a value.
    """
    text = [pos for canon, pos in positions.items() if canon in _TEXT_COLUMNS]
    reader = _CsvReader(src, skiprows, enc, _csv_options(sep, n_fields, enc, text))
    df = _read_or_explain(reader, label, sep, compression)
    if df is None:  # nothing after the header/skipped lines
        return {c: pd.Series([], dtype=float) for c in positions}
    _reread_float_ids(reader, df, positions, sep)
    if sep == "::":
        df = _drop_colon_gaps(label, df, skiprows)
    blank = df.isna().all(axis=1).to_numpy()
    if blank.any():
        df = df[~blank]
    return {canon: df[pos] for canon, pos in positions.items()}


#: Canonical columns of text a user typed (ids, titles, event kinds): only an empty cell is
#: missing there, so an id spelled like one of pandas' missing-value words (``NA``, ``null``,
#: ``None``, ``n/a``...) stays that id. The other columns keep pandas' default words, so a
#: rating or time of ``NA`` is still a missing cell, named with its line.
_TEXT_COLUMNS = ("user_id", "item_id", "title", "event")


#: pandas' default missing-value words (``pandas._libs.parsers.STR_NA_VALUES``, private and
#: untyped, so copied; a test checks the copy against pandas).
_NA_WORDS = (
    *("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND"),
    *("1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"),
)


def _na_values(names: list[int], text: Collection[int]) -> dict[int, list[str]]:
    """Per parsed column, the cell texts read as missing: only ``""`` in the ``text`` fields,
    pandas' defaults elsewhere (unmapped and ``::`` gap columns included, so blank rows and
    gap checks still see NaN)."""
    return {c: [""] if c in text else list(_NA_WORDS) for c in names}


def _csv_options(sep: str, n_fields: int, enc: str, text: Collection[int] = ()) -> dict[str, Any]:
    """``pandas.read_csv`` options for a file of ``n_fields`` fields split by ``sep``; ``text``
    are the fields (0-based) of :data:`_TEXT_COLUMNS`, whose cells are kept as written."""
    names = list(range(2 * n_fields - 1 if sep == "::" else n_fields))
    parsed = {2 * f if sep == "::" else f for f in text}  # field k of "a::b" is field 2k on ":"
    kwargs: dict[str, Any] = {
        "header": None,
        "names": names,
        "keep_default_na": False,
        "na_values": _na_values(names, parsed),
        "index_col": False,
        "skip_blank_lines": False,
        "engine": "c",
        "encoding": enc,
        "encoding_errors": "strict",
        "low_memory": False,
    }
    if sep == "::":
        # Field k of "a::b::c" is field 2k of "a:b:c"; the odd fields between must stay empty.
        kwargs.update(sep=":", quoting=csv.QUOTE_NONE)
    elif sep == _WHITESPACE:
        kwargs.update(sep=_WHITESPACE)
    elif len(sep) == 1:
        kwargs.update(sep=sep, skipinitialspace=True)
    else:  # other multi-character separators need the (slower) Python engine
        kwargs.update(sep=re.escape(sep), engine="python")
        kwargs.pop("low_memory")
    return kwargs


@dataclass
class _CsvReader:
    """One ``read_csv`` over the data lines of a :class:`TextSource`, re-runnable."""

    src: TextSource
    skiprows: int  # file lines before the data (header, leading blank lines)
    enc: str
    kwargs: dict[str, Any]

    def read(self, **extra: Any) -> pd.DataFrame:
        # The stream skips the lines before the data and drops blank ones itself (UTF-16 text
        # aside); the index is then set back to line offsets, so errors name file lines.
        src = self.src
        stream = src.stream(self.skiprows, self.enc)
        frame = pd.read_csv(
            cast(Any, stream), **self.kwargs, skiprows=0 if src.filtered else self.skiprows, **extra
        )
        frame.index = pd.Index(src.row_numbers(len(frame)))
        checked: pd.DataFrame = frame
        return checked

    def file_line(self, n: int) -> int:
        """File line of pandas' 1-based line ``n`` of what it parsed."""
        return self.skiprows + 1 + self.src.stream_line(n) if self.src.filtered else n


def _read_or_explain(
    reader: _CsvReader, label: str, sep: str, compression: str | None
) -> pd.DataFrame | None:
    """The parsed frame (None when there is no data), every failure as a one-line DataError."""
    try:
        return reader.read()
    except DataError:
        raise
    except MemoryError:
        raise _out_of_memory(label) from None
    except UnicodeDecodeError:
        raw = reader.src.read_all()
        try:
            raw.decode(reader.enc)
        except UnicodeDecodeError as exc:
            raise _encoding_error(label, raw, exc, reader.enc, explicit=False) from None
        raise
    except pd.errors.EmptyDataError:
        return None
    except pd.errors.ParserError as exc:
        raise _parser_error(label, exc, sep, reader.file_line) from None
    except ValueError as exc:  # usecols beyond a short file
        raise DataError(f"{label}: cannot be parsed ({exc}); check sep= and columns=") from None
    except _CORRUPT as exc:
        raise _corrupt_error(label, compression, exc) from None


# pandas' ParserError carries only its message: the line numbers of the C tokenizer exist nowhere
# else, and finding them again would mean re-tokenising the file with pandas' quoting rules. So
# the message is read here, in one place; an unrecognised one still gives a one-line error.
_EOF_IN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")
_SAW_FIELDS = re.compile(r"line (\d+), saw (\d+)")
_EXPECTED_FIELDS = re.compile(r"Expected (\d+) fields")


def _parser_error(
    label: str, exc: pd.errors.ParserError, sep: str, file_line: Callable[[int], int]
) -> DataError:
    """The one-line DataError for a pandas ParserError, naming the file line when pandas does."""
    text = str(exc)
    if "out of memory" in text:  # the C tokenizer's own allocation failure
        return _out_of_memory(label)
    quote = _EOF_IN_QUOTE.search(text)
    if quote:
        # pandas counts rows from 0 over every line of the file, skipped ones included.
        return DataError(
            f"{label}, line {file_line(int(quote.group(1)) + 1)}: unbalanced quote: a '\"' "
            "opened on this line is never closed; close or remove it"
        )
    found = _SAW_FIELDS.search(text)
    expected = _EXPECTED_FIELDS.search(text)
    if found and sep == "::":
        return DataError(
            f"{label}, line {file_line(int(found.group(1)))}: a value contains ':' inside a "
            "'::' file; remove it or convert the file to CSV"
        )
    if found and expected:
        return DataError(
            f"{label}, line {file_line(int(found.group(1)))}: {found.group(2)} fields where "
            f"earlier lines have {expected.group(1)}; fix the line or quote values containing "
            "the separator"
        )
    return DataError(f"{label}: cannot be parsed ({exc}); check sep= and quoting")


def _reread_float_ids(
    reader: _CsvReader, df: pd.DataFrame, positions: dict[str, int], sep: str
) -> None:
    """Id columns parsed as floats ("12.0", "1.23E+11", an id beyond int64) are re-read as text,
    so _ids can tell exact integral ids from rounded ones. Clean files never take this path."""
    id_cols = [positions[c] * (2 if sep == "::" else 1) for c in ("user_id", "item_id")]
    floaty = [c for c in id_cols if c in df.columns and df[c].dtype.kind == "f"]
    if floaty:
        # All columns again (usecols trips over short rows), only these as text.
        text = reader.read(dtype=dict.fromkeys(floaty, str))
        for c in floaty:
            df[c] = text[c]


def _drop_colon_gaps(label: str, df: pd.DataFrame, skiprows: int) -> pd.DataFrame:
    """A ``::`` file parsed on ``:``: the odd fields must be empty; keep the even ones."""
    gap_cols = [c for c in df.columns if int(c) % 2 == 1]
    bad = df[gap_cols].notna().any(axis=1).to_numpy() if gap_cols else np.zeros(0, bool)
    if bad.any():
        row = int(df.index[np.flatnonzero(bad)[0]])
        raise DataError(
            f"{label}, line {skiprows + 1 + row}: a value contains ':' inside a '::' file; "
            "remove it or convert the file to CSV"
        )
    df = df.drop(columns=gap_cols)
    df.columns = [int(c) // 2 for c in df.columns]
    return df


# ---------------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------------
def _read_parquet(p: Path, label: str, columns: Mapping[str, str | int] | None) -> _Raw:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    try:
        pf = pq.ParquetFile(p)
        names = list(pf.schema_arrow.names)
        positions, shown = _resolve_columns(label, names, len(names), columns, 0)
        for role in ("title", "count", "event"):  # lists named like these are none of them
            found = role in positions and role not in (columns or {})
            if found and pa.types.is_nested(pf.schema_arrow.field(names[positions[role]]).type):
                del positions[role]
        table = pf.read(columns=[names[i] for i in sorted(set(positions.values()))])
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"{label}: not a readable Parquet file ({exc}); re-export it or check the path"
        ) from None
    if table.num_rows == 0:
        raise DataError(f"{label}: Parquet file has columns but no rows")
    for canon, pos in positions.items():
        kind = table.schema.field(names[pos]).type
        if pa.types.is_nested(kind):  # lists/structs would become ids like "[1 2]"
            raise DataError(
                f"{label}, row 1, {shown[canon]}: holds {kind} values, not scalars; "
                "flatten the column (one user, item and rating per row)"
            )
    cols = {canon: table.column(names[pos]).to_pandas() for canon, pos in positions.items()}
    kinds = [pf.schema_arrow.field(name).type for name in names]
    time_like, rating_like = _unmapped_hints(
        names,
        positions,
        lambda i: (
            f"its type {kinds[i]}"
            if pa.types.is_timestamp(kinds[i]) or pa.types.is_date(kinds[i])
            else None
        ),
        lambda i: (
            f"its type {kinds[i]}"
            if pa.types.is_integer(kinds[i]) or pa.types.is_floating(kinds[i])
            else None
        ),
    )
    raw = _Raw(label, cols, shown, 0, {}, time_like, rating_like)
    raw.mapped = {c: names[pos] for c, pos in positions.items()}
    raw.title_auto = _title_found(positions, columns)
    _note_counts(raw, names, positions, columns)
    return raw


# ---------------------------------------------------------------------------------------------
# validation and canonical dtypes
# ---------------------------------------------------------------------------------------------
class _BadCells(DataError):
    """A DataError about the cells of one column that also keeps its facts apart from the
    message: ``problem`` is the first bad value and what is wrong with it (``'lots' is not a
    number (2 more rows like it)``), for a caller that judges a column found by its name
    rather than reporting it (:func:`_settle_counts`), so nothing parses message text."""

    def __init__(self, message: str, problem: str = "") -> None:
        # ``problem`` has a default so the error unpickles from its message alone.
        super().__init__(message)
        self.problem = problem


def _bad_cells(where: str, problem: str, fix: str) -> _BadCells:
    """``<where>: <problem>; <fix>`` (the fix left out when empty), with ``problem`` kept."""
    return _BadCells(f"{where}: {problem}" + (f"; {fix}" if fix else ""), problem)


def _first(mask: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """Position of the first True and how many there are."""
    hits = np.flatnonzero(mask)
    return int(hits[0]), len(hits)


def _more(n: int) -> str:
    return f" ({n - 1} more rows like it)" if n > 1 else ""


def _check_missing(raw: _Raw, canon: str, col: pd.Series) -> None:
    """Refuse missing cells of a column that needs a value in every row."""
    mask = col.isna().to_numpy()
    if col.dtype.kind in "OUT" or isinstance(col.dtype, pd.StringDtype):
        mask = mask | (col.astype(str).str.strip() == "").to_numpy()
    if mask.any():
        pos, n = _first(mask)
        # A text file's text columns keep NA, null... as written (_na_values): only an empty
        # cell is missing there; elsewhere pandas' words (or a Parquet/DataFrame null) are too.
        empty = raw.first_line and canon in _TEXT_COLUMNS
        raise _bad_cells(
            raw.where(col.index[pos], canon),
            f"{'empty' if empty else 'empty or NaN'} cell{_more(n)}",
            "fill it in or drop the row",
        )


def _ids(raw: _Raw, canon: str) -> pd.Series:
    col = raw.columns[canon]
    _check_missing(raw, canon, col)
    values = col.to_numpy()
    if values.dtype.kind == "u" and len(values):
        _refuse_rows(raw, canon, col, values > np.iinfo(np.int64).max, _TOO_BIG)
    if values.dtype.kind in "iu":
        ints = values.astype(np.int64, copy=False)
        _refuse_rows(raw, canon, col, ints < 0, _NEGATIVE)
        return pd.Series(ints)
    if values.dtype.kind == "f":  # Parquet floats; text files re-read float ids as text
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)):
            _refuse_rows(raw, canon, col, np.abs(values) >= 2.0**63, _TOO_BIG)
            _refuse_rows(raw, canon, col, values < 0, _NEGATIVE)
            return pd.Series(values.astype(np.int64))
        return pd.Series(col.astype(str).to_numpy(), dtype="str")
    if values.dtype.kind == "b":
        raise DataError(f"{raw.where(col.index[0], canon)}: ids are booleans; map the id column")
    text = col.astype(str).str.strip()
    header = raw.header.get(canon)
    if header is not None:
        _refuse_rows(
            raw,
            canon,
            col,
            (text == header).to_numpy(bool),
            "repeats the header row (were files concatenated?); remove the extra header line",
        )
    _refuse_rows(
        raw,
        canon,
        col,
        text.str.contains("\ufeff", regex=False).to_numpy(bool),
        "holds a byte-order mark (U+FEFF), so files were concatenated; re-save them as one "
        "UTF-8 file",
    )
    _refuse_rows(
        raw,
        canon,
        col,
        (text.str.len() > _MAX_ID_CHARS).to_numpy(bool),
        f"is an id longer than {_MAX_ID_CHARS} characters (an unbalanced quote or a missing "
        "line break?); fix the row",
    )
    if raw.first_line:  # text files: numbers that pandas could not hold as int64
        ints_or_none = _integer_ids(raw, canon, col, text)
        if ints_or_none is not None:
            return ints_or_none
    return pd.Series(text.to_numpy(), dtype="str")


_TOO_BIG = "is beyond the int64 range of numeric ids; it would wrap or be rounded"
_NEGATIVE = "is a negative id; ids must be >= 0 (or strings)"


def _refuse_rows(
    raw: _Raw,
    canon: str,
    col: pd.Series,
    mask: npt.NDArray[np.bool_],
    problem: str,
    fix: str = "",
) -> None:
    """DataError at the first row where ``mask`` holds:
    ``<file>, line N, column: 'v' problem (n more rows like it); fix``."""
    if mask.any():
        pos, n = _first(mask)
        raise _bad_cells(
            raw.where(col.index[pos], canon), f"{_shown(col.iloc[pos])} {problem}{_more(n)}", fix
        )


def _integer_ids(raw: _Raw, canon: str, col: pd.Series, text: pd.Series) -> pd.Series | None:
    """int64 ids when every value is integral text ("12", "12.0"), else None (string ids).

    Refuses numeric ids that cannot be kept exactly: scientific notation, negative, beyond int64.
    """
    # String ids ("u1", hashes) are the common case here: a look at the head settles most files
    # without running the two regexes over every row.
    head = text.iloc[:1000]
    if not (head.str.fullmatch(_INT_TEXT) | head.str.fullmatch(_SCI_TEXT)).all():
        return None
    intlike = text.str.fullmatch(_INT_TEXT).to_numpy(bool)
    sci = text.str.fullmatch(_SCI_TEXT).to_numpy(bool)
    if not (intlike | sci).all():
        return None  # string ids: left exactly as written
    _refuse_rows(
        raw,
        canon,
        col,
        sci,
        "is an id in scientific notation, which rounds long ids (a "
        "spreadsheet export?); write ids out in full, e.g. export the column as text",
    )
    digits = text.str.replace(r"\.0*$", "", regex=True)
    magnitude = digits.str.lstrip("+-").str.lstrip("0")
    _refuse_rows(
        raw, canon, col, (digits.str.startswith("-") & (magnitude != "")).to_numpy(bool), _NEGATIVE
    )
    lengths = magnitude.str.len()
    too_big = (lengths > len(_INT64_MAX)) | (
        (lengths == len(_INT64_MAX)) & (magnitude > _INT64_MAX)
    )
    _refuse_rows(raw, canon, col, too_big.to_numpy(bool), _TOO_BIG)
    return pd.Series(digits.astype(np.int64).to_numpy())


#: A number written with a decimal comma, as European spreadsheets save it: ``4,5``, ``-0,25``.
_COMMA_DECIMAL = re.compile(r"^[+-]?\d+,\d+$")


def _comma_decimals(text: pd.Series) -> pd.Series:
    """``text`` with ',' read as the decimal mark when the column is written that way: some
    value has a comma, every such value is ``digits,digits`` and no value has a '.' (so a
    thousands separator beside decimal points is never misread); otherwise ``text`` as is."""
    has_comma = text.str.contains(",", regex=False)
    if not has_comma.any() or text.str.contains(".", regex=False).any():
        return text
    if not text[has_comma].str.match(_COMMA_DECIMAL).all():
        return text
    return text.str.replace(",", ".", regex=False)


def _numeric(
    raw: _Raw, canon: str, what: str, *, comma_decimals: bool = False
) -> npt.NDArray[np.float64]:
    col = raw.columns[canon]
    _check_missing(raw, canon, col)
    if col.dtype.kind in "iufb":
        values = col.to_numpy(dtype=np.float64)
    else:
        text = col.astype(str).str.strip()
        coerced = pd.to_numeric(_comma_decimals(text) if comma_decimals else text, errors="coerce")
        bad = coerced.isna().to_numpy()
        if bad.any():
            pos, n = _first(bad)
            raise _bad_cells(
                raw.where(col.index[pos], canon),
                f"{_shown(col.iloc[pos])} is not a number{_more(n)}",
                what,
            )
        values = coerced.to_numpy(dtype=np.float64)
    nonfinite = ~np.isfinite(values)
    if nonfinite.any():
        pos, n = _first(nonfinite)
        raise _bad_cells(
            raw.where(col.index[pos], canon),
            f"{_shown(col.iloc[pos])} is not a finite number{_more(n)}",
            what,
        )
    return values


_UNIT_DIVISOR = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_TIME_FIX = "fix it, drop the time column, or pass --time-format (s, ms, iso or a %-pattern)"


def _epoch_unit(values: npt.NDArray[np.float64]) -> str:
    """Epoch unit of numeric times by magnitude: seconds reach 1e11 only in the year 5138."""
    top = float(np.max(np.abs(values))) if len(values) else 0.0
    if top >= 1e17:
        return "ns"
    if top >= 1e14:
        return "us"
    if top >= 1e11:
        return "ms"
    return "s"


def _from_epoch(values: npt.NDArray[np.float64], unit: str) -> npt.NDArray[np.float64]:
    """Whole epoch seconds, still as floats: :func:`_refuse_out_of_range` checks them before
    the cast to int64, which would turn ``1e30`` into garbage instead of an error."""
    secs: npt.NDArray[np.float64] = np.floor(values / _UNIT_DIVISOR[unit])
    return secs


#: Times recforge can show as dates (Python's datetime, ISO-8601): years 1 to 9999, UTC.
_FIRST_SECOND = -62_135_596_800  # 0001-01-01T00:00:00Z
_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z


def _refuse_out_of_range(
    raw: _Raw, secs: npt.NDArray[np.float64] | npt.NDArray[np.int64], read_as: str
) -> None:
    """DataError at the first time before year 1 or after year 9999 (``1e25`` as epoch
    nanoseconds is the year 316889355): ``describe`` and the exports could not show it."""
    beyond = (secs < _FIRST_SECOND) | (secs > _LAST_SECOND)
    problem = f"is outside the years 1 to 9999 (read as {read_as})"
    _refuse_rows(raw, "timestamp", raw.columns["timestamp"], beyond, problem, _TIME_FIX)


#: Spreadsheet serial dates (Excel's and LibreOffice's default 1900 system) count days from
#: 1899-12-30, the time of day as the fraction; 1970-01-01 is day 25569.
_SERIAL_EPOCH_DAY = 25_569
_SERIAL_START = pd.Timestamp("1899-12-30")
_SERIAL_LAST = 2_958_465  # 9999-12-31, the last date a spreadsheet shows
#: Numeric times all in this range are spreadsheet dates from 1954 to 2119; read as epoch
#: seconds they would all fall within the first day of 1970, which no real log does.
_SERIAL_RANGE = (20_000.0, 80_000.0)


def _from_serial_days(raw: _Raw, values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Epoch seconds of spreadsheet serial dates (``--time-format excel``)."""
    beyond = np.abs(values) > _SERIAL_LAST
    problem, fix = (
        "is past 9999-12-31 as a spreadsheet serial date",
        "fix it or drop the time column",
    )
    _refuse_rows(raw, "timestamp", raw.columns["timestamp"], beyond, problem, fix)
    secs: npt.NDArray[np.int64] = np.round((values - _SERIAL_EPOCH_DAY) * 86_400).astype(np.int64)
    return secs


def _refuse_serial_dates(raw: _Raw, values: npt.NDArray[np.float64]) -> None:
    """Numeric times that are all spreadsheet serial dates (45292 is 2024-01-01) are refused
    under ``--time-format auto`` instead of being read as seconds after 1970-01-01 00:00."""
    lo, hi = _SERIAL_RANGE
    if not len(values) or values.min() < lo or values.max() > hi:
        return
    col = raw.columns["timestamp"]
    day = (_SERIAL_START + pd.Timedelta(days=float(values[0]))).strftime("%Y-%m-%d")
    raise DataError(
        f"{raw.where(col.index[0], 'timestamp')}: {values[0]:.10g} looks like a "
        f"spreadsheet serial date (days since 1899-12-30: {day}), as do all the column's times, "
        "which as epoch seconds would all fall on 1970-01-01; pass --time-format excel, or "
        "format the column as dates before saving the CSV (--time-format s if they are seconds)"
    )


def _timestamps(raw: _Raw, time_format: str) -> tuple[npt.NDArray[np.int64], str]:
    """Epoch seconds of the time column, and how they were read (``epoch-ms``, ``iso``...);
    a time outside the years 1 to 9999 is a DataError, however it was written."""
    secs, read_as = _read_times(raw, time_format)
    _refuse_out_of_range(raw, secs, read_as)
    return secs.astype(np.int64, copy=False), read_as


def _read_times(
    raw: _Raw, time_format: str
) -> tuple[npt.NDArray[np.float64] | npt.NDArray[np.int64], str]:
    """Epoch seconds of the time column (floats from epoch numbers), and how they were read."""
    col = raw.columns["timestamp"]
    _check_missing(raw, "timestamp", col)
    if isinstance(col.dtype, pd.DatetimeTZDtype) or col.dtype.kind == "M":
        return _epoch_seconds(pd.to_datetime(col, utc=True)), "datetime"
    numeric_kind = col.dtype.kind in "iuf"
    text = None if numeric_kind else col.astype(str).str.strip()
    is_text_time = text is not None and not _is_number(str(text.iloc[0]))
    numeric_format = time_format in _UNIT_DIVISOR or time_format == "excel"
    if numeric_format or (time_format == "auto" and not is_text_time):
        values = _numeric(raw, "timestamp", f"times must be epoch numbers or dates; {_TIME_FIX}")
        if time_format == "excel":
            return _from_serial_days(raw, values), "excel-days"
        if time_format == "auto":
            _refuse_serial_dates(raw, values)
        unit = _epoch_unit(values) if time_format == "auto" else time_format
        return _from_epoch(values, unit), f"epoch-{unit}"
    # Text times: ISO-8601 (auto/iso) or an explicit strftime pattern.
    source = text if text is not None else col.astype(str)
    read_as = time_format
    if time_format == "auto":
        parsed, read_as = _parse_text_times(raw, source)
    else:
        fmt = time_format if "%" in time_format else "ISO8601"
        parsed = pd.to_datetime(source, errors="coerce", utc=True, format=fmt)
    bad = parsed.isna().to_numpy()
    if bad.any():
        pos, n = _first(bad)
        problem = (
            "is neither epoch seconds nor a date"
            if time_format == "auto"
            else f"is not a time in format {time_format!r}"
        )
        raise DataError(
            f"{raw.where(col.index[pos], 'timestamp')}: {_shown(col.iloc[pos])} {problem}"
            f"{_more(n)}; {_TIME_FIX}"
        )
    return _epoch_seconds(parsed), read_as


#: A numeric date with the year last: ``01.02.2024``, ``1/2/24``, ``05-03-2024 10:00``.
_YEAR_LAST = re.compile(r"^(\d{1,2})([./-])(\d{1,2})\2(\d{2,4})\b")
#: Values of a time column looked at before the whole column is searched for such dates.
_TIME_SAMPLE = 10_000


def _parse_text_times(raw: _Raw, text: pd.Series) -> tuple[pd.Series, str]:
    """Text times in any format pandas knows (ISO-8601 and the like), with year-last numeric
    dates read in one day/month order for the whole column (:func:`_day_first`), not guessed
    value by value (``01.02.2024`` as 2 January and ``14.10.2024`` as 14 October); and how
    they were read (``iso``, ``day-first dates``, ``month-first dates``)."""
    # A strided sample first: an ISO column of millions of rows skips the regex pass.
    sample = text.iloc[:: max(1, len(text) // _TIME_SAMPLE)]
    if not sample.str.match(_YEAR_LAST).any():
        return _parse_mixed(text), "iso"
    parts = text.str.extract(_YEAR_LAST)
    year_last = parts[0].notna().to_numpy()
    day_first = _day_first(raw, text, parts, year_last)
    # Pieces parsed apart come back in units of their own (nanoseconds, or seconds for a
    # year-100 date outside the nanosecond range), so both are brought to whole seconds.
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[s, UTC]")
    if (~year_last).any():
        parsed[~year_last] = _whole_seconds(_parse_mixed(text[~year_last]))
    parsed[year_last] = _parse_year_last(text[year_last], day_first)
    return parsed, "day-first dates" if day_first else "month-first dates"


#: What may follow a year-last date: a time of day, ``10:00`` or ``10:00:05``.
_TIME_OF_DAY = re.compile(r"^(\s+)\d{1,2}:\d{2}(:\d{2})?$")


def _parse_year_last(text: pd.Series, day_first: bool) -> pd.Series:
    """Year-last dates in the given order: through the explicit format the first value shows
    (``%d.%m.%Y %H:%M``: ~1.5 s a million, where pandas' per-value 'mixed' parse took ~30 s),
    the values that do not fit it through the per-value parse."""
    first = str(text.iloc[0])
    head = _YEAR_LAST.match(first)
    assert head is not None  # the caller's rows all match
    order = ("%d", "%m") if day_first else ("%m", "%d")
    fmt = head.group(2).join([*order, "%Y" if len(head.group(4)) == 4 else "%y"])
    rest = _TIME_OF_DAY.match(first[head.end() :])
    if rest is not None:
        fmt += rest.group(1) + ("%H:%M:%S" if rest.group(2) else "%H:%M")
    elif head.end() != len(first):
        return _whole_seconds(_parse_mixed(text, day_first))
    parsed = _whole_seconds(pd.to_datetime(text, errors="coerce", utc=True, format=fmt))
    missed = parsed.isna().to_numpy()
    if missed.any():
        parsed[missed] = _whole_seconds(_parse_mixed(text[missed], day_first))
    return parsed


def _parse_mixed(text: pd.Series, day_first: bool = False) -> pd.Series:
    """pandas' per-value parse (NaT where a value is no time), with the values it missed
    parsed again on their own: one value with nanoseconds puts the whole parse in that unit,
    where a date before 1677 or after 2262 (``2500-01-01``) does not fit and came back NaT."""
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed", dayfirst=day_first)
    missed = parsed.isna().to_numpy()
    if not missed.any() or missed.all():
        return parsed
    again = pd.to_datetime(
        text[missed], errors="coerce", utc=True, format="mixed", dayfirst=day_first
    )
    if again.isna().all():
        return parsed
    parsed = _whole_seconds(parsed)
    parsed[missed] = _whole_seconds(again)
    return parsed


def _whole_seconds(parsed: pd.Series) -> pd.Series:
    """``parsed`` (datetimes in any unit) floored to whole seconds, in unit seconds: pieces of
    one column can then be put together whatever their years (pandas' nanosecond unit ends in
    1677 and 2262) and their fractions of a second (a lossy unit cast is an error)."""
    seconds: pd.Series = parsed.dt.floor("s").dt.as_unit("s")
    return seconds


def _day_first(raw: _Raw, text: pd.Series, parts: pd.DataFrame, year_last: Any) -> bool:
    """Whether the column's year-last dates put the day first: a first field above 12 says
    yes, a second field above 12 says no, dots alone say yes (no month-first convention
    writes dots); a column that says both, or nothing with slashes or dashes, is an error."""
    first = pd.to_numeric(parts[0], errors="coerce").to_numpy()
    second = pd.to_numeric(parts[2], errors="coerce").to_numpy()
    day_first, month_first = first > 12, second > 12
    if day_first.any() and month_first.any():
        a, _ = _first(day_first)
        b, _ = _first(month_first)
        raise DataError(
            f"{raw.where(text.index[a], 'timestamp')}: {_shown(text.iloc[a])} puts the day "
            f"first but {_shown(text.iloc[b])} ({raw.where(text.index[b], 'timestamp')}) the "
            "month; write every date one way, or pass --time-format with a %-pattern"
        )
    if day_first.any() or month_first.any():
        return bool(day_first.any())
    if (parts[1][year_last] == ".").all():
        return True
    pos, _ = _first(year_last)
    raise DataError(
        f"{raw.where(text.index[pos], 'timestamp')}: {_shown(text.iloc[pos])} could be "
        "day/month or month/day and no date in the column settles it; pass --time-format "
        "'%d/%m/%Y' or '%m/%d/%Y' (the separator as in the file)"
    )


def _epoch_seconds(parsed: pd.Series) -> npt.NDArray[np.int64]:
    # Through numpy seconds, not a pandas Timedelta: subtracting the epoch in nanoseconds
    # overflows for dates outside 1677..2262 (a year-100 date is a bad value, not a crash).
    naive = parsed.dt.tz_convert("UTC").dt.tz_localize(None) if parsed.dt.tz else parsed
    secs: npt.NDArray[np.int64] = naive.to_numpy().astype("datetime64[s]").astype(np.int64)
    return secs


def _warn_unmapped(
    raw: _Raw, canon: str, hints: dict[str, str], looks: str, so: str, tail: str = ""
) -> None:
    """The first column of ``hints`` that looks like ``canon`` (``looks``) but is not read:
    what follows (``so``) and the flag that would read it (then ``tail``)."""
    for name, why in hints.items():
        warnings.warn(
            f"{raw.label}: column {name!r} looks like {looks} ({why}) but is not mapped, so "
            f"{so}; pass {COLUMN_FLAGS[canon]} {shlex.quote(name)} "
            f"(columns={{{canon!r}: {name!r}}}) to use it{tail}",
            DataWarning,
            stacklevel=4,
        )
        return


def _warn_unmapped_columns(raw: _Raw, opts: _Options) -> None:
    """A time or rating column left unread: say which flag reads it (ratings only when nobody
    asked for implicit data, as the events would otherwise silently become clicks)."""
    _warn_unmapped(raw, "timestamp", raw.time_like, "a time", "the events have no timestamps")
    if not (opts.implicit or opts.weighted) and "rating" not in raw.columns:
        so = "the events are read as implicit feedback"
        tail = ", or --implicit to keep clicks"
        _warn_unmapped(raw, "rating", raw.rating_like, "ratings", so, tail)
    _warn_unread_counts(raw, opts.implicit, opts.weighted)


def _warn_unread_counts(raw: _Raw, implicit: bool, weighted: bool = False) -> None:
    """Counts (or event weights) and ratings side by side: say which one is not read, and the
    flag for counts."""
    rating = raw.source_names.get("rating")
    if "count" in raw.columns or weighted:
        if rating is not None and not implicit:  # found by its name beside counts or weights
            weights = (
                f"counts from {raw.source_names['count']}"
                if "count" in raw.columns
                else "event weights"
            )
            warnings.warn(
                f"{raw.label}: {rating} is not read: {weights} make the data implicit (pass "
                "--implicit to say so)",
                DataWarning,
                stacklevel=4,
            )
        return
    unread = list(raw.count_like)
    if implicit and rating is not None and names_counts(raw.mapped.get("rating")):
        unread.insert(0, raw.mapped["rating"])  # --rating-col plays --implicit drops them
    if unread and rating is not None:
        name = unread[0]
        warnings.warn(
            f"{raw.label}: column {name!r} looks like counts but is not read "
            f"({'--implicit ignores ratings' if implicit else f'ratings come from {rating}'}); "
            f"pass {COLUMN_FLAGS['count']} {shlex.quote(name)} (columns={{'count': {name!r}}})"
            f"{' instead of --rating-col' if name == raw.mapped['rating'] else ''} "
            "to weight each implicit event by it",
            DataWarning,
            stacklevel=4,
        )


def _attach_titles(
    raw: _Raw, frame: pd.DataFrame
) -> tuple[pd.DataFrame, str | None, RowTitles | None]:
    """``(frame, title column, the titles chosen)``: ``frame`` gains a ``title`` column
    (categorical, each row its item's one title, :func:`recforge.data.items.resolve_titles`)
    when the data has a title column (None and None without one); the frame's
    ``attrs["title_column"]`` records its name. One found by its name is left out again when
    it holds no text, only codes (``tt0111161``), or values that differ within most items (a
    person's ``name``, with a warning naming the flag that reads it anyway)."""
    col = raw.columns.get("title")
    if col is None or (raw.title_auto and not _holds_text(col)):
        return frame, None, None
    name = raw.mapped["title"]
    try:
        found = resolve_titles(frame["item_id"], col, frame["timestamp"].to_numpy())
    except TypeError:  # unhashable cells (lists) in a DataFrame
        if raw.title_auto:
            return frame, None, None
        raise DataError(
            f"{raw.label}: {raw.source_names['title']} holds lists or other containers, not "
            f"titles; map a text column with {COLUMN_FLAGS['title']}"
        ) from None
    if raw.title_auto and not _titles_plausible(raw.label, name, found):
        return frame, None, None
    return frame.assign(title=found.per_row), name, found


def _titles_plausible(label: str, name: str, found: RowTitles) -> bool:
    """Whether a column found by its name holds titles: not only codes (``tt0111161``), and
    one value per item for most items on several rows (else it is, say, a person's name: a
    warning says which flag reads it anyway)."""
    if all_codes(found.titles):
        return False
    if 2 * found.conflicts <= found.repeated:
        return True
    warnings.warn(
        f"{label}: column {name!r} is named like titles, but {found.conflicts} of the "
        f"{found.repeated} items on several rows have different values in it, so it is not "
        f"read as their titles; pass {COLUMN_FLAGS['title']} {shlex.quote(name)} "
        f"(columns={{'title': {name!r}}}) to use it",
        DataWarning,
        stacklevel=6,
    )
    return False


def _holds_text(col: pd.Series) -> bool:
    """Whether a column holds text (strings, or categories of strings), not numbers or dates."""
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    return dtype.kind == "O" or isinstance(dtype, pd.StringDtype)


def _canonicalize(raw: _Raw, opts: _Options) -> tuple[pd.DataFrame, str | None]:
    n = len(raw)
    counts = _count_values(raw)
    rating_scale = opts.rating_scale
    has_rating = "rating" in raw.columns and not opts.implicit and counts is None
    has_rating = has_rating and not opts.weighted
    if rating_scale is not None and not has_rating:
        reason = (
            "implicit=True ignores ratings"
            if opts.implicit
            else f"counts from {raw.source_names['count']} make the data implicit"
            if counts is not None
            else "event weights make the data implicit"
            if opts.weighted
            else "no rating column was found"
        )
        raise DataError(
            f"{raw.label}: missing column 'rating' but rating_scale={rating_scale} was declared "
            f"({reason}); pass columns={{'rating': '<your column>'}} or drop rating_scale"
        )
    users = _ids(raw, "user_id")
    items = _ids(raw, "item_id")
    if has_rating:
        values = _numeric(
            raw,
            "rating",
            "ratings must be numbers (pass --implicit, implicit=True, to ignore them)",
            comma_decimals=True,
        )
        if rating_scale is not None:
            lo, hi = rating_scale
            out = (values < lo) | (values > hi)
            if out.any():
                pos, k = _first(out)
                raise DataError(
                    f"{raw.where(raw.row(pos), 'rating')}: {values[pos]:g} is outside "
                    f"the rating scale [{lo:g}, {hi:g}]{_more(k)}; fix the value or widen "
                    "--rating-scale (rating_scale)"
                )
        rating = values.astype(np.float32)
    elif counts is not None:
        rating = counts.astype(np.float32)  # each row's count is its weight
    else:
        rating = np.ones(n, dtype=np.float32)
    time_used: str | None = None
    if "timestamp" in raw.columns:
        ts, time_used = _timestamps(raw, opts.time_format)
    else:
        ts = np.zeros(n, dtype=np.int64)
    frame = pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "rating": rating,
            "timestamp": ts,
        }
    )
    return frame, time_used


def _count_values(raw: _Raw) -> npt.NDArray[np.float64] | None:
    """The count column's values (finite numbers >= 0), read once and kept on ``raw``; None
    without a count column.

    Raises:
        DataError: an empty, non-numeric, non-finite or negative count (file, line, column,
            value and the fix).
    """
    if "count" not in raw.columns:
        return None
    if raw.counts is None:
        col = raw.columns["count"]
        if col.dtype.kind not in "iufb":
            _refuse_thousands(raw, col.astype(str).str.strip())
        values = _numeric(raw, "count", _COUNT_FIX, comma_decimals=True)
        _refuse_rows(raw, "count", col, values < 0, "is a negative count", _COUNT_FIX)
        raw.counts = values
    return raw.counts


#: A count written with thousands separators (``1,234``; ``12,345,678``).
_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+$")


def _refuse_thousands(raw: _Raw, text: pd.Series) -> None:
    """Counts whose every comma groups thousands (``1,234`` plays) could as well be decimal
    commas (1.234 hours): refused rather than read one way by guess."""
    comma = text.str.contains(",", regex=False)
    if comma.any() and text[comma].str.match(_THOUSANDS).all():
        col = raw.columns["count"]
        _refuse_rows(
            raw,
            "count",
            col,
            comma.to_numpy(bool),
            "could be a thousands separator or a decimal comma",
            "re-save the column without thousands separators (1234, or 1.234 for a fraction)",
        )


def _settle_counts(raw: _Raw) -> None:
    """Keep a count column found by its name only when it holds counts (numbers >= 0); warn
    and read the data without it otherwise. A mapped one is refused there by
    :func:`_count_values`."""
    if "count" not in raw.columns or not raw.count_auto:
        return
    try:
        _count_values(raw)
    except _BadCells as exc:
        name = raw.mapped.pop("count")
        del raw.columns["count"]
        warnings.warn(
            f"{raw.label}: column {name!r} is named like counts but is not read as them "
            f"({exc.problem}); pass {COLUMN_FLAGS['count']} {shlex.quote(name)} "
            f"(columns={{'count': {name!r}}}) to use it",
            DataWarning,
            stacklevel=4,
        )


def _drop_zero_counts(raw: _Raw, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``(frame, rows dropped)``: rows whose count is 0 carry no interaction ("0 plays" is no
    play), so they go, with a warning; ``raw`` records the kept rows' numbers (``kept_rows``),
    so later errors still name the right lines.

    Raises:
        DataError: every count is 0.
    """
    counts = raw.counts if "count" in raw.columns else None
    if counts is None or not (zero := counts == 0).any():
        return frame, 0
    n_zero = int(zero.sum())
    name = raw.mapped["count"]
    if n_zero == len(counts):
        raise DataError(
            f"{raw.label}: every count in column {name!r} is 0, so there is no interaction; "
            f"map the right column with {COLUMN_FLAGS['count']}"
        )
    keep = ~zero
    frame = _keep_rows(raw, frame, keep)
    warnings.warn(
        f"{raw.label}: dropped {n_zero} row{'s' if n_zero != 1 else ''} whose count in column "
        f"{name!r} is 0 (no interaction)",
        DataWarning,
        stacklevel=4,
    )
    return frame, n_zero


def _keep_rows(raw: _Raw, frame: pd.DataFrame, keep: npt.NDArray[np.bool_]) -> pd.DataFrame:
    """``frame``'s rows where ``keep``. Only the frame is filtered: ``raw`` records the kept
    rows' parse numbers (``kept_rows``, which later errors name) and keeps its counts aligned
    with the frame; its parsed columns stay whole."""
    rows = raw.kept_rows if raw.kept_rows is not None else next(iter(raw.columns.values())).index
    raw.kept_rows = rows[keep]
    if raw.counts is not None:
        raw.counts = raw.counts[keep]
    return _take(frame, keep)


# ---------------------------------------------------------------------------------------------
# event kinds (recforge.data.events)
# ---------------------------------------------------------------------------------------------
def _settle_events(raw: _Raw) -> None:
    """Read the event column's kinds once; keep a column found by its name only when it holds
    text with at most :data:`~recforge.data.events.MAX_FOUND_KINDS` kinds and no empty cell
    (warn and read the data without it otherwise, so a numeric ``action`` is never events)."""
    if "event" not in raw.columns:
        return
    raw.kinds = read_kinds(raw.columns["event"])
    why = why_not_events(raw.kinds) if raw.event_auto else None
    if why is None:
        return
    name = raw.mapped.pop("event")
    del raw.columns["event"]
    raw.kinds = None
    raw.event_unread = f"column {name!r} is named like them but {why}"
    warnings.warn(
        f"{raw.label}: column {name!r} is named like event kinds but is not read as them "
        f"({why}); pass {COLUMN_FLAGS['event']} {shlex.quote(name)} "
        f"(columns={{'event': {name!r}}}) to use it",
        DataWarning,
        stacklevel=4,
    )


def _apply_events(
    raw: _Raw, frame: pd.DataFrame, opts: _Options
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``(frame, what was read)``: with event weights each row's value (1, its count) is
    multiplied by its kind's weight; rows of kinds weighing 0 or left out by ``events`` go.
    Runs before any other row is dropped, so the kinds align with the frame.

    Raises:
        DataError: weights or kinds asked for without an event column, an empty kind in a
            mapped one, a kind without a weight, an unknown kind to keep, or no row left.
    """
    read: dict[str, Any] = {"event_column": None, "event_kinds": None, "event_dropped": 0}
    read |= {"event_weights": opts.event_weights, "events_kept": opts.events}
    if raw.kinds is None:
        if opts.weighted or opts.events is not None:
            raise _no_event_column(raw, opts)
        return frame, read
    kinds, rows = raw.kinds, raw.kinds.rows()
    if not raw.event_auto:
        _check_missing(raw, "event", raw.columns["event"])
    order = np.argsort(-rows, kind="stable")  # most rows first
    read["event_column"] = raw.mapped["event"]
    read["event_kinds"] = {kinds.names[i]: int(rows[i]) for i in order}
    if not opts.weighted and opts.events is None:
        return frame, read
    weight = _kind_weights(raw, opts, [int(i) for i in order])
    keep = weight[kinds.codes] > 0
    if not keep.any():
        raise _nothing_left(raw, opts)
    if opts.weighted:  # a confidence weight, exactly as a count (times the count, if any)
        factor = weight[kinds.codes].astype(np.float32)
        frame = frame.assign(rating=frame["rating"].to_numpy() * factor)
    read["event_dropped"] = int(len(keep) - keep.sum())
    return (_keep_rows(raw, frame, keep) if read["event_dropped"] else frame), read


def _kind_weights(raw: _Raw, opts: _Options, order: list[int]) -> npt.NDArray[np.float64]:
    """Each kind's weight (aligned with the kinds' names): its ``event_weights`` entry (1
    without weights), 0 for a kind ``events`` leaves out.

    Raises:
        DataError: ``events`` names a kind the column lacks, or a kept kind has no weight.
    """
    assert raw.kinds is not None
    names, rows = raw.kinds.names, raw.kinds.rows()
    listing = ", ".join(f"{names[i]} ({_n_rows(rows[i])})" for i in order)
    where = f"{raw.label}, {raw.source_names['event']}"
    kept = set(names) if opts.events is None else set(opts.events)
    unknown = sorted(kept - set(names))
    if unknown:
        raise DataError(
            f"{where}: --events names {', '.join(map(repr, unknown))}, which the column does "
            f"not hold{_case_hint(unknown, names)}; its kinds: {listing}; fix --events (events=)"
        )
    weights = opts.event_weights if opts.event_weights is not None else dict.fromkeys(names, 1.0)
    missing = [i for i in order if names[i] in kept and names[i] not in weights]
    if missing:
        pos, _ = _first(np.isin(raw.kinds.codes, missing))
        suggest = ",".join(f"{names[i]}={weights.get(names[i], 1):g}" for i in order)
        unweighted = [names[i] for i in missing]
        raise DataError(
            f"{raw.where(raw.row(pos), 'event')}: {_shown(names[raw.kinds.codes[pos]])} has no "
            "weight in "
            f"--event-weights (event_weights); kinds without one: "
            f"{', '.join(f'{names[i]} ({_n_rows(rows[i])})' for i in missing)}"
            f"{_case_hint(unweighted, list(weights))}; {_EVENT_FIX}, e.g. --event-weights "
            f"{suggest}"
        )
    absent = [k for k in weights if k not in names]
    if absent and opts.event_weights is not None:
        warnings.warn(
            f"{where}: --event-weights gives a weight to {', '.join(map(repr, absent))}, which "
            f"the column does not hold{_case_hint(absent, names)} (its kinds: {listing})",
            DataWarning,
            stacklevel=5,
        )
    return np.array([weights[n] if n in kept else 0.0 for n in names], dtype=np.float64)


def _n_rows(n: int) -> str:
    return "1 row" if n == 1 else f"{n} rows"


def _case_hint(asked: list[str], known: list[str]) -> str:
    """`` (kinds are case-sensitive: 'Buy' is not 'buy')`` where a name differs only in case."""
    folded = {k.casefold(): k for k in known}
    pairs = [f"{a!r} is not {folded[a.casefold()]!r}" for a in asked if a.casefold() in folded]
    return f" (kinds are case-sensitive: {', '.join(pairs)})" if pairs else ""


def _no_event_column(raw: _Raw, opts: _Options) -> DataError:
    """The error for event weights or kinds asked of data without a column of event kinds."""
    flags = [f for f, on in (("--event-weights", opts.weighted), ("--events", opts.events)) if on]
    why = f"; {raw.event_unread}" if raw.event_unread else ""
    return DataError(
        f"{raw.label}: {' and '.join(flags)} need a column of event kinds, but none was found "
        f"(looked for a text column named {', '.join(EVENT_ALIASES[:6])}...{why}); pass "
        f"{COLUMN_FLAGS['event']} <column> (columns={{'event': '<column>'}})"
    )


def _nothing_left(raw: _Raw, opts: _Options) -> DataError:
    """The error for event settings that drop every row."""
    zero = [k for k, w in (opts.event_weights or {}).items() if w == 0]
    why = [f"--events keeps only {', '.join(opts.events)}"] if opts.events is not None else []
    why += [f"--event-weights gives {', '.join(zero)} a weight of 0"] if zero else []
    return DataError(
        f"{raw.label}, {raw.source_names['event']}: no row is left ({'; '.join(why)}); keep a "
        "kind whose weight is above 0"
    )


def _pair_keys(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    """One int64 key per (user, item): packed ids when small integers, else packed codes."""
    u, i = frame["user_id"], frame["item_id"]
    if u.dtype.kind == "i" and i.dtype.kind == "i" and len(frame):
        uv, iv = u.to_numpy(), i.to_numpy()
        umin, umax, imin, imax = int(uv.min()), int(uv.max()), int(iv.min()), int(iv.max())
        span = imax - imin + 1
        if umin >= 0 and imin >= 0 and (umax - umin + 1) * span < 2**62:
            packed: npt.NDArray[np.int64] = (uv - umin) * span + (iv - imin)
            return packed
    # General ids: factorize each side, then pack the two dense codes (< rows**2 < 2**62).
    cu, _ = pd.factorize(u)
    ci, _ = pd.factorize(i)
    codes: npt.NDArray[np.int64] = cu.astype(np.int64) * (int(ci.max()) + 1) + ci.astype(np.int64)
    return codes


def _apply_duplicates(frame: pd.DataFrame, raw: _Raw, policy: DuplicatePolicy) -> pd.DataFrame:
    key = _pair_keys(frame)
    # One sort answers "any duplicates?" for the common clean file (faster than hashing here).
    srt = np.sort(key)
    equal = srt[1:] == srt[:-1]
    if not equal.any():
        return frame
    # Only rows of repeated pairs take part from here on: usually a tiny fraction.
    repeated = np.unique(srt[1:][equal])
    del srt, equal
    involved = np.flatnonzero(pd.Index(repeated).get_indexer(key) >= 0)
    # Stable sort by key: within a pair, rows stay in file order (first ... last).
    order = involved[np.argsort(key[involved], kind="stable")]
    ks = key[order]
    new_group = np.ones(len(order), dtype=bool)
    new_group[1:] = ks[1:] != ks[:-1]
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], len(order)) - 1
    first, last = order[starts], order[ends]
    n_dup = len(order) - len(starts)
    if policy == "error":
        later = order[~new_group]
        pos = int(later.min())
        earlier = int(first[np.searchsorted(ks[starts], key[pos])])
        raise DataError(
            f"{raw.where(raw.row(pos))}: duplicate (user_id, item_id) = "
            f"({_shown(frame['user_id'].iloc[pos])}, {_shown(frame['item_id'].iloc[pos])}), "
            f"first on {raw.position(raw.row(earlier))} ({n_dup} duplicate rows in all); "
            "remove them or pass duplicates='last', 'mean' or (implicit data) 'count'"
        )
    keep = np.ones(len(frame), dtype=bool)
    keep[order] = False
    value = "count" if "count" in raw.columns else "rating"
    if policy == "count":
        # One event per pair: its weight is the sum of its rows' weights, each 1 or the row's
        # count from a count column (the latest time kept).
        keep[first] = True
        group = np.cumsum(new_group) - 1
        rating = frame["rating"].to_numpy().copy()
        weights = rating[order].astype(np.float64)
        rating[first] = np.bincount(group, weights=weights).astype(np.float32)
        ts = frame["timestamp"].to_numpy().copy()
        ts[first] = np.maximum.reduceat(ts[order], starts)
        return _take(frame.assign(rating=rating, timestamp=ts), keep)
    if policy == "last":
        keep[last] = True
        out = _take(frame, keep)
        how = f"kept the last {value} of each pair"
    else:
        keep[first] = True
        group = np.cumsum(new_group) - 1
        sums = np.bincount(group, weights=frame["rating"].to_numpy()[order].astype(np.float64))
        rating = frame["rating"].to_numpy().copy()
        rating[first] = (sums / np.bincount(group)).astype(np.float32)
        ts = frame["timestamp"].to_numpy().copy()
        ts[first] = np.maximum.reduceat(ts[order], starts)
        out = _take(frame.assign(rating=rating, timestamp=ts), keep)
        how = f"averaged their {value}s (latest timestamp kept)"
    warnings.warn(
        f"{raw.label}: merged {n_dup} duplicate (user_id, item_id) rows; {how} "
        "(pass duplicates='error' to reject them)",
        DataWarning,
        stacklevel=3,
    )
    return out


def _take(frame: pd.DataFrame, keep: npt.NDArray[np.bool_]) -> pd.DataFrame:
    """Rows where ``keep``; numpy masks for numeric columns (pandas' indexing is slower here)."""
    out = {}
    for c in frame.columns:
        col = frame[c]
        if col.dtype.kind in "iuf":
            out[c] = pd.Series(col.to_numpy()[keep])
        else:
            out[c] = col[keep].reset_index(drop=True)
    return pd.DataFrame(out)
