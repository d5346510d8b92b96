"""recforge: deep-learning recommenders that are trained, honestly evaluated, explained and served.

The public API is re-exported here lazily, so ``import recforge`` (and ``recforge --help``) stays
fast: torch and pandas load only when a model or data function is first touched. ``dir(recforge)``
and ``recforge.__all__`` list it::

    import recforge
    model = recforge.create("ease").fit(df, columns={"user": "customer", "item": "product"})
    recforge.reclists_to_frame(model.recommend(["c1", "c2"], k=10))

Data: ``read_ratings``, ``read_frame``, ``load_dataset``, ``load_movielens``, ``Interactions``,
``IdVocab``, ``Split``, ``make_interactions``. Models: ``create``, ``available`` (registered
names), ``Recommender``, ``RecList``, ``reclists_to_frame``. Evaluation and runs: ``evaluate``,
``EvalReport``, ``save_run``, ``load_run``. Errors: ``RecError`` and its subclasses.
"""

from __future__ import annotations

import importlib
from typing import Any

from recforge.threads import quiet_openmp

__version__ = "0.1.0"

# Before torch (imported lazily) loads OpenMP: idle workers sleep rather than spin-wait, so
# threads never cost the busy one its CPU (see recforge.threads).
quiet_openmp()

_EXPORTS = {
    "read_ratings": "recforge.data.io",
    "read_frame": "recforge.data.io",
    "load_dataset": "recforge.data.sources",
    "load_movielens": "recforge.data.movielens",
    "IdVocab": "recforge.data.vocab",
    "Interactions": "recforge.data.interactions",
    "Split": "recforge.data.split",
    "make_interactions": "recforge.data.synthetic",
    "Recommender": "recforge.models.base",
    "RecList": "recforge.models.base",
    "reclists_to_frame": "recforge.models.base",
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
    "ModelFitError": "recforge.errors",
    "ArtifactError": "recforge.errors",
    "DataWarning": "recforge.errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'recforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazy names are not in globals() until first touched; show them to dir() and completion,
    # without the helpers this module imports for itself.
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__")})
