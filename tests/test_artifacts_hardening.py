"""Issue 17, cases 2, 3 and 7: crafted run directories that got past the first hostile corpus.

Every failure to load a run is an ArtifactError with one line naming the run; a run that
declares more than its weights hold is refused before anything is allocated for it; a hard link
out of a run is refused like a symbolic one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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


# ---------------------------------------------------------------------- case 3
def _inflate(run: Path, n_users: int, n_factors: int) -> None:
    """Claim ``n_users`` users and ``n_factors`` in a small run, keeping every check but the
    weights' own shapes consistent (vocabulary, manifest count, seen_indptr, checksums)."""
    from safetensors.numpy import load_file, save_file

    vocab = json.loads((run / "vocab/users.json").read_text())
    vocab["ids"] = list(range(n_users))
    _fix(run, "vocab/users.json", json.dumps(vocab).encode())
    state = load_file(str(run / "weights.safetensors"))
    indptr = state["_base.seen_indptr"]
    state["_base.seen_indptr"] = np.concatenate(
        [indptr, np.full(n_users + 1 - len(indptr), indptr[-1], dtype=np.int64)]
    )
    save_file(state, str(run / "weights.safetensors"))
    _fix(run, "weights.safetensors")
    config = json.loads((run / "config.json").read_text())
    config["n_factors"] = n_factors
    _fix(run, "config.json", json.dumps(config).encode())
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["n_users"] = n_users
    (run / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def mf_model() -> Recommender:
    return create("biased_mf", epochs=1, n_factors=4, seed=0).fit(_data())


def test_run_declaring_more_than_its_weights_hold_allocates_nothing(
    mf_model: Recommender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from recforge.models.neural import NeuralRecommender

    run = save_run(tmp_path / "run", mf_model)
    _inflate(run, 150_000, 4096)  # a 2.5 GB embedding table, from a ~2 MB run
    built: list[str] = []
    original = NeuralRecommender._new_module

    def spy(self: NeuralRecommender) -> Any:
        built.append(str(torch.get_default_device()))
        return original(self)

    monkeypatch.setattr(NeuralRecommender, "_new_module", spy)
    with pytest.raises(ArtifactError, match=r"declare \[150000, 4096\]") as info:
        load_run(run)
    assert "\n" not in str(info.value)
    assert built == ["meta"]  # shapes were compared on the meta device; nothing real was built


def _peak_rss_kib_loading(run: Path) -> int:
    """Peak RSS (KiB) of a fresh interpreter that imports recforge and loads ``run``."""
    import subprocess
    import sys

    code = (
        "import resource, sys\n"
        "from recforge.artifacts import load_run\n"
        "from recforge.errors import ArtifactError\n"
        "try:\n    load_run(sys.argv[1])\nexcept ArtifactError:\n    pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(run)], capture_output=True, text=True, timeout=300
    )
    return int(out.stdout.strip().splitlines()[-1])


def test_crafted_run_stays_small_in_a_fresh_process(mf_model: Recommender, tmp_path: Path) -> None:
    genuine = save_run(tmp_path / "genuine", mf_model)
    run = save_run(tmp_path / "run", mf_model)
    _inflate(run, 150_000, 4096)
    # Relative to loading the genuine run in the same environment (the interpreter, torch and
    # numba alone take a few hundred MiB, more or less by machine): the declared table alone is
    # 2.4 GiB, so materialising it would add far more than this margin.
    baseline_kib = _peak_rss_kib_loading(genuine)
    peak_kib = _peak_rss_kib_loading(run)
    assert peak_kib < baseline_kib + 512 * 1024, f"peak RSS {peak_kib} KiB, baseline {baseline_kib}"


def test_a_genuine_neural_run_still_loads(mf_model: Recommender, tmp_path: Path) -> None:
    run = save_run(tmp_path / "run", mf_model)
    loaded = load_run(run).model
    assert np.allclose(loaded.score_items(np.arange(3)), mf_model.score_items(np.arange(3)))


def test_num_threads_is_bounded_in_every_model_config() -> None:
    from recforge.errors import ConfigError
    from recforge.models.registry import available

    for name in available():
        try:
            fields = type(create(name).config).model_fields
        except ConfigError:
            continue
        if "num_threads" in fields:
            with pytest.raises(ConfigError):
                create(name, {"num_threads": 10**9})


# ---------------------------------------------------------------------- case 7: hard links
@pytest.mark.parametrize("name", ["config.json", "vocab/items.json", "manifest.json"])
def test_hard_link_out_of_a_run_is_refused(run_dir: Path, tmp_path: Path, name: str) -> None:
    outside = tmp_path / "outside.json"
    outside.write_bytes((run_dir / name).read_bytes())
    (run_dir / name).unlink()
    os.link(outside, run_dir / name)  # same bytes, checksum fine: only the link count tells
    with pytest.raises(ArtifactError, match=rf"{re.escape(name)} is a hard link \(2 names\)"):
        load_run(run_dir)


def test_multi_line_messages_from_deep_down_become_one_line(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recforge.errors import ConfigError
    from recforge.models.baselines import Biases

    def boom(self: Any, state: Any) -> None:
        raise ConfigError("first\nsecond\n  third")

    monkeypatch.setattr(Biases, "set_state", boom)
    with pytest.raises(ArtifactError) as info:
        load_run(run_dir)
    assert "first second third" in str(info.value)


def test_cli_writes_any_error_on_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import recforge.cli.app as cli_app
    from recforge.cli import main
    from recforge.errors import DataError

    def boom(*args: Any, **kwargs: Any) -> None:
        raise DataError("line one\n  line two\n")

    monkeypatch.setattr(cli_app, "load_run", boom, raising=False)
    monkeypatch.setattr("recforge.artifacts.load_run", boom)
    assert main(["recommend", "somewhere", "--user", "1"]) == 2
    assert capsys.readouterr().err == "recforge: error: line one line two\n"


def test_content_run_declaring_a_huge_feature_width_is_refused(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    frame = pd.DataFrame(
        {"user_id": [1, 1, 2, 2, 3], "item_id": [10, 11, 10, 12, 11], "rating": [5, 3, 4, 2, 5.0]}
    )
    meta = pd.DataFrame(
        {"title": ["a", "b", "c"], "genres": [["x"], ["y"], ["x", "z"]]},
        index=pd.Index([10, 11, 12], name="item_id"),
    )
    data = Interactions.from_frame(frame, rating_scale=(1.0, 5.0), item_meta=meta)
    run = save_run(tmp_path / "run", create("content").fit(data))
    assert load_run(run).model.n_items == 3
    state = load_file(str(run / "weights.safetensors"))
    state["features_shape"] = np.asarray([3, 10**10], dtype=state["features_shape"].dtype)
    save_file(state, str(run / "weights.safetensors"))
    _fix(run, "weights.safetensors")
    with pytest.raises(ArtifactError, match="declare 10000000000 columns"):
        load_run(run)
