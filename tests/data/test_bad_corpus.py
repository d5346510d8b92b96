"""The hostile input corpus (tests/data/bad/) and the accepted variants (tests/data/good/).

Every bad file must fail with one :class:`DataError` line naming the file and, where they exist,
the line and column (``manifest.toml`` lists the fragments), through the library, through
``recforge data describe``, and through ``recforge train --out DIR`` and ``recforge data split
--out DIR`` (exit 2, no traceback, nothing written where DIR would be). Every good file must load
to the same frame as ``good/reference.csv``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import tempfile
import tomllib
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recforge.cli import main
from recforge.data.io import read_ratings
from recforge.errors import DataError

BAD = Path(__file__).parent / "bad"
GOOD = Path(__file__).parent / "good"
MANIFEST: dict[str, dict[str, Any]] = tomllib.loads((BAD / "manifest.toml").read_text("utf-8"))
NOT_CORPUS = {"README.md", "manifest.toml", "make_big.py"}
ALL = sorted(MANIFEST)
CLI_CASES = sorted(n for n, e in MANIFEST.items() if "kwargs" not in e)


@pytest.fixture(scope="module")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location("make_big", BAD / "make_big.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made: dict[str, Path] = module.make_big(tmp_path_factory.mktemp("bad_big"))
    return made


def corpus_path(name: str, big_files: dict[str, Path]) -> Path:
    return big_files[name] if MANIFEST[name].get("big") else BAD / name


def test_manifest_lists_every_file_and_at_least_30(big_files: dict[str, Path]) -> None:
    on_disk = {p.name for p in BAD.iterdir()} - NOT_CORPUS
    small = {n for n, e in MANIFEST.items() if not e.get("big")}
    assert on_disk == small
    assert {n for n, e in MANIFEST.items() if e.get("big")} == set(big_files)
    assert len(MANIFEST) >= 30
    for name, entry in MANIFEST.items():
        assert entry["what"] and entry["expect"], name
    # Big files stay out of git: nothing committed under bad/ is over 64 KiB.
    assert max((BAD / n).stat().st_size for n in small) < 64 * 1024


def check_message(message: str, path: Path, name: str) -> None:
    assert "\n" not in message, message
    assert str(path) in message, message
    for fragment in MANIFEST[name]["expect"]:
        assert fragment.lower() in message.lower(), (fragment, message)


@pytest.mark.parametrize("name", ALL)
def test_read_ratings_names_file_line_and_column(name: str, big_files: dict[str, Path]) -> None:
    path = corpus_path(name, big_files)
    with pytest.raises(DataError) as exc:
        read_ratings(path, **MANIFEST[name].get("kwargs", {}))
    check_message(str(exc.value), path, name)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_describe_exits_2_with_one_line(
    name: str, big_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = corpus_path(name, big_files)
    code, out, err = run_cli(capsys, "data", "describe", str(path))
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith("recforge: error: ") and err.endswith("\n")
    check_message(err.removeprefix("recforge: error: ").rstrip("\n"), path, name)


WRITERS = {
    "train": ("train", "--model", "popularity", "--data", "{data}", "--out", "{out}"),
    "data split": ("data", "split", "{data}", "--out", "{out}"),
}


@pytest.mark.parametrize("command", sorted(WRITERS))
@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_writers_exit_2_and_write_nothing(
    name: str,
    command: str,
    big_files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    path = corpus_path(name, big_files)
    out_dir = tmp_path / "runs" / "x"
    args = [a.format(data=path, out=out_dir) for a in WRITERS[command]]
    code, out, err = run_cli(capsys, *args)
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    check_message(err.removeprefix("recforge: error: ").rstrip("\n"), path, name)
    assert not out_dir.exists()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_real_process_exit_code_and_stderr() -> None:
    """One case through a real interpreter: exit status 2 and a single stderr line."""
    path = BAD / "rating_word.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "recforge.cli", "data", "describe", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    check_message(
        proc.stderr.removeprefix("recforge: error: ").rstrip("\n"), path, "rating_word.csv"
    )


# ------------------------------------------------------------------------ accepted variants
GOOD_FILES = sorted(p.name for p in GOOD.iterdir() if p.name != "reference.csv")


def test_dates_outside_the_nanosecond_range_do_not_crash(tmp_path: Path) -> None:
    """A fuzzing find: year-100 dates overflowed pandas' nanosecond arithmetic."""
    path = tmp_path / "old.csv"
    path.write_text("user,item,rating,time\n1,2,3,0100-01-01\n1,3,4,2500-01-01T00:00:01Z\n")
    assert read_ratings(path)["timestamp"].tolist() == [-59011459200, 16725225601]


