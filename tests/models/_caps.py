"""A recorder for the thread caps (``capped``, ``blas_capped``) that models enter."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType

import pytest


def record_thread_caps(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str
) -> list[float]:
    """Replace ``module.name`` (a context manager taking a work estimate in one-thread
    milliseconds) by one that records each estimate and caps nothing; returns the records."""
    asked: list[float] = []

    @contextlib.contextmanager
    def _record(ms: float) -> Iterator[int]:
        asked.append(ms)
        yield 1

    monkeypatch.setattr(module, name, _record)
    return asked
