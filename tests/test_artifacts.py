"""Run directories: round trips, refusal of newer/corrupt/unsafe runs, atomic writes."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recforge._atomic import atomic_dir
from recforge.artifacts import FORMAT_VERSION, RUN_FILES, load_run, read_manifest, save_run
from recforge.data.interactions import Interactions
from recforge.errors import ArtifactError, RecError
from recforge.models import create
from recforge.models.base import Recommender


def _string_id_data() -> Interactions:
    """Tiny explicit data with string ids and item metadata (titles, genre lists, years)."""
    frame = pd.DataFrame(
        {
            "user_id": ["ann", "ann", "bob", "bob", "bob", "cy", "cy", "dee"],
            "item_id": ["m1", "m2", "m1", "m3", "m4", "m2", "m4", "m3"],
            "rating": [5.0, 3.0, 4.0, 2.0, 5.0, 1.0, 4.0, 3.0],
            "timestamp": np.arange(8, dtype=np.int64),
        }
    )
    meta = pd.DataFrame(
        {
            "title": ["Alpha", "Beta", "Gamma", "Delta"],
            "genres": [["Action"], ["Comedy", "Drama"], [], ["Horror"]],
            "year": [1994, 2001, 1999, 2010],
        },
        index=pd.Index(["m1", "m2", "m3", "m4"], name="item_id"),
    )
    return Interactions.from_frame(frame, item_meta=meta, rating_scale=(1.0, 5.0))


@pytest.fixture
def fitted() -> Recommender:
    return create("biases", epochs=5).fit(_string_id_data())


@pytest.fixture
def run_dir(fitted: Recommender, tmp_path: Path) -> Path:
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.9, 0.8]})
    return save_run(
        tmp_path / "run",
        fitted,
        metrics={"rmse": np.float32(0.5), "per_k": np.array([1, 2])},
        history=history,
        data_fingerprint="abc123",
    )


def _rewrite_manifest(run: Path, **changes: Any) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(changes)
    (run / "manifest.json").write_text(json.dumps(manifest))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------- round trip
def test_round_trip_keeps_scores_vocab_and_metadata(fitted: Recommender, run_dir: Path) -> None:
    run = load_run(run_dir)
    model = run.model
    assert type(model) is type(fitted) and model.config == fitted.config
    assert model.users_ == fitted.users_ and model.items_ == fitted.items_
    assert model.users_.ids.tolist() == ["ann", "bob", "cy", "dee"]
    assert model.items_.ids.tolist() == ["m1", "m2", "m3", "m4"]
    users = np.arange(fitted.n_users)
    np.testing.assert_array_equal(model.score_items(users), fitted.score_items(users))
    assert model.global_mean_ == fitted.global_mean_
    assert model.rating_scale_ == (1.0, 5.0)
    assert (model.seen_ != fitted.seen_).nnz == 0
    # Seen items survive: bob rated m1, m3, m4, so only m2 is left to recommend.
    (rec,) = model.recommend(["bob"], k=10)
    assert rec.item_ids.tolist() == ["m2"]
    assert model.item_meta_ is not None and fitted.item_meta_ is not None
    pd.testing.assert_frame_equal(model.item_meta_, fitted.item_meta_, check_dtype=False)
    assert model.item_meta_.loc["m2", "genres"] == ["Comedy", "Drama"]
    assert isinstance(model.item_meta_.loc["m3", "genres"], list)
    assert run.metrics == {"rmse": 0.5, "per_k": [1, 2]}
    assert run.history is not None and run.history["train_loss"].tolist() == [0.9, 0.8]
    assert run.manifest["format_version"] == FORMAT_VERSION
    assert run.manifest["model_name"] == "biases"
    assert run.manifest["data_fingerprint"] == "abc123"
    assert (run.manifest["n_users"], run.manifest["n_items"]) == (4, 4)


def test_every_file_is_listed_with_its_checksum(run_dir: Path) -> None:
    manifest = read_manifest(run_dir)
    on_disk = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert set(manifest["files"]) == on_disk
    for name, digest in manifest["files"].items():
        assert _sha(run_dir / name) == digest
    assert not [p for p in run_dir.rglob("*") if p.suffix in {".pkl", ".pickle", ".pt", ".pth"}]


def test_model_save_and_load_methods(fitted: Recommender, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "r")
    loaded = type(fitted).load(path)
    np.testing.assert_array_equal(
        loaded.predict(["ann", "dee"], ["m4", "m1"]), fitted.predict(["ann", "dee"], ["m4", "m1"])
    )


def test_implicit_run_without_metadata(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [10, 20, 20, 30]})
    model = create("popularity").fit(Interactions.from_frame(frame))
    run = load_run(save_run(tmp_path / "r", model))
    assert run.model.rating_scale_ is None and run.model.item_meta_ is None
    assert run.metrics == {} and run.history is None
    assert run.model.items_.ids.tolist() == [10, 20, 30]
    assert run.model.items_.ids.dtype.kind == "i"
    assert run.model.recommend([3], k=2)[0].item_ids.tolist() == [20, 10]


def test_unnamed_metadata_index_round_trips(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": [7, 8], "rating": [4.0, 2.0]})
    meta = pd.DataFrame({"title": ["Seven", "Eight"]}, index=[7, 8])  # index has no name
    inter = Interactions.from_frame(frame, item_meta=meta, rating_scale=(1.0, 5.0))
    run = load_run(save_run(tmp_path / "r", create("global_mean").fit(inter)))
    assert run.model.item_meta_ is not None
    assert run.model.item_meta_.loc[8, "title"] == "Eight"


def test_saving_over_an_existing_run_replaces_it(fitted: Recommender, run_dir: Path) -> None:
    other = create("popularity").fit(_string_id_data())
    save_run(run_dir, other)
    assert load_run(run_dir).manifest["model_name"] == "popularity"
    assert not (run_dir / "metrics.json").exists()
    assert [p.name for p in run_dir.parent.iterdir()] == ["run"]


def test_extra_manifest_keys_cannot_override_reserved_ones(
    fitted: Recommender, tmp_path: Path
) -> None:
    path = save_run(tmp_path / "ok", fitted, extra={"dataset": "toy"})
    assert read_manifest(path)["dataset"] == "toy"
    with pytest.raises(ArtifactError, match="format_version"):
        save_run(tmp_path / "bad", fitted, extra={"format_version": 99})
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------- refusals
def test_newer_format_version_is_refused(run_dir: Path) -> None:
    _rewrite_manifest(run_dir, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ArtifactError, match="newer"):
        load_run(run_dir)


@pytest.mark.parametrize("value", ["1", None, 1.5])
def test_non_integer_format_version_is_refused(run_dir: Path, value: object) -> None:
    _rewrite_manifest(run_dir, format_version=value)
    with pytest.raises(ArtifactError, match="format_version"):
        load_run(run_dir)


def test_corrupt_weights_byte_is_refused(run_dir: Path) -> None:
    weights = run_dir / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit in the last weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        load_run(run_dir)


@pytest.mark.parametrize("name", sorted(RUN_FILES))
def test_every_run_file_edited_without_its_checksum_is_refused(run_dir: Path, name: str) -> None:
    # Optional files (metrics, history, item metadata) are as protected as the weights: an edit
    # whose checksum was not fixed is refused, even one that still parses.
    assert name in read_manifest(run_dir)["files"], "the fixture run must hold every run file"
    path = run_dir / name
    data = path.read_bytes()
    if name == "metrics.json":
        edited = data.replace(b"0.5", b"0.1")  # a plausible, well-formed edit
    elif name == "history.csv":
        edited = data.replace(b"0.8", b"0.1")
    else:
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x01
        edited = bytes(flipped)
    assert edited != data
    path.write_bytes(edited)
    with pytest.raises(ArtifactError, match=rf"{re.escape(name)} is corrupt.*checksum"):
        load_run(run_dir)


@pytest.mark.parametrize("name", ["weights.safetensors", "vocab/items.json", "config.json"])
def test_missing_file_is_refused(run_dir: Path, name: str) -> None:
    (run_dir / name).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_run(run_dir)


def test_missing_or_unlisted_manifest_entries_are_refused(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a run directory"):
        load_run(tmp_path / "nope")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    del manifest["files"]["vocab/users.json"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"vocab/users\.json"):
        load_run(run_dir)
    (run_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt manifest"):
        load_run(run_dir)
    (run_dir / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        load_run(run_dir)


def test_weights_of_the_wrong_shape_are_refused(fitted: Recommender, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    run = save_run(tmp_path / "r", fitted)
    weights = run / "weights.safetensors"
    state = load_file(str(weights))
    state["item_bias"] = state["item_bias"][:2]
    save_file(state, str(weights))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["files"]["weights.safetensors"] = _sha(weights)
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="do not fit model biases"):
        load_run(run)


class _CreatesFileWhenUnpickled:
    """Unpickling this calls ``Path.touch(marker)``: proof that a loader executed code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_pickle_in_place_of_weights_is_refused_and_never_executed(
    run_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_CreatesFileWhenUnpickled(marker), protocol=4)
    pickle.loads(payload)  # sanity check: unpickling really does create the marker
    assert marker.exists()
    marker.unlink()
    weights = run_dir / "weights.safetensors"
    weights.write_bytes(payload)
    # The attacker also fixes the checksum, so only the format itself protects us.
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["files"]["weights.safetensors"] = _sha(weights)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError):
        load_run(run_dir)
    assert not marker.exists()


