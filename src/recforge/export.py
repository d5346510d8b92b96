"""Export a run's top-k recommendations for many users into a SQL store (``recforge export``).

Scoring (:func:`recforge.batch.recommend_all`, torch/numpy) runs in a background thread one chunk
ahead of the database writer, so on a multi-core machine the two overlap; numpy, torch and the
database drivers release the GIL in their heavy parts. Users are scored in the order of their
text ids, so rows arrive in primary-key order and the database appends to its index instead of
inserting at random places.

Timing of each phase (seconds spent producing vs. writing blocks) is returned for benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recforge._atomic import atomic_write_text
from recforge.errors import ConfigError, DataError, UnknownIdError
from recforge.store.sql import RowBlock, Store, VersionInfo, open_store

__all__ = [
    "ExportResult",
    "default_version",
    "export_model",
    "export_run",
    "export_steps",
    "read_user_file",
]

# Test hook: seconds to sleep after each written block, so a test can SIGKILL an export part-way.
_DELAY_ENV = "RECFORGE_EXPORT_BLOCK_DELAY"
# Test hook: a file that receives the running row count after each written block.
_PROGRESS_ENV = "RECFORGE_EXPORT_PROGRESS_FILE"


@dataclass
class ExportResult:
    """What an export wrote, and where the time went."""

    version: VersionInfo
    db: str
    rows: int
    users: int
    seconds_total: float
    seconds_scoring: float
    seconds_writing: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        """Rows written per wall-clock second."""
        return self.rows / self.seconds_total if self.seconds_total > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON output)."""
        return {
            "version": self.version.model_version,
            "db": self.db,
            "rows": self.rows,
            "users": self.users,
            "k": self.version.k,
            "active": self.version.active,
            "seconds_total": round(self.seconds_total, 3),
            "seconds_scoring": round(self.seconds_scoring, 3),
            "seconds_writing": round(self.seconds_writing, 3),
            "rows_per_second": round(self.rows_per_second, 1),
        }


def default_version(run_dir: str | Path, manifest: dict[str, Any]) -> str:
    """``<run folder name>-<created_at as YYYYmmddTHHMMSS>``: stable, so re-exports replace."""
    stamp = str(manifest.get("created_at") or "")
    compact = "".join(ch for ch in stamp[:19] if ch.isalnum())
    name = Path(run_dir).resolve().name
    return f"{name}-{compact}" if compact else name


def read_user_file(path: str | Path) -> list[str]:
    """Raw user ids from a text file, one per line (blank lines and ``#`` comments skipped)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{p}: cannot read the user file ({exc.strerror})") from None
    ids = [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
    if not ids:
        raise DataError(f"{p}: no user ids found; write one raw user id per line")
    return ids


def _user_indices(model: Any, users: Any) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Indices to export, ordered by the users' text ids (primary-key order)."""
    user_text = np.asarray(model.users_.ids).astype(str)
    if users is None:
        idx = np.arange(model.n_users, dtype=np.int64)
    else:
        wanted = list(users)
        if np.asarray(model.users_.ids).dtype.kind in "iu":
            # ids read from a file are text; this model's ids are integers
            bad = [u for u in wanted if not str(u).strip().lstrip("-").isdigit()]
            if bad:
                raise UnknownIdError(f"unknown user id {bad[0]!r}: this model's ids are integers")
            wanted = [int(str(u)) for u in wanted]
        idx = np.unique(model.users_.index(np.asarray(wanted)))
    return idx[np.argsort(user_text[idx], kind="stable")]


def _blocks(
    model: Any,
    idx: np.ndarray[Any, np.dtype[np.int64]],
    k: int,
    batch_size: int | None,
    memory_budget_bytes: int | None = None,
) -> Iterator[RowBlock]:
    from recforge.batch import recommend_all

    user_text = np.asarray(model.users_.ids).astype(str).astype(object)
    item_text = np.asarray(model.items_.ids).astype(str).astype(object)
    for part, items, scores in recommend_all(
        model, idx, k, chunk_size=batch_size, memory_budget_bytes=memory_budget_bytes
    ):
        ok = items >= 0  # -1 marks slots that could not be filled (every item seen)
        rows, cols = np.nonzero(ok)  # row-major: each user's ranks stay in order
        yield RowBlock(
            n_users=len(part),
            user_id=user_text[part[rows]],
            rank=cols.astype(np.int64) + 1,
            item_id=item_text[items[rows, cols]],
            score=scores[rows, cols],
        )


