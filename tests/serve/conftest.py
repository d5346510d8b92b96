"""Service fixtures: small fitted runs with titles, a store exported from one, and clients."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recforge.serve import Settings, create_app

TITLES = {1: "Toy Story", 2: "GoldenEye", 3: "Four Rooms", 4: "Get Shorty", 5: "Copycat"}


def fit_run(path: Path, model_name: str = "biased_mf", seed: int = 3, **cfg: object) -> Path:
    """Fit a small model on synthetic data whose items carry titles, years and genres."""
    from recforge.artifacts import save_run
    from recforge.data.synthetic import make_interactions
    from recforge.models.registry import create

    data = make_interactions(150, 60, density=0.1, seed=seed).interactions
    ids = data.items.ids.tolist()
    meta = pd.DataFrame(
        {
            "title": [TITLES.get(int(i), f"Movie {i}") for i in ids],
            "year": [1990 + int(i) % 10 for i in ids],
            "genres": [["Comedy"] if int(i) % 2 else ["Drama", "Action"] for i in ids],
        },
        index=pd.Index(ids, name="item_id"),
    )
    data = dataclasses.replace(data, item_meta=meta)
    params = dict(cfg) if model_name == "popularity" else {"seed": 0, **cfg}
    model = create(model_name, params).fit(data)
    return save_run(path, model)


@pytest.fixture(scope="session")
def mf_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """biased_mf, 150 users × 60 items, integer ids, titles."""
    return fit_run(tmp_path_factory.mktemp("runs") / "mf", epochs=3)


@pytest.fixture(scope="session")
def mf_run2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second biased_mf run (other data seed): the target of reload tests."""
    return fit_run(tmp_path_factory.mktemp("runs") / "mf2", seed=4, epochs=2)


@pytest.fixture(scope="session")
def pop_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A popularity model: no item vectors, no retrieval vectors."""
    return fit_run(tmp_path_factory.mktemp("runs") / "pop", model_name="popularity")


@pytest.fixture(scope="session")
def store_url(tmp_path_factory: pytest.TempPathFactory, mf_run: Path) -> str:
    """SQLite store holding an export (k=20) of ``mf_run``, active."""
    from recforge.export import export_run

    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'recs.db'}"
    export_run(mf_run, url, 20)
    return url


@contextlib.contextmanager
def client_for(**settings: object) -> Iterator[TestClient]:
    """A TestClient whose lifespan has run (the service is loaded)."""
    app = create_app(Settings(**settings))  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield client


@pytest.fixture
def live(mf_run: Path) -> Iterator[TestClient]:
    """Live mode on ``mf_run``."""
    with client_for(run=str(mf_run)) as client:
        yield client
