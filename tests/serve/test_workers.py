"""Issue 17, case 5: with several worker processes, a reload reaches every one of them."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from recforge.serve.shared import SharedState

from ._server import serve_process


def _versions(base: str, n: int) -> list[str]:
    # A fresh connection per request: the kernel spreads them over the workers.
    out = []
    for _ in range(n):
        with httpx.Client(timeout=30) as client:
            out.append(client.get(base + "/health").json()["model_version"])
    return out


def test_reload_reaches_every_worker(mf_run: Path, mf_run2: Path) -> None:
    with serve_process(mf_run, "--workers", "2", log_level="info", ready=2) as server:
        before = set(_versions(server.base, 10))
        assert len(before) == 1
        r = httpx.post(server.base + "/admin/reload", json={"run": str(mf_run2)}, timeout=120)
        assert r.status_code == 200
        new = r.json()["model_version"]
        assert new not in before
        assert set(_versions(server.base, 40)) == {new}
        # And back, with a reload that names nothing new (re-read): all follow again.
        r = httpx.post(server.base + "/admin/reload", json={"run": str(mf_run)}, timeout=120)
        assert set(_versions(server.base, 20)) == {r.json()["model_version"]} == before


def test_shared_state_file_round_trip_and_generations(tmp_path: Path) -> None:
    state = SharedState(tmp_path / "state.json")
    assert state.read() is None and state.identity() is None and state.changed() is False
    state.write("runs/a", "active")
    assert state.read() == {"run": "runs/a", "store_version": "active", "generation": 1}
    assert not state.changed()  # the writer applied its own state
    other = SharedState(tmp_path / "state.json")
    assert other.changed()
    other.write("runs/b", "v2")
    assert state.changed() and state.read() == {
        "run": "runs/b",
        "store_version": "v2",
        "generation": 2,
    }
    (tmp_path / "state.json").write_text("[not an object]")
    assert SharedState(tmp_path / "state.json").read() is None


def test_in_process_worker_follows_a_state_file(
    mf_run: Path, mf_run2: Path, tmp_path: Path
) -> None:
    from .conftest import client_for

    path = tmp_path / "state.json"
    with (
        client_for(run=str(mf_run), state_file=str(path)) as a,
        client_for(run=str(mf_run), state_file=str(path)) as b,
    ):
        new = a.post("/admin/reload", json={"run": str(mf_run2)}).json()["model_version"]
        assert b.get("/health").json()["model_version"] == new
        assert a.get("/health").json()["model_version"] == new
    # A worker starting later starts on what the file says.
    with client_for(run=str(mf_run), state_file=str(path)) as c:
        assert c.get("/health").json()["model_version"] == new


def test_store_mode_workers_with_watch_agree_on_pins_and_activations(
    mf_run: Path, mf_run2: Path, tmp_path: Path
) -> None:
    import time

    from recforge.export import export_run
    from recforge.store import open_store

    from .conftest import client_for

    url = f"sqlite:///{tmp_path / 's.db'}"
    first = export_run(mf_run, url, 5).version.model_version
    second = export_run(mf_run2, url, 5).version.model_version
    with open_store(url) as store:
        store.activate(first)
    path = str(tmp_path / "state.json")
    opts = {"store": url, "watch_interval": 0.05, "state_file": path}
    with client_for(**opts) as a, client_for(**opts) as b:
        # Pin one worker to the second version: the other follows the pin.
        assert a.post("/admin/reload", json={"store_version": second}).status_code == 200
        assert b.get("/health").json()["store_version"] == second
        # Activating the first again: pinned workers stay together on the pin.
        with open_store(url) as store:
            store.activate(first)
        time.sleep(0.3)
        assert {c.get("/health").json()["store_version"] for c in (a, b)} == {second}
        # Unpin on the other worker: both follow "active" again, and the watcher keeps them there.
        assert b.post("/admin/reload", json={"store_version": "active"}).status_code == 200
        assert {c.get("/health").json()["store_version"] for c in (a, b)} == {first}
        with open_store(url) as store:
            store.activate(second)
        deadline = time.monotonic() + 10
        while {c.get("/health").json()["store_version"] for c in (a, b)} != {second}:
            assert time.monotonic() < deadline, "watchers did not follow the activation"
            time.sleep(0.05)


def test_a_writer_does_not_mistake_a_newer_file_for_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A writes, worker B writes right after: A must still see B's file as new."""
    import recforge.serve.shared as shared_mod

    path = tmp_path / "state.json"
    a, b = SharedState(path), SharedState(path)
    real_replace = os.replace

    def replace_then_other_writes(src: object, dst: object) -> None:
        real_replace(src, dst)  # type: ignore[arg-type]
        monkeypatch.setattr(shared_mod.os, "replace", real_replace)
        b.write("runs/b", "active")  # lands between A's rename and anything A does next

    monkeypatch.setattr(shared_mod.os, "replace", replace_then_other_writes)
    monkeypatch.setattr("recforge._atomic.os.replace", replace_then_other_writes)
    a.write("runs/a", "active")
    assert a.read() == {"run": "runs/b", "store_version": "active", "generation": 2}
    assert a.changed()


def test_store_mode_workers_with_watch_all_follow_a_reload(
    mf_run: Path, mf_run2: Path, tmp_path: Path
) -> None:
    from recforge.export import export_run
    from recforge.store import open_store

    url = f"sqlite:///{tmp_path / 'w.db'}"
    first = export_run(mf_run, url, 5).version.model_version
    second = export_run(mf_run2, url, 5).version.model_version
    with open_store(url) as store:
        store.activate(first)

    def versions(base: str, n: int) -> set[str]:
        out = set()
        for _ in range(n):
            with httpx.Client(timeout=30) as client:
                out.add(client.get(base + "/health").json()["store_version"])
        return out

    args = ("--store", url, "--watch", "0.2", "--workers", "2")
    with serve_process(None, *args, log_level="info", ready=2) as server:
        assert versions(server.base, 10) == {first}
        r = httpx.post(server.base + "/admin/reload", json={"store_version": second}, timeout=60)
        assert r.status_code == 200
        assert versions(server.base, 30) == {second}  # no worker left on the old version
        r = httpx.post(server.base + "/admin/reload", json={"store_version": "active"}, timeout=60)
        assert versions(server.base, 30) == {first}
