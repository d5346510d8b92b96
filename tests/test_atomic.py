"""Crash-safe writes (recforge._atomic): all or nothing, no temporary litter, normal permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from recforge import _atomic
from recforge._atomic import atomic_dir, atomic_path, atomic_write_bytes, atomic_write_text


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------- files
def test_write_text_creates_parents_and_content(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    assert _names(target.parent) == ["out.txt"]


def test_write_bytes_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    target.write_bytes(b"old old old")
    atomic_write_bytes(target, b"\x00new")
    assert target.read_bytes() == b"\x00new"
    assert _names(tmp_path) == ["blob.bin"]


def test_atomic_path_yields_a_hidden_sibling(tmp_path: Path) -> None:
    target = tmp_path / "data.csv"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".data.csv.") and tmp.name.endswith(".tmp")
        assert not target.exists()  # nothing visible until the block succeeds
        tmp.write_text("x,y\n")
    assert target.read_text() == "x,y\n"
    assert not tmp.exists()


def test_exception_leaves_existing_target_untouched_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("original")
    with pytest.raises(RuntimeError, match="crash"), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("crash")
    assert target.read_text() == "original"
    assert _names(tmp_path) == ["keep.txt"]


def test_exception_before_first_write_leaves_no_target(tmp_path: Path) -> None:
    target = tmp_path / "new.txt"
    with pytest.raises(KeyboardInterrupt), atomic_path(target):
        raise KeyboardInterrupt  # BaseException too: Ctrl-C must not leave litter
    assert _names(tmp_path) == []


def test_files_get_umask_permissions_not_private_ones(tmp_path: Path) -> None:
    # mkstemp creates 0600 files; a renamed result must look like a normally written file.
    target = tmp_path / "shared.txt"
    atomic_write_text(target, "x")
    expected = 0o666 & ~_atomic._UMASK
    assert stat.S_IMODE(target.stat().st_mode) == expected


# ---------------------------------------------------------------------- directories
def test_atomic_dir_creates_target_on_success(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "r1"
    with atomic_dir(target) as tmp:
        assert not target.exists()
        (tmp / "sub").mkdir()
        (tmp / "sub" / "f.txt").write_text("1")
    assert (target / "sub" / "f.txt").read_text() == "1"
    assert _names(target.parent) == ["r1"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~_atomic._UMASK


def test_atomic_dir_exception_leaves_no_target_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with pytest.raises(ValueError, match="half"), atomic_dir(target) as tmp:
        (tmp / "weights").write_bytes(b"123")
        raise ValueError("half written")
    assert _names(tmp_path) == []


def test_atomic_dir_overwrite_replaces_whole_directory(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "stale.txt").write_text("stale")
    with atomic_dir(target) as tmp:
        (tmp / "fresh.txt").write_text("fresh")
    assert _names(target) == ["fresh.txt"]
    assert _names(tmp_path) == ["run"]  # no .run.old left behind


def test_atomic_dir_exception_keeps_previous_directory(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "v1.txt").write_text("v1")
    with pytest.raises(OSError), atomic_dir(target) as tmp:
        (tmp / "v2.txt").write_text("v2")
        raise OSError("disk full")
    assert _names(target) == ["v1.txt"]
    assert _names(tmp_path) == ["run"]


def test_atomic_dir_without_overwrite_refuses_existing(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "mine.txt").write_text("mine")
    with pytest.raises(FileExistsError), atomic_dir(target, overwrite=False) as tmp:
        (tmp / "theirs.txt").write_text("theirs")
    assert _names(target) == ["mine.txt"]
    assert _names(tmp_path) == ["run"]


def test_read_umask_restores_the_process_umask() -> None:
    before = os.umask(0o027)
    try:
        assert _atomic._read_umask() == 0o027
        assert os.umask(0o027) == 0o027  # still in force after reading it
    finally:
        os.umask(before)


# ---------------------------------------------------------------------- issue 17, case 7
def test_atomic_dir_never_leaves_the_target_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each filesystem step of the swap keeps ``target`` present (two renames did not)."""
    target = tmp_path / "run"
    with _atomic.atomic_dir(target) as tmp:
        (tmp / "v").write_text("1")
    real_replace = os.replace

    def checked_replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        assert target.exists(), f"{target} missing after rename {src} -> {dst}"

    monkeypatch.setattr(_atomic.os, "replace", checked_replace)
    with _atomic.atomic_dir(target) as tmp:
        (tmp / "v").write_text("2")
    assert (target / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left behind


def test_readers_always_find_the_run_while_it_is_rewritten(tmp_path: Path) -> None:
    import threading

    target = tmp_path / "run"
    with atomic_dir(target) as tmp:
        (tmp / "v").write_text("0")
    missing = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                (target / "v").read_text()
            except FileNotFoundError:
                missing.append(1)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(1, 60):
            with atomic_dir(target) as tmp:
                (tmp / "v").write_text(str(n))
    finally:
        stop.set()
        thread.join()
    assert missing == [] and (target / "v").read_text() == "59"


def test_atomic_dir_falls_back_to_two_renames_without_exchange(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_atomic, "exchange_paths", lambda a, b: False)
    target = tmp_path / "run"
    for n in range(2):
        with _atomic.atomic_dir(target) as tmp:
            (tmp / "v").write_text(str(n))
    assert (target / "v").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
