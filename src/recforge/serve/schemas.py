"""Request and response models of the HTTP API (all ids are raw ids, as strings)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

#: Hard upper bound on k for every endpoint (Settings.max_k may lower it, never raise it).
MAX_K = 1000
#: Largest absolute rating a new user may send: far beyond any rating scale, and small enough
#: that float32 fold-in arithmetic cannot overflow into infinite or NaN scores.
MAX_ABS_RATING = 1e6


class Item(BaseModel):
    """An item with its metadata, when the model knows any."""

    item_id: str
    title: str | None = None
    year: int | None = None
    genres: list[str] = Field(
        default_factory=list,
        description="The item's categories (genres for movies; /health names the words).",
    )


class Because(BaseModel):
    """A rated item that raised a recommendation's score, and by how much (signed weight)."""

    item_id: str
    title: str | None = None
    weight: float


class ScoredItem(Item):
    """A recommended or similar item: rank (1-based) and the model's score."""

    rank: int
    score: float
    because: list[Because] | None = Field(
        None,
        description=(
            "With explain=true: the rated items that raised this item's score most (positive "
            "weights, largest first; see recforge.explain). Null when not asked for."
        ),
    )
    attention: list[Because] | None = Field(
        None,
        description=(
            "With explain=true, attention models only (SASRec, BERT4Rec): the rated items the "
            "model's next-item state attends to most (weight: attention, the same list for every "
            "item of the answer). Beside `because`, never instead: it is not an attribution. "
            "Null otherwise."
        ),
    )


class Recommendations(BaseModel):
    """Ranked items for one user (``user_id`` null for a new user)."""

    user_id: str | None
    model_version: str
    source: Literal["live", "store", "fold_in", "popular"]
    items: list[ScoredItem]


class Similar(BaseModel):
    """Items most similar to ``item``."""

    item: Item
    model_version: str
    items: list[ScoredItem]


class History(BaseModel):
    """Items a known user interacted with in training."""

    user_id: str
    n_items: int
    items: list[Item]


class ItemSearch(BaseModel):
    """Search results (an exact id match first, then title matches)."""

    query: str
    items: list[Item]


class ItemNouns(BaseModel):
    """What the items and their categories are called (the web page's words): "movies" and
    "genres" when the metadata says the data is MovieLens, "items" and "categories" otherwise."""

    item: str = "item"
    items: str = "items"
    category: str = "category"
    categories: str = "categories"


class Health(BaseModel):
    """What is being served."""

    status: Literal["ok"]
    mode: Literal["live", "store", "live+store"]
    model_name: str | None
    model_version: str
    n_users: int | None
    n_items: int | None
    index: dict[str, int | str] | None
    store_version: str | None
    loaded_at: str
    nouns: ItemNouns = Field(default_factory=ItemNouns)


class NewUserRequest(BaseModel):
    """A new user's ratings ``{item_id: rating}`` and/or ordered ``items``, and how many to return.

    ``items`` alone (click data, no ratings needed): the items in the order the person chose
    them, oldest first; sequential models read the order, the others treat each as an implicit
    positive. With both, ``ratings`` are read in the order of ``items`` (ids missing from
    ``items`` follow, in their own order).
    """

    model_config = ConfigDict(extra="forbid")

    ratings: dict[str, Annotated[float, Field(ge=-MAX_ABS_RATING, le=MAX_ABS_RATING)]] = Field(
        default_factory=dict,
        description="Raw item id -> rating (unknown items are ignored; finite, |rating| <= 1e6).",
    )
    items: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        None,
        description="Raw item ids in the order chosen, oldest first (unknown items are ignored).",
    )
    # Strict: JSON true is not k=1, and "5" is not 5 (a client bug worth a 422, not a guess).
    k: StrictInt = Field(10, ge=1, le=MAX_K)
    exclude_rated: StrictBool = True
    explain: StrictBool = Field(
        False, description="Add `because` (the rated items behind each item)."
    )

    @field_validator("ratings", mode="before")
    @classmethod
    def _no_booleans(cls, value: object) -> object:
        # A JSON true would otherwise be taken as the rating 1.0.
        if isinstance(value, dict) and any(isinstance(v, bool) for v in value.values()):
            raise ValueError("ratings must be numbers, not true/false")
        return value

    @field_validator("ratings")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        if not all(math.isfinite(v) for v in value.values()):
            raise ValueError("ratings must be finite numbers")
        return value

    @model_validator(mode="after")
    def _something_given(self) -> NewUserRequest:
        if not self.ratings and not self.items:
            raise ValueError("give at least one rating or item")
        return self

    def ordered_ratings(self) -> dict[str, float]:
        """``ratings`` in the order of ``items`` (then the rest); empty without ratings."""
        if not self.ratings or not self.items:
            return dict(self.ratings)
        out = {i: self.ratings[i] for i in self.items if i in self.ratings}
        out.update({i: v for i, v in self.ratings.items() if i not in out})
        return out

    @property
    def n_given(self) -> int:
        """How many entries the request carries (bounded by ``max_ratings``)."""
        return max(len(self.ratings), len(self.items or []))


class ReloadRequest(BaseModel):
    """Point the service at another run directory and/or store version (omitted: re-read)."""

    model_config = ConfigDict(extra="forbid")

    run: str | None = Field(None, max_length=4096, pattern=r"^[^\x00]*$")
    store_version: str | None = Field(None, max_length=200, pattern=r"^[^\x00]*$")


class ReloadResult(BaseModel):
    """The versions served before and after a reload."""

    previous_version: str
    model_version: str
    seconds: float


class ErrorBody(BaseModel):
    """Error responses: a stable, human-readable ``detail``."""

    detail: str


class ValidationIssue(BaseModel):
    """One reason a request failed validation (FastAPI's shape, without the echoed input)."""

    type: str
    loc: list[str]
    msg: str


class InvalidRequest(BaseModel):
    """422 responses: a list of issues when the request does not fit the schema, a string for
    the checks the service makes itself (k over the configured ceiling, no known ratings, a run
    that cannot be loaded)."""

    detail: str | list[ValidationIssue]
