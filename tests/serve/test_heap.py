"""freeze_heap: the loaded service's objects are exempt from full collections, and a reload
makes the old generation collectable again."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from recforge.serve import app as app_module

from .conftest import client_for


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Leave the test process as it was: nothing frozen after the test."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_start_up_freezes_the_loaded_service(mf_run: Path, unfrozen: None) -> None:
    with client_for(run=str(mf_run), freeze_heap=True) as client:
        service = client.app.state.service  # type: ignore[attr-defined]
        assert gc.get_freeze_count() > 0
        assert all(o is not service for o in gc.get_objects())  # frozen: in no generation
        assert client.get("/health").status_code == 200


def test_off_by_default(mf_run: Path, unfrozen: None) -> None:
    with client_for(run=str(mf_run)) as client:
        assert gc.get_freeze_count() == 0
        assert client.get("/health").status_code == 200


def test_reload_unfreezes_and_settles_later(mf_run: Path, mf_run2: Path, unfrozen: None) -> None:
    with client_for(run=str(mf_run), freeze_heap=True) as client:
        old = weakref.ref(client.app.state.service)  # type: ignore[attr-defined]
        assert gc.get_freeze_count() > 0
        r = client.post("/admin/reload", json={"run": str(mf_run2)})
        assert r.status_code == 200
        assert client.get("/health").json()["model_version"].startswith(mf_run2.name)
        # Unfrozen at once (the settle waits SETTLE_AFTER_RELOAD s for the old store's grace).
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert old() is None  # the old generation is collectable
        app_module.settle_heap()
        assert gc.get_freeze_count() > 0
