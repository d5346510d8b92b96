"""Store mode (precomputed lists, no torch), live+store, and hot reload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from fastapi.testclient import TestClient

from recforge.store import open_store

from .conftest import client_for


def test_store_mode_serves_stored_lists(store_url: str) -> None:
    with open_store(store_url, create=False) as store:
        want = store.get("1", 7)
        version = store.active()
    with client_for(store=store_url) as client:
        health = client.get("/health").json()
        assert health["mode"] == "store" and health["store_version"] == version
        body = client.get("/users/1/recommendations?k=7").json()
        assert body["source"] == "store" and body["model_version"] == version
        assert [(it["item_id"], it["rank"]) for it in body["items"]] == [
            (r.item_id, r.rank) for r in want
        ]
        # Titles come from the exported run's items.parquet.
        assert all(it["title"] for it in body["items"])
        assert client.get("/items?query=toy").json()["items"][0]["title"] == "Toy Story"
        r = client.get("/users/nobody/recommendations")
        assert r.status_code == 404 and r.json() == {"detail": "unknown user: nobody"}
        r = client.post("/recommendations", json={"ratings": {"1": 5}})
        assert r.status_code == 404 and "store mode" in r.json()["detail"]


def test_live_plus_store(store_url: str, mf_run: Path) -> None:
    with client_for(store=store_url, run=str(mf_run)) as client:
        assert client.get("/health").json()["mode"] == "live+store"
        assert client.get("/users/1/recommendations").json()["source"] == "store"
        assert client.post("/recommendations", json={"ratings": {"1": 5}}).status_code == 200


def test_store_mode_never_imports_torch(store_url: str) -> None:
    code = """
import json, sys
from fastapi.testclient import TestClient
from recforge.serve import create_app
with TestClient(create_app()) as c:
    out = [c.get("/health").status_code, c.get("/users/1/recommendations").status_code,
           c.get("/items?query=toy").status_code, c.get("/").status_code]
print(json.dumps({"codes": out, "torch": "torch" in sys.modules}))
"""
    env = {**os.environ, "RECFORGE_STORE": store_url}
    env.pop("RECFORGE_RUN", None)
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got == {"codes": [200, 200, 200, 200], "torch": False}


def test_reload_swaps_model_without_dropping_requests(mf_run: Path, mf_run2: Path) -> None:
    with client_for(run=str(mf_run)) as client:
        before = client.get("/health").json()["model_version"]
        codes: list[int] = []
        stop = threading.Event()

        def hammer(c: TestClient = client) -> None:
            while not stop.is_set():
                codes.append(c.get("/users/2/recommendations").status_code)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        r = client.post("/admin/reload", json={"run": str(mf_run2)})
        r2 = client.post("/admin/reload")  # re-read the same run: still serving
        stop.set()
        for t in threads:
            t.join()
        assert r.status_code == 200 and r2.status_code == 200
        body = r.json()
        assert body["previous_version"] == before
        assert body["model_version"].startswith("mf2-")
        assert client.get("/health").json()["model_version"] == body["model_version"]
        assert codes and set(codes) == {200}
        bad = client.post("/admin/reload", json={"run": "/no/such/run"})
        assert bad.status_code == 422  # the old model keeps serving
        assert client.get("/health").json()["model_version"] == body["model_version"]


def test_reload_follows_store_activation(mf_run: Path, mf_run2: Path, tmp_path: Path) -> None:
    from recforge.export import export_run

    url = f"sqlite:///{tmp_path / 'r.db'}"
    first = export_run(mf_run, url, 5).version.model_version
    with client_for(store=url) as client:
        assert client.get("/health").json()["store_version"] == first
        second = export_run(mf_run2, url, 5).version.model_version
        with open_store(url) as store:
            store.activate(second)
        assert client.post("/admin/reload").json()["model_version"] == second


def test_watcher_reloads_on_store_activation(mf_run: Path, mf_run2: Path, tmp_path: Path) -> None:
    import time

    from recforge.export import export_run

    url = f"sqlite:///{tmp_path / 'w.db'}"
    first = export_run(mf_run, url, 5).version.model_version
    second = export_run(mf_run2, url, 5).version.model_version
    with open_store(url) as store:
        store.activate(first)
    with client_for(store=url, watch_interval=0.05) as client:
        assert client.get("/health").json()["store_version"] == first
        with open_store(url) as store:
            store.activate(second)
        deadline = time.monotonic() + 10
        while client.get("/health").json()["store_version"] != second:
            assert time.monotonic() < deadline, "watcher did not pick up the new version"
            time.sleep(0.05)
