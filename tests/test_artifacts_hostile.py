"""Hostile run directories: load_run must refuse them with ArtifactError, run nothing, and read
nothing outside the directory. Also: durable writes (fsync) and no pickle anywhere in src/."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recforge import _atomic
from recforge.artifacts import FORMAT_VERSION, RUN_FILES, load_run, save_run
from recforge.data.interactions import Interactions
from recforge.errors import ArtifactError
from recforge.models import create
from recforge.models.base import Recommender

# ---------------------------------------------------------------------- fixtures and helpers
_AUDIT: list[str] | None = None  # paths opened while a test listens (audit hooks are permanent)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _AUDIT is not None and event == "open" and isinstance(args[0], str | bytes):
        _AUDIT.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """Every path any code (Python, pandas, pyarrow's Python side) opens during the test."""
    global _AUDIT
    _AUDIT = []
    try:
        yield _AUDIT
    finally:
        _AUDIT = None


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
    return save_run(
        tmp_path / "run",
        fitted,
        metrics={"rmse": 0.9},
        history=pd.DataFrame({"epoch": [1], "train_loss": [1.0]}),
    )


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the run holding a secret the loader must never open."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.json").write_text('{"secret": true}')
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(run: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run / "manifest.json").read_text())
    return loaded


def _write_manifest(run: Path, manifest: dict[str, Any]) -> None:
    (run / "manifest.json").write_text(json.dumps(manifest))


def _replace_file(run: Path, name: str, data: bytes) -> None:
    """Overwrite ``name`` and fix its checksum, as an attacker who edits the manifest would."""
    (run / name).write_bytes(data)
    manifest = _manifest(run)
    manifest["files"][name] = _sha(run / name)
    _write_manifest(run, manifest)


