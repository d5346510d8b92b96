"""This process's cgroups, as ``/proc/self/cgroup`` lists them (shared by the CPU-quota and
memory-limit readers, :mod:`recforge.threads` and :mod:`recforge.memory`)."""

from __future__ import annotations

from pathlib import Path

PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_entries(proc_cgroup: Path = PROC_CGROUP) -> list[tuple[tuple[str, ...], Path]]:
    """``(controllers, path)`` per line of ``proc_cgroup`` (``()`` for the v2 unified hierarchy's
    ``0::/path``), the path relative to the hierarchy's root; empty when unreadable."""
    try:
        text = proc_cgroup.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            controllers = tuple(c for c in parts[1].split(",") if c)
            out.append((controllers, Path(parts[2].strip().lstrip("/"))))
    return out


def with_ancestors(base: Path, rel: Path) -> list[Path]:
    """``base / rel`` and each of its ancestors up to ``base``: a parent's limit binds."""
    return [base / rel, *[base / p for p in rel.parents]]