def test_year_last_dates_outside_the_nanosecond_range_read_like_iso(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fuzzing find: a year-last date of year 100 (``12/31/0100 23:35:09``) crashed with
    pandas' OutOfBoundsDatetime; it reads as the same second as its ISO spelling."""
    iso = tmp_path / "iso.csv"
    iso.write_text("user,item,rating,time\n1,2,3,2020-12-31T23:35:09\n1,3,4,0100-12-31T23:35:09\n")
    expected = read_ratings(iso)["timestamp"].tolist()
    assert expected == [1609457709, -58979924691]
    path = tmp_path / "old.csv"
    for body in ("12/31/2020 23:35:09\n1,3,4,12/31/0100 23:35:09", "12/31/0100 23:35:09\n"):
        path.write_text(f"user,item,rating,time\n1,2,3,{body}\n".replace("\n\n", "\n"))
        got = read_ratings(path)["timestamp"].tolist()
        assert got == (expected if len(got) == 2 else expected[1:])
    # Pieces parsed apart (the first value's format, the rest one by one, ISO beside them)
    # in units of their own: years 100 and 2500 beside a nanosecond fraction.
    path.write_text(
        "user;item;rating;time\n1;2;3;31.12.2020 23:35\n1;3;4;1.2.0100\n"
        "1;4;5;2500-01-01T00:00:01Z\n1;5;1;2020-01-01T00:00:00.123456789Z\n"
    )
    frame = read_ratings(path)
    assert frame["timestamp"].tolist() == [1609457700, -59008780800, 16725225601, 1577836800]
    assert frame.attrs["time_format"] == "day-first dates"
    code, out, err = run_cli(capsys, "data", "describe", str(path))
    assert code == 0 and "2500-01-01T00:00:01" in out, err


@pytest.mark.parametrize(
    ("time", "kwargs", "shown"),
    [
        ("1e25", {}, "1e+25 is outside the years 1 to 9999 (read as epoch-ns)"),
        ("-1e30", {}, "-1e+30 is outside the years 1 to 9999 (read as epoch-ns)"),
        ("-70000000000", {}, "-70000000000 is outside the years 1 to 9999 (read as epoch-s)"),
        ("1e30", {"time_format": "s"}, "1e+30 is outside the years 1 to 9999 (read as epoch-s)"),
        ("-2958465", {"time_format": "excel"}, "-2958465 is outside the years 1 to 9999"),
    ],
)
def test_times_outside_years_1_to_9999_are_one_line_errors(
    time: str, kwargs: dict[str, str], shown: str, tmp_path: Path
) -> None:
    """Epoch numbers far out of range were read as years nobody can show (``1e25`` as the
    year 316889355 crashed ``describe``; ``1e30`` overflowed int64 into garbage)."""
    path = tmp_path / "far.csv"
    path.write_text(f"user,item,rating,time\n1,2,3,1\n1,3,4,{time}\n")
    with pytest.raises(DataError) as exc:
        read_ratings(path, **kwargs)  # type: ignore[arg-type]
    text = str(exc.value)
    assert "\n" not in text and f"{path}, line 3, column 'time' (timestamp): {shown}" in text
    assert "--time-format" in text


def test_far_times_exit_2_with_one_line_and_datetime_columns_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "far.csv"
    path.write_text("user,item,rating,time\n1,2,3,1600000000\n1,3,4,1e25\n")
    code, out, err = run_cli(capsys, "data", "describe", str(path))
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{path}, line 3, column 'time' (timestamp): 1e+25 is outside the years" in err
    # A datetime column (DataFrame, Parquet) past 9999 is refused the same way.
    frame = pd.DataFrame(
        {"user": [1, 2], "item": [2, 3], "time": pd.array(["2020-01-01", "20000-01-01"])}
    )
    frame["time"] = frame["time"].to_numpy().astype("datetime64[s]")
    frame.to_parquet(tmp_path / "far.parquet")
    with pytest.raises(DataError, match=r"far\.parquet, row 2, column 'time' .*outside the years"):
        read_ratings(tmp_path / "far.parquet")


@pytest.mark.parametrize("name", GOOD_FILES)
def test_accepted_variants_load_like_the_reference(name: str) -> None:
    """CRLF/CR endings, BOM, trailing comma on every line, '4e0' ratings, ISO dates, quotes..."""
    expected = read_ratings(GOOD / "reference.csv")
    assert expected["rating"].tolist() == [4.0, 3.5, 5.0]
    assert expected["timestamp"].tolist() == [978300760, 978302109, 978301968]
    got = read_ratings(GOOD / name)
    got.attrs, expected.attrs = {}, {}  # attrs["source"] names each file
    pd.testing.assert_frame_equal(got, expected)


# ------------------------------------------------------------------------ fuzzing
_TOKENS = [b",", b"\t", b";", b":", b"::", b'"', b"\r", b"\n", b"\x00", b"\xef\xbb\xbf", b"\xe9"]
_TOKENS += [b"nan", b"inf", b"-", b"1e400", b"99999999999999999999", b" ", b"userId", b"0100-01-01"]
_TOKENS += [b"/0100", b"1e25"]  # year-last year-100 dates, epoch numbers past year 9999
_SEEDS = sorted(p.name for p in GOOD.iterdir())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.sampled_from(_TOKENS), st.integers(0, 4)),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_files_load_or_raise_data_error(
    seed: str, edits: list[tuple[float, bytes, int]]
) -> None:
    """Random edits of good files: a canonical frame or a one-line DataError, never a crash."""
    data = bytearray((GOOD / seed).read_bytes())
    for where, token, cut in edits:
        pos = int(where * len(data))
        data[pos : pos + cut] = token  # replace ``cut`` bytes (0: insert) by the token
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.csv"
        path.write_bytes(bytes(data))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frame = read_ratings(path)
        except DataError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
        else:
            assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
            assert frame["rating"].notna().all()
            assert frame["timestamp"].between(-62_135_596_800, 253_402_300_799).all()  # 1..9999


