"""What the items are called: "movies" and "genres" for MovieLens, "items" and "categories" else.

The words travel with the item metadata itself, in ``item_meta.attrs["item_noun"]`` (``"movie"``
for MovieLens, set by :func:`recforge.data.movielens.load_item_meta`; absent for anything else).
pandas keeps ``DataFrame.attrs`` through the frame operations the library uses and writes them
into Parquet, so a run directory's ``items.parquet`` carries the noun to ``recforge report``,
``recforge serve`` and the web page with no extra file. Data without the attribute is spoken of
as items and categories: recforge never calls a product a movie.

A caller with its own domain can name it: ``with_item_noun(meta, "product")``, or
``with_item_noun(meta, "book", category="subject")``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

__all__ = ["ITEM_NOUN", "Nouns", "nouns_for", "with_item_noun"]

#: ``DataFrame.attrs`` keys of the item metadata that name the domain.
ITEM_NOUN = "item_noun"
CATEGORY_NOUN = "category_noun"

#: Category words of the domains recforge reads itself; others say "category".
_CATEGORY_OF = {"movie": "genre"}


@dataclass(frozen=True)
class Nouns:
    """Singular and plural words for the items and their categories."""

    item: str = "item"
    items: str = "items"
    category: str = "category"
    categories: str = "categories"

    def as_dict(self) -> dict[str, str]:
        """``{"item", "items", "category", "categories"}`` (what the API's /health returns)."""
        return asdict(self)


def _plural(word: str) -> str:
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "o", "u"):
        return word[:-1] + "ies"  # category -> categories
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def nouns_for(meta: pd.DataFrame | None) -> Nouns:
    """The words for ``meta``'s domain; items and categories without ``attrs["item_noun"]``."""
    attrs = meta.attrs if meta is not None else {}
    item = str(attrs.get(ITEM_NOUN) or "item").strip().lower() or "item"
    category = str(attrs.get(CATEGORY_NOUN) or _CATEGORY_OF.get(item, "category")).strip().lower()
    return Nouns(item, _plural(item), category, _plural(category))


def with_item_noun(meta: pd.DataFrame, item: str, *, category: str | None = None) -> pd.DataFrame:
    """``meta`` (the same frame) labelled with its domain's item noun (and category noun)."""
    meta.attrs[ITEM_NOUN] = item
    if category is not None:
        meta.attrs[CATEGORY_NOUN] = category
    return meta
