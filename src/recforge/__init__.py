"""recforge: deep-learning recommenders that are trained, honestly evaluated, explained and served.

The public API is re-exported here lazily, so ``import recforge`` (and ``recforge --help``) stays
fast: torch and pandas load only when a model or data function is first touched.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "read_ratings": "recforge.data.io",
    "load_movielens": "recforge.data.movielens",
    "IdVocab": "recforge.data.vocab",
    "Interactions": "recforge.data.interactions",
    "Split": "recforge.data.split",
    "make_interactions": "recforge.data.synthetic",
    "Recommender": "recforge.models.base",
    "RecList": "recforge.models.base",
    "create": "recforge.models.registry",
    "available": "recforge.models.registry",
    "evaluate": "recforge.eval.evaluate",
    "EvalReport": "recforge.eval.evaluate",
    "save_run": "recforge.artifacts",
    "load_run": "recforge.artifacts",
    "RecError": "recforge.errors",
    "DataError": "recforge.errors",
    "ConfigError": "recforge.errors",
    "NotFittedError": "recforge.errors",
    "UnknownIdError": "recforge.errors",
    "DataWarning": "recforge.errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'recforge' has no attribute {name!r}")
