"""Crash-safe file writes: write to a temporary sibling, fsync, rename over the target, fsync dir.

The rename makes a write all-or-nothing for readers; the two fsyncs make it survive a power cut:
the file's bytes reach the disk before the rename can, and the directory's fsync makes the rename
itself durable (without it, a crash can bring back the old entry, or an empty file, after reboot).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0o022)  # the umask can only be read by setting it; restore at once
    os.umask(mask)
    return mask


# Read once at import: mkstemp/mkdtemp create private (0600/0700) entries, and a renamed run or
# data file must get the permissions a plain open()/mkdir() would have given it.
_UMASK = _read_umask()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so the entries renamed into it are durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # Windows cannot open directories; NTFS journals renames itself
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (e.g. certain network mounts) refuse directory fsync
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory below ``root`` (deepest first), then ``root`` itself."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            entry = Path(dirpath) / name
            if not entry.is_symlink():
                _fsync_file(entry)
        fsync_dir(dirpath)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is fsynced and renamed onto it.

    On any exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange_paths(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the system or file system cannot (other platforms, old kernels, some
    network file systems); the caller then falls back to two renames.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # a libc without renameat2 (glibc < 2.28, musl < 1.2)
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def _remove(path: Path) -> None:
    """Remove a tree or a link (what a swap leaves behind) without following links."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` once the block succeeds.

    A crash inside the block leaves only a hidden ``.name.*.tmp`` directory behind, never a
    half-written ``target``. Every file and folder inside is fsynced before the rename, and the
    parent folder after it. An existing ``target`` is swapped with the new tree in one atomic
    step (:func:`exchange_paths`), so a reader (a serving process re-reading its run) never finds
    it missing; where the system cannot exchange, two renames leave a moment without it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)
        yield tmp
        _fsync_tree(tmp)
        if target.exists() or target.is_symlink():
            if not overwrite:
                raise FileExistsError(target)
            if exchange_paths(tmp, target):
                # One step: readers see the old tree or the new one, never no ``target``.
                _remove(tmp)  # now the old tree
            else:  # no atomic exchange here: two renames, with a moment without ``target``
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
                os.replace(tmp, target)
                _remove(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(target.parent)
