"""GET /items (search by id or title) and /items/{item_id}/similar."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from recforge.errors import ConfigError, UnknownIdError
from recforge.serve.deps import NO_ITEM_VECTORS, UNKNOWN_ITEM, check_k, get_service, require_live
from recforge.serve.schemas import MAX_K, ErrorBody, ItemSearch, Similar
from recforge.serve.service import Service

router = APIRouter(prefix="/items", tags=["items"])


@router.get("", response_model=ItemSearch, summary="Search items by id or title")
async def search_items(
    service: Annotated[Service, Depends(get_service)],
    query: Annotated[
        str, Query(min_length=1, max_length=200, description="An item id or title text.")
    ],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ItemSearch:
    """The item with this exact id first, then a case-insensitive substring match on titles
    (prefix matches and popular items first)."""
    return ItemSearch(query=query, items=service.catalog.search(query, limit))


@router.get(
    "/{item_id}/similar",
    response_model=Similar,
    responses={
        404: {
            "model": ErrorBody,
            "description": "Unknown item, a model without item vectors, or store-only mode",
        },
    },
    summary="Items most similar to an item",
)
async def similar_items(
    item_id: str,
    service: Annotated[Service, Depends(get_service)],
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
) -> Similar:
    """Cosine similarity over the model's item vectors (itself excluded)."""
    check_k(service, k)
    live = require_live(service)
    try:
        items = live.similar(item_id, k)
    except UnknownIdError:
        raise HTTPException(status_code=404, detail=UNKNOWN_ITEM.format(item_id)) from None
    except ConfigError:
        # 404, not 501: the request is fine, this model just has no such resource (no 5xx
        # for anything a client can cause).
        raise HTTPException(status_code=404, detail=NO_ITEM_VECTORS) from None
    return Similar(
        item=service.catalog.item(item_id), model_version=service.model_version, items=items
    )
