"""How much memory this process may still take: the OS's available memory, capped by the cgroup.

In a container (Docker, Kubernetes, a CI runner) ``/proc/meminfo`` describes the host, not the
container's limit: a fit sized by ``MemAvailable`` alone can pass its check and then be killed by
the kernel's OOM killer at the cgroup limit. :func:`available_memory_bytes` therefore takes the
smaller of ``MemAvailable`` and the room left under every memory limit along this process's
cgroup path (v2 ``memory.max − memory.current``; v1 ``memory.limit_in_bytes −
memory.usage_in_bytes``), as :func:`recforge.threads.cgroup_cpu_limit` does for CPUs.
"""

from __future__ import annotations

import os
from pathlib import Path

from recforge._cgroup import CGROUP_ROOT, PROC_CGROUP, cgroup_entries, with_ancestors

__all__ = ["available_memory_bytes", "cgroup_memory_room"]

#: cgroup v1 writes "no limit" as a page-rounded int64 maximum; anything this large is none.
_V1_UNLIMITED = 1 << 60


def _number(path: Path) -> int | None:
    """The integer in a cgroup file, None when missing, unreadable, "max" or not a number."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:  # "max": no limit
        return None


def _room(directories: list[Path], limit_file: str, usage_file: str) -> int | None:
    """Smallest ``limit − usage`` over ``directories`` (a limit without usage: the limit)."""
    best: int | None = None
    for directory in directories:
        limit = _number(directory / limit_file)
        if limit is None or limit >= _V1_UNLIMITED:
            continue
        room = max(limit - (_number(directory / usage_file) or 0), 0)
        best = room if best is None else min(best, room)
    return best


def cgroup_memory_room(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> int | None:
    """Bytes left under this process's cgroup memory limits, or None when none is set/known.

    Reads ``proc_cgroup`` for the cgroup paths, then under ``root``: v2 ``<path>/memory.max``
    and ``memory.current``, v1 ``memory/<path>/memory.limit_in_bytes`` and
    ``memory.usage_in_bytes``; ancestors too, since a parent's limit binds its children.
    """
    rooms: list[int] = []
    for controllers, rel in cgroup_entries(proc_cgroup):
        if not controllers:  # the v2 unified hierarchy
            room = _room(with_ancestors(root, rel), "memory.max", "memory.current")
        elif "memory" in controllers:
            dirs = with_ancestors(root / "memory", rel)
            room = _room(dirs, "memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        if room is not None:
            rooms.append(room)
    return min(rooms) if rooms else None


def _os_available() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo``, else free pages (macOS, other POSIX), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def available_memory_bytes() -> int | None:
    """Memory this process can take now: the OS's available memory capped by the room left
    under its cgroup's memory limits (:func:`cgroup_memory_room`); None when neither is known."""
    known = [m for m in (_os_available(), cgroup_memory_room()) if m is not None]
    return min(known) if known else None
