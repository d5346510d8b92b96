"""GET /health."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from recforge.serve.deps import get_service
from recforge.serve.schemas import Health, ItemNouns
from recforge.serve.service import Service

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="What is being served")
async def health(service: Annotated[Service, Depends(get_service)]) -> Health:
    """Mode, model name and version, counts and the retrieval index."""
    live = service.live
    store = service.store
    n_users = live.n_users if live is not None else None
    if n_users is None and store is not None and store.info is not None:
        n_users = store.info.n_users
    return Health(
        status="ok",
        mode=service.mode,
        model_name=service.model_name,
        model_version=service.model_version,
        n_users=n_users,
        n_items=live.n_items if live is not None else (len(service.catalog) or None),
        index=live.describe_index() if live is not None else None,
        store_version=store.version if store is not None else None,
        loaded_at=service.loaded_at,
        nouns=ItemNouns(**service.catalog.nouns.as_dict()),
    )
