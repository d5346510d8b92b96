"""Item metadata for responses and search by id or title (pandas only; no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from recforge.data.domain import Nouns, nouns_for
from recforge.serve.schemas import Item


class Catalog:
    """Metadata of every item, keyed by the raw id as text, with a search by id and title.

    Args:
        meta: frame indexed by raw item id with optional ``title``, ``year``, ``genres`` columns;
            ``meta.attrs["item_noun"]`` names the domain (see :mod:`recforge.data.domain`).
        popularity: optional ``{item id text: count}``; search ranks more popular titles first.
        known_ids: every item id (as text) the model knows, so that a search for an id finds items
            without metadata too; default: the ids of ``meta``.
    """

    def __init__(
        self,
        meta: pd.DataFrame | None,
        popularity: dict[str, float] | None = None,
        known_ids: npt.NDArray[Any] | None = None,
    ):
        self._items: dict[str, Item] = {}
        self._ids: npt.NDArray[Any] = np.array([], dtype=object)
        self._titles = pd.Series([], dtype=object)
        self._pop = np.zeros(0)
        self._known: frozenset[str] = (
            frozenset(known_ids.tolist()) if known_ids is not None else frozenset()
        )
        #: Words for the items and their categories ("movies"/"genres" only for MovieLens).
        self.nouns: Nouns = nouns_for(meta)
        if meta is None or len(meta) == 0:
            return
        ids = [str(i) for i in meta.index.tolist()]
        titles = meta["title"] if "title" in meta.columns else pd.Series([None] * len(meta))
        years = meta["year"] if "year" in meta.columns else pd.Series([None] * len(meta))
        genres = meta["genres"] if "genres" in meta.columns else pd.Series([None] * len(meta))
        # Build every response object once: per-request metadata lookups then cost a dict hit.
        for iid, t, y, g in zip(ids, titles.tolist(), years.tolist(), genres.tolist(), strict=True):
            self._items[iid] = Item(
                item_id=iid,
                title=None if t is None or (isinstance(t, float) and np.isnan(t)) else str(t),
                year=None if y is None or pd.isna(y) else int(y),
                genres=[] if g is None or isinstance(g, float) else [str(x) for x in g],
            )
        self._ids = np.asarray(ids, dtype=object)
        self._titles = pd.Series([t or "" for t in titles.astype(object).tolist()]).str.lower()
        pop = popularity or {}
        self._pop = np.asarray([pop.get(i, 0.0) for i in ids], dtype=np.float64)

    @classmethod
    def from_parquet(cls, path: Path) -> Catalog:
        """Read ``items.parquet`` of a run directory (empty catalogue when absent)."""
        if not path.is_file():
            return cls(None)
        frame = pd.read_parquet(path)
        if "item_id" in frame.columns:
            frame = frame.set_index("item_id")
        return cls(frame)

    def __len__(self) -> int:
        return len(self._items)

    def knows(self, item_id: str) -> bool:
        """Whether ``item_id`` is a known item (with or without metadata)."""
        return item_id in self._items or item_id in self._known

    def item(self, item_id: str) -> Item:
        """The item's metadata, or a bare item when the catalogue does not know it."""
        found = self._items.get(item_id)
        return found if found is not None else Item(item_id=item_id)

    def search(self, query: str, limit: int) -> list[Item]:
        """The item whose id is ``query`` (exactly), then items whose title contains it
        (case-insensitive): prefix matches first, then by popularity, then by title."""
        raw = query.strip()
        q = raw.lower()
        if not q:
            return []
        exact = [self.item(raw)] if self.knows(raw) else []
        if not len(self._items) or limit <= len(exact):
            return exact[:limit]
        hit = self._titles.str.contains(q, regex=False).to_numpy().copy()
        if exact and raw in self._items:
            hit[int(np.flatnonzero(self._ids == raw)[0])] = False  # listed once, first
        rows = np.flatnonzero(hit)
        if not len(rows):
            return exact
        titles = self._titles.to_numpy()[rows]
        prefix = np.fromiter((t.startswith(q) for t in titles), bool, len(rows))
        order = np.lexsort((titles, -self._pop[rows], ~prefix))
        return exact + [self._items[self._ids[r]] for r in rows[order[: limit - len(exact)]]]
