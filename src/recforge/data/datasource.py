"""One typed description of where interaction data comes from and how to read it.

A :class:`DataSource` is what the CLI flags build (``--user-col``, ``--sep``, ``--rating-scale``,
...), what :func:`recforge.data.load_dataset` and :func:`recforge.data.read_ratings` accept, what a
run directory stores (``manifest.json`` → ``data_source``) and what ``evaluate``, ``report`` and the
service read back. Its ``path`` is stored absolute and resolved, so a run trained in one directory
is evaluated from any other.

Example::

    src = DataSource.of("clicks.csv", user_col="customer", item_col="product",
                        time_col="clicked_at")
    data = src.load()          # Interactions (implicit: no rating column)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from recforge.data.events import check_event_weights, check_events
from recforge.errors import ConfigError, DataError

__all__ = ["SEPARATORS", "DataSource", "DuplicatePolicy", "parse_rating_scale", "parse_sep"]

DuplicatePolicy = Literal["error", "last", "mean", "count"]

#: Names the CLI accepts for ``--sep`` (the characters themselves are accepted too).
SEPARATORS: dict[str, str] = {
    "tab": "\t",
    "\\t": "\t",
    "\t": "\t",
    "comma": ",",
    ",": ",",
    "semicolon": ";",
    ";": ";",
    "pipe": "|",
    "|": "|",
    "::": "::",
    "space": r"\s+",
    "whitespace": r"\s+",
}

#: ``time_format`` values besides a strftime pattern (anything holding ``%``).
TIME_FORMATS = ("auto", "s", "ms", "us", "ns", "excel", "iso")


def parse_sep(text: str) -> str:
    """``tab``, ``,``, ``;``, ``|``, ``::`` (or their names) → the separator itself."""
    sep = SEPARATORS.get(text) or SEPARATORS.get(text.lower())
    if sep is None:
        raise ConfigError(
            f"--sep {text!r} is not a known separator; use tab, ',', ';', '|', '::' or space"
        )
    return sep


#: ``LOW:HIGH`` with ``.`` decimals; ``:``, ``..``, ``-`` or ``,`` between (``1,5`` is 1 to 5).
_SCALE_DOT = re.compile(r"\s*([-+]?[\d.]+)\s*(?::|\.\.|-|,)\s*([-+]?[\d.]+)\s*")
#: ``LOW:HIGH`` where a side may have a decimal comma (``0,5:5``, as a German user types it):
#: only beside ``:``, ``..`` or ``-``, never beside a ``,`` separator.
_SCALE_COMMA = re.compile(r"\s*([-+]?\d+(?:[.,]\d+)?)\s*(?::|\.\.|-)\s*([-+]?\d+(?:[.,]\d+)?)\s*")

_SCALE_READINGS = (_SCALE_DOT, _SCALE_COMMA)


def _scale_numbers(match: re.Match[str] | None) -> tuple[float, float] | None:
    """The two numbers of a scale match (a decimal comma read as a point); None when there is
    no match or a side is no number (``5..5`` fits ``[\\d.]+``)."""
    if match is None:
        return None
    try:
        return float(match.group(1).replace(",", ".")), float(match.group(2).replace(",", "."))
    except ValueError:
        return None


def parse_rating_scale(text: str) -> tuple[float, float]:
    """``"1:10"`` (or ``"1-10"``, ``"1..10"``, ``"1,10"``) → ``(1.0, 10.0)``.

    A decimal comma is read as a decimal point when the sides are split by ``:``, ``..`` or
    ``-`` (``"0,5:5"`` → ``(0.5, 5.0)``, as ratings files with decimal commas are read); with a
    comma as the only separator (``"1,5"``), the comma separates (1 to 5), as before.

    Raises:
        ConfigError: not two numbers, or LOW is not below HIGH.
    """
    bounds = next(filter(None, (_scale_numbers(p.fullmatch(text)) for p in _SCALE_READINGS)), None)
    if bounds is None:
        raise ConfigError(
            f"--rating-scale {text!r}: expected LOW:HIGH, e.g. 1:5 or 0.5:5 (or 0,5:5)"
        )
    lo, hi = bounds
    if not lo < hi:
        raise ConfigError(f"--rating-scale {text!r}: LOW must be below HIGH")
    return lo, hi


def _is_movielens_name(text: str) -> bool:
    from recforge.data.movielens import MOVIELENS

    return text in MOVIELENS


#: The ratings file's column fields (a header name, or digits for a 0-based position).
_COLUMN_FIELDS = (
    "user_col",
    "item_col",
    "rating_col",
    "time_col",
    "title_col",
    "count_col",
    "event_col",
)

#: Fields that describe how to read a file: meaningless (and refused) for a MovieLens name.
_FILE_ONLY_FIELDS = (
    "sep",
    "header",
    *_COLUMN_FIELDS,
    "event_weights",
    "events",
    "implicit",
    "rating_scale",
    "time_format",
    "duplicates",
    "encoding",
    "items",
    "item_id_col",
    "item_title_col",
    "item_feature_cols",
)


class DataSource(BaseModel):
    """Where interaction data lives and how to read it (the one data description everywhere).

    Attributes:
        path: absolute, resolved path of the ratings file, or a MovieLens release name
            (``ml-100k``); relative paths given here are resolved against the current directory.
        sep: field separator (``"\\t"``, ``","``, ``";"``, ``"|"``, ``"::"``, ``r"\\s+"``);
            None sniffs it.
        header: whether the first line names the columns; None detects it (a first row with
            no number is a header; a mapping by column name requires one).
        user_col, item_col, rating_col, time_col: the file's column for each role, by header
            name or 0-based position; None finds it by the known aliases (``userId``, ...).
        title_col: the file's column of item titles, one title per row
            (``user_id,movie_id,title,rating``), by header name or 0-based position. None takes
            ``item_title_col`` without ``items`` (its older spelling), else an unmapped column
            named like titles that holds text (``title``, ``name``, ``product_name``,
            ``movie_title``, ``Titel``..., see :func:`recforge.data.io.names_title_column`).
            An item with several titles gets the most frequent (ties: the latest row's). With
            ``items`` too, the item file's titles win and this column fills the rest.
        count_col: the file's column of per-row counts (``plays``, ``qty``, ``views``), by
            header name or 0-based position: the data is then implicit and each row weighs its
            count (summed over a pair's rows under ``duplicates="count"``; rows counting 0 are
            dropped). None takes an unmapped column named like counts (``plays``,
            ``play_count``, ``views``, ``qty``..., :data:`recforge.data.io.COUNT_ALIASES`)
            holding numbers >= 0, when no rating column is mapped.
        event_col: the file's column of event kinds (``view``, ``addtocart``, ``transaction``),
            by header name or 0-based position. None takes an unmapped column named like them
            (``event``, ``event_type``, ``action``, ``behavior``...,
            :data:`recforge.data.io.EVENT_ALIASES`) holding text with at most 50 kinds.
            Without ``event_weights``/``events`` every event still weighs 1.
        event_weights: kind -> weight >= 0 for every kind in the event column: each row
            weighs its kind's weight, a confidence weight as a count is (summed over a pair's
            rows; times the count with a count column); 0 drops the kind. Implicit data only
            (a mapped rating column then needs ``implicit``). See :mod:`recforge.data.events`.
        events: the event kinds to keep (other rows are dropped); explicit data too.
        implicit: ignore any rating column (every event is a positive); also implied when the
            file has no rating column, or has a count column or event weights.
        rating_scale: declared ``(low, high)`` of explicit ratings; None infers it from the
            data's minimum and maximum. Evaluation thresholds follow it.
        time_format: ``"auto"`` (epoch seconds or milliseconds by magnitude, or ISO-8601 text),
            ``"s"``, ``"ms"``, ``"us"``, ``"ns"`` (epoch units), ``"excel"`` (spreadsheet serial
            dates, days since 1899-12-30), ``"iso"`` (ISO-8601 dates or times) or a strftime
            pattern such as ``"%d/%m/%Y"``.
        duplicates: repeated (user, item) rows: ``"count"`` (implicit: the number of repeats
            becomes the event's weight; the default for implicit data), ``"last"`` (the default
            for explicit data), ``"mean"`` or ``"error"``.
        encoding: text encoding; None is UTF-8 (a byte-order mark is honoured).
        items: optional item file (absolute path) with metadata for the items.
        item_id_col: the item file's id column (None: the first column, or a known alias).
        item_title_col: with ``items``, the item file's title column (None: a
            ``title``/``name`` column if any). Without ``items``, the older spelling of
            ``title_col`` (kept as it was: the ratings file's title column, digits a 0-based
            position); it cannot be given beside ``title_col`` then.
        item_feature_cols: item file columns holding categories (``|``-separated lists allowed);
            they become the items' ``genres`` list used by feature-aware models and the service.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    sep: str | None = None
    header: bool | None = None
    user_col: str | int | None = None
    item_col: str | int | None = None
    rating_col: str | int | None = None
    time_col: str | int | None = None
    title_col: str | int | None = None
    count_col: str | int | None = None
    event_col: str | int | None = None
    event_weights: dict[str, float] | None = None
    events: tuple[str, ...] | None = None
    implicit: bool = False
    rating_scale: tuple[float, float] | None = None
    time_format: str = "auto"
    duplicates: DuplicatePolicy | None = None
    encoding: str | None = None
    items: str | None = None
    item_id_col: str | None = None
    item_title_col: str | None = None
    item_feature_cols: tuple[str, ...] = ()

    # ------------------------------------------------------------------ validation
    @field_validator("path")
    @classmethod
    def _resolve_path(cls, value: str) -> str:
        if not value:
            raise ValueError("path is empty")
        if _is_movielens_name(value):
            return value
        return str(Path(value).expanduser().resolve())

    @model_validator(mode="after")
    def _movielens_takes_no_file_options(self) -> DataSource:
        # A release is read by its registered layout: a flag meant for a file must not be
        # dropped silently (the user would believe their mapping or scale was applied).
        if not _is_movielens_name(self.path):
            return self
        defaults = DataSource.model_fields
        given = [
            name
            for name in _FILE_ONLY_FIELDS
            if getattr(self, name) != defaults[name].get_default(call_default_factory=True)
        ]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ValueError(
                f"{self.path} is a MovieLens release read by its own layout; {flags}: options for "
                "files only (drop them, or pass the path of a ratings file)"
            )
        return self

    @field_validator("items")
    @classmethod
    def _resolve_items(cls, value: str | None) -> str | None:
        return None if value is None else str(Path(value).expanduser().resolve())

    @field_validator("sep")
    @classmethod
    def _check_sep(cls, value: str | None) -> str | None:
        return None if value is None else parse_sep(value)

    @field_validator(*_COLUMN_FIELDS, mode="before")
    @classmethod
    def _position(cls, value: Any) -> Any:
        # "0" on the command line means the first column of a file without a header.
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        if isinstance(value, str) and not value.strip():
            raise ValueError("column name is empty")
        return value

    @field_validator("event_weights", mode="before")
    @classmethod
    def _check_event_weights(cls, value: Any) -> Any:
        # Kinds stripped, weights finite numbers >= 0 (the reader checks the same for Python).
        return None if value is None else check_event_weights(value, flag="--event-weights")

    @field_validator("events", mode="before")
    @classmethod
    def _check_events(cls, value: Any) -> Any:
        return None if value is None else check_events(value, flag="--events")

    @field_validator("time_format")
    @classmethod
    def _check_time_format(cls, value: str) -> str:
        if value not in TIME_FORMATS and "%" not in value:
            raise ValueError(
                f"time_format {value!r}: use {', '.join(TIME_FORMATS)} or a strftime pattern"
            )
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> DataSource:
        if self.rating_scale is not None:
            lo, hi = self.rating_scale
            if not lo < hi:
                raise ValueError(f"rating_scale {self.rating_scale}: low must be below high")
            if self.implicit:
                raise ValueError("implicit data has no rating scale; drop one of the two")
            if self.count_col is not None:
                raise ValueError(
                    "a count column makes the data implicit, which has no rating scale; drop "
                    "--rating-scale or --count-col"
                )
        # A count column (or event weights) beside a mapped rating column is refused by the reader
        # (recforge.data.io._check_implicit_weights), which every source goes through.
        if self.duplicates == "count" and self.rating_col is not None and not self.implicit:
            raise ValueError(
                "duplicates 'count' turns repeats into weights of implicit events; "
                "add --implicit (the rating column is then ignored) or use last/mean"
            )
        # --item-title-col alone names the ratings file's own title column (the older
        # spelling of --title-col): two names for one column would leave one of them unread.
        if self.items is None and self.title_col is not None and self.item_title_col is not None:
            raise ValueError(
                "--title-col and --item-title-col (without --items, its older spelling) both "
                "name the ratings file's title column; drop --item-title-col, or add --items "
                "FILE whose title column it names"
            )
        if self.items is None and (self.item_id_col or self.item_feature_cols):
            raise ValueError("--item-id-col/--item-feature-cols need --items FILE")
        return self

    @classmethod
    def of(cls, spec: str | Path | DataSource, **fields: Any) -> DataSource:
        """A DataSource from a path or release name plus fields (None values are left unset).

        Raises:
            ConfigError: a field is invalid (the message names it).
            DataError: ``spec`` is neither an existing file nor a MovieLens release name.
        """
        given = {k: v for k, v in fields.items() if v is not None and v != ()}
        if isinstance(spec, DataSource):
            return spec.replace(**given) if given else spec
        text = str(spec)
        if not _is_movielens_name(text):
            path = Path(text).expanduser()
            if not path.exists():
                from recforge.data.movielens import MOVIELENS

                raise DataError(
                    f"{text}: no such file, and not a MovieLens release name "
                    f"(known: {', '.join(sorted(MOVIELENS))})"
                )
        return cls._build(path=text, **given)

    @classmethod
    def _build(cls, **fields: Any) -> DataSource:
        try:
            return cls(**fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"data source: {loc + ': ' if loc else ''}{msg}") from None

    def replace(self, **fields: Any) -> DataSource:
        """A copy with some fields changed (validated again)."""
        return self._build(**(self.model_dump() | fields))

    def __hash__(self) -> int:
        # Frozen, so hashable as before event_weights: that one dict is hashed as its items.
        return hash(
            tuple(tuple(v.items()) if isinstance(v, dict) else v for v in self.__dict__.values())
        )

    # ------------------------------------------------------------------ use
    @property
    def is_movielens(self) -> bool:
        """True when ``path`` names a MovieLens release rather than a file."""
        return _is_movielens_name(self.path)

    @property
    def name(self) -> str:
        """Short label for messages and reports (file name or release name)."""
        return self.path if self.is_movielens else Path(self.path).name

    def columns(self) -> dict[str, str | int] | None:
        """The explicit column mapping, canonical name → file column (None when none is set);
        ``"title"`` is the ratings file's title column (``title_col``, else ``item_title_col``
        without ``items``), ``"count"`` its column of per-row counts, ``"event"`` its column of
        event kinds."""
        pairs = {
            "user_id": self.user_col,
            "item_id": self.item_col,
            "rating": self.rating_col,
            "timestamp": self.time_col,
            "title": self.title_col if self.title_col is not None else self._ratings_title_col(),
            "count": self.count_col,
            "event": self.event_col,
        }
        mapping = {k: v for k, v in pairs.items() if v is not None}
        return mapping or None

    def _ratings_title_col(self) -> str | int | None:
        """``item_title_col`` when it names a column of the ratings file (no item file: the
        older spelling of ``title_col``); digits are a 0-based position, as for the other
        columns."""
        col = self.item_title_col
        if self.items is not None or col is None:
            return None
        return int(col.strip()) if col.strip().isdigit() else col

    def event_settings(self) -> dict[str, Any] | None:
        """The event settings applied when reading (``event_col``, ``event_weights``,
        ``events``), JSON-able, as ``recforge data split`` records them in ``split.json``; None
        when neither weights nor kinds to keep are given (every event weighs 1)."""
        if self.event_weights is None and self.events is None:
            return None
        kept = list(self.events) if self.events is not None else None
        return {"event_col": self.event_col, "event_weights": self.event_weights, "events": kept}

    def read_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`recforge.data.io.read_ratings` for this source."""
        return {
            "sep": self.sep,
            "columns": self.columns(),
            "header": self.header,
            "rating_scale": self.rating_scale,
            "duplicates": self.duplicates,
            "encoding": self.encoding,
            "implicit": self.implicit,
            "time_format": self.time_format,
            "event_weights": self.event_weights,
            "events": self.events,
        }

    def load(self) -> Any:
        """Read the data as :class:`~recforge.data.interactions.Interactions`."""
        from recforge.data.sources import load_dataset

        return load_dataset(self)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-able form stored in a run's manifest (``data_source``)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> DataSource | None:
        """The source a run was trained on: ``data_source``, else an old run's ``data`` string.

        Old runs recorded ``data`` as given on the command line (possibly relative); it is
        resolved against the current directory, as those runs always were.
        """
        stored = manifest.get("data_source")
        if isinstance(stored, dict):
            try:
                return cls(**stored)
            except ValidationError as exc:
                msg = exc.errors()[0]["msg"]
                raise ConfigError(f"manifest data_source is invalid ({msg})") from None
        data = manifest.get("data")
        if isinstance(data, str) and data:
            return cls._build(path=data)
        return None
