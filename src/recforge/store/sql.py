"""A SQL store of precomputed recommendations: SQLite by default, PostgreSQL by URL.

:func:`open_store` returns a :class:`Store`. Writers (``recforge export``) call :meth:`Store.write`
with blocks of rows; readers (the service's store mode) call :meth:`Store.get`. This module imports
SQLAlchemy and the standard library only, never torch, so a serving process stays small.

Safety model: :meth:`Store.write` runs the whole export of one version (delete any previous rows of
that version, insert the ``runs`` row, bulk-load every recommendation) inside **one transaction**.
Until it commits, readers keep seeing the previous state; if the writer dies (exception, SIGKILL,
power loss) the transaction never commits: SQLite rolls the WAL back on the next open and
PostgreSQL aborts the backend's transaction when the client connection drops. Re-running a version
replaces it inside the same transaction, so the result is the same rows, never duplicates.

Bulk paths: PostgreSQL streams rows with psycopg 3 ``COPY ... FROM STDIN``; SQLite uses one
``executemany`` per block with ``journal_mode=WAL`` and ``synchronous=NORMAL``.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import io
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recforge.errors import RecError
from recforge.store.schema import REC_COLUMNS, active_version, metadata, recommendations, runs

__all__ = [
    "ACTIVE",
    "Recommendation",
    "RowBlock",
    "Store",
    "StoreError",
    "VersionInfo",
    "open_store",
]

#: The ``version`` argument that means "whichever version is marked active".
ACTIVE = "active"
_SLOT = "default"


class StoreError(RecError, LookupError):
    """The store is missing, unreachable, or has no such (or no active) version."""


@dataclass(frozen=True)
class Recommendation:
    """One stored recommendation: raw item id (text), score and 1-based rank."""

    item_id: str
    score: float
    rank: int


@dataclass(frozen=True)
class VersionInfo:
    """One exported model version as listed by :meth:`Store.list`."""

    model_version: str
    created_at: str | None
    exported_at: str
    model_name: str
    k: int
    n_users: int
    n_rows: int
    active: bool
    run_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON output)."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class RowBlock:
    """A block of recommendation rows for :meth:`Store.write`, one entry per row.

    Attributes:
        n_users: how many users these rows cover (for counts and progress).
        user_id, item_id: raw ids as text (any sequence with ``tolist()`` or a list).
        rank: 1-based ranks (integers); score: float scores.
    """

    n_users: int
    user_id: Any
    rank: Any
    item_id: Any
    score: Any

    def __len__(self) -> int:
        return len(self.rank)


def _aslist(values: Any) -> list[Any]:
    out: list[Any] = values.tolist() if hasattr(values, "tolist") else list(values)
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers keep reading the previous version while an export writes; NORMAL sync is
    # durable at checkpoints and safe against corruption (a crash may lose only the last commit).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA cache_size=-262144")  # 256 MiB page cache: the PK B-tree stays hot
    cur.execute("PRAGMA temp_store=MEMORY")
    # A big export grows the WAL to the size of the data; truncate it after checkpoints.
    cur.execute("PRAGMA journal_size_limit=67108864")
    cur.close()


def _engine_for(url: str) -> Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise StoreError(
            f"bad store URL {url!r}; use sqlite:///path/recs.db or postgresql://user@host/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database not in (None, "", ":memory:"):
            from pathlib import Path

            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 60})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, not psycopg2
        if parsed.drivername != "postgresql+psycopg":
            raise StoreError(f"store URL {url!r}: only the psycopg (3) driver is supported")
        return sa.create_engine(parsed)
    raise StoreError(
        f"store URL {url!r}: unsupported database {backend!r}; use sqlite or postgresql"
    )


def open_store(url: str, *, create: bool = True) -> Store:
    """Open (and by default create the tables of) the store at a SQLAlchemy URL.

    Args:
        url: ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or
            ``postgresql://user:pass@host:port/db`` (driven by psycopg 3).
        create: create missing tables. With False, a database without the tables raises
            :class:`StoreError` (a reader should not create an empty store by accident).
    """
    engine = _engine_for(url)
    store = Store(engine)
    try:
        if create:
            metadata.create_all(engine)
        elif not sa.inspect(engine).has_table("recommendations"):
            raise StoreError(f"{_safe(url)}: no recforge store here; run `recforge export` first")
    except sa.exc.OperationalError as exc:
        engine.dispose()
        raise StoreError(f"{_safe(url)}: cannot open the store ({_first_line(exc)})") from None
    return store


def _safe(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<store>"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Store:
    """Recommendations of one or more model versions in a SQL database (see module docs)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ write
    def write(
        self,
        version: str,
        blocks: Iterable[RowBlock],
        *,
        model_name: str,
        k: int,
        created_at: str | None = None,
        config: str = "{}",
        metrics: str = "{}",
        run_path: str | None = None,
        on_block: Callable[[RowBlock], None] | None = None,
    ) -> VersionInfo:
        """Write every row of ``version`` in one transaction, replacing any previous copy.

        Nothing is visible to readers until the final commit; an interruption leaves the store
        exactly as it was. When the store has no active version yet, this one becomes active in
        the same transaction (so a fresh store is readable with ``version="active"``).

        Args:
            version: model version key (non-empty, at most 200 characters).
            blocks: row blocks, consumed lazily (scoring can run while rows are written).
            model_name, k, created_at, config, metrics, run_path: stored in ``runs``
                (``config``/``metrics`` as JSON text).
            on_block: called after each block is written (progress reporting).

        Returns:
            The stored version's summary.
        """
        if not version or len(version) > 200 or version == ACTIVE:
            raise StoreError(
                f"model version {version!r} is invalid: use 1-200 characters, not {ACTIVE!r}"
            )
        n_users = 0
        n_rows = 0
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.delete(recommendations).where(recommendations.c.model_version == version)
                )
                conn.execute(sa.delete(runs).where(runs.c.model_version == version))
                conn.execute(
                    sa.insert(runs).values(
                        model_version=version,
                        created_at=created_at,
                        exported_at=_now(),
                        model_name=model_name,
                        config_json=config,
                        metrics_json=metrics,
                        k=int(k),
                        n_users=0,
                        n_rows=0,
                        run_path=run_path,
                    )
                )
                load = self._copy_block if self.backend == "postgresql" else self._executemany_block
                for block in blocks:
                    if len(block):
                        load(conn, version, block)
                    n_users += block.n_users
                    n_rows += len(block)
                    if on_block is not None:
                        on_block(block)
                conn.execute(
                    sa.update(runs)
                    .where(runs.c.model_version == version)
                    .values(n_users=n_users, n_rows=n_rows)
                )
                if conn.execute(sa.select(active_version.c.model_version)).first() is None:
                    conn.execute(
                        sa.insert(active_version).values(slot=_SLOT, model_version=version)
                    )
        except sa.exc.OperationalError as exc:
            raise StoreError(f"writing version {version!r} failed: {_first_line(exc)}") from None
        info = {v.model_version: v for v in self.list()}.get(version)
        assert info is not None
        return info

    @staticmethod
    def _executemany_block(conn: Connection, version: str, block: RowBlock) -> None:
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        try:
            # zip() over ready-made lists: the per-row loop runs inside sqlite3's C executemany.
            cur.executemany(
                f"INSERT INTO recommendations ({', '.join(REC_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
                zip(
                    itertools.repeat(version),
                    _aslist(block.user_id),
                    _aslist(block.rank),
                    _aslist(block.item_id),
                    _aslist(block.score),
                    strict=False,  # repeat() is endless; the lists have equal lengths
                ),
            )
        finally:
            cur.close()

    @staticmethod
    def _copy_block(conn: Connection, version: str, block: RowBlock) -> None:
        import pandas as pd

        raw = conn.connection.driver_connection
        assert raw is not None
        # CSV (pandas' C writer) quotes ids holding commas, quotes or newlines correctly; scores
        # are written with 9 significant digits, which round-trips a float32 exactly.
        frame = pd.DataFrame(
            {
                "model_version": version,
                "user_id": block.user_id,
                "rank": block.rank,
                "item_id": block.item_id,
                "score": block.score,
            }
        )
        buf = io.StringIO()
        frame.to_csv(buf, header=False, index=False, float_format="%.9g")
        with (
            raw.cursor() as cur,
            cur.copy(
                f"COPY recommendations ({', '.join(REC_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"
            ) as copy,
        ):
            copy.write(buf.getvalue())

    # ------------------------------------------------------------------ versions
    def active(self) -> str | None:
        """The active version, or None when none is marked."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(active_version.c.model_version).where(active_version.c.slot == _SLOT)
            ).first()
        return None if row is None else str(row[0])

    def list(self) -> list[VersionInfo]:
        """Stored versions, newest export first."""
        active = self.active()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(runs).order_by(runs.c.exported_at.desc())).mappings()
            return [
                VersionInfo(
                    model_version=r["model_version"],
                    created_at=r["created_at"],
                    exported_at=r["exported_at"],
                    model_name=r["model_name"],
                    k=int(r["k"]),
                    n_users=int(r["n_users"]),
                    n_rows=int(r["n_rows"]),
                    active=r["model_version"] == active,
                    run_path=r["run_path"],
                )
                for r in rows
            ]

    def versions(self) -> Sequence[str]:
        """Names of the stored versions, newest first."""
        return [v.model_version for v in self.list()]

    def activate(self, version: str) -> None:
        """Mark ``version`` as the one ``get(version="active")`` reads (one short transaction)."""
        with self.engine.begin() as conn:
            known = conn.execute(
                sa.select(runs.c.model_version).where(runs.c.model_version == version)
            ).first()
            if known is None:
                raise StoreError(
                    f"cannot activate {version!r}: no such version; see `recforge export --list`"
                )
            conn.execute(sa.delete(active_version).where(active_version.c.slot == _SLOT))
            conn.execute(sa.insert(active_version).values(slot=_SLOT, model_version=version))

    def prune(self, keep: int) -> builtins.list[str]:
        """Delete all but the ``keep`` newest versions; the active one is always kept.

        Returns:
            The deleted version names.
        """
        if keep < 0:
            raise StoreError(f"--keep must be >= 0, got {keep}")
        active = self.active()
        doomed = [v for v in self.versions()[keep:] if v != active]
        if doomed:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.delete(recommendations).where(recommendations.c.model_version.in_(doomed))
                )
                conn.execute(sa.delete(runs).where(runs.c.model_version.in_(doomed)))
        return doomed

    # ------------------------------------------------------------------ read
    def resolve(self, version: str = ACTIVE) -> str:
        """The concrete version name for ``version`` (``"active"`` → the marked one)."""
        if version == ACTIVE:
            name = self.active()
            if name is None:
                raise StoreError("the store has no active version; run `recforge export` first")
            return name
        with self.engine.connect() as conn:
            known = conn.execute(
                sa.select(runs.c.model_version).where(runs.c.model_version == version)
            ).first()
        if known is None:
            raise StoreError(f"no version {version!r} in the store; see `recforge export --list`")
        return version

    def get(
        self, user_id: Any, k: int | None = None, version: str = ACTIVE
    ) -> builtins.list[Recommendation]:
        """Top ``k`` stored recommendations of one raw user id, best first.

        Args:
            user_id: raw user id; compared as text (``str(user_id)``), so ``1`` and ``"1"`` match.
            k: at most this many (default: everything stored, i.e. the export's ``k``).
            version: a version name, or ``"active"``.

        Returns:
            The list; **empty for a user the version has no rows for** (unknown user). An unknown
            version, or no active version, raises :class:`StoreError`.
        """
        if k is not None and k < 1:
            raise StoreError(f"k must be >= 1, got {k}")
        name = self.resolve(version)
        rec = recommendations.c
        query = (
            sa.select(rec.item_id, rec.score, rec.rank)
            .where(rec.model_version == name, rec.user_id == str(user_id))
            .order_by(rec.rank)
        )
        if k is not None:
            query = query.limit(k)
        with self.engine.connect() as conn:
            return [
                Recommendation(str(i), float(s), int(r)) for i, s, r in conn.execute(query).all()
            ]
