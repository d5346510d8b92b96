"""POST /admin/reload: swap to a new run directory or store version without downtime.

A run path in the request is the caller's; so that an unauthenticated caller cannot probe the
disk with it, every path that does not load (missing, a file, a folder that is not a run, a
corrupt run, a path outside ``RECFORGE_RUN_ROOTS``) gets the same answer, :data:`RELOAD_REFUSED`;
the reason goes to the server log.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from recforge.errors import RecError
from recforge.serve.schemas import ReloadRequest, ReloadResult

router = APIRouter(prefix="/admin", tags=["admin"])
log = logging.getLogger("recforge.serve")

#: The one ``detail`` of a reload whose run cannot be used, whatever the reason.
RELOAD_REFUSED = (
    "cannot load that run: it is not a readable run directory inside the allowed run roots "
    "(the reason is in the server log)"
)


def run_allowed(run: str, roots: tuple[str, ...]) -> bool:
    """Whether ``run`` (links resolved) lies inside one of ``roots`` (no roots: any path)."""
    if not roots:
        return True
    try:
        real = Path(run).resolve()
        return any(real.is_relative_to(Path(root).resolve()) for root in roots)
    except (OSError, ValueError, RuntimeError):
        return False


@router.post("/reload", response_model=ReloadResult, summary="Load a new model and swap to it")
async def reload_service(
    request: Request, body: Annotated[ReloadRequest | None, Body()] = None
) -> ReloadResult:
    """Loads in a worker thread while requests keep being served by the current models, then
    swaps the service reference; requests already running finish on the old models."""
    from recforge.serve.app import reload

    t0 = time.perf_counter()
    req = body or ReloadRequest()
    previous = request.app.state.service.model_version
    if req.run is None:
        service = await reload(request.app, store_version=req.store_version)
    else:
        roots = request.app.state.service.settings.run_roots
        try:
            if not run_allowed(req.run, roots):
                raise RecError(f"{req.run!r} is outside RECFORGE_RUN_ROOTS {list(roots)}")
            service = await reload(request.app, run=req.run, store_version=req.store_version)
        except RecError as exc:
            log.warning("POST /admin/reload refused: %s", exc)
            raise HTTPException(status_code=422, detail=RELOAD_REFUSED) from None
    shared = getattr(request.app.state, "shared", None)
    if shared is not None:  # tell the other worker processes (serve/shared.py)
        await run_in_threadpool(shared.write, service.settings.run, service.settings.store_version)
    return ReloadResult(
        previous_version=previous,
        model_version=service.model_version,
        seconds=round(time.perf_counter() - t0, 3),
    )
