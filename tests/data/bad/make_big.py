"""Write the big members of the hostile input corpus (too big to commit) into a folder.

Usage: ``python tests/data/bad/make_big.py OUT_DIR``; the tests call :func:`make_big` on a
temporary folder. Every file is deterministic; ``manifest.toml`` (entries with ``big = true``)
says what is wrong with each and what the error must name.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable
from pathlib import Path

TEN_MB = 10 * 1024 * 1024
HEADER = b"userId,movieId,rating\n"


def _rows(n: int) -> bytes:
    """``n`` well-formed rating rows (lines 2..n+1 after the header)."""
    return b"".join(b"%d,%d,%d\n" % (u, u % 997, 1 + u % 5) for u in range(n))


def _ten_mb_single_line() -> bytes:
    return b"1,2,3," * (TEN_MB // 6)


def _ten_mb_field() -> bytes:
    return HEADER + b"1,10,4\n" + b"x" * TEN_MB + b",11,3\n"


def _late_bad_rating() -> bytes:
    return HEADER + _rows(300_000) + b"5,6,abc\n"


def _late_negative_id() -> bytes:
    return HEADER + _rows(100_000) + b"-5,6,3\n" + _rows(10)


def _late_latin1() -> bytes:
    return HEADER + _rows(100_000) + "7,café,3\n".encode("latin-1")


def _late_unbalanced_quote() -> bytes:
    return HEADER + _rows(100_000) + b'7,"8,3\n' + _rows(10)


def _truncated_big_gzip() -> bytes:
    whole = gzip.compress(HEADER + _rows(300_000), mtime=0)
    return whole[: len(whole) * 6 // 10]


BUILDERS: dict[str, Callable[[], bytes]] = {
    "ten_mb_single_line.csv": _ten_mb_single_line,
    "ten_mb_field.csv": _ten_mb_field,
    "late_bad_rating.csv": _late_bad_rating,
    "late_negative_id.csv": _late_negative_id,
    "late_latin1.csv": _late_latin1,
    "late_unbalanced_quote.csv": _late_unbalanced_quote,
    "truncated_big.csv.gz": _truncated_big_gzip,
}


def make_big(out: Path) -> dict[str, Path]:
    """Write every big corpus file into ``out``; return name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, build in BUILDERS.items():
        paths[name] = out / name
        paths[name].write_bytes(build())
    return paths


if __name__ == "__main__":
    for path in make_big(Path(sys.argv[1])).values():
        sys.stdout.write(f"{path}\n")
