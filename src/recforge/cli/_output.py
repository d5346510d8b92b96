"""Shared output helpers for CLI commands: JSON or rich text, never both."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(obj: Any) -> None:
    """Write ``obj`` as JSON to stdout (numpy scalars and NaN handled)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_default, allow_nan=True) + "\n")


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def console() -> Any:
    """A rich Console on stdout (plain text when not a terminal)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def parse_sets(values: list[str] | None) -> dict[str, Any]:
    """Parse repeated ``--set key=value`` options; values are read as JSON when they parse."""
    from recforge.errors import ConfigError

    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out
