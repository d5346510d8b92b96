"""The loaded state behind the API: a live backend, a store backend, or both.

A :class:`Service` is immutable once built. Hot reload builds a new one next to it and swaps the
single reference the app holds (``app.state.service``); every request reads that reference once
at its start, so requests already running finish on the old models and none is dropped.

Importing this module never imports torch; only :func:`load_service` with a run does.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recforge.serve.catalog import Catalog
from recforge.serve.schemas import ScoredItem
from recforge.serve.settings import Settings

if TYPE_CHECKING:
    from recforge.serve.live import LiveBackend
    from recforge.store import Store, VersionInfo


class StoreBackend:
    """Precomputed lists of one store version (SQLAlchemy only; no torch).

    Args:
        url: store URL written by ``recforge export``.
        version: a version name or ``"active"`` (resolved once, at load).
    """

    def __init__(self, url: str, version: str) -> None:
        from recforge.store import open_store

        self.url = url
        self.store: Store = open_store(url, create=False)
        self.version = self.store.resolve(version)
        info: VersionInfo | None = next(
            (v for v in self.store.list() if v.model_version == self.version), None
        )
        self.info = info
        run_path = info.run_path if info is not None else None
        self.run_path = Path(run_path) if run_path else None

    def recommend(self, user_id: str, k: int, catalog: Catalog) -> list[ScoredItem] | None:
        """Stored top-k of a user (None when the version has no rows for it)."""
        rows = self.store.get(user_id, k, version=self.version)
        if not rows:
            return None
        return [
            ScoredItem(**catalog.item(r.item_id).__dict__, rank=r.rank, score=r.score) for r in rows
        ]

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.store.close()


@dataclass(frozen=True)
class Service:
    """Everything one generation of the service answers from."""

    settings: Settings
    live: LiveBackend | None
    store: StoreBackend | None
    catalog: Catalog
    model_version: str
    model_name: str | None
    loaded_at: str
    fingerprint: tuple[Any, ...]

    @property
    def mode(self) -> str:
        """``live``, ``store`` or ``live+store``."""
        if self.live is not None and self.store is not None:
            return "live+store"
        return "live" if self.live is not None else "store"

    def close(self) -> None:
        """Release database connections (models are freed with the object)."""
        if self.store is not None:
            self.store.close()


def fingerprint(settings: Settings) -> tuple[Any, ...]:
    """What changes when a new model should be served: the run's manifest and the store's
    active version. Cheap: one ``stat`` and one small query."""
    parts: list[Any] = []
    if settings.run:
        manifest = Path(settings.run) / "manifest.json"
        try:
            st = manifest.stat()
            parts.append((str(manifest.resolve()), st.st_mtime_ns, st.st_ino))
        except OSError:
            parts.append(None)
    if settings.store:
        if settings.store_version == "active":
            from recforge.store import open_store

            with open_store(settings.store, create=False) as store:
                parts.append(store.active())
        else:
            parts.append(settings.store_version)
    return tuple(parts)


def load_service(settings: Settings) -> Service:
    """Load the run and/or store named by ``settings`` (raises RecError subclasses)."""
    settings.check()
    fp = fingerprint(settings)
    live = None
    store = None
    if settings.run:
        from recforge.serve.live import LiveBackend

        live = LiveBackend(settings.run, settings)
    if settings.store:
        store = StoreBackend(settings.store, settings.store_version)
    if live is not None:
        catalog = live.catalog
    elif store is not None and store.run_path is not None:
        catalog = Catalog.from_parquet(store.run_path / "items.parquet")
    else:
        catalog = Catalog(None)
    if store is not None:
        version = store.version
        name = store.info.model_name if store.info is not None else None
    else:
        assert live is not None
        version, name = live.model_version, live.model_name
    return Service(
        settings=settings,
        live=live,
        store=store,
        catalog=catalog,
        model_version=version,
        model_name=name,
        loaded_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        fingerprint=fp,
    )