class _TouchesWhenUnpickled:
    """Unpickling this calls ``Path.touch(sentinel)``: proof that a loader executed code."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.sentinel,))


def _malicious_pickle(sentinel: Path) -> bytes:
    payload = pickle.dumps(_TouchesWhenUnpickled(sentinel), protocol=4)
    pickle.loads(payload)  # the payload really does create the sentinel when unpickled
    assert sentinel.exists()
    sentinel.unlink()
    return payload


def _assert_nothing_outside(opened: list[str], run: Path, *forbidden: Path | str) -> None:
    # (test_path_traversal_... proves the hook sees reads: it finds exactly the manifest.)
    for path in opened:
        for bad in forbidden:
            assert not path.startswith(str(bad)), f"opened {path}"


# ---------------------------------------------------------------------- pickles
@pytest.mark.parametrize("name", sorted(RUN_FILES))
def test_malicious_pickle_in_place_of_any_run_file_is_refused_and_never_run(
    run_dir: Path, tmp_path: Path, name: str
) -> None:
    sentinel = tmp_path / "pwned"
    _replace_file(run_dir, name, _malicious_pickle(sentinel))
    with pytest.raises(ArtifactError, match=re.escape(str(run_dir))):
        load_run(run_dir)
    assert not sentinel.exists()


@pytest.mark.parametrize("name", ["weights.pkl", "model.pt", "vocab/users.pickle"])
def test_extra_pickle_files_listed_in_the_manifest_are_refused(
    run_dir: Path, tmp_path: Path, name: str, opened: list[str]
) -> None:
    sentinel = tmp_path / "pwned"
    (run_dir / name).write_bytes(_malicious_pickle(sentinel))
    manifest = _manifest(run_dir)
    manifest["files"][name] = _sha(run_dir / name)
    _write_manifest(run_dir, manifest)
    opened.clear()
    with pytest.raises(ArtifactError, match="not one of the run files"):
        load_run(run_dir)
    assert not sentinel.exists()
    assert not any(p.endswith(name) for p in opened)


# ---------------------------------------------------------------------- names and links
@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "vocab/../../outside/secret.json",
        "../outside/secret.json",
        "weights.safetensors/../../outside/secret.json",
        "./config.json",
        "vocab\\..\\..\\outside\\secret.json",
        "",
    ],
)
def test_path_traversal_in_manifest_names_is_refused_and_not_read(
    run_dir: Path, outside: Path, name: str, opened: list[str]
) -> None:
    manifest = _manifest(run_dir)
    manifest["files"][name] = "0" * 64
    _write_manifest(run_dir, manifest)
    opened.clear()
    with pytest.raises(ArtifactError, match="not one of the run files"):
        load_run(run_dir)
    assert opened == [str(run_dir / "manifest.json")]  # the manifest, and nothing after it
    _assert_nothing_outside(opened, run_dir, outside, "/etc/passwd")


def test_renamed_required_file_to_a_traversal_is_refused(run_dir: Path, outside: Path) -> None:
    manifest = _manifest(run_dir)
    manifest["files"]["../outside/secret.json"] = manifest["files"].pop("config.json")
    _write_manifest(run_dir, manifest)
    with pytest.raises(ArtifactError, match="not one of the run files"):
        load_run(run_dir)


@pytest.mark.parametrize("name", ["config.json", "vocab/items.json", "history.csv"])
def test_file_symlinked_outside_is_refused_and_not_read(
    run_dir: Path, outside: Path, name: str, opened: list[str]
) -> None:
    target = outside / "copy"
    target.write_bytes((run_dir / name).read_bytes())  # same bytes: the checksum would pass
    (run_dir / name).unlink()
    (run_dir / name).symlink_to(target)
    opened.clear()
    with pytest.raises(ArtifactError, match="outside the run directory"):
        load_run(run_dir)
    _assert_nothing_outside(opened, run_dir, outside)


def test_folder_symlinked_outside_is_refused_and_not_read(
    run_dir: Path, outside: Path, opened: list[str]
) -> None:
    moved = outside / "vocab"
    (run_dir / "vocab").rename(moved)
    (run_dir / "vocab").symlink_to(moved, target_is_directory=True)
    opened.clear()
    with pytest.raises(ArtifactError, match="outside the run directory"):
        load_run(run_dir)
    _assert_nothing_outside(opened, run_dir, outside)


def test_weights_symlinked_to_a_device_are_refused(run_dir: Path, opened: list[str]) -> None:
    (run_dir / "weights.safetensors").unlink()
    (run_dir / "weights.safetensors").symlink_to("/dev/zero")
    opened.clear()
    with pytest.raises(ArtifactError, match="outside the run directory"):
        load_run(run_dir)
    assert "/dev/zero" not in opened


def test_manifest_symlink_is_refused(run_dir: Path, outside: Path, opened: list[str]) -> None:
    real = outside / "manifest.json"
    (run_dir / "manifest.json").rename(real)
    (run_dir / "manifest.json").symlink_to(real)
    opened.clear()
    with pytest.raises(ArtifactError, match="symbolic link"):
        load_run(run_dir)
    _assert_nothing_outside(opened, run_dir, outside)


# ---------------------------------------------------------------------- corrupt and truncated
@pytest.mark.parametrize("keep", [0, 5, 8, 60, -1])
def test_truncated_safetensors_with_a_fixed_checksum_is_refused(run_dir: Path, keep: int) -> None:
    data = (run_dir / "weights.safetensors").read_bytes()
    _replace_file(run_dir, "weights.safetensors", data[:keep] if keep >= 0 else data[:-3])
    with pytest.raises(ArtifactError, match="not a valid safetensors file"):
        load_run(run_dir)


def test_truncated_safetensors_is_a_checksum_error(run_dir: Path) -> None:
    weights = run_dir / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_run(run_dir)


def _rewrite_weights(run: Path, change: Any) -> None:
    from safetensors.numpy import load_file, save_file

    state = load_file(str(run / "weights.safetensors"))
    change(state)
    save_file(state, str(run / "weights.safetensors"))
    _replace_file(run, "weights.safetensors", (run / "weights.safetensors").read_bytes())


def test_base_tensor_of_the_wrong_shape_is_refused(run_dir: Path) -> None:
    def shorten(state: dict[str, Any]) -> None:
        state["_base.seen_indptr"] = state["_base.seen_indptr"][:-2]

    _rewrite_weights(run_dir, shorten)
    with pytest.raises(ArtifactError, match="do not belong to these vocabularies"):
        load_run(run_dir)


def test_base_tensor_of_the_wrong_dtype_is_refused(run_dir: Path) -> None:
    def retype(state: dict[str, Any]) -> None:
        state["_base.global_mean"] = state["_base.global_mean"].astype(np.float32)

    _rewrite_weights(run_dir, retype)
    with pytest.raises(ArtifactError, match=r"_base\.global_mean"):
        load_run(run_dir)


def test_family_tensor_of_the_wrong_shape_is_refused(run_dir: Path) -> None:
    def shrink(state: dict[str, Any]) -> None:
        state["user_bias"] = state["user_bias"][:3]

    _rewrite_weights(run_dir, shrink)
    with pytest.raises(ArtifactError, match="do not fit model biases"):
        load_run(run_dir)


def test_neural_weights_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    model = create("mf", epochs=1, n_factors=4, verbose=False).fit(_data())
    run = save_run(tmp_path / "mf", model)
    config = json.loads((run / "config.json").read_text())
    config["n_factors"] = 8  # the config now promises a wider network than the weights hold
    _replace_file(run, "config.json", json.dumps(config).encode())
    # Refused before the network is built (issue 17): shapes checked on the meta device.
    with pytest.raises(ArtifactError, match=r"declare \[12, 8\]; the weights do not belong"):
        load_run(run)


def test_hostile_safetensors_header_is_refused(run_dir: Path) -> None:
    header = json.dumps(
        {"_base.seen_indptr": {"dtype": "I64", "shape": [10**12], "data_offsets": [0, 8]}}
    ).encode()
    blob = len(header).to_bytes(8, "little") + header + b"\0" * 8
    _replace_file(run_dir, "weights.safetensors", blob)
    with pytest.raises(ArtifactError, match="truncated or corrupt"):
        load_run(run_dir)


def test_bad_checksum_is_refused(run_dir: Path) -> None:
    manifest = _manifest(run_dir)
    manifest["files"]["vocab/items.json"] = "f" * 64
    _write_manifest(run_dir, manifest)
    with pytest.raises(ArtifactError, match=r"vocab/items\.json is corrupt \(checksum mismatch\)"):
        load_run(run_dir)


def test_newer_format_names_the_writer_and_says_upgrade(run_dir: Path) -> None:
    manifest = _manifest(run_dir)
    manifest["format_version"] = FORMAT_VERSION + 1
    manifest["versions"]["recforge"] = "9.9.0"
    manifest["files"] = {"weights.v2.bin": "x"}  # a newer layout: not validated, just refused
    _write_manifest(run_dir, manifest)
    with pytest.raises(ArtifactError, match=r"written by recforge 9\.9\.0: upgrade recforge"):
        load_run(run_dir)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"files": ["config.json"]}, "files"),
        ({"n_users": -1}, "n_users"),
        ({"n_users": "12"}, "n_users"),
        ({"model_name": ""}, "model_name"),
        ({"format_version": 0}, "format_version"),
        ({"files": {"config.json": "not-a-sha"}}, "files.config.json"),
    ],
)
def test_manifest_schema_is_enforced(run_dir: Path, change: dict[str, Any], fragment: str) -> None:
    manifest = _manifest(run_dir)
    manifest.update(change)
    _write_manifest(run_dir, manifest)
    with pytest.raises(ArtifactError, match=f"invalid manifest: {re.escape(fragment)}"):
        load_run(run_dir)


def test_missing_manifest_key_is_refused(run_dir: Path) -> None:
    manifest = _manifest(run_dir)
    del manifest["n_items"]
    _write_manifest(run_dir, manifest)
    with pytest.raises(ArtifactError, match="invalid manifest: n_items"):
        load_run(run_dir)


def test_vocabulary_size_must_match_the_manifest(run_dir: Path) -> None:
    manifest = _manifest(run_dir)
    manifest["n_items"] += 1
    _write_manifest(run_dir, manifest)
    with pytest.raises(ArtifactError, match="manifest says"):
        load_run(run_dir)


def test_unknown_model_and_invalid_config_are_artifact_errors(run_dir: Path) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    _replace_file(run_dir, "config.json", json.dumps({**config, "reg_u": -1}).encode())
    with pytest.raises(ArtifactError, match=r"not a valid config.*reg_u"):
        load_run(run_dir)
    manifest = _manifest(run_dir)
    manifest["model_name"] = "no_such_model"
    _write_manifest(run_dir, manifest)
    with pytest.raises(ArtifactError, match="no_such_model"):
        load_run(run_dir)


def test_a_clean_run_still_loads_and_scores(run_dir: Path, fitted: Recommender) -> None:
    run = load_run(run_dir)
    users = fitted.users_.ids[:3]
    items = fitted.items_.ids[:3]
    np.testing.assert_array_equal(run.model.predict(users, items), fitted.predict(users, items))
    assert run.metrics == {"rmse": 0.9}


# ---------------------------------------------------------------------- durability
def test_save_run_fsyncs_every_file_and_folder(
    fitted: Recommender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc to map file descriptors to paths")
    monkeypatch.setattr(_atomic.os, "fsync", spy)
    run = save_run(tmp_path / "run", fitted, metrics={"a": 1})
    names = {Path(p).name for p in synced}
    for path in run.rglob("*"):
        assert path.name in names, f"{path} was never fsynced"
    assert "manifest.json" in names
    assert str(tmp_path) in synced, "the parent folder must be fsynced after the rename"


def test_atomic_write_fsyncs_file_then_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc to map file descriptors to paths")
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(_atomic.os, "fsync", spy)
    _atomic.atomic_write_text(tmp_path / "out.txt", "x")
    assert len(synced) == 2
    assert Path(synced[0]).name.startswith(".out.txt.")  # the temporary file, before the rename
    assert synced[1] == str(tmp_path)


# ---------------------------------------------------------------------- no pickle anywhere
_FORBIDDEN = re.compile(
    r"^\s*(import|from)\s+(pickle|cPickle|dill|cloudpickle|joblib)\b"
    r"|torch\.load\(|allow_pickle\s*=\s*True|read_pickle|\.to_pickle|pickle\.loads?\(",
    re.MULTILINE,
)


def test_no_pickle_anywhere_in_the_package() -> None:
    src = Path(__file__).resolve().parents[1] / "src" / "recforge"
    hits = [
        f"{path.relative_to(src)}: {m.group(0).strip()}"
        for path in sorted(src.rglob("*.py"))
        for m in _FORBIDDEN.finditer(path.read_text(encoding="utf-8"))
    ]
    assert hits == []
    # np.load calls must say allow_pickle=False explicitly.
    for path in sorted(src.rglob("*.py")):
        for call in re.findall(r"np\.load\([^)]*\)", path.read_text(encoding="utf-8")):
            assert "allow_pickle=False" in call, f"{path}: {call}"


@pytest.mark.parametrize("command", ["recommend", "evaluate"])
def test_cli_on_a_hostile_run_exits_2_with_one_line(
    run_dir: Path, tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from recforge.cli import main

    sentinel = tmp_path / "pwned"
    _replace_file(run_dir, "weights.safetensors", _malicious_pickle(sentinel))
    args = [command, str(run_dir)] + (["--user", "1"] if command == "recommend" else [])
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "not a valid safetensors file" in captured.err and "Traceback" not in captured.err
    assert not sentinel.exists()


# ---------------------------------------------------------------------- fuzzing
@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run holding every run file, item metadata included."""
    data = _data()
    items = data.items.ids
    meta = pd.DataFrame(
        {"title": [f"Item {i}" for i in items], "genres": [["Drama"] * (i % 2) for i in items]},
        index=pd.Index(items, name="item_id"),
    )
    with_meta = Interactions.from_frame(data.to_frame(), item_meta=meta, rating_scale=(1.0, 5.0))
    run = save_run(
        tmp_path_factory.mktemp("pristine") / "run",
        create("biases", epochs=3).fit(with_meta),
        metrics={"rmse": 0.9},
        history=pd.DataFrame({"epoch": [1], "train_loss": [1.0]}),
    )
    assert set(_manifest(run)["files"]) == RUN_FILES
    return run


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from([*sorted(RUN_FILES), "manifest.json"]),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.binary(max_size=8), st.integers(0, 40)),
        min_size=1,
        max_size=3,
    ),
    fix_checksum=st.booleans(),
)
def test_mutated_runs_load_or_raise_artifact_error(
    pristine: Path, name: str, edits: list[tuple[float, bytes, int]], fix_checksum: bool
) -> None:
    """Random byte edits of any run file: an ArtifactError when the checksum was not fixed,
    else a model or an ArtifactError (never another exception)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(pristine, run)
        original = (run / name).read_bytes()
        data = bytearray(original)
        for where, chunk, cut in edits:
            pos = int(where * len(data))
            data[pos : pos + cut] = chunk
        (run / name).write_bytes(bytes(data))
        # The manifest carries no checksum of itself; any other changed file is now unverifiable.
        must_refuse = name != "manifest.json" and bytes(data) != original and not fix_checksum
        if fix_checksum and name != "manifest.json":
            _replace_file(run, name, bytes(data))
        try:
            loaded = load_run(run)
        except ArtifactError as exc:
            assert "\n" not in str(exc)
            if must_refuse:
                assert "checksum mismatch" in str(exc), str(exc)
        else:
            assert not must_refuse, f"{name} was edited without fixing its checksum, yet it loaded"
            assert loaded.model.score_items(np.arange(2)).shape == (2, loaded.model.n_items)


def test_corrupt_item_metadata_with_a_fixed_checksum_is_one_line(pristine: Path) -> None:
    # Found by the fuzz test above: pyarrow's message spans lines.
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(pristine, run)
        data = bytearray((run / "items.parquet").read_bytes())
        data[len(data) // 3 : len(data) // 3 + 8] = b"\xff" * 8
        _replace_file(run, "items.parquet", bytes(data))
        with pytest.raises(ArtifactError, match="cannot parse run files") as info:
            load_run(run)
        assert "\n" not in str(info.value)


def test_class_load_refuses_a_run_of_another_model(run_dir: Path) -> None:
    from recforge.models.baselines import Biases, Popularity

    assert isinstance(Biases.load(run_dir), Biases)
    assert isinstance(Recommender.load(run_dir), Biases)  # the base class loads any model
    with pytest.raises(ArtifactError, match="holds a biases model, not popularity"):
        Popularity.load(run_dir)
