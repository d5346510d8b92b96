"""Event kinds of an e-commerce log: ``view``, ``addtocart``, ``transaction`` in one column.

A RetailRocket-style log (``timestamp,visitorid,event,itemid,transactionid``) or the Kaggle
"eCommerce behavior" export (``event_time,event_type,product_id,user_id,...``) says in one column
what each row is. :mod:`recforge.data.io` reads that column as the ``event`` role; this module
holds what does not need the parsed file: the settings a user gives and how they are checked.

* ``event_weights`` (``--event-weights view=1,addtocart=3,transaction=5``): each row weighs its
  kind's weight, a confidence weight exactly as a count is (summed over a pair's rows under
  ``duplicates="count"``, times the count with a count column); a weight of 0 drops the kind.
  Every kind in the file needs a weight, so a kind nobody thought of is never silently weighted.
* ``events`` (``--events transaction,addtocart``): keep only the rows of these kinds.

Kinds are compared as written, case-sensitively, with surrounding whitespace stripped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recforge.errors import ConfigError

if TYPE_CHECKING:  # numpy and pandas load only when a column is read: --help stays light
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

__all__ = [
    "MAX_FOUND_KINDS",
    "Kinds",
    "check_event_weights",
    "check_events",
    "parse_event_weights",
    "parse_events",
    "read_kinds",
    "why_not_events",
]

#: A column found by its name (``event``, ``action``...) is read as event kinds only when it
#: holds text with at most this many distinct values: more is a free-text or id column.
MAX_FOUND_KINDS = 50

_WEIGHTS_EXAMPLE = "e.g. --event-weights view=1,addtocart=3,transaction=5"


def parse_event_weights(text: str) -> dict[str, float]:
    """``"view=1,addtocart=3,transaction=5"`` → ``{"view": 1.0, "addtocart": 3.0, ...}``.

    Raises:
        ConfigError: a pair without ``=``, an empty kind, a kind twice, or a weight that is not
            a number >= 0 (the message names the pair and the fix).
    """
    weights: dict[str, float] = {}
    for pair in (p for p in text.split(",") if p.strip()):
        kind, eq, value = pair.partition("=")
        if not eq:
            raise ConfigError(
                f"--event-weights {text!r}: {pair.strip()!r} has no weight; write "
                f"KIND=WEIGHT pairs, {_WEIGHTS_EXAMPLE}"
            )
        try:
            number = float(value.strip())
        except ValueError:
            raise ConfigError(
                f"--event-weights {text!r}: the weight {value.strip()!r} of {kind.strip()!r} "
                f"is not a number; {_WEIGHTS_EXAMPLE}"
            ) from None
        if kind.strip() in weights:
            raise ConfigError(f"--event-weights {text!r}: {kind.strip()!r} is given twice")
        weights[kind.strip()] = number
    return check_event_weights(weights, flag=f"--event-weights {text!r}")


def check_event_weights(
    weights: Mapping[str, object], *, flag: str = "event_weights"
) -> dict[str, float]:
    """``weights`` as ``{kind: float}``, kinds stripped, after checking every weight.

    Raises:
        ConfigError: no kind at all, an empty kind, two kinds equal once stripped, or a weight
            that is not a finite number >= 0.
    """
    if not isinstance(weights, Mapping) or not weights:
        raise ConfigError(f"{flag}: give at least one KIND=WEIGHT pair, {_WEIGHTS_EXAMPLE}")
    out: dict[str, float] = {}
    for kind, value in weights.items():
        name = str(kind).strip()
        if not name:
            raise ConfigError(f"{flag}: an event kind is empty; {_WEIGHTS_EXAMPLE}")
        if name in out:
            raise ConfigError(f"{flag}: {name!r} is given twice")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{flag}: the weight {value!r} of {name!r} is not a number")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"{flag}: the weight {value:g} of {name!r} is not a number >= 0; weights are "
                "confidence weights (0 drops the kind)"
            )
        out[name] = float(value)
    return out


def parse_events(text: str) -> tuple[str, ...]:
    """``"transaction, addtocart"`` → ``("transaction", "addtocart")``.

    Raises:
        ConfigError: no kind named.
    """
    return check_events(text.split(","), flag=f"--events {text!r}")


def check_events(kinds: Iterable[object], *, flag: str = "events") -> tuple[str, ...]:
    """The kinds to keep, stripped, in the order given and without repeats.

    Raises:
        ConfigError: a single string (it would be read letter by letter) or no kind at all.
    """
    if isinstance(kinds, str):
        raise ConfigError(f"{flag}: give a list of kinds, e.g. events=['transaction']")
    out = tuple(dict.fromkeys(k for k in (str(v).strip() for v in kinds) if k))
    if not out:
        raise ConfigError(f"{flag}: name at least one event kind, e.g. --events transaction")
    return out


@dataclass(frozen=True)
class Kinds:
    """The event kinds of a column, read once (:func:`read_kinds`)."""

    codes: npt.NDArray[np.int64]  # each row's kind as an index into ``names``; -1: empty cell
    names: list[str]  # the kinds, stripped, case kept, in order of first appearance
    dtype: str  # the column's type; text columns are ``object``/``string``/``category``

    @property
    def text(self) -> bool:
        """Whether the column holds text (not numbers or dates)."""
        return self.dtype in ("object", "string", "str")

    def rows(self) -> npt.NDArray[np.int64]:
        """Rows of each kind (aligned with ``names``)."""
        import numpy as np

        counted: npt.NDArray[np.int64] = np.bincount(
            self.codes[self.codes >= 0], minlength=len(self.names)
        )
        return counted


def read_kinds(col: pd.Series) -> Kinds:
    """The kinds of ``col``: text with surrounding whitespace stripped, case kept; an empty or
    missing cell is no kind (code -1).

    The column is factorized first and only its distinct values are stripped, so a 20M-row log
    costs one hash pass, not 20M string operations.
    """
    import numpy as np
    import pandas as pd

    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    names = pd.Index(uniques).astype(str).str.strip()
    # " view" and "view" become one kind; a blank one is none (-1, as a missing cell).
    merged, kinds = pd.factorize(names.where(names != ""), use_na_sentinel=True)
    found = np.where(codes >= 0, merged[np.maximum(codes, 0)], -1) if len(merged) else codes
    text = "object" if dtype.kind == "O" or isinstance(dtype, pd.StringDtype) else str(dtype)
    return Kinds(np.asarray(found, dtype=np.int64), [str(k) for k in kinds], text)


def why_not_events(found: Kinds) -> str | None:
    """Why a column found by its name is no column of event kinds (None when it is one): it
    holds numbers, empty cells, or more than :data:`MAX_FOUND_KINDS` distinct values."""
    if not found.text:
        return f"it holds {found.dtype} values, not text"
    import pandas as pd

    if (found.codes < 0).any():
        return "it has empty cells"
    if pd.to_numeric(pd.Series(found.names), errors="coerce").notna().all():
        return "it holds numbers, not text"
    if len(found.names) > MAX_FOUND_KINDS:
        return f"it holds {len(found.names)} distinct values, more than {MAX_FOUND_KINDS} kinds"
    return None
