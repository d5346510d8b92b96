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
    # Fits pick their thread count from recforge.threads (the CPUs available) unless told;
    # tell them (and CLI subprocesses, which inherit the environment) to use one.
    os.environ.setdefault("RECFORGE_NUM_THREADS", "1")


if os.environ.get("RECFORGE_MUTATION"):
    # `make mutate` runs the tests once per mutant: property tests must be deterministic (the
    # same examples every run, so a survivor is reproducible) and stop at the first failing
    # example instead of shrinking it (nobody reads the minimal example of a mutant).
    from hypothesis import Phase, settings

    settings.register_profile(
        "mutation",
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    settings.load_profile("mutation")


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
