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


def force_picked_threads(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, mode: str
) -> list[int]:
    """Replace ``module.picked_threads`` by one that ignores timings: ``mode`` "all" gives every
    region the fit's thread count (``requested``, default torch's count), "alternate" gives
    every other region one thread, "one" always one. Returns the counts it gave."""
    import torch

    given: list[int] = []

    @contextlib.contextmanager
    def _forced(
        kernel: str, work_ms: float, requested: int | None = None, **_: object
    ) -> Iterator[int]:
        n = torch.get_num_threads() if requested is None else requested
        if mode == "one" or (mode == "alternate" and len(given) % 2):
            n = 1
        given.append(n)
        yield n

    monkeypatch.setattr(module, "picked_threads", _forced)
    return given
