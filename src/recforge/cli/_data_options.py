"""The data-source flags every command that reads data shares, defined once.

``@data_options`` adds ``--user-col``, ``--item-col``, ``--rating-col``, ``--time-col``,
``--title-col``, ``--count-col``, ``--event-col``, ``--event-weights``, ``--events``,
``--implicit``, ``--sep``, ``--header/--no-header``, ``--rating-scale``, ``--time-format``,
``--duplicates``, ``--items``, ``--item-id-col``, ``--item-title-col`` and
``--item-feature-cols`` to a typer command and hands the command one :class:`DataFlags`
(argument ``data_flags``) that builds the
:class:`~recforge.data.datasource.DataSource`::

    @app.command()
    @data_options
    def describe(source: str, data_flags: DataFlags) -> None:
        src = data_flags.source(source)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from recforge.data.datasource import DataSource, parse_rating_scale
from recforge.data.events import parse_event_weights, parse_events

_F = TypeVar("_F", bound=Callable[..., Any])
_PANEL = "Data source (your own files)"


def _opt(*names: str, help: str) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=_PANEL)


#: Option name -> (annotation) of each shared flag; the order is the help order.
_OPTIONS: dict[str, Any] = {
    "user_col": Annotated[
        str | None, _opt("--user-col", help="User id column (header name or 0-based position).")
    ],
    "item_col": Annotated[
        str | None,
        _opt(
            "--item-col",
            help="Item id column; one named like titles (Titel, title, movie, book...) holding "
            "text also gives each item its id as title, unless --items names one.",
        ),
    ],
    "rating_col": Annotated[str | None, _opt("--rating-col", help="Rating column.")],
    "time_col": Annotated[str | None, _opt("--time-col", help="Time column (epoch or dates).")],
    "title_col": Annotated[
        str | None,
        _opt(
            "--title-col",
            help="Title column of the ratings file, each row its item's title (default: an "
            "unmapped column named title, name, product_name, movie_title, Titel... holding "
            "text). An item with several titles gets its most frequent, a tie the latest "
            "row's; with --items, the item file's titles come first and this column fills the "
            "rest.",
        ),
    ],
    "count_col": Annotated[
        str | None,
        _opt(
            "--count-col",
            help="Count column (plays, views, qty: one row per user and item with a count): "
            "the data is implicit and each row weighs its count, summed over repeated rows; "
            "rows counting 0 are dropped (default: an unmapped column named plays, "
            "play_count, views, clicks, qty, count... holding numbers >= 0, when no rating "
            "column is mapped).",
        ),
    ],
    "event_col": Annotated[
        str | None,
        _opt(
            "--event-col",
            help="Event kind column of a shop log (view, addtocart, transaction; RetailRocket's "
            "event, Kaggle's event_type) (default: an unmapped column named event, event_type, "
            "action, behavior, activity... holding text with at most 50 kinds). Alone it only "
            "shows the kinds (data describe); --event-weights or --events use them.",
        ),
    ],
    "event_weights": Annotated[
        str | None,
        _opt(
            "--event-weights",
            help="Weigh each event kind, e.g. view=1,addtocart=3,transaction=5: each row counts "
            "its kind's weight as a confidence weight, summed per user and item (times the "
            "count with --count-col); 0 drops a kind. Every kind in the column needs a weight; "
            "implicit feedback only.",
        ),
    ],
    "events": Annotated[
        str | None,
        _opt(
            "--events",
            help="Keep only these event kinds, e.g. transaction or transaction,addtocart "
            "(other rows are dropped; works with ratings too).",
        ),
    ],
    "implicit": Annotated[
        bool | None,
        _opt(
            "--implicit/--explicit",
            help="Implicit feedback: ignore ratings, every event is a positive "
            "(default: implicit when the file has no rating column).",
        ),
    ],
    "sep": Annotated[
        str | None, _opt("--sep", help="Field separator: tab , ; | :: space (default: sniffed).")
    ],
    "header": Annotated[
        bool | None,
        _opt(
            "--header/--no-header",
            help="Whether the first line names the columns (default: detected).",
        ),
    ],
    "rating_scale": Annotated[
        str | None,
        _opt(
            "--rating-scale",
            help="LOW:HIGH of the ratings, e.g. 1:10 or 0.5:5 (a decimal comma works: 0,5:5) "
            "(default: min:max).",
        ),
    ],
    "time_format": Annotated[
        str | None,
        _opt(
            "--time-format",
            help="auto | s | ms | us | ns | excel (spreadsheet serial dates, days since "
            "1899-12-30) | iso | a strftime pattern like %d/%m/%Y (default auto).",
        ),
    ],
    "duplicates": Annotated[
        str | None,
        _opt(
            "--duplicates",
            help="Repeated (user, item) rows: last | mean | count | error (default: count for "
            "implicit data, the repeat count becoming a confidence weight; last otherwise).",
        ),
    ],
    "items": Annotated[
        Path | None, _opt("--items", help="Item file (CSV/TSV/Parquet) with titles/categories.")
    ],
    "item_id_col": Annotated[
        str | None, _opt("--item-id-col", help="Item file's id column (default: first column).")
    ],
    "item_title_col": Annotated[
        str | None,
        _opt(
            "--item-title-col",
            help="The --items file's title column (default: title or name); alone, the older "
            "spelling of --title-col.",
        ),
    ],
    "item_feature_cols": Annotated[
        str | None,
        _opt("--item-feature-cols", help="Item file's category columns, comma-separated."),
    ],
}


@dataclass(frozen=True)
class DataFlags:
    """The values of the shared data flags, as given (None = not given)."""

    user_col: str | None = None
    item_col: str | None = None
    rating_col: str | None = None
    time_col: str | None = None
    title_col: str | None = None
    count_col: str | None = None
    event_col: str | None = None
    event_weights: str | None = None
    events: str | None = None
    implicit: bool | None = None
    sep: str | None = None
    header: bool | None = None
    rating_scale: str | None = None
    time_format: str | None = None
    duplicates: str | None = None
    items: Path | None = None
    item_id_col: str | None = None
    item_title_col: str | None = None
    item_feature_cols: str | None = None

    def given(self) -> dict[str, Any]:
        """DataSource fields for the flags that were given."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "rating_scale":
                value = parse_rating_scale(value)
            elif f.name == "item_feature_cols":
                value = tuple(v.strip() for v in value.split(",") if v.strip())
            elif f.name == "items":
                value = str(value)
            elif f.name == "event_weights":
                value = parse_event_weights(value)
            elif f.name == "events":
                value = parse_events(value)
            out[f.name] = value
        return out

    def any(self) -> bool:
        """True when at least one data flag was given."""
        return bool(self.given())

    def argv(self) -> list[str]:
        """The flags as typed on a command line (to record a reproducible command)."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.name == "implicit":
                out.append("--implicit" if value else "--explicit")
            elif f.name == "header":
                out.append("--header" if value else "--no-header")
            else:
                out += [flag, str(value)]
        return out

    def source(self, spec: str | Path | DataSource) -> DataSource:
        """The DataSource for ``spec`` (a path or release name) with these flags applied."""
        return DataSource.of(spec, **self.given())


def data_options(func: _F) -> _F:
    """Add the shared data flags to a typer command; it receives them as ``data_flags``."""
    sig = inspect.signature(func, eval_str=True)
    kept = [p for p in sig.parameters.values() if p.name != "data_flags"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
        for name, ann in _OPTIONS.items()
    ]
    # Keyword-only parameters must follow the others; typer does not care about the kind.
    params = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        else p
        for p in kept
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = DataFlags(**{name: kwargs.pop(name, None) for name in _OPTIONS})
        return func(*args, data_flags=flags, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params + added)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params + added} | {
        "return": sig.return_annotation
    }
    return wrapper  # type: ignore[return-value]
