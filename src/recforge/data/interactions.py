"""Interactions: the immutable, index-encoded table every model trains on.

Holds parallel numpy arrays (``user_idx`` int32, ``item_idx`` int32, ``rating`` float32,
``timestamp`` int64) plus the two :class:`IdVocab` objects and optional metadata frames.
Filters return new objects; nothing is mutated in place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recforge.data.vocab import IdVocab
from recforge.errors import DataError

CANONICAL_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
UnknownIdPolicy = Literal["error", "extend", "drop"]


@dataclass(frozen=True, eq=False)
class Interactions:
    """Encoded (user, item, rating, timestamp) events with their vocabularies.

    Attributes:
        user_idx: int32 index into ``users`` per event.
        item_idx: int32 index into ``items`` per event.
        rating: float32 rating (1.0 for implicit events).
        timestamp: int64 seconds since the epoch (0 where unknown).
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
        ts = (
            df["timestamp"].to_numpy(dtype=np.int64)
            if "timestamp" in df.columns
            else np.zeros(len(df), dtype=np.int64)
        )
        keep = (u >= 0) & (i >= 0)
        if not keep.all():
            u, i, rating, ts = u[keep], i[keep], rating[keep], ts[keep]
        return cls(
            u.astype(np.int32),
            i.astype(np.int32),
            np.ascontiguousarray(rating, dtype=np.float32),
            np.ascontiguousarray(ts, dtype=np.int64),
            users,
            items,
            item_meta=item_meta,
            user_meta=user_meta,
            rating_scale=rating_scale,
            source=source,
        )

    def to_frame(self) -> pd.DataFrame:
        """Canonical frame with raw ids."""
        return pd.DataFrame(
            {
                "user_id": self.users.lookup(self.user_idx),
                "item_id": self.items.lookup(self.item_idx),
                "rating": self.rating,
                "timestamp": self.timestamp,
            }
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
        for arr in (self.user_idx, self.item_idx, self.rating, self.timestamp):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(self.users.to_json().encode())
        h.update(self.items.to_json().encode())
        return h.hexdigest()

    # ------------------------------------------------------------------ filters (new objects)
    def subset(
        self, mask_or_rows: npt.NDArray[np.bool_] | npt.NDArray[np.integer[Any]]
    ) -> Interactions:
        """Events selected by a boolean mask or row indices; vocabularies unchanged."""
        sel = np.asarray(mask_or_rows)
        return Interactions(
            self.user_idx[sel],
            self.item_idx[sel],
            self.rating[sel],
            self.timestamp[sel],
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
            self.timestamp.copy(),
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
