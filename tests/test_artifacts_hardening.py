"""Issue 17, cases 2, 3 and 7: crafted run directories that got past the first hostile corpus.

Every failure to load a run is an ArtifactError with one line naming the run; a run that
declares more than its weights hold is refused before anything is allocated for it; a hard link
out of a run is refused like a symbolic one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recforge.artifacts import load_run, save_run
from recforge.data.interactions import Interactions
from recforge.errors import ArtifactError
from recforge.models import create
from recforge.models.base import Recommender


def _data() -> Interactions:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 12, 80),
            "item_id": rng.integers(100, 115, 80),
            "rating": rng.integers(1, 6, 80).astype(float),
        }
    ).drop_duplicates(["user_id", "item_id"])
    return Interactions.from_frame(frame, rating_scale=(1.0, 5.0))


@pytest.fixture(scope="module")
def fitted() -> Recommender:
    return create("biases", epochs=3).fit(_data())


@pytest.fixture
def run_dir(fitted: Recommender, tmp_path: Path) -> Path:
    return save_run(tmp_path / "run", fitted)


def _fix(run: Path, name: str, data: bytes | None = None) -> None:
    """(Re)write ``name`` and fix its checksum, as an attacker who edits the manifest would."""
    if data is not None:
        (run / name).write_bytes(data)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256((run / name).read_bytes()).hexdigest()
    (run / "manifest.json").write_text(json.dumps(manifest))


def _huge_user_id(run: Path) -> None:
    vocab = json.loads((run / "vocab/users.json").read_text())
    vocab["ids"][0] = 2**70
    _fix(run, "vocab/users.json", json.dumps(vocab).encode())


# ---------------------------------------------------------------------- case 2
def test_vocabulary_id_beyond_int64_is_an_artifact_error(run_dir: Path) -> None:
    _huge_user_id(run_dir)
    with pytest.raises(ArtifactError, match="64-bit") as info:
        load_run(run_dir)
    assert str(run_dir) in str(info.value) and "\n" not in str(info.value)


def test_cli_on_an_overflowing_vocabulary_exits_2_with_one_line(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recforge.cli import main

    _huge_user_id(run_dir)
    code = main(["recommend", str(run_dir), "--user", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "exc", [OverflowError("big"), ZeroDivisionError("x"), AssertionError("a\nb\nc"), MemoryError()]
)
def test_any_failure_while_loading_is_one_line_artifact_error(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    from recforge.models.baselines import Biases

    def boom(self: Any, state: Any) -> None:
        raise exc

    monkeypatch.setattr(Biases, "set_state", boom)
    with pytest.raises(ArtifactError) as info:
        load_run(run_dir)
    assert str(run_dir) in str(info.value) and "\n" not in str(info.value)


def test_reload_of_an_overflowing_run_is_4xx_and_keeps_the_old_model(
    run_dir: Path, fitted: Recommender, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from recforge.serve import Settings, create_app

    bad = save_run(tmp_path / "bad", fitted)
    _huge_user_id(bad)
    with TestClient(create_app(Settings(run=str(run_dir)))) as client:
        before = client.get("/health").json()["model_version"]
        r = client.post("/admin/reload", json={"run": str(bad)})
        assert 400 <= r.status_code < 500
        assert "\n" not in r.json()["detail"]
        assert client.get("/health").json()["model_version"] == before
        assert client.get("/users/1/recommendations?k=3").status_code == 200