class _Prefetch:
    """Run an iterator in a daemon thread, ``depth`` items ahead; time spent producing is kept."""

    _DONE = object()

    def __init__(self, source: Iterator[Any], depth: int = 2) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, args=(source,), daemon=True)
        self._thread.start()

    def _run(self, source: Iterator[Any]) -> None:
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(source)
                except StopIteration:
                    break
                self.seconds += time.perf_counter() - t0
                self._q.put(item)
            self._q.put(self._DONE)
        except BaseException as exc:  # re-raised in the consumer thread
            self._q.put(exc)

    def __iter__(self) -> Iterator[Any]:
        try:
            while True:
                item = self._q.get()
                if item is self._DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            while self._thread.is_alive():  # unblock a producer waiting on a full queue
                with contextlib.suppress(queue.Empty):
                    self._q.get(timeout=0.05)


def export_model(
    model: Any,
    store: Store,
    version: str,
    *,
    k: int = 100,
    users: Any = None,
    batch_size: int | None = None,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
    memory_budget_bytes: int | None = None,
) -> ExportResult:
    """Export ``model``'s top-``k`` (seen items excluded) for ``users`` (default all) to ``store``.

    Args:
        model: a fitted recommender.
        store: an open :class:`~recforge.store.Store`.
        version: model version key to write (an existing one is replaced atomically).
        k: list length per user.
        users: raw user ids to export (default: every user of the model).
        batch_size: users scored per chunk (default: from ``memory_budget_bytes``).
        progress: show a progress bar (users scored, rows written) when stderr is a terminal.
        meta: ``created_at``, ``config`` and ``metrics`` (JSON text) and ``run_path`` for ``runs``.
        memory_budget_bytes: bound on one chunk's scoring working set (default 512 MiB; see
            :func:`recforge.batch.chunk_size_for`); ignored when ``batch_size`` is given.
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    model.check_fitted()
    idx = _user_indices(model, users)
    watch = _WriteProgress(len(idx), progress)
    t0 = time.perf_counter()
    feed = _Prefetch(_blocks(model, idx, k, batch_size, memory_budget_bytes))
    meta = meta or {}
    try:
        info = store.write(
            version,
            watch.timed(feed),
            model_name=str(meta.get("model_name", model.name)),
            k=k,
            created_at=meta.get("created_at"),
            config=str(meta.get("config", "{}")),
            metrics=str(meta.get("metrics", "{}")),
            run_path=meta.get("run_path"),
            on_block=watch.on_block,
        )
    finally:
        watch.stop()
    total = time.perf_counter() - t0
    return ExportResult(
        version=info,
        db=store.engine.url.render_as_string(hide_password=True),
        rows=info.n_rows,
        users=info.n_users,
        seconds_total=total,
        seconds_scoring=feed.seconds,
        seconds_writing=watch.write_seconds,
    )


class _WriteProgress:
    """Progress of an export's writer: the bar or lines shown, the test hooks, the time spent
    writing (from the moment a block arrives to the end of its ``on_block``)."""

    def __init__(self, n_users: int, progress: bool) -> None:
        from recforge.progress import Ticker

        self.delay = float(os.environ.get(_DELAY_ENV, "0") or 0)
        self.progress_file = os.environ.get(_PROGRESS_ENV)
        self.ticker = Ticker(n_users, "export: users scored", verbose=progress)  # lines off a tty
        self.bar: Any = None
        self.tasks: list[Any] = []
        if progress and sys.stderr.isatty():
            self.bar, self.tasks = _progress_bar(n_users)
        self.written = 0
        self.write_seconds = 0.0
        self.last = time.perf_counter()

    def timed(self, feed: Iterable[RowBlock]) -> Iterator[RowBlock]:
        for block in feed:
            self.last = time.perf_counter()  # writing this block starts now
            yield block

    def on_block(self, block: RowBlock) -> None:
        now = time.perf_counter()
        self.write_seconds += now - self.last
        self.written += len(block)
        if self.bar is not None:
            self.bar.advance(self.tasks[0], block.n_users)
            self.bar.update(self.tasks[1], completed=self.written)
        self.ticker.tick(block.n_users)
        if self.progress_file:
            # Readers poll this file while the export runs: never let them see it half-written.
            atomic_write_text(Path(self.progress_file), str(self.written))
        if self.delay:
            time.sleep(self.delay)
        self.last = time.perf_counter()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _progress_bar(n_users: int) -> tuple[Any, list[Any]]:
    """A started rich bar on stderr with the tasks "users scored" and "rows written"."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks = [
        bar.add_task("users scored", total=n_users),
        bar.add_task("rows written", total=None),
    ]
    bar.start()
    return bar, tasks


