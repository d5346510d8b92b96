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


def parse_ks(text: str | None) -> tuple[int, ...]:
    """``--k 5,10,20`` → ``(5, 10, 20)``; None → ``(10,)``."""
    from recforge.errors import ConfigError

    if text is None:
        return (10,)
    try:
        ks = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--k {text!r}: expected cut-offs like 5,10,20") from None
    if not ks or min(ks) < 1:
        raise ConfigError(f"--k {text!r}: cut-offs must be positive integers, e.g. 5,10,20")
    return tuple(sorted(set(ks)))
