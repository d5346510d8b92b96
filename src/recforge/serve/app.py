"""The FastAPI application: ``create_app(settings)``.

The lifespan loads the run and/or store once (:func:`~recforge.serve.service.load_service`) and
keeps it in ``app.state.service``; :func:`reload` (``POST /admin/reload`` or the optional path
watcher) builds a new generation in a worker thread and swaps the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from recforge.errors import ConfigError, RecError, UnknownIdError
from recforge.serve.deps import BODY_TOO_LARGE, BOTH_LENGTHS, NOT_JSON
from recforge.serve.routes import admin, health, items, recommendations, users
from recforge.serve.schemas import ErrorBody, InvalidRequest
from recforge.serve.security import ApiKeyAuth
from recforge.serve.service import Service, fingerprint, load_service
from recforge.serve.settings import Settings
from recforge.serve.shared import FollowSharedState, SharedState

log = logging.getLogger("recforge.serve")
WEB_DIR = Path(__file__).parent / "web"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ErrorResponse(JSONResponse):
    """JSON with every non-ASCII character escaped, for error bodies.

    Error details echo client text (ids, paths), and JSON request bodies can carry lone UTF-16
    surrogates (``"\\ud800"``) that UTF-8 cannot encode: the default renderer would fail with a
    500 while reporting a 4xx.
    """

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode()


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


class BodyLimit:
    """ASGI middleware: 413 for request bodies over ``limit`` bytes, 415 for non-JSON ones.

    The limit counts the bytes actually received, whatever the headers say: the body is read (up
    to ``limit`` bytes) before the app sees it, so neither an endless chunked body nor a small
    ``Content-Length`` sent next to ``Transfer-Encoding: chunked`` (where the server frames the
    body by the chunks and the declared length is a lie) can exhaust memory. A request carrying
    both headers is refused outright with 400 (RFC 9112 §6.3 calls it a smuggling vector), and
    a declared length over the limit is refused before any byte is read. Every body this API
    accepts is JSON, so a body declared as something else (a form, text) gets a clear 415
    instead of a confusing validation error.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type")
        if content_type is not None and not _is_json(content_type):
            await ErrorResponse({"detail": NOT_JSON}, status_code=415)(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is not None and b"transfer-encoding" in headers:
            response = ErrorResponse({"detail": BOTH_LENGTHS}, status_code=400)
            await response(scope, receive, send)
            return
        if length is not None:
            try:
                too_big = int(length) > self.limit
            except ValueError:
                too_big = True
            if too_big:
                await self._reject(scope, receive, send)
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
        response = ErrorResponse({"detail": BODY_TOO_LARGE}, status_code=413)
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
        try:
            new = await run_in_threadpool(load_service, settings)
        except RecError:
            raise
        except (OSError, ValueError) as exc:
            # e.g. a path too long for the OS or with a NUL: the request's fault, not a 500.
            raise ConfigError(f"cannot load {settings.run}: {type(exc).__name__}") from None
        app.state.service = new  # one reference assignment: atomic for every later request
        log.info("reloaded: %s -> %s", old.model_version, new.model_version)
        if settings.freeze_heap:
            # The old generation must become collectable (else its cycles leak, frozen); the
            # new one is settled once the old store is closed and nothing holds the old service.
            gc.unfreeze()
            asyncio.get_running_loop().call_later(SETTLE_AFTER_RELOAD, settle_heap)
    if old.store is not None:
        asyncio.get_running_loop().call_later(30.0, old.close)
    return new


#: Seconds after a reload before the heap is settled again: past the old store's 30 s grace.
SETTLE_AFTER_RELOAD = 35.0


def settle_heap() -> None:
    """Collect once, then exempt every surviving object from later collections (``gc.freeze``).

    A loaded model leaves ~390,000 container objects (torch, pandas, the vocabularies) that
    live as long as the service; a full collection walks all of them: ~210 ms on a loaded
    ML-100k run (docs/benchmarks/serve_gc_pause.md), a pause every in-flight request waits
    through, which a 16-client p99 shows. Frozen, they are never walked again; the
    per-request garbage still is.
    """
    gc.collect()
    gc.freeze()


async def follow_shared(app: Any) -> None:
    """Load what the shared state file asks for, when it changed since this worker applied it.

    Cheap when nothing changed (one ``stat``); otherwise concurrent requests wait for one load,
    so that no request after a reload elsewhere is answered by the old model.
    """
    shared: SharedState | None = getattr(app.state, "shared", None)
    if shared is None or not shared.changed():
        return
    async with app.state.follow_lock:
        identity = shared.identity()
        if identity == shared.applied:
            return
        desired = await run_in_threadpool(shared.read)
        shared.applied = identity
        if desired is None:
            return
        run, version = desired.get("run"), desired.get("store_version")
        try:
            await reload(
                app,
                run=run if isinstance(run, str) else None,
                store_version=version if isinstance(version, str) else None,
            )
        except RecError as exc:  # keep serving; the worker that wrote it answered the caller
            log.warning("state file %s: not reloading: %s", shared.path, exc)


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
    app = FastAPI(
        title="recforge",
        summary="Recommendations from a trained recforge model or a precomputed store.",
        version=_version(),
        lifespan=_lifespan(settings),
        responses=_common_responses(settings),
    )
    _add_middleware(app, settings)
    _add_error_handlers(app)
    _add_routes(app, settings)
    return app


def _lifespan(
    settings: Settings,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Load the service at start-up (and follow/watch for reloads); close it at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.reload_lock = asyncio.Lock()
        app.state.follow_lock = asyncio.Lock()
        app.state.shared = SharedState(settings.state_file) if settings.state_file else None
        app.state.service = await run_in_threadpool(load_service, settings)
        if settings.freeze_heap:
            settle_heap()
        # A worker started after a reload elsewhere serves what the others serve.
        await follow_shared(app)
        watcher = None
        if settings.watch_interval > 0:
            watcher = asyncio.create_task(_watch(app, settings.watch_interval))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            app.state.service.close()

    return lifespan


def _common_responses(settings: Settings) -> dict[int | str, dict[str, Any]]:
    """The error responses every route may give, for the OpenAPI schema."""
    common: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorBody, "description": "Request body could not be parsed"},
        422: {"model": InvalidRequest, "description": "Invalid request"},
        413: {"model": ErrorBody, "description": "Request body too large"},
        415: {"model": ErrorBody, "description": "Request body not JSON"},
    }
    if settings.api_key is not None:
        common[401] = {"model": ErrorBody, "description": "Missing or wrong API key"}
    return common


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    # add_middleware wraps: the last one added runs first. Order, outermost first: CORS (so
    # preflights and 401s carry its headers), API key (before any body is read), following the
    # workers' shared state (serve/shared.py), body limit.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.state_file:
        app.add_middleware(FollowSharedState, follow=follow_shared)
    if settings.api_key is not None:
        app.add_middleware(ApiKeyAuth, key=settings.api_key.get_secret_value())
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
        )


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"detail": ...}`` JSON: 404 unknown id, 422 bad input, HTTP errors."""

    @app.exception_handler(UnknownIdError)
    async def _unknown(_: Request, exc: UnknownIdError) -> JSONResponse:
        return ErrorResponse({"detail": str(exc).strip("'\"")}, status_code=404)

    @app.exception_handler(RecError)
    async def _rec_error(_: Request, exc: RecError) -> JSONResponse:
        return ErrorResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return ErrorResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's shape (a list of {type, loc, msg}) without "input"/"ctx": echoing the input
        # back can be large, and a NaN or infinite number in it cannot be written as JSON (500).
        errors = [
            {
                "type": e.get("type", ""),
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": e.get("msg", ""),
            }
            for e in exc.errors()
        ]
        return ErrorResponse({"detail": errors}, status_code=422)


def _add_routes(app: FastAPI, settings: Settings) -> None:
    for module in (health, users, items, recommendations):
        app.include_router(module.router)
    if settings.admin:
        app.include_router(admin.router)
    if settings.web:
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

        @app.get("/", include_in_schema=False)
        async def page() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html")


def _version() -> str:
    from recforge import __version__

    return str(__version__)