def export_run(
    run_dir: str | Path,
    db_url: str,
    k: int = 100,
    users: Any = None,
    batch_size: int | None = None,
    *,
    version: str | None = None,
    progress: bool = False,
    memory_budget_bytes: int | None = None,
) -> ExportResult:
    """Load a run directory and export its recommendations to the store at ``db_url``.

    Args:
        run_dir: a run written by ``recforge train``.
        db_url: ``sqlite:///recs.db`` or ``postgresql://user@host/db``.
        k: list length per user.
        users: raw user ids (default: all users of the model).
        batch_size: users scored per chunk.
        version: version key (default :func:`default_version`: run folder name + creation time).
        progress: progress bar on a terminal.
        memory_budget_bytes: bound on one chunk's scoring working set (see :func:`export_model`).
    """
    from recforge.artifacts import load_run

    run = load_run(run_dir)
    name = version or default_version(run_dir, run.manifest)
    meta = {
        "model_name": run.manifest["model_name"],
        "created_at": run.manifest.get("created_at"),
        "config": json.dumps(run.model.config.model_dump(), default=str),
        "metrics": json.dumps(run.metrics, default=str),
        "run_path": str(Path(run_dir).resolve()),
    }
    store = open_store(db_url)
    try:
        return export_model(
            run.model,
            store,
            name,
            k=k,
            users=users,
            batch_size=batch_size,
            progress=progress,
            meta=meta,
            memory_budget_bytes=memory_budget_bytes,
        )
    finally:
        store.close()


def export_steps(
    db_url: str,
    run_dir: str | Path | None = None,
    *,
    k: int = 100,
    users: Any = None,
    batch_size: int | None = None,
    version: str | None = None,
    progress: bool = False,
    memory_budget_bytes: int | None = None,
    activate: str | None = None,
    keep: int | None = None,
    list_versions: bool = False,
) -> dict[str, Any]:
    """``recforge export``: export a run, then activate, prune and list versions, in that order.

    Args:
        db_url: the store (``sqlite:///recs.db``, ``postgresql://...``).
        run_dir: a run to export (see :func:`export_run` for ``k`` .. ``memory_budget_bytes``).
        activate: mark this version as the one the service reads.
        keep: prune all but the ``keep`` newest versions (the active one is kept).
        list_versions: list the stored versions.

    Returns:
        ``{"export": ..., "activated": ..., "pruned": [...], "versions": [...]}``, with only the
        keys of the steps that ran.

    Raises:
        ConfigError: no step asked for.
    """
    if run_dir is None and not (list_versions or keep is not None or activate):
        raise ConfigError("give a run directory to export, or --list / --activate / --keep")
    out: dict[str, Any] = {}
    if run_dir is not None:
        result = export_run(
            run_dir,
            db_url,
            k,
            users,
            batch_size,
            version=version,
            progress=progress,
            memory_budget_bytes=memory_budget_bytes,
        )
        out["export"] = result.as_dict()
    with open_store(db_url, create=run_dir is not None or activate is None) as store:
        if activate:
            store.activate(activate)
            out["activated"] = activate
        if keep is not None:
            out["pruned"] = store.prune(keep)
        if list_versions:
            out["versions"] = [v.as_dict() for v in store.list()]
    return out
