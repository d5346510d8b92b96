"""Issue 17, cases 4 and 6: decompression bombs, blank lines, files rewritten while read."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import recforge.data.io as rio
from recforge.data._stream import ENV_MAX_INPUT_BYTES
from recforge.data.io import read_ratings
from recforge.errors import ConfigError, DataError

ROWS = "".join(f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(40) for i in range(25))
HEAD = "".join(ROWS.splitlines(keepends=True)[:7])  # the first 7 rows
TAIL = ROWS[len(HEAD) :]


# ---------------------------------------------------------------------- case 4: bombs
@pytest.mark.parametrize("opener", [gzip.open, bz2.open, lzma.open])
def test_compressed_input_stops_at_the_cap_with_one_line_naming_it(
    tmp_path: Path, opener: Any
) -> None:
    path = tmp_path / "bomb.csv.z"
    with opener(path, "wb") as fh:
        fh.write(b"user,item,rating\n" + ROWS.encode() * 200)  # ~2 MB expanded
    with pytest.raises(DataError, match=r"more than 1,000,000 bytes when decompressed") as info:
        read_ratings(path, max_input_bytes=1_000_000)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert "max_input_bytes" in str(info.value) and ENV_MAX_INPUT_BYTES in str(info.value)


def test_cap_from_the_environment_and_a_bad_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.csv.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(ROWS.encode() * 50)
    monkeypatch.setenv(ENV_MAX_INPUT_BYTES, "100000")
    with pytest.raises(DataError, match="more than 100,000 bytes"):
        read_ratings(path, duplicates="last")
    monkeypatch.setenv(ENV_MAX_INPUT_BYTES, "lots")
    with pytest.raises(ConfigError, match=ENV_MAX_INPUT_BYTES):
        read_ratings(path)


def test_compressed_input_under_the_cap_reads_whole(tmp_path: Path) -> None:
    path = tmp_path / "r.csv.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b"user,item,rating\n" + ROWS.encode())
    frame = read_ratings(path, max_input_bytes=len(ROWS) + 17)
    assert len(frame) == 1000 and frame["rating"].sum() == sum(
        (u + i) % 5 + 1 for u in range(40) for i in range(25)
    )


# ---------------------------------------------------------------------- case 4: blank lines
def test_blank_lines_anywhere_are_skipped_and_lines_still_counted(tmp_path: Path) -> None:
    # Blank runs of every kind, across the 1 MiB chunk boundary, before the header and at the
    # end; then a bad value whose line number must count every blank line before it.
    blank_run = "\n" * 700_000 + "  \t\n" + "\r\n"
    text = "\n\n" + "user,item,rating\n" + HEAD + blank_run + TAIL + "\n \n"
    path = tmp_path / "r.csv"
    path.write_text(text)
    frame = read_ratings(path)
    expected = pd.read_csv(pd.io.common.StringIO(ROWS), header=None)
    assert len(frame) == 1000
    assert np.array_equal(frame["user_id"].to_numpy(), expected[0].to_numpy())
    assert np.array_equal(frame["rating"].to_numpy(), expected[2].to_numpy().astype(np.float32))
    # A bad rating 3 rows after the blank run: line = 3 + rows before + blank lines + 3.
    bad_rows = TAIL.split("\n")
    bad_rows[2] = "7,7,oops"
    path.write_text("\n\nuser,item,rating\n" + HEAD + blank_run + "\n".join(bad_rows))
    n_before = 2 + 1 + HEAD.count("\n") + blank_run.count("\n")
    with pytest.raises(DataError, match=rf", line {n_before + 3}, column 'rating'"):
        read_ratings(path)


def test_cr_only_files_with_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"1,10,4\r\r\r2,20,3\r   \r3,30,5\r")
    frame = read_ratings(path)
    assert frame["user_id"].tolist() == [1, 2, 3] and frame["rating"].tolist() == [4, 3, 5]
    path.write_bytes(b"1,10,4\r\r\r2,20,x\r")
    with pytest.raises(DataError, match="line 4"):
        read_ratings(path)


def _peak_rss_kib(code: str, *args: str) -> int:
    script = (
        f"import resource, sys\n{code}\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip().splitlines()[-1])


def test_newlines_file_costs_memory_for_the_rows_kept_only(tmp_path: Path) -> None:
    # 20 MB of blank lines around three rows took 2.2 GB before; now the rows kept set the cost.
    path = tmp_path / "blank.csv"
    with open(path, "wb") as fh:
        fh.write(b"1,10,4\n")
        for _ in range(20):
            fh.write(b"\n" * (1 << 20))
        fh.write(b"2,20,3\n3,30,5\n")
    code = "from recforge.data.io import read_ratings\nassert len(read_ratings(sys.argv[1])) == 3\n"
    baseline = _peak_rss_kib("import recforge.data.io")
    assert _peak_rss_kib(code, str(path)) - baseline < 150_000  # KiB


# ---------------------------------------------------------------------- case 6: rewrites
def _during_parse(monkeypatch: pytest.MonkeyPatch, action: Any) -> None:
    """Run ``action`` after the sample was read and before the full parse starts."""
    original = rio._parse

    def parse(*args: Any, **kwargs: Any) -> Any:
        action()
        return original(*args, **kwargs)

    monkeypatch.setattr(rio, "_parse", parse)


def test_file_rewritten_in_place_while_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n" + ROWS)

    def truncate() -> None:
        with open(path, "r+b") as fh:  # same file, cut: the probe saw a truncated prefix load
            fh.truncate(200)

    _during_parse(monkeypatch, truncate)
    with pytest.raises(DataError, match="changed while it was being read"):
        read_ratings(path)


def test_file_replaced_while_read_loads_the_version_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n" + ROWS)

    def replace() -> None:  # an atomic writer renames a new file over the old one
        new = tmp_path / "new.csv"
        new.write_text("user,item,rating\n1,2,3\n")
        os.replace(new, path)

    _during_parse(monkeypatch, replace)
    assert len(read_ratings(path)) == 1000  # one handle: the sample and the rows agree


def test_default_cap_follows_the_compressed_size() -> None:
    from recforge.data._stream import default_cap, max_input_bytes

    assert default_cap(1000) == 64 << 20
    assert default_cap(3 << 20) == 96 << 20  # the probe's 3 MB bomb stops at 96 MiB
    assert default_cap(1 << 30) == 2 << 30
    assert max_input_bytes(5, 1 << 30) == 5


@pytest.mark.parametrize(
    "error",
    [MemoryError(), pd.errors.ParserError("Error tokenizing data. C error: out of memory")],
)
def test_running_out_of_memory_is_not_blamed_on_sep_or_quoting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    path = tmp_path / "r.csv"
    path.write_text(ROWS)

    def read_csv(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(rio.pd, "read_csv", read_csv)
    with pytest.raises(DataError, match="ran out of memory while parsing") as info:
        read_ratings(path)
    assert "sep=" not in str(info.value)
