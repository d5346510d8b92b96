"""A recorder for the thread caps (``capped``, ``blas_capped``) that models enter."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

import pytest

import recforge.threads as th


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
    """Replace ``module.picked_threads`` and ``module.picked_map`` (those it has) by ones that
    ignore timings: ``mode`` "all" gives every region the fit's thread count (``requested``,
    default torch's count), "alternate" gives every other region one thread (and maps every
    third region with picked_map's one-thread probe), "one" always one. Returns the counts it
    gave."""
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

    def _forced_map(
        kernel: str,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        costs: Sequence[float],
        work_ms: float,
        requested: int | None = None,
        **_: object,
    ) -> list[Any]:
        with _forced(kernel, work_ms, requested) as n:
            # "alternate" also takes picked_map's one-thread probe (a quarter of the items
            # alone, then the rest on n threads) every third region.
            if mode == "alternate" and len(given) % 3 == 0:
                return th.map_with_one_thread_probe(fn, items, max(n, 2))[0]
            return th.map_in_threads(fn, items, n)  # looked up now: tests may spy on it

    if hasattr(module, "picked_threads"):
        monkeypatch.setattr(module, "picked_threads", _forced)
    if hasattr(module, "picked_map"):
        monkeypatch.setattr(module, "picked_map", _forced_map)
    return given
