"""POST /admin/reload: swap to a new run directory or store version without downtime."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Body, Request
from starlette.concurrency import run_in_threadpool

from recforge.serve.schemas import ReloadRequest, ReloadResult

router = APIRouter(prefix="/admin", tags=["admin"])


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
    service = await reload(request.app, run=req.run, store_version=req.store_version)
    shared = getattr(request.app.state, "shared", None)
    if shared is not None:  # tell the other worker processes (serve/shared.py)
        await run_in_threadpool(shared.write, service.settings.run, service.settings.store_version)
    return ReloadResult(
        previous_version=previous,
        model_version=service.model_version,
        seconds=round(time.perf_counter() - t0, 3),
    )