@pytest.fixture
def opened_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Record every path opened through Python's ``open`` (pathlib, json, pandas' csv...)."""
    seen: list[Path] = []
    real_open = io.open

    def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | os.PathLike):
            seen.append(Path(file).resolve())
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    yield seen


def test_manifest_entry_outside_the_run_is_refused_and_never_read(
    run_dir: Path, tmp_path: Path, opened_paths: list[Path]
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["files"]["../outside.txt"] = _sha(outside)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    opened_paths.clear()
    with pytest.raises(ArtifactError, match=r"'\.\./outside\.txt', which is not one of the run"):
        load_run(run_dir)
    assert opened_paths, "the spy saw no reads at all"
    assert outside.resolve() not in opened_paths
    assert all(p.is_relative_to(run_dir.resolve()) for p in opened_paths)


def test_symlink_out_of_the_run_is_refused_and_not_read(
    run_dir: Path, tmp_path: Path, opened_paths: list[Path]
) -> None:
    outside = tmp_path / "outside.json"
    config = run_dir / "config.json"
    outside.write_bytes(config.read_bytes())  # same bytes, so the checksum would match
    config.unlink()
    config.symlink_to(outside)
    opened_paths.clear()
    with pytest.raises(ArtifactError, match="outside the run directory"):
        load_run(run_dir)
    assert outside.resolve() not in opened_paths


def test_errors_are_rec_errors() -> None:
    assert issubclass(ArtifactError, RecError) and issubclass(ArtifactError, ValueError)


# ---------------------------------------------------------------------- atomicity
def test_atomic_dir_leaves_no_target_on_exception(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(target) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_previous_run(fitted: Recommender, run_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(TypeError):
        save_run(run_dir, fitted, metrics={"bad": object()})  # not JSON-serialisable
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert after == before
    assert load_run(run_dir).metrics["rmse"] == 0.5
    assert [p.name for p in run_dir.parent.iterdir()] == ["run"]


def test_save_refuses_an_unfitted_model(tmp_path: Path) -> None:
    from recforge.errors import NotFittedError

    with pytest.raises(NotFittedError):
        save_run(tmp_path / "r", create("biases"))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text", ["[1, 2]", '{"kind": "int"}', "not json"])
def test_malformed_vocabulary_is_refused(run_dir: Path, text: str) -> None:
    vocab = run_dir / "vocab" / "users.json"
    vocab.write_text(text)
    _rewrite_manifest(
        run_dir,
        files={
            **json.loads((run_dir / "manifest.json").read_text())["files"],
            "vocab/users.json": _sha(vocab),
        },
    )
    with pytest.raises(ArtifactError, match="cannot parse"):
        load_run(run_dir)


# ------------------------------------------------ found by mutation testing (artifacts.py)
def _fix_checksum(run: Path, name: str) -> None:
    """Re-list ``name`` with its current checksum, as an attacker who edits the manifest would."""
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["files"][name] = _sha(run / name)
    (run / "manifest.json").write_text(json.dumps(manifest))


def test_unserialisable_metrics_name_their_type(fitted: Recommender, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"^not JSON serialisable: set$"):
        save_run(tmp_path / "run", fitted, metrics={"bad": {1, 2}})
    assert not (tmp_path / "run").exists()


def test_one_line_collapses_whitespace_and_cuts_at_the_limit() -> None:
    from recforge.artifacts import _one_line

    assert _one_line("a\n  b\tc ") == "a b c"
    assert _one_line("x" * 500) == "x" * 500  # the default limit is 500, inclusive
    assert _one_line("x" * 501) == "x" * 497 + "..."
    assert _one_line("abcdefgh", limit=6) == "abc..."


def test_missing_list_metadata_round_trips_as_none(tmp_path: Path) -> None:
    data = _string_id_data()
    meta = data.item_meta
    assert meta is not None
    meta = meta.copy()
    meta["genres"] = [["Action"], None, [], ["Horror"]]
    data = Interactions.from_frame(data.to_frame(), item_meta=meta, rating_scale=(1.0, 5.0))
    model = create("biases", epochs=1).fit(data)
    loaded = load_run(save_run(tmp_path / "run", model)).model
    assert loaded.item_meta_ is not None
    assert loaded.item_meta_["genres"].tolist() == [["Action"], None, [], ["Horror"]]


def _mf_data() -> Interactions:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 12, 80),
            "item_id": rng.integers(100, 115, 80),
            "rating": rng.integers(1, 6, 80).astype(float),
        }
    ).drop_duplicates(["user_id", "item_id"])
    meta = pd.DataFrame(
        {"genres": [["g" + str(i % 3)] for i in range(15)]},
        index=pd.Index(range(100, 115), name="item_id"),
    )
    return Interactions.from_frame(frame, rating_scale=(1.0, 5.0), item_meta=meta)


def _inflate_config(run: Path, edit: Any) -> None:
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (run / "config.json").write_text(json.dumps(config))
    _fix_checksum(run, "config.json")


def test_blend_member_network_larger_than_its_weights_is_refused(tmp_path: Path) -> None:
    mf = {"model": "biased_mf", "config": {"epochs": 1, "n_factors": 4, "seed": 0}}
    model = create("blend", {"members": [{"model": "biases"}, mf]}).fit(_mf_data())
    run = save_run(tmp_path / "run", model)
    assert load_run(run).model.n_items == model.n_items

    def bigger(config: dict[str, Any]) -> None:
        config["members"][1]["config"]["n_factors"] = 64

    _inflate_config(run, bigger)
    with pytest.raises(
        ArtifactError,
        match=rf"^{re.escape(str(run))}: weights tensor 'm1\.module\.[a-z_.]+' is F32\[\d+, 4\], "
        r"but the config and "
        r"vocabularies \(\d+ users, 15 items\) declare \[\d+, 64\]; the weights do not belong",
    ):
        load_run(run)


def test_content_hybrid_network_larger_than_its_weights_is_refused(tmp_path: Path) -> None:
    config = {"hybrid_with": "biased_mf", "hybrid_config": {"epochs": 1, "n_factors": 4}}
    model = create("content", config).fit(_mf_data())
    run = save_run(tmp_path / "run", model)
    assert load_run(run).model.n_items == model.n_items

    def bigger(config: dict[str, Any]) -> None:
        config["hybrid_config"]["n_factors"] = 64

    _inflate_config(run, bigger)
    with pytest.raises(
        ArtifactError, match=r"weights tensor 'hybrid\.module\..*declare \[\d+, 64\]"
    ):
        load_run(run)


def _edit_weights(run: Path, edit: Any) -> None:
    from safetensors.numpy import load_file, save_file

    state = load_file(str(run / "weights.safetensors"))
    edit(state)
    save_file(state, str(run / "weights.safetensors"))
    _fix_checksum(run, "weights.safetensors")


def test_missing_and_misshapen_tensors_are_named(tmp_path: Path) -> None:
    model = create("biased_mf", epochs=1, n_factors=4, seed=0).fit(_mf_data())

    def drop_first_network_tensor(state: dict[str, Any]) -> None:
        del state[sorted(k for k in state if k.startswith("module."))[0]]

    def widen_global_mean(state: dict[str, Any]) -> None:
        state["_base.global_mean"] = np.zeros(2)

    cases = [
        (
            drop_first_network_tensor,
            r"weights tensor 'module\.[a-z_.]+' is missing, but the config",
        ),
        (
            lambda state: state.pop("_base.global_mean"),
            r"weights tensor '_base\.global_mean' is missing, expected \('F64', \(1,\)\) for "
            r"\d+ users; the weights do not belong",
        ),
        (widen_global_mean, r"'_base\.global_mean' is \('F64', \(2,\)\), expected \('F64', \(1,"),
    ]
    for k, (edit, message) in enumerate(cases):
        run = save_run(tmp_path / f"run{k}", model)
        _edit_weights(run, edit)
        with pytest.raises(ArtifactError, match=message):
            load_run(run)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("_base.seen_indices"), r"'_base\.seen_indices' is None$"),
        (
            lambda s: s.update({"_base.seen_indices": s["_base.seen_indices"].astype(np.int64)}),
            r"'_base\.seen_indices' is \('I64', \(\d+,\)\)$",
        ),
        (
            lambda s: s.update({"_base.seen_indices": s["_base.seen_indices"].reshape(-1, 1)}),
            r"'_base\.seen_indices' is \('I32', \(\d+, 1\)\)$",
        ),
    ],
)
def test_seen_indices_must_be_one_int32_vector(run_dir: Path, edit: Any, message: str) -> None:
    _edit_weights(run_dir, edit)
    with pytest.raises(ArtifactError, match=message):
        load_run(run_dir)


def _write_weights(run: Path, data: bytes) -> None:
    (run / "weights.safetensors").write_bytes(data)
    _fix_checksum(run, "weights.safetensors")


def test_safetensors_header_length_edges(run_dir: Path) -> None:
    # Fewer than 8 bytes: no length at all (-1).
    _write_weights(run_dir, b"\x05\x00\x00\x00\x00")
    with pytest.raises(ArtifactError, match=r"\(header length -1 in a 5-byte file: truncated"):
        load_run(run_dir)
    # A length of 1 cannot hold a JSON object, even when the file is long enough.
    _write_weights(run_dir, (1).to_bytes(8, "little") + b"{" + b"\0" * 50)
    with pytest.raises(ArtifactError, match=r"\(header length 1 in a 59-byte file"):
        load_run(run_dir)
    # The smallest valid header, "{}", filling the whole file: a well-formed safetensors file
    # without tensors, so the base tensors are what is missing.
    _write_weights(run_dir, (2).to_bytes(8, "little") + b"{}")
    with pytest.raises(ArtifactError, match=r"'_base\.seen_indptr' is missing, expected"):
        load_run(run_dir)


def _st_file(header: Any, data: bytes = b"\0" * 8) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # A length one past the end of the file.
        (
            (3).to_bytes(8, "little") + b"{}",
            r"\(header length 3 in a 10-byte file: truncated, or "
            r"another format such as a pickle\); re-create the run$",
        ),
        (_st_file([1]), r"\(header is not an object\); re-create the run$"),
        ((2).to_bytes(8, "little") + b"{x", r"\(unreadable header\); re-create the run$"),
        (_st_file({"x": 5}), r"\(tensor 'x' has a malformed entry\)"),
        (_st_file({"x": {"dtype": "F128", "shape": [2], "data_offsets": [0, 8]}}), "malformed"),
        (_st_file({"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}), "malformed"),
        (_st_file({"x": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}}), "malformed"),
        (_st_file({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4, 8]}}), "malformed"),
        (_st_file({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}}), "malformed"),
        (_st_file({"x": {"dtype": "F32", "shape": [2], "data_offsets": "0-8"}}), "malformed"),
    ],
)
def test_hostile_safetensors_headers_are_named(run_dir: Path, content: bytes, message: str) -> None:
    _write_weights(run_dir, content)
    with pytest.raises(
        ArtifactError, match=r"weights\.safetensors is not a valid safetensors file"
    ):
        load_run(run_dir)
    with pytest.raises(ArtifactError, match=message):
        load_run(run_dir)


def test_safetensors_metadata_is_skipped(run_dir: Path, fitted: Recommender) -> None:
    from safetensors.numpy import load_file, save_file

    state = load_file(str(run_dir / "weights.safetensors"))
    save_file(state, str(run_dir / "weights.safetensors"), metadata={"format": "np"})
    _fix_checksum(run_dir, "weights.safetensors")
    header = (run_dir / "weights.safetensors").read_bytes()
    assert b"__metadata__" in header[:4096]
    loaded = load_run(run_dir).model
    users = np.arange(fitted.n_users)
    np.testing.assert_array_equal(loaded.score_items(users), fitted.score_items(users))


def test_empty_tensors_are_valid_in_a_header(tmp_path: Path) -> None:
    from recforge.artifacts import _safetensors_header

    path = tmp_path / "w.safetensors"
    empty = {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]}
    path.write_bytes(_st_file({"e": empty, "x": {**empty, "shape": [2], "data_offsets": [0, 8]}}))
    assert _safetensors_header(tmp_path, path) == {"e": ("F32", (0, 3)), "x": ("F32", (2,))}


def test_hard_linked_optional_file_is_refused_naming_the_run(run_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_bytes((run_dir / "history.csv").read_bytes())
    (run_dir / "history.csv").unlink()
    os.link(outside, run_dir / "history.csv")
    with pytest.raises(
        ArtifactError,
        match=rf"^{re.escape(str(run_dir))}: history\.csv is a hard link \(2 names\); a run's "
        r"files must be its own, so copy the run \(cp -r\) instead of linking it$",
    ):
        load_run(run_dir)


def test_blend_member_that_reads_item_metadata_round_trips(tmp_path: Path) -> None:
    # The two-tower member's item tower takes genre features: the size check must build it with
    # the run's item metadata, or a genuine run would be refused.
    tower = {"model": "two_tower", "config": {"epochs": 1, "use_features": True, "verbose": False}}
    model = create("blend", {"members": [{"model": "biases"}, tower]}).fit(_mf_data())
    loaded = load_run(save_run(tmp_path / "run", model)).model
    users = np.arange(model.n_users)
    np.testing.assert_allclose(loaded.score_items(users), model.score_items(users), rtol=1e-6)


# ------------------------------------ found by mutation testing (artifacts.py, second part)
def test_every_refusal_names_the_run(run_dir: Path) -> None:
    # The base tensors' and the stored interactions' checks name the run like every other one.
    _edit_weights(run_dir, lambda s: s.pop("_base.global_mean"))
    with pytest.raises(ArtifactError, match=rf"^{re.escape(str(run_dir))}: weights tensor"):
        load_run(run_dir)


def test_stored_interactions_outside_the_vocabularies_name_the_run(
    fitted: Recommender, tmp_path: Path
) -> None:
    run = save_run(tmp_path / "run", fitted)
    n_items = len(fitted.items_)
    _edit_weights(
        run,
        lambda s: s.update({"_base.seen_indices": np.full_like(s["_base.seen_indices"], n_items)}),
    )
    with pytest.raises(
        ArtifactError,
        match=rf"^{re.escape(str(run))}: stored interactions do not match the vocabularies$",
    ):
        load_run(run)


def test_config_that_is_not_an_object_is_refused_by_name(run_dir: Path) -> None:
    (run_dir / "config.json").write_text("[1, 2]")
    _fix_checksum(run_dir, "config.json")
    with pytest.raises(
        ArtifactError,
        match=rf"^{re.escape(str(run_dir))}: config.json is not an object; re-create the run$",
    ):
        load_run(run_dir)


def test_overlapping_tensors_that_pass_the_header_check_are_refused(run_dir: Path) -> None:
    # Each entry is in bounds and sized right, so only the safetensors library itself sees
    # that two tensors share bytes; its error becomes the usual one-line refusal.
    raw = (run_dir / "weights.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    spec = next(v for k, v in header.items() if k != "__metadata__")
    header["zz_overlap"] = dict(spec)
    text = json.dumps(header).encode()
    _write_weights(run_dir, len(text).to_bytes(8, "little") + text + raw[8 + n :])
    with pytest.raises(
        ArtifactError, match=rf"^{re.escape(str(run_dir))}: cannot parse run files \(.+\)$"
    ):
        load_run(run_dir)


def test_an_unexpected_failure_names_its_exception_type(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recforge.models.baselines import Biases

    def boom(self: Any, state: Any) -> None:
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(Biases, "set_state", boom)
    with pytest.raises(ArtifactError) as info:
        load_run(run_dir)
    assert str(info.value) == f"{run_dir}: cannot load the run (ZeroDivisionError: planted)"


def _manifest_error(run: Path) -> str:
    with pytest.raises(ArtifactError) as info:
        read_manifest(run)
    return str(info.value)


def test_read_manifest_refusals_have_their_exact_messages(run_dir: Path, tmp_path: Path) -> None:
    mf = run_dir / "manifest.json"
    missing = tmp_path / "nowhere"
    assert _manifest_error(missing) == (
        f"{missing}: not a run directory (it does not exist or is not a folder)"
    )
    assert _manifest_error(mf) == (
        f"{mf}: not a run directory (it does not exist or is not a folder)"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _manifest_error(empty) == (
        f"{empty}: no manifest.json; is this a recforge run directory?"
    )
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "manifest.json").symlink_to(mf)
    assert _manifest_error(linked) == (
        f"{linked}: manifest.json is a symbolic link; refusing to follow it"
    )
    text = mf.read_text()
    mf.write_text("{not json")
    assert re.fullmatch(
        rf"{re.escape(str(mf))}: corrupt manifest \(Expecting .+\)", _manifest_error(run_dir)
    )
    mf.write_bytes(b"\xff\xfe{}")
    assert _manifest_error(run_dir).startswith(f"{mf}: corrupt manifest (")
    for body in ("[1]", "{}", '{"format_version": true}', '{"format_version": "1"}'):
        mf.write_text(body)
        assert _manifest_error(run_dir) == f"{mf}: manifest has no integer format_version"
    with open(mf, "wb") as fh:  # one byte over the limit
        fh.truncate((16 << 20) + 1)
    assert _manifest_error(run_dir) == f"{mf}: corrupt manifest (over 16 MiB)"
    with open(mf, "wb") as fh:  # exactly the limit: read, then refused as unparsable
        fh.truncate(16 << 20)
    assert _manifest_error(run_dir).startswith(f"{mf}: corrupt manifest (Expecting value")
    mf.write_text(text)
    assert read_manifest(run_dir)["model_name"] == "biases"
    os.link(mf, tmp_path / "elsewhere.json")
    assert _manifest_error(run_dir) == (
        f"{run_dir}: manifest.json is a hard link (2 names); a run's files must be its own, "
        "so copy the run (cp -r) instead of linking it"
    )


def test_newer_format_names_both_versions(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import recforge.artifacts as artifacts_mod

    mf = run_dir / "manifest.json"
    manifest = json.loads(mf.read_text())
    monkeypatch.setattr(
        artifacts_mod, "_version", lambda pkg: "9.8.7" if pkg == "recforge" else None
    )
    for versions, writer in (
        ({"recforge": "2.0"}, "2.0"),
        ({}, "(unknown version)"),
        (None, "(unknown version)"),
    ):
        mf.write_text(json.dumps({**manifest, "format_version": 2, "versions": versions}))
        assert _manifest_error(run_dir) == (
            f"{run_dir}: run format 2 is newer than this recforge 9.8.7 understands (format 1); "
            f"it was written by recforge {writer}: upgrade recforge to load it"
        )
    monkeypatch.setattr(artifacts_mod, "_version", lambda pkg: None)
    mf.write_text(json.dumps({**manifest, "format_version": 3}))
    assert _manifest_error(run_dir).startswith(
        f"{run_dir}: run format 3 is newer than this recforge (unknown version) understands"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_users": -1}, "n_users: Input should be greater than or equal to 0"),
        ({"model_name": ""}, "model_name: String should have at least 1 character"),
        ({"files": {"model.pkl": "0" * 64}}, "files: lists 'model.pkl', which is not one of the "
         f"run files ({', '.join(sorted(RUN_FILES))}); refusing to read it"),
        ({"format_version": 0}, "format_version: Input should be greater than or equal to 1"),
    ],
)  # fmt: skip
def test_invalid_manifest_names_the_field(
    run_dir: Path, change: dict[str, Any], message: str
) -> None:
    _rewrite_manifest(run_dir, **change)
    assert _manifest_error(run_dir) == f"{run_dir / 'manifest.json'}: invalid manifest: {message}"


def test_manifest_without_a_field_names_it(run_dir: Path) -> None:
    mf = run_dir / "manifest.json"
    manifest = json.loads(mf.read_text())
    del manifest["created_at"]
    mf.write_text(json.dumps(manifest))
    assert _manifest_error(run_dir) == f"{mf}: invalid manifest: created_at: Field required"


def test_save_run_refusals_have_their_exact_messages(fitted: Recommender, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as info:
        save_run(tmp_path / "a", fitted, extra={"files": 1, "n_items": 2, "dataset": "x"})
    assert str(info.value) == (
        "save_run: extra keys ['files', 'n_items'] are reserved manifest fields; rename"
    )

    class _Sneaky(type(fitted)):  # type: ignore[misc]
        def get_state(self) -> dict[str, Any]:
            return {**super().get_state(), "_base.seen_indptr": np.zeros(1)}

    sneaky = _Sneaky(fitted.config)
    sneaky.__dict__.update(fitted.__dict__)
    with pytest.raises(ArtifactError) as info:
        save_run(tmp_path / "b", sneaky)
    assert str(info.value) == "model state keys must not start with '_base.'"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_saved_files_are_readable_json_and_a_plain_csv(fitted: Recommender, run_dir: Path) -> None:
    import datetime as dt

    config = (run_dir / "config.json").read_text(encoding="utf-8")
    assert config == json.dumps(fitted.config.model_dump(), indent=2)
    metrics = (run_dir / "metrics.json").read_text(encoding="utf-8")
    assert metrics == json.dumps({"rmse": 0.5, "per_k": [1, 2]}, indent=2)
    assert (run_dir / "history.csv").read_text().splitlines()[0] == "epoch,train_loss"
    manifest_text = (run_dir / "manifest.json").read_text(encoding="utf-8")
    manifest = json.loads(manifest_text)
    assert manifest_text == json.dumps(manifest, indent=2)
    assert set(manifest["versions"]) == {"recforge", "torch", "numpy"}
    assert manifest["versions"]["numpy"] == np.__version__
    created = dt.datetime.fromisoformat(manifest["created_at"])
    assert created.tzinfo is not None and created.utcoffset() == dt.timedelta(0)
    assert created.microsecond == 0
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 3600
    assert (run_dir / "vocab" / "users.json").read_text(encoding="utf-8") == fitted.users_.to_json()
    assert (run_dir / "vocab" / "items.json").read_text(encoding="utf-8") == fitted.items_.to_json()
    import pyarrow.parquet as pq

    # items.parquet holds the id column and the metadata columns, no stored pandas index.
    assert pq.read_schema(run_dir / "items.parquet").names == [
        "item_id",
        *fitted.item_meta_.columns,
    ]


def test_base_state_round_trips_exactly(fitted: Recommender, run_dir: Path) -> None:
    model = load_run(run_dir).model
    assert model.seen_.shape == fitted.seen_.shape and model.seen_.dtype == np.float32
    np.testing.assert_array_equal(model.seen_.toarray(), fitted.seen_.toarray())
    assert model.seen_ratings_.dtype == np.float32 and model.seen_order_.dtype == np.int32
    np.testing.assert_array_equal(model.seen_ratings_, fitted.seen_ratings_)
    np.testing.assert_array_equal(model.seen_order_, fitted.seen_order_)
    assert model.global_mean_ == fitted.global_mean_ and type(model.global_mean_) is float
    assert model.rating_scale_ == (1.0, 5.0)
    assert all(type(v) is float for v in model.rating_scale_)


def test_a_run_saved_before_explanations_loads_with_default_history(run_dir: Path) -> None:
    # Older runs hold no seen ratings or order: ratings 1 ("seen") and each user's items in
    # stored order (0, 1, 2, ... per user).
    _edit_weights(run_dir, lambda s: [s.pop("_base.seen_ratings"), s.pop("_base.seen_order")])
    model = load_run(run_dir).model
    counts = np.diff(model.seen_.indptr)
    assert model.seen_ratings_.tolist() == [1.0] * model.seen_.nnz
    assert model.seen_ratings_.dtype == np.float32 and model.seen_order_.dtype == np.int32
    assert model.seen_order_.tolist() == [p for n in counts for p in range(n)]
    assert counts.max() > 1  # the per-user restart is exercised


@pytest.mark.parametrize("key", ["_base.seen_ratings", "_base.seen_order"])
def test_history_arrays_must_match_the_interactions(run_dir: Path, key: str) -> None:
    _edit_weights(run_dir, lambda s: s.update({key: s[key][:-1]}))
    with pytest.raises(ArtifactError) as info:
        load_run(run_dir)
    assert str(info.value) == (f"{run_dir}: stored ratings do not match the stored interactions")


# --- found by mutation testing (artifacts._restore_base_state) ---------------------------------


@pytest.mark.parametrize("key", ["_base.seen_ratings", "_base.seen_order"])
def test_a_run_missing_one_history_array_loads_with_default_history(
    fitted: Recommender, run_dir: Path, key: str
) -> None:
    # Ratings without their order (or the reverse) cannot be trusted: both fall back to the
    # defaults of a run saved before explanations existed, rather than crash or mix the two.
    _edit_weights(run_dir, lambda s: s.pop(key))
    model = load_run(run_dir).model
    counts = np.diff(model.seen_.indptr)
    assert model.seen_ratings_.tolist() == [1.0] * model.seen_.nnz
    assert fitted.seen_ratings_.tolist() != [1.0] * fitted.seen_.nnz  # the stored ones differ
    assert model.seen_order_.tolist() == [p for n in counts for p in range(n)]


def test_history_arrays_of_another_dtype_are_cast_on_load(
    fitted: Recommender, run_dir: Path
) -> None:
    # The header check does not pin these two dtypes; the loaded model must still hold the
    # float32 ratings and int32 order every explainer indexes with.
    def widen(state: dict[str, Any]) -> None:
        state["_base.seen_ratings"] = state["_base.seen_ratings"].astype(np.float64)
        state["_base.seen_order"] = state["_base.seen_order"].astype(np.int64)

    _edit_weights(run_dir, widen)
    model = load_run(run_dir).model
    assert model.seen_ratings_.dtype == np.float32 and model.seen_order_.dtype == np.int32
    np.testing.assert_array_equal(model.seen_ratings_, fitted.seen_ratings_)
    np.testing.assert_array_equal(model.seen_order_, fitted.seen_order_)


def test_seen_matrix_takes_its_shape_from_the_vocabularies(tmp_path: Path) -> None:
    # User 3 and item 30 are in the vocabularies but in no interaction: the seen matrix must
    # still be 3 x 3 (its shape cannot be read off the stored indices).
    from recforge.data.vocab import IdVocab

    frame = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 20, 20]})
    data = Interactions.from_frame(
        frame, users=IdVocab([1, 2, 3], "user"), items=IdVocab([10, 20, 30], "item")
    )
    model = create("popularity").fit(data)
    loaded = load_run(save_run(tmp_path / "r", model)).model
    assert loaded.seen_.shape == (3, 3)
    np.testing.assert_array_equal(loaded.seen_.toarray(), [[1, 1, 0], [0, 1, 0], [0, 0, 0]])


def _non_monotone(indptr: np.ndarray) -> np.ndarray:
    """Starts at 0 and ends at nnz, but goes down in between."""
    out = indptr.copy()
    out[1], out[2:-1] = out[-1], 0
    return out


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.update({"_base.seen_indptr": s["_base.seen_indptr"] + 1}),  # not from 0
        lambda s: s.update({"_base.seen_indptr": _non_monotone(s["_base.seen_indptr"])}),
        lambda s: s.update({"_base.seen_indices": np.full_like(s["_base.seen_indices"], -1)}),
        lambda s: s["_base.seen_indptr"].__setitem__(-1, s["_base.seen_indptr"][-1] - 1),
    ],
)
def test_inconsistent_seen_matrix_is_refused(run_dir: Path, edit: Any) -> None:
    _edit_weights(run_dir, edit)
    with pytest.raises(ArtifactError) as info:
        load_run(run_dir)
    assert str(info.value) == f"{run_dir}: stored interactions do not match the vocabularies"


def test_implicit_run_has_no_rating_scale_after_loading(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 20, 20]})
    model = create("popularity").fit(Interactions.from_frame(frame))
    loaded = load_run(save_run(tmp_path / "r", model)).model
    assert loaded.rating_scale_ is None
    for scale in ([np.nan, 5.0], [1.0, np.nan]):
        run = save_run(tmp_path / f"r{scale[0]}", model)
        _edit_weights(run, lambda s, v=scale: s.update({"_base.rating_scale": np.array(v)}))
        assert load_run(run).model.rating_scale_ is None


def test_the_load_probe_scores_user_zero_with_an_index_array(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recforge.models.baselines import Biases

    probes: list[np.ndarray] = []
    original = Biases.score_items

    def spy(self: Biases, user_idx: np.ndarray) -> np.ndarray:
        probes.append(np.asarray(user_idx))
        return original(self, user_idx)

    monkeypatch.setattr(Biases, "score_items", spy)
    run = load_run(run_dir)
    assert run.path == run_dir
    assert probes[0].dtype == np.int64 and probes[0].tolist() == [0]


def test_a_model_that_scores_the_wrong_width_is_refused(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recforge.models.baselines import Biases

    monkeypatch.setattr(Biases, "score_items", lambda self, u: np.zeros((len(u), 5), np.float32))
    with pytest.raises(ArtifactError) as info:
        load_run(run_dir)
    assert str(info.value) == (
        f"{run_dir}: weights do not fit model biases (scoring a user gives shape (1, 5), "
        "expected (1, 4))"
    )
