"""One open handle on a text ratings file: a raw sample, then a filtered, capped stream.

:func:`recforge.data.io.read_ratings` sniffs a sample and then parses the whole file. Both reads
go through one :class:`TextSource`, so that:

* **One file, read once.** The file is opened once; the sample and the parse read that handle
  (seeking back to the start), so a file replaced while it is read cannot mix two versions, and
  its size and modification time are compared before and after (``os.fstat``): a file rewritten in
  place is refused instead of loading as a truncated prefix.
* **Decompression bombs stop at a cap.** Compressed input is decompressed as a stream and the
  expanded bytes are counted; past the cap (argument ``max_input_bytes`` of ``read_ratings``, else
  ``RECFORGE_MAX_INPUT_BYTES``, else :func:`default_cap`: 32 times the compressed size, at least
  64 MiB and at most 2 GiB) the read stops with a one-line :class:`~recforge.errors.DataError`
  naming the cap. Rating files compress 3-10 times (ML-25M's ratings.csv: about 4.5); a bomb
  compresses hundreds of times, so the default stops it early, while pandas has tokenised little.
* **Blank lines are never stored.** Lines holding only whitespace are removed from the stream
  pandas parses; what is remembered is one entry per *run* of blank lines (where it sits among the
  kept rows and how many lines it held), so memory follows the rows kept, not the file, and
  :meth:`TextSource.row_numbers` still gives each kept row its line in the file. (UTF-16/32 text is
  passed through unfiltered: its line breaks are not single bytes.)
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
from array import array
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from recforge.errors import ConfigError, DataError

#: Bounds of the default cap on expanded bytes, and its ratio to the compressed size.
DEFAULT_CAP_MIN = 64 << 20
DEFAULT_CAP_MAX = 2 << 30
DEFAULT_CAP_RATIO = 32
ENV_MAX_INPUT_BYTES = "RECFORGE_MAX_INPUT_BYTES"
_CHUNK = 1 << 20


class Reader(Protocol):
    """What the parser reads from: ``read(n)`` bytes."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); ``b""`` at the end."""
        ...


# The decompressors wrap the one open handle; they are closed with it (TextSource.close).
_DECOMPRESSORS: dict[str, Callable[[IO[bytes]], Reader]] = {
    "gzip": lambda fh: gzip.GzipFile(fileobj=fh, mode="rb"),
    "bz2": lambda fh: bz2.BZ2File(fh, "rb"),
    "xz": lambda fh: lzma.LZMAFile(fh, "rb"),  # noqa: SIM115
}


def default_cap(compressed_size: int) -> int:
    """The cap when none is given: 32x the compressed size, within [64 MiB, 2 GiB]."""
    return min(DEFAULT_CAP_MAX, max(DEFAULT_CAP_MIN, DEFAULT_CAP_RATIO * compressed_size))


def max_input_bytes(value: int | None, compressed_size: int) -> int:
    """The cap on expanded bytes: ``value``, else the environment, else :func:`default_cap`."""
    if value is None:
        env = os.environ.get(ENV_MAX_INPUT_BYTES, "").strip()
        if not env:
            return default_cap(compressed_size)
        try:
            value = int(env)
        except ValueError:
            raise ConfigError(
                f"{ENV_MAX_INPUT_BYTES}={env!r} is not a whole number of bytes"
            ) from None
    if value < 1:
        raise ConfigError(f"max_input_bytes must be at least 1, got {value}")
    return value


class TextSource:
    """A ratings text file opened once (see the module docstring).

    Args:
        path: the file.
        label: how errors name it.
        compression: ``"gzip"``, ``"bz2"``, ``"xz"`` or None.
        max_bytes: cap on decompressed bytes (compressed input only; a plain file's size is
            what is on disk).
    """

    def __init__(self, path: Path, label: str, compression: str | None, max_bytes: int) -> None:
        self.label = label
        self.compression = compression
        self.max_bytes = max_bytes
        self._fh: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()/__exit__
        self._stat = _identity(os.fstat(self._fh.fileno()))
        self._filter: _BlankFilter | None = None
        self._line_break = b"\n"

    def __enter__(self) -> TextSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the handle."""
        self._fh.close()

    def _open(self) -> Reader:
        """The content from its first byte: the handle rewound, decompressed and capped."""
        self._fh.seek(0)
        if self.compression is None:
            return self._fh
        return _Capped(_DECOMPRESSORS[self.compression](self._fh), self)

    def sample(self, n: int) -> tuple[bytes, bool]:
        """The first ``n`` content bytes and whether they are all of it."""
        data = self._open().read(n + 1)
        self._line_break = b"\n" if b"\n" in data else b"\r" if b"\r" in data else b"\n"
        return data[:n], len(data) <= n

    @property
    def filtered(self) -> bool:
        """Whether the last :meth:`stream` removed blank lines and skipped lines itself."""
        return self._filter is not None

    def read_all(self) -> bytes:
        """The whole content (for an error message that needs the exact bytes)."""
        data = self._open().read()
        return bytes(data)

    def stream(self, skip_lines: int, encoding: str) -> Reader:
        """The content after ``skip_lines`` lines, blank lines removed, for pandas.

        UTF-16/32 text (``encoding``) is passed through whole, since its line breaks are not
        single bytes: then :attr:`filtered` is False and the parser must skip the lines itself.
        """
        raw = self._open()
        if encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32", "utf16", "utf32")):
            self._filter = None
            return raw
        self._filter = _BlankFilter(raw, skip_lines, self._line_break)
        return io.BufferedReader(self._filter, _CHUNK)

    def row_numbers(self, n_rows: int) -> npt.NDArray[np.int64]:
        """For each of the first ``n_rows`` rows of the last stream, its line offset from the
        first line after the skipped ones (0-based), as if blank lines had been kept."""
        rows = np.arange(n_rows, dtype=np.int64)
        if self._filter is None or not len(self._filter.run_at):
            return rows
        at = np.frombuffer(self._filter.run_at, dtype=np.int64)
        dropped = np.frombuffer(self._filter.dropped, dtype=np.int64)
        where = np.searchsorted(at, rows, side="right") - 1
        return rows + np.where(where >= 0, dropped[np.maximum(where, 0)], 0)

    def stream_line(self, line: int) -> int:
        """The 0-based offset (as :meth:`row_numbers`) of 1-based line ``line`` of the stream."""
        if line < 1:
            return 0
        return int(self.row_numbers(line)[-1])

    def check_unchanged(self) -> None:
        """DataError when the file's size or modification time changed since it was opened."""
        if _identity(os.fstat(self._fh.fileno())) != self._stat:
            raise DataError(
                f"{self.label}: the file changed while it was being read (its size or "
                "modification time differ); read it again once whatever writes it has finished"
            )

    def over_cap(self) -> DataError:
        """The error for content beyond :attr:`max_bytes`."""
        return DataError(
            f"{self.label}: expands to more than {self.max_bytes:,} bytes when decompressed (a "
            f"decompression bomb, or a file larger than the cap); if it is genuine, raise the "
            f"cap with read_ratings(max_input_bytes=...) or {ENV_MAX_INPUT_BYTES}"
        )


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


