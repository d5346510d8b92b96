"""Issue 17, case 7: POST /admin/reload cannot probe the disk, and honours RECFORGE_RUN_ROOTS."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from recforge.serve.routes.admin import RELOAD_REFUSED
from recforge.serve.settings import Settings

from .conftest import client_for


def test_every_unusable_path_gets_the_same_answer(mf_run: Path, tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    broken = tmp_path / "broken"
    shutil.copytree(mf_run, broken)
    (broken / "weights.safetensors").write_bytes(b"junk")
    paths = [tmp_path / "folder", tmp_path / "file.txt", tmp_path / "missing", broken, Path("/")]
    with client_for(run=str(mf_run)) as client:
        before = client.get("/health").json()["model_version"]
        answers = {
            (r.status_code, r.text)
            for r in (client.post("/admin/reload", json={"run": str(p)}) for p in paths)
        }
        assert answers == {(422, f'{{"detail":"{RELOAD_REFUSED}"}}')}
        assert client.get("/health").json()["model_version"] == before


def test_run_roots_allow_list(mf_run: Path, mf_run2: Path, tmp_path: Path) -> None:
    root = tmp_path / "allowed"
    root.mkdir()
    inside = root / "run2"
    shutil.copytree(mf_run2, inside)
    (root / "escape").symlink_to(mf_run2)  # a link inside the root to a run outside it
    with client_for(run=str(mf_run), run_roots=(str(root),)) as client:
        for outside in (mf_run2, root / "escape", root / ".." / mf_run2.name):
            r = client.post("/admin/reload", json={"run": str(outside)})
            assert r.status_code == 422 and r.json() == {"detail": RELOAD_REFUSED}
        r = client.post("/admin/reload", json={"run": str(inside)})
        assert r.status_code == 200 and r.json()["model_version"].startswith("run2-")
        # Reloads that name no run (re-read, or a store version) are not path probes.
        assert client.post("/admin/reload").status_code == 200


@pytest.mark.parametrize("sep", [",", ":"])
def test_run_roots_from_the_environment(sep: str) -> None:
    settings = Settings.from_env({"RECFORGE_RUN": "r", "RECFORGE_RUN_ROOTS": f"/a{sep} /b "})
    assert settings.run_roots == ("/a", "/b")
    assert Settings.from_env(settings.to_env()).run_roots == ("/a", "/b")
