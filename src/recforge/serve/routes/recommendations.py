"""POST /recommendations: a new user's ratings or ordered items, answered by fold-in."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from recforge.errors import DataError
from recforge.serve.deps import (
    NO_KNOWN_RATINGS,
    TOO_MANY_RATINGS,
    check_k,
    current_service,
    require_live,
)
from recforge.serve.responses import ModelJSONResponse
from recforge.serve.schemas import ErrorBody, InvalidRequest, NewUserRequest, Recommendations

router = APIRouter(tags=["new users"])


@router.post(
    "/recommendations",
    response_model=Recommendations,
    responses={
        404: {"model": ErrorBody, "description": "Store-only mode (fold-in needs a run)"},
        413: {"model": ErrorBody, "description": "Body too large"},
        415: {"model": ErrorBody, "description": "Body not sent as JSON"},
        422: {"model": InvalidRequest, "description": "Bad k, too many or no known ratings"},
    },
    summary="Recommendations for a new user's ratings",
)
async def new_user_recommendations(
    body: NewUserRequest,
    request: Request,
    explain: Annotated[
        bool,
        Query(description="Same as the body's `explain` (as on GET /users/{id}/recommendations)."),
    ] = False,
) -> Response:
    """Fold-in: the model fits only the new user's own parameters to ``ratings`` and ranks
    every item. Rated items are excluded unless ``exclude_rated`` is false. For models trained on
    implicit feedback only liked ratings (above the scale's midpoint) count as evidence. With
    ``explain`` each item carries ``because`` (:mod:`recforge.explain`). Models whose fold-in
    measured under 2 ms at load (closed-form ones) answer on the event loop; slower ones run in
    a worker thread so they do not stall other requests."""
    service = current_service(request)
    check_k(service, body.k)
    if body.n_given > service.settings.max_ratings:
        raise HTTPException(
            status_code=422, detail=TOO_MANY_RATINGS.format(service.settings.max_ratings)
        )
    live = require_live(service)
    # ?explain=true was silently ignored on POST while GET reads it from the query: take either.
    body.explain = body.explain or explain
    if body.items:  # ordered items: ratings read in their order, or implicit positives
        body.ratings = body.ordered_ratings() or live.items_as_ratings(body.items)
    try:
        args = (body.ratings, body.k, body.exclude_rated, body.explain)
        if live.fold_in_inline and (live.explain_inline or not body.explain):
            items = live.fold_in(*args)
        else:
            items = await live.offload(live.fold_in, *args)
    except DataError as exc:
        known = NO_KNOWN_RATINGS if "known" in str(exc) else str(exc)
        raise HTTPException(status_code=422, detail=known) from None
    answer = Recommendations(
        user_id=None, model_version=service.model_version, source="fold_in", items=items
    )
    return ModelJSONResponse(answer)
