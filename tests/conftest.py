"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread per test process.

    Our test models are small: with two OpenMP threads on a 2-core box (or beside pytest-xdist
    workers) threads spin-wait on each other and tests run 10-100x slower, for no accuracy gain.
    """
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def data_dir() -> Path:
    """The MovieLens folder named by ``RECFORGE_DATA_DIR``; skips the test when it is unavailable.

    Tests that use it should also be marked ``@pytest.mark.movielens``.
    """
    root = os.environ.get("RECFORGE_DATA_DIR")
    if not root:
        pytest.skip(
            "RECFORGE_DATA_DIR is unset; point it at a folder holding ml-100k/ and "
            "ml-latest-small/ (e.g. ../shared/data) to run the MovieLens tests"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        pytest.skip(f"RECFORGE_DATA_DIR={root} is not a directory; MovieLens tests skipped")
    return path
