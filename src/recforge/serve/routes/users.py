"""GET /users/{user_id}/recommendations and /users/{user_id}/history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from recforge.serve.deps import (
    UNKNOWN_USER,
    check_k,
    current_service,
    get_service,
    require_live,
)
from recforge.serve.responses import ModelJSONResponse
from recforge.serve.schemas import MAX_K, ErrorBody, History, Recommendations
from recforge.serve.service import Service

router = APIRouter(prefix="/users", tags=["users"])

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody, "description": "Unknown user (or, for history, store-only mode)"}
}


@router.get(
    "/{user_id}/recommendations",
    response_model=Recommendations,
    responses=_ERRORS,
    summary="Top-k recommendations for a known user",
)
async def user_recommendations(
    user_id: str,
    request: Request,
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many items.")] = 10,
    exclude_seen: Annotated[
        bool, Query(description="Leave out items the user rated in training (live mode).")
    ] = True,
    explain: Annotated[
        bool, Query(description="Add `because` to each item (needs a run; not for fallbacks).")
    ] = False,
) -> Response:
    """From the store when one is configured (its lists already exclude seen items), else live.

    Unknown users get 404 ``unknown user: <id>``, or the most popular items when the service
    runs with ``fallback=popular`` and a run. With ``explain=true`` each item carries
    ``because``: the user's rated items that raised its score most (:mod:`recforge.explain`).
    """
    service = current_service(request)
    check_k(service, k)
    explained = False
    if service.store is not None:
        items = service.store.recommend(user_id, k, service.catalog)
        source = "store"
    else:
        live = require_live(service)
        # Closed-form explanations rank and explain in one call (which may share the pass).
        explained = explain and live.explain_inline
        if explained:
            items = live.recommend_explained(user_id, k, exclude_seen)
        else:
            items = live.recommend(user_id, k, exclude_seen)
        source = "live"
    if items is None:
        if service.settings.fallback == "popular" and service.live is not None:
            fallback = Recommendations(
                user_id=user_id,
                model_version=service.model_version,
                source="popular",
                items=service.live.popular(k),
            )
            return ModelJSONResponse(fallback)
        raise HTTPException(status_code=404, detail=UNKNOWN_USER.format(user_id))
    if explain and not explained:
        live = require_live(service)
        if live.explain_inline:
            live.add_because(user_id, items)
        else:
            await live.offload(live.add_because, user_id, items)
    answer = Recommendations(
        user_id=user_id, model_version=service.model_version, source=source, items=items
    )
    return ModelJSONResponse(answer)


@router.get(
    "/{user_id}/history",
    response_model=History,
    responses=_ERRORS,
    summary="Items a known user rated in training",
)
async def user_history(user_id: str, service: Annotated[Service, Depends(get_service)]) -> History:
    """Needs a run (404 in store-only mode)."""
    live = require_live(service)
    items = live.history(user_id)
    if items is None:
        raise HTTPException(status_code=404, detail=UNKNOWN_USER.format(user_id))
    return History(user_id=user_id, n_items=len(items), items=items)
