"""IdVocab: the one place where raw ids become contiguous indices and back.

Raw ids (``user_id``/``item_id``) are whatever the input file holds: integers or strings. Indices
(``user_idx``/``item_idx``) are positions in embedding tables and score vectors. Indices never leave
the library; everything public speaks raw ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from recforge.errors import ConfigError, DataError, UnknownIdError

MissingPolicy = Literal["error", "negative"]

#: Inputs up to this many ids may take the dict path of :meth:`IdVocab.index`.
_SMALL_LOOKUP = 32


class IdVocab:
    """Immutable bijection between raw ids and ``0..n-1``.

    Args:
        ids: the raw ids, in index order. Must be unique.
        name: what the ids are ("user" or "item"); used in error messages.
    """

    __slots__ = ("_ids", "_index", "_table", "name")

    def __init__(self, ids: Sequence[Any] | npt.ArrayLike, name: str = "id") -> None:
        arr = _as_id_array(ids)
        index = pd.Index(arr)
        if not index.is_unique:
            dup = index[index.duplicated()][0]
            raise DataError(f"{name} vocabulary has duplicate id {_plain(dup)!r}")
        arr.flags.writeable = False
        self._ids = arr
        self._index = index
        self._table: dict[Any, int] | None = None
        self.name = name

    @classmethod
    def from_values(cls, values: npt.ArrayLike, name: str = "id") -> IdVocab:
        """Vocabulary of the distinct values, sorted (so it is independent of row order)."""
        return cls(_unique_sorted(_as_id_array(values)), name=name)

    @property
    def ids(self) -> npt.NDArray[Any]:
        """Raw ids in index order (read-only)."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, raw_id: object) -> bool:
        return bool(self._index.__contains__(raw_id))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdVocab) and np.array_equal(self._ids, other._ids)

    def __hash__(self) -> int:
        # Must agree with __eq__, which ignores the name.
        return hash(len(self))

    def __repr__(self) -> str:
        return f"IdVocab({self.name}, n={len(self)})"

    def index(
        self, ids: Iterable[Any] | npt.ArrayLike, missing: MissingPolicy = "error"
    ) -> npt.NDArray[np.int64]:
        """Map raw ids to indices.

        Args:
            ids: raw ids.
            missing: ``"error"`` raises :class:`UnknownIdError` naming the first unknown id;
                ``"negative"`` returns -1 for unknown ids. Any other value is a
                :class:`~recforge.errors.ConfigError` (a typo must not silently mean -1).
        """
        if missing not in ("error", "negative"):
            raise ConfigError(f"missing must be 'error' or 'negative', got {missing!r}")
        small = self._small_index(ids)
        if small is not None:
            return small
        is_array = isinstance(ids, np.ndarray | pd.Series | pd.Index)
        arr = _as_id_array(ids if is_array else list(cast(Iterable[Any], ids)))
        idx: npt.NDArray[np.int64] = self._index.get_indexer(arr).astype(np.int64)
        if missing == "error" and (idx < 0).any():
            bad = arr[np.flatnonzero(idx < 0)[0]]
            raise UnknownIdError(f"unknown {self.name} id {_plain(bad)!r}")
        return idx

    def _small_index(self, ids: Any) -> npt.NDArray[np.int64] | None:
        """A few known plain ids by dict lookup (a service's per-request ids), else None.

        ``pandas.Index.get_indexer`` costs ~0.1 ms a call whatever the input size; a request
        looks ids up a dozen times. Only exact hits of int / str ids take this path, so the
        answer is the one ``get_indexer`` gives; anything else (misses, other types, long
        inputs) goes the general way, with its coercions and its error message.
        """
        if not isinstance(ids, list | tuple) or len(ids) > _SMALL_LOOKUP:
            return None
        if self._table is None:
            self._table = {raw: i for i, raw in enumerate(self._ids.tolist())}
        out = []
        for x in ids:
            if isinstance(x, bool) or not isinstance(x, int | str | np.integer | np.str_):
                return None
            found = self._table.get(x)
            if found is None:
                return None
            out.append(found)
        return np.asarray(out, dtype=np.int64)

    def index_one(self, raw_id: Any) -> int:
        """Index of one raw id; :class:`UnknownIdError` if absent."""
        return int(self.index([raw_id])[0])

    def lookup(self, idx: npt.ArrayLike) -> npt.NDArray[Any]:
        """Raw ids at the given indices."""
        return self._ids[np.asarray(idx, dtype=np.int64)]

    def extend(self, ids: npt.ArrayLike) -> IdVocab:
        """A new vocabulary with unseen ``ids`` appended; existing indices are unchanged."""
        arr = _as_id_array(ids)
        new = _unique_sorted(arr[self._index.get_indexer(arr) < 0])
        if len(new) == 0:
            return self
        base = self._ids
        if base.dtype.kind != new.dtype.kind:
            base, new = base.astype(object), new.astype(object)
        return IdVocab(np.concatenate([base, new]), name=self.name)

    def to_json(self) -> str:
        """Serialise (ids as JSON numbers or strings, kind recorded so ints stay ints)."""
        kind = "int" if self._ids.dtype.kind in "iu" else "str"
        ids = self._ids.tolist() if kind == "int" else [str(x) for x in self._ids]
        if kind == "str" and any(not isinstance(x, str) for x in self._ids):
            # Mixed ids (e.g. an int vocabulary extended with strings): keep each id's JSON type,
            # otherwise 1 would come back as "1" and no longer match.
            kind = "mixed"
            ids = [_plain(x) if isinstance(_plain(x), int) else str(x) for x in self._ids]
        return json.dumps({"name": self.name, "kind": kind, "ids": ids})

    @classmethod
    def from_json(cls, text: str) -> IdVocab:
        """Inverse of :meth:`to_json`."""
        obj = json.loads(text)
        try:
            ids = (
                np.asarray(obj["ids"], dtype=np.int64)
                if obj["kind"] == "int"
                else np.asarray(obj["ids"], dtype=object)
            )
        except OverflowError:
            raise DataError(
                f"{obj.get('name', 'id')} vocabulary holds an id outside the 64-bit integer range"
            ) from None
        return cls(ids, name=obj.get("name", "id"))


def _as_id_array(ids: Any) -> npt.NDArray[Any]:
    arr = np.asarray(ids)
    if (
        arr.dtype.kind == "U"
        and isinstance(ids, list | tuple)
        and not all(isinstance(x, str) for x in ids)
    ):
        # numpy turns [1, "a"] into ["1", "a"]; keep each id's own type so 1 never matches "1".
        arr = np.asarray(ids, dtype=object)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f":
        if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise DataError("ids must be integers or strings, got non-integral numbers")
        return arr.astype(np.int64)
    return arr.astype(object)


def _unique_sorted(arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Distinct values, sorted where they can be ordered (mixed types keep first-seen order)."""
    uniq = np.asarray(pd.unique(pd.Series(arr, dtype=arr.dtype)), dtype=arr.dtype)
    try:
        return np.sort(uniq)
    except TypeError:
        return uniq


def _plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x
