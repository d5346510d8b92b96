"""The FastAPI application: ``create_app(settings)``.

The lifespan loads the run and/or store once (:func:`~recforge.serve.service.load_service`) and
keeps it in ``app.state.service``; :func:`reload` (``POST /admin/reload`` or the optional path
watcher) builds a new generation in a worker thread and swaps the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from recforge.errors import RecError, UnknownIdError
from recforge.serve.deps import BODY_TOO_LARGE
from recforge.serve.routes import admin, health, items, recommendations, users
from recforge.serve.service import Service, fingerprint, load_service
from recforge.serve.settings import Settings

log = logging.getLogger("recforge.serve")
WEB_DIR = Path(__file__).parent / "web"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: 413 for request bodies over ``limit`` bytes.

    Checks ``Content-Length`` first; bodies without one (chunked) are read up to the limit before
    the app sees them, so an endless body cannot exhaust memory.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.limit
            except ValueError:
                too_big = True
            if too_big:
                await self._reject(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._reject(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": BODY_TOO_LARGE}, status_code=413)
        await response(scope, receive, send)


async def reload(
    app: FastAPI, *, run: str | None = None, store_version: str | None = None
) -> Service:
    """Load a new service generation (in a worker thread) and swap it in atomically.

    Args:
        app: the application.
        run: a new run directory (None: the current one, re-read).
        store_version: a new store version (None: the current setting, e.g. "active").

    Returns:
        The new service. The old one's database pool is disposed of after a grace period, so
        requests still holding it finish first.
    """
    async with app.state.reload_lock:
        old: Service = app.state.service
        update = {k: v for k, v in {"run": run, "store_version": store_version}.items() if v}
        settings = old.settings.model_copy(update=update)
        new = await run_in_threadpool(load_service, settings)
        app.state.service = new  # one reference assignment: atomic for every later request
        log.info("reloaded: %s -> %s", old.model_version, new.model_version)
    if old.store is not None:
        asyncio.get_running_loop().call_later(30.0, old.close)
    return new


async def _watch(app: FastAPI, interval: float) -> None:
    """Reload when the run's manifest or the store's active version changes."""
    while True:
        await asyncio.sleep(interval)
        service: Service = app.state.service
        try:
            current = await run_in_threadpool(fingerprint, service.settings)
            if current != service.fingerprint:
                await reload(app)
        except RecError as exc:  # a half-written run or a store hiccup: keep serving, retry
            log.warning("watch: not reloading: %s", exc)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service.

    Args:
        settings: what to serve; default :meth:`Settings.from_env` (``RECFORGE_*`` variables).

    Raises:
        ConfigError: when neither a run nor a store is configured.
    """
    settings = (settings or Settings.from_env()).check()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.reload_lock = asyncio.Lock()
        app.state.service = await run_in_threadpool(load_service, settings)
        watcher = None
        if settings.watch_interval > 0:
            watcher = asyncio.create_task(_watch(app, settings.watch_interval))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            app.state.service.close()

    app = FastAPI(
        title="recforge",
        summary="Recommendations from a trained recforge model or a precomputed store.",
        version=_version(),
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.exception_handler(UnknownIdError)
    async def _unknown(_: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse({"detail": str(exc).strip("'\"")}, status_code=404)

    @app.exception_handler(RecError)
    async def _rec_error(_: Request, exc: RecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    for module in (health, users, items, recommendations):
        app.include_router(module.router)
    if settings.admin:
        app.include_router(admin.router)
    if settings.web:
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

        @app.get("/", include_in_schema=False)
        async def page() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html")

    return app


def _version() -> str:
    from recforge import __version__

    return str(__version__)
