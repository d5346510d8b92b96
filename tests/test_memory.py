"""What memory a fit may take: the OS's available memory capped by the cgroup's limits."""

from __future__ import annotations

from pathlib import Path

import pytest

import recforge.memory as memory_mod
from recforge.memory import available_memory_bytes, cgroup_memory_room


class _FakeFile:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)

    def __enter__(self) -> list[str]:
        return self.lines

    def __exit__(self, *exc: object) -> None:
        return None


def test_available_memory_reads_memavailable_then_sysconf(monkeypatch: pytest.MonkeyPatch) -> None:
    meminfo = "MemTotal:  9999 kB\nMemFree:  5 kB\nMemAvailable:   1234 kB\n"

    def fake_open(path: str, *args: object, **kwargs: object) -> _FakeFile:
        if path != "/proc/meminfo":
            raise FileNotFoundError(path)
        return _FakeFile(meminfo)

    conf = {"SC_AVPHYS_PAGES": 10, "SC_PAGE_SIZE": 4096}

    def fake_sysconf(name: str) -> int:
        if name not in conf:
            raise ValueError(f"unrecognized configuration name {name!r}")
        return conf[name]

    monkeypatch.setattr(memory_mod, "open", fake_open, raising=False)
    monkeypatch.setattr(memory_mod.os, "sysconf", fake_sysconf)
    assert memory_mod._os_available() == 1234 * 1024
    meminfo = "MemTotal:  9999 kB\n"  # no MemAvailable line: free pages instead
    assert memory_mod._os_available() == 10 * 4096

    def no_proc(path: str, *args: object, **kwargs: object) -> _FakeFile:
        raise FileNotFoundError(path)

    monkeypatch.setattr(memory_mod, "open", no_proc, raising=False)
    assert memory_mod._os_available() == 10 * 4096
    for pages, size, expected in [(0, 4096, None), (1, 4096, 4096), (5, 1, 5), (5, 0, None)]:
        conf.update(SC_AVPHYS_PAGES=pages, SC_PAGE_SIZE=size)
        assert memory_mod._os_available() == expected
    conf.clear()
    assert memory_mod._os_available() is None


def _tree(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake ``/proc/self/cgroup`` and ``/sys/fs/cgroup`` holding ``files`` (relative paths)."""
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc_file = tmp_path / "proc_cgroup"
    proc_file.write_text(proc)
    return proc_file, root


def test_cgroup_v2_room_is_the_tightest_limit_minus_usage_along_the_path(tmp_path: Path) -> None:
    proc, root = _tree(
        tmp_path,
        "0::/ci/job\n",
        {
            "ci/job/memory.max": "max\n",  # no limit of its own
            "ci/job/memory.current": "100\n",
            "ci/memory.max": "8000\n",  # the parent's limit binds the job
            "ci/memory.current": "3000\n",
            "memory.max": "1000000\n",
            "memory.current": "10\n",
        },
    )
    assert cgroup_memory_room(proc, root) == 5000
    (root / "ci/memory.current").write_text("9000\n")  # over the limit: no room, not negative
    assert cgroup_memory_room(proc, root) == 0


def test_cgroup_v1_room_and_its_no_limit_value(tmp_path: Path) -> None:
    proc, root = _tree(
        tmp_path,
        "12:memory:/docker/abc\n11:cpu,cpuacct:/docker/abc\n",
        {
            "memory/docker/abc/memory.limit_in_bytes": "2147483648\n",
            "memory/docker/abc/memory.usage_in_bytes": "147483648\n",
            "memory/memory.limit_in_bytes": "9223372036854771712\n",  # v1's "no limit"
        },
    )
    assert cgroup_memory_room(proc, root) == 2_000_000_000
    (root / "memory/docker/abc/memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cgroup_memory_room(proc, root) is None


def test_no_cgroup_file_or_limit_means_none(tmp_path: Path) -> None:
    assert cgroup_memory_room(tmp_path / "missing", tmp_path) is None
    proc, root = _tree(tmp_path, "0::/\n", {"memory.max": "max\n"})
    assert cgroup_memory_room(proc, root) is None


def test_available_memory_is_the_smaller_of_the_os_and_the_cgroup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A container on a big host: MemAvailable describes the host, the cgroup the container.
    monkeypatch.setattr(memory_mod, "_os_available", lambda: 64 * 10**9)
    monkeypatch.setattr(memory_mod, "cgroup_memory_room", lambda: 2 * 10**9)
    assert available_memory_bytes() == 2 * 10**9
    monkeypatch.setattr(memory_mod, "cgroup_memory_room", lambda: None)
    assert available_memory_bytes() == 64 * 10**9
    monkeypatch.setattr(memory_mod, "_os_available", lambda: None)
    assert available_memory_bytes() is None