class _Capped(io.RawIOBase):
    """Decompressed bytes, counted; :meth:`TextSource.over_cap` past the cap."""

    def __init__(self, inner: Reader, source: TextSource) -> None:
        self._inner = inner
        self._source = source
        self._seen = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        # Never more than one chunk past the cap at a time, whatever the caller asks for.
        left = self._source.max_bytes - self._seen + 1
        want = left if size is None or size < 0 else min(size, left)
        if size is None or size < 0:
            parts = []
            while want > 0 and (part := self._inner.read(min(want, _CHUNK))):
                parts.append(part)
                want -= len(part)
            data = b"".join(parts)
        else:
            data = self._inner.read(want)
        self._seen += len(data)
        if self._seen > self._source.max_bytes:
            raise self._source.over_cap()
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _BlankFilter(io.RawIOBase):
    """Content after ``skip`` lines with whitespace-only lines removed (see the module docstring).

    Works on whole lines: each chunk is cut after its last line break and the rest carried over,
    so a blank run split across chunks is still found. ``run_at[j]`` is how many lines had been
    kept when the ``j``-th run of blank lines was removed; ``dropped[j]`` the blank lines removed
    up to and including it.
    """

    def __init__(self, raw: Reader, skip: int, line_break: bytes) -> None:
        self._raw = raw
        self._skip = skip
        self._nl = line_break
        space = rb" \t\f\v\r" if line_break == b"\n" else rb" \t\f\v"
        nl = re.escape(line_break)
        # A run of whitespace and line breaks that ends at a line break is whole blank lines
        # (the class backtracks to the run's last break). One flat class, and a pattern that
        # starts with a literal, keep the regex engine linear and fast (a nested quantifier took
        # 0.27 s per MiB of newlines).
        self._lead = re.compile(rb"[" + space + nl + rb"]*" + nl)
        self._inner = re.compile(nl + rb"[" + space + nl + rb"]*" + nl)
        self._space_only = re.compile(rb"[" + space + rb"]*\Z")
        self._carry = b""
        self._out = b""
        self._pos = 0
        self._eof = False
        self._kept = 0
        self._total_dropped = 0
        self.run_at = array("q")
        self.dropped = array("q")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._pos >= len(self._out) and not self._eof:
            self._fill()
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n

    def _fill(self) -> None:
        chunk = self._raw.read(_CHUNK)
        if not chunk:
            self._eof = True
            tail, self._carry = self._carry, b""
            # A last line without a line break: kept unless it is only whitespace.
            if tail and not self._skip and not self._space_only.match(tail):
                self._out, self._pos = tail, 0
            return
        data = self._carry + chunk
        cut = data.rfind(self._nl) + 1
        if cut == 0:
            self._carry = data
            return
        lines, self._carry = data[:cut], data[cut:]
        if self._skip:
            pos = 0
            while self._skip and pos < len(lines):
                pos = lines.index(self._nl, pos) + 1
                self._skip -= 1
            lines = lines[pos:]
        self._out, self._pos = self._drop_blank(lines), 0

    def _drop_blank(self, lines: bytes) -> bytes:
        """``lines`` (whole lines) without its blank ones, recording each run removed."""
        pieces = []
        start = 0
        lead = self._lead.match(lines)
        if lead:
            self._record(lead.group().count(self._nl))
            start = lead.end()
        for match in self._inner.finditer(lines, start):
            piece = lines[start : match.start() + 1]  # the kept line, with its line break
            pieces.append(piece)
            self._kept += piece.count(self._nl)
            self._record(match.group().count(self._nl) - 1)
            start = match.end()
        piece = lines[start:]
        self._kept += piece.count(self._nl)
        pieces.append(piece)
        return b"".join(pieces)

    def _record(self, n_blank: int) -> None:
        self._total_dropped += n_blank
        if self.run_at and self.run_at[-1] == self._kept:
            self.dropped[-1] = self._total_dropped
        else:
            self.run_at.append(self._kept)
            self.dropped.append(self._total_dropped)
