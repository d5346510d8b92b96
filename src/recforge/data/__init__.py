"""Data layer: reading ratings, MovieLens releases, vocabularies, interactions and splits.

Only this package reads raw files. Attributes load lazily, so ``import recforge.data`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "IdVocab": "recforge.data.vocab",
    "Interactions": "recforge.data.interactions",
    "read_ratings": "recforge.data.io",
    "load_movielens": "recforge.data.movielens",
    "load_dataset": "recforge.data.sources",
    "DataSource": "recforge.data.datasource",
    "MOVIELENS": "recforge.data.movielens",
    "Split": "recforge.data.split",
    "make_interactions": "recforge.data.synthetic",
    "SyntheticData": "recforge.data.synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'recforge.data' has no attribute {name!r}")