# ------------------------------------------------------------------------ MovieLens zips
@pytest.mark.parametrize("release", ["ml-100k", "ml-latest"])
def test_a_zip_that_is_not_movielens_is_refused_by_name(
    release: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A foreign zip under a release's name: checksum (ml-100k) or layout (ml-latest) error."""
    data_dir, cache = tmp_path / "data", tmp_path / "cache"
    data_dir.mkdir()
    (data_dir / f"{release}.zip").write_bytes((BAD / "not_movielens.zip").read_bytes())
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RECFORGE_CACHE_DIR", str(cache))
    code, out, err = run_cli(capsys, "data", "describe", release)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"{release}.zip" in err
    assert ("checksum mismatch" in err) if release == "ml-100k" else ("zip has no" in err)
    assert not any(p.is_file() for p in cache.rglob("*")) if cache.exists() else True


def test_zip_members_outside_the_release_folder_are_never_extracted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zip slip: '../' and absolute member names in an (unchecksummed) ml-latest zip."""
    import zipfile

    from recforge.data.movielens import load_movielens

    data_dir, cache = tmp_path / "data", tmp_path / "cache"
    data_dir.mkdir()
    with zipfile.ZipFile(data_dir / "ml-latest.zip", "w") as zf:
        zf.writestr("ml-latest/ratings.csv", "userId,movieId,rating,timestamp\n1,2,4.0,5\n")
        zf.writestr("ml-latest/../../escaped.txt", "pwned")
        zf.writestr("/tmp/absolute_escape.txt", "pwned")
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RECFORGE_CACHE_DIR", str(cache))
    with contextlib.suppress(DataError), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no movies.csv": this zip has ratings only
        load_movielens("ml-latest")  # refusing would be fine too; writing outside is not
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert "escaped.txt" not in written
    assert not Path("/tmp/absolute_escape.txt").exists()
