"""Interactions: the immutable, index-encoded table every model trains on.

Holds parallel numpy arrays (``user_idx`` int32, ``item_idx`` int32, ``rating`` float32,
``timestamp`` int64) plus the two :class:`IdVocab` objects and optional metadata frames.
Filters return new objects; nothing is mutated in place.

Scale: 12 bytes per event (int32 + int32 + float32) plus 8 for timestamps only when the data has
them; without timestamps the ``timestamp`` attribute is a zero-stride read-only view of one 0,
so code that reads it keeps working and 100M events cost 1.2 GB, not 2 GB. :meth:`save` writes
one ``.npy`` file per array (plus JSON vocabularies, no pickle) and :meth:`Interactions.open` maps
them back with ``numpy.load(mmap_mode="r")``, so a log larger than memory is paged in on demand.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recforge._atomic import atomic_dir
from recforge.data.vocab import IdVocab
from recforge.errors import DataError

#: Version of the :meth:`Interactions.save` folder layout; :meth:`Interactions.open` refuses newer.
SAVE_FORMAT_VERSION = 1
_ARRAYS = ("user_idx", "item_idx", "rating", "timestamp")
_DTYPES = {"user_idx": np.int32, "item_idx": np.int32, "rating": np.float32, "timestamp": np.int64}

CANONICAL_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
UnknownIdPolicy = Literal["error", "extend", "drop"]


@dataclass(frozen=True, eq=False)
class Interactions:
    """Encoded (user, item, rating, timestamp) events with their vocabularies.

    Attributes:
        user_idx: int32 index into ``users`` per event.
        item_idx: int32 index into ``items`` per event.
        rating: float32 rating (1.0 for implicit events).
        timestamp: int64 seconds since the epoch (0 where unknown). Data without timestamps
            passes :func:`no_timestamps` (a zero-stride view of 0, no memory per event) and
            :attr:`has_timestamps` is False.
        users: user vocabulary; ``len(users)`` is the number of user rows of :meth:`csr`.
        items: item vocabulary.
        item_meta: optional frame indexed by raw ``item_id`` (``title``, ``genres`` list,
            ``year``, ``tags``...).
        user_meta: optional frame indexed by raw ``user_id``.
        rating_scale: (low, high) of explicit ratings, or None for implicit data.
        source: where the data came from (a file name or a MovieLens release), for reports.
    """

    user_idx: npt.NDArray[np.int32]
    item_idx: npt.NDArray[np.int32]
    rating: npt.NDArray[np.float32]
    timestamp: npt.NDArray[np.int64]
    users: IdVocab
    items: IdVocab
    item_meta: pd.DataFrame | None = None
    user_meta: pd.DataFrame | None = None
    rating_scale: tuple[float, float] | None = None
    source: str = "memory"
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.user_idx)
        for name in ("item_idx", "rating", "timestamp"):
            if len(getattr(self, name)) != n:
                raise DataError(
                    f"Interactions: column {name} has {len(getattr(self, name))} rows, expected {n}"
                )
        for arr in (self.user_idx, self.item_idx, self.rating, self.timestamp):
            arr.flags.writeable = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        users: IdVocab | None = None,
        items: IdVocab | None = None,
        unknown: UnknownIdPolicy = "error",
        item_meta: pd.DataFrame | None = None,
        user_meta: pd.DataFrame | None = None,
        rating_scale: tuple[float, float] | None = None,
        source: str = "memory",
    ) -> Interactions:
        """Encode a canonical frame (``user_id, item_id[, rating][, timestamp]``).

        Args:
            df: canonical frame, as returned by :func:`recforge.data.read_ratings`.
            users, items: existing vocabularies to encode against; built from ``df`` when None.
            unknown: what to do with ids absent from a given vocabulary: ``"error"``,
                ``"extend"`` (append them; existing indices stay valid) or ``"drop"`` the rows.
        """
        for col in ("user_id", "item_id"):
            if col not in df.columns:
                raise DataError(
                    f"{source}: missing column {col!r}; "
                    "expected user_id, item_id[, rating, timestamp]"
                )
        u_raw = df["user_id"].to_numpy()
        i_raw = df["item_id"].to_numpy()
        users = IdVocab.from_values(u_raw, "user") if users is None else users
        items = IdVocab.from_values(i_raw, "item") if items is None else items
        if unknown == "extend":
            users, items = users.extend(u_raw), items.extend(i_raw)
        u = users.index(u_raw, missing="error" if unknown == "error" else "negative")
        i = items.index(i_raw, missing="error" if unknown == "error" else "negative")
        rating = (
            df["rating"].to_numpy(dtype=np.float32)
            if "rating" in df.columns
            else np.ones(len(df), dtype=np.float32)
        )
        ts = df["timestamp"].to_numpy(dtype=np.int64) if "timestamp" in df.columns else None
        keep = (u >= 0) & (i >= 0)
        if not keep.all():
            u, i, rating = u[keep], i[keep], rating[keep]
            ts = ts[keep] if ts is not None else None
        return cls(
            u.astype(np.int32),
            i.astype(np.int32),
            np.ascontiguousarray(rating, dtype=np.float32),
            np.ascontiguousarray(ts, dtype=np.int64) if ts is not None else no_timestamps(len(u)),
            users,
            items,
            item_meta=item_meta,
            user_meta=user_meta,
            rating_scale=rating_scale,
            source=source,
        )

    def to_frame(self) -> pd.DataFrame:
        """Canonical frame with raw ids (``timestamp`` 0 where the data has none)."""
        return pd.DataFrame(
            {
                "user_id": self.users.lookup(self.user_idx),
                "item_id": self.items.lookup(self.item_idx),
                "rating": self.rating,
                "timestamp": np.asarray(self.timestamp),
            }
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write a folder ``path`` that :meth:`open` can memory-map (no pickle anywhere).

        Layout: ``user_idx.npy`` (int32), ``item_idx.npy`` (int32), ``rating.npy`` (float32),
        ``timestamp.npy`` (int64, only when :attr:`has_timestamps`), ``users.json`` and
        ``items.json`` (:meth:`IdVocab.to_json`), ``meta.json`` (format version, size, rating
        scale, source) and ``item_meta.parquet`` / ``user_meta.parquet`` when present. The folder
        is written to a temporary sibling and renamed, so a crash never leaves half of it.

        Returns:
            The folder path.
        """
        target = Path(path)
        with atomic_dir(target) as tmp:
            for name in _ARRAYS:
                if name == "timestamp" and not self.has_timestamps:
                    continue
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))
            (tmp / "users.json").write_text(self.users.to_json(), encoding="utf-8")
            (tmp / "items.json").write_text(self.items.to_json(), encoding="utf-8")
            for name, frame in (("item_meta", self.item_meta), ("user_meta", self.user_meta)):
                if frame is not None:
                    frame.to_parquet(tmp / f"{name}.parquet")
            meta = {
                "format_version": SAVE_FORMAT_VERSION,
                "n_events": len(self),
                "has_timestamps": self.has_timestamps,
                "rating_scale": list(self.rating_scale) if self.rating_scale else None,
                "source": self.source,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return target

    @classmethod
    def open(cls, path: str | Path, *, mmap: bool = True) -> Interactions:
        """Load a folder written by :meth:`save`.

        Args:
            path: the folder.
            mmap: map the arrays read-only (``numpy.memmap``; pages load on first touch, so
                opening a 100M-event log is instant and costs no memory up front) instead of
                reading them into memory.

        Raises:
            DataError: the folder is missing, from a newer recforge, or its arrays are corrupt,
                of the wrong dtype or of unequal lengths.
        """
        root = Path(path)
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{root}: no meta.json; expected a folder written by Interactions.save")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            version = int(meta["format_version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{meta_path}: unreadable ({exc}); re-save the interactions") from None
        if version > SAVE_FORMAT_VERSION:
            raise DataError(
                f"{meta_path}: format_version {version} is newer than this recforge reads "
                f"({SAVE_FORMAT_VERSION}); upgrade recforge"
            )
        arrays: dict[str, Any] = {}
        for name in _ARRAYS:
            file = root / f"{name}.npy"
            if name == "timestamp" and not meta.get("has_timestamps", True):
                arrays[name] = no_timestamps(len(arrays["user_idx"]))
                continue
            try:
                arr = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"{file}: cannot read ({exc}); re-save the interactions") from None
            if arr.dtype != _DTYPES[name] or arr.ndim != 1:
                raise DataError(
                    f"{file}: expected a 1-D {np.dtype(_DTYPES[name])} array, got "
                    f"{arr.ndim}-D {arr.dtype}; re-save the interactions"
                )
            arrays[name] = arr
        frames: dict[str, pd.DataFrame | None] = {}
        for name in ("item_meta", "user_meta"):
            file = root / f"{name}.parquet"
            frames[name] = pd.read_parquet(file) if file.is_file() else None
        scale = meta.get("rating_scale")
        return cls(
            arrays["user_idx"],
            arrays["item_idx"],
            arrays["rating"],
            arrays["timestamp"],
            IdVocab.from_json((root / "users.json").read_text(encoding="utf-8")),
            IdVocab.from_json((root / "items.json").read_text(encoding="utf-8")),
            item_meta=frames["item_meta"],
            user_meta=frames["user_meta"],
            rating_scale=(float(scale[0]), float(scale[1])) if scale else None,
            source=str(meta.get("source", str(root))),
        )

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return len(self.user_idx)

    @property
    def n_users(self) -> int:
        """Size of the user vocabulary (rows of :meth:`csr`), including users with no events."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Size of the item vocabulary (columns of :meth:`csr`)."""
        return len(self.items)

    @property
    def density(self) -> float:
        """Fraction of the user × item matrix that is observed."""
        cells = self.n_users * self.n_items
        return len(self) / cells if cells else 0.0

    @property
    def has_timestamps(self) -> bool:
        """False when built without timestamps (``timestamp`` is then a zero-stride view of 0)."""
        return not _is_placeholder(self.timestamp)

    @property
    def nbytes(self) -> int:
        """Bytes held by the event arrays (mapped pages count although they may sit on disk)."""
        return sum(int(a.nbytes) for a in (self.user_idx, self.item_idx, self.rating)) + (
            int(self.timestamp.nbytes) if self.has_timestamps else 0
        )

    @property
    def is_explicit(self) -> bool:
        """True when ratings carry a scale (explicit feedback)."""
        return self.rating_scale is not None

    def __repr__(self) -> str:
        return (
            f"Interactions({self.source}: {self.n_users} users, "
            f"{self.n_items} items, {len(self)} events)"
        )

    # ------------------------------------------------------------------ views
    def csr(self, values: Literal["rating", "binary"] = "rating") -> sp.csr_matrix:
        """User × item CSR matrix (float32), cached. Sorted indices, no duplicates."""
        key = f"csr_{values}"
        if key not in self._cache:
            data = self.rating if values == "rating" else np.ones(len(self), dtype=np.float32)
            mat = sp.csr_matrix(
                (data, (self.user_idx, self.item_idx)),
                shape=(self.n_users, self.n_items),
                dtype=np.float32,
            )
            mat.sum_duplicates()
            if values == "binary":
                # Repeated (user, item) events (a frame built in Python may hold them) are one
                # interaction here, not a count: counts are the "rating" view's job.
                mat.data[:] = 1.0
            mat.sort_indices()
            self._cache[key] = mat
        out: sp.csr_matrix = self._cache[key]
        return out

    def user_counts(self) -> npt.NDArray[np.int64]:
        """Events per user index."""
        return np.bincount(self.user_idx, minlength=self.n_users).astype(np.int64)

    def item_counts(self) -> npt.NDArray[np.int64]:
        """Events per item index (popularity)."""
        return np.bincount(self.item_idx, minlength=self.n_items).astype(np.int64)

    def user_history(self, user_idx: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """(item indices, ratings) of one user, item-sorted."""
        m = self.csr()
        lo, hi = m.indptr[user_idx], m.indptr[user_idx + 1]
        return m.indices[lo:hi].astype(np.int32), m.data[lo:hi]

    @cached_property
    def global_mean(self) -> float:
        """Mean rating (0.0 when empty)."""
        return float(self.rating.mean()) if len(self) else 0.0

    def fingerprint(self) -> str:
        """Stable SHA-256 over the encoded arrays and vocabularies (for run manifests)."""
        h = hashlib.sha256()
        for arr in (self.user_idx, self.item_idx, self.rating):
            h.update(np.ascontiguousarray(arr).tobytes())
        # Same bytes as a materialised zero column, so fingerprints do not depend on the storage;
        # hashed in blocks so a placeholder is never expanded in full.
        ts = self.timestamp
        for s in range(0, len(ts), 1 << 22):
            h.update(np.ascontiguousarray(ts[s : s + (1 << 22)]).tobytes())
        h.update(self.users.to_json().encode())
        h.update(self.items.to_json().encode())
        return h.hexdigest()

    # ------------------------------------------------------------------ filters (new objects)
    def subset(
        self, mask_or_rows: npt.NDArray[np.bool_] | npt.NDArray[np.integer[Any]]
    ) -> Interactions:
        """Events selected by a boolean mask or row indices; vocabularies unchanged."""
        sel = np.asarray(mask_or_rows)
        users = self.user_idx[sel]
        return Interactions(
            users,
            self.item_idx[sel],
            self.rating[sel],
            self.timestamp[sel] if self.has_timestamps else no_timestamps(len(users)),
            self.users,
            self.items,
            item_meta=self.item_meta,
            user_meta=self.user_meta,
            rating_scale=self.rating_scale,
            source=self.source,
        )

    def compact(self) -> Interactions:
        """Re-encode so the vocabularies hold only ids that occur (sorted as before)."""
        u_used = np.unique(self.user_idx)
        i_used = np.unique(self.item_idx)
        u_map = np.full(self.n_users, -1, dtype=np.int64)
        u_map[u_used] = np.arange(len(u_used))
        i_map = np.full(self.n_items, -1, dtype=np.int64)
        i_map[i_used] = np.arange(len(i_used))
        return Interactions(
            u_map[self.user_idx].astype(np.int32),
            i_map[self.item_idx].astype(np.int32),
            self.rating.copy(),
            self.timestamp.copy() if self.has_timestamps else self.timestamp,
            IdVocab(self.users.ids[u_used], name="user"),
            IdVocab(self.items.ids[i_used], name="item"),
            item_meta=self.item_meta,
            user_meta=self.user_meta,
            rating_scale=self.rating_scale,
            source=self.source,
        )

    def reencode(
        self, users: IdVocab, items: IdVocab, unknown: UnknownIdPolicy = "extend"
    ) -> Interactions:
        """Encode these events against other vocabularies (e.g. a test set against train's)."""
        return Interactions.from_frame(
            self.to_frame(),
            users=users,
            items=items,
            unknown=unknown,
            item_meta=self.item_meta,
            user_meta=self.user_meta,
            rating_scale=self.rating_scale,
            source=self.source,
        )

    def k_core(self, k: int, *, max_iter: int = 100) -> Interactions:
        """Iteratively drop users and items with fewer than ``k`` events, then compact."""
        if k <= 1:
            return self.compact()
        keep = np.ones(len(self), dtype=bool)
        for _ in range(max_iter):
            u_cnt = np.bincount(self.user_idx[keep], minlength=self.n_users)
            i_cnt = np.bincount(self.item_idx[keep], minlength=self.n_items)
            new_keep = keep & (u_cnt[self.user_idx] >= k) & (i_cnt[self.item_idx] >= k)
            if new_keep.sum() == keep.sum():
                break
            keep = new_keep
        return self.subset(keep).compact()

    def with_ratings(
        self, rating: npt.NDArray[np.floating[Any]], *, implicit: bool = False
    ) -> Interactions:
        """Same events with replaced rating values (e.g. a label map); implicit drops the scale."""
        return Interactions(
            self.user_idx,
            self.item_idx,
            np.ascontiguousarray(rating, dtype=np.float32),
            self.timestamp,
            self.users,
            self.items,
            item_meta=self.item_meta,
            user_meta=self.user_meta,
            rating_scale=None if implicit else self.rating_scale,
            source=self.source,
        )


_ZERO_TS = np.zeros(1, dtype=np.int64)
_ZERO_TS.flags.writeable = False


def no_timestamps(n: int) -> npt.NDArray[np.int64]:
    """The ``timestamp`` of ``n`` events without timestamps: a read-only view of one int64 zero.

    Reads as ``n`` zeros (so splits, describe and fingerprints behave as with a zero column) but
    costs 8 bytes whatever ``n``; :attr:`Interactions.has_timestamps` recognises it.
    """
    out: npt.NDArray[np.int64] = np.broadcast_to(_ZERO_TS, (n,))
    return out


def _is_placeholder(arr: npt.NDArray[Any]) -> bool:
    # Only views of the shared zero can overlap its 8 bytes (a bounds check, not a scan).
    return bool(np.may_share_memory(arr, _ZERO_TS))
