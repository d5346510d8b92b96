"""Evaluation: pure metric functions (:mod:`~recforge.eval.metrics`) and model × split → EvalReport.

Attributes are imported lazily so ``import recforge.eval`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EvalReport": "recforge.eval.evaluate",
    "evaluate": "recforge.eval.evaluate",
    "evaluate_ranking": "recforge.eval.evaluate",
    "evaluate_ratings": "recforge.eval.evaluate",
    "sampled_ranking": "recforge.eval.evaluate",
    "protocol_label": "recforge.eval.evaluate",
    "get_protocol": "recforge.eval.protocols",
    "available_protocols": "recforge.eval.protocols",
    "metrics": "recforge.eval.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "metrics":
        return importlib.import_module("recforge.eval.metrics")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'recforge.eval' has no attribute {name!r}")
