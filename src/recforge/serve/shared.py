"""What every worker process serves, agreed through one small file.

With ``recforge serve --workers N`` each uvicorn worker is a separate process holding its own
models, and ``POST /admin/reload`` reaches only the worker that accepted the connection. So a
reload also writes the *desired* state (run directory, store version, a generation number) to a
state file (``RECFORGE_STATE_FILE``; ``serve --workers`` creates one in a private temporary
folder), atomically (write, fsync, rename). Every worker compares the file's identity (inode,
size, modification time: one ``stat``) at the start of each request and, when it changed, loads
what the file asks for before answering; a worker that starts (or restarts) later reads it first.
After a reload answers 200, every later request, on any connection, is served by the new model.

The file is trusted (it names a run to load), so it must live where only the service can write;
the temporary folder ``serve`` creates is private (0700).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from recforge._atomic import atomic_path

log = logging.getLogger("recforge.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Largest state file read (it holds two short strings and a number).
_MAX_BYTES = 64 << 10


class SharedState:
    """The state file: its identity, what it asks for, and a writer.

    Args:
        path: the file (it need not exist yet; its folder must).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.applied: tuple[int, int, int] | None = None

    def identity(self) -> tuple[int, int, int] | None:
        """``(inode, size, mtime_ns)``, or None when there is no file (one ``stat``)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> bool:
        """Whether the file differs from the one last applied."""
        return self.identity() != self.applied

    def read(self) -> dict[str, Any] | None:
        """The desired state (``run``, ``store_version``, ``generation``), or None."""
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(_MAX_BYTES + 1)
        except OSError:
            return None
        try:
            desired = json.loads(raw) if len(raw) <= _MAX_BYTES else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            desired = None
        if not isinstance(desired, dict):
            log.warning("state file %s is not a JSON object; ignoring it", self.path)
            return None
        return {k: v for k, v in desired.items() if k in {"run", "store_version", "generation"}}

    def write(self, run: str | None, store_version: str) -> None:
        """Publish a new desired state (atomically; the generation only ever grows)."""
        previous = self.read() or {}
        generation = previous.get("generation")
        number = generation + 1 if isinstance(generation, int) else 1
        text = json.dumps({"run": run, "store_version": store_version, "generation": number})
        with atomic_path(self.path) as tmp:
            tmp.write_text(text, encoding="utf-8")
            # Our file's identity, taken before the rename (which keeps inode, size and mtime):
            # a stat afterwards could see another worker's newer file and skip following it.
            st = os.stat(tmp)
        self.applied = (st.st_ino, st.st_size, st.st_mtime_ns)


class FollowSharedState:
    """ASGI middleware: before each HTTP request, ``await follow(app)`` so the worker loads what
    the state file asks for when it changed (see the module docstring and
    :func:`recforge.serve.app.follow_shared`).

    Args:
        app: the wrapped application.
        follow: the check-and-load coroutine, given the Starlette app of the request.
    """

    def __init__(self, app: ASGIApp, follow: Callable[[Any], Awaitable[None]]) -> None:
        self.app = app
        self.follow = follow

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "app" in scope:
            await self.follow(scope["app"])
        await self.app(scope, receive, send)
