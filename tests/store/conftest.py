"""Store fixtures: a small fitted run, and a store URL per backend (SQLite always; PostgreSQL in a
throwaway cluster, marked ``postgres``, skipped with a reason when the server binaries are absent).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from .pgcluster import create_database, pg_cluster, unavailable_reason

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_base() -> Iterator[str]:
    """Base URL of a PostgreSQL cluster started for this test session."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with pg_cluster(fast=True) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty store database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'recs.db'}"
    base = request.getfixturevalue("pg_base")
    return create_database(base, f"t{next(_db_counter)}")


def _fit_run(path: Path, n_users: int, n_items: int, epochs: int = 1) -> Path:
    from recforge.artifacts import save_run
    from recforge.data.synthetic import make_interactions
    from recforge.models.mf import BiasedMF

    data = make_interactions(n_users, n_items, density=0.05, seed=3)
    model = BiasedMF(n_factors=8, epochs=epochs, batch_size=4096, seed=0).fit(data.interactions)
    return save_run(path, model, metrics={"rmse": 1.0})


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fitted biased_mf run: 120 users × 60 items (integer ids)."""
    return _fit_run(tmp_path_factory.mktemp("runs") / "small", 120, 60, epochs=2)


@pytest.fixture(scope="session")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run large enough that a throttled export takes seconds (for the kill test)."""
    return _fit_run(tmp_path_factory.mktemp("runs") / "big", 2000, 200)
