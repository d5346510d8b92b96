"""read_ratings: formats, column mapping, canonical dtypes, and one test per bad-input case."""

from __future__ import annotations

import bz2
import gzip
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.data.interactions import Interactions
from recforge.data.io import read_frame, read_ratings
from recforge.errors import ConfigError, DataError, DataWarning

CANON = ["user_id", "item_id", "rating", "timestamp"]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def one_line(exc: pytest.ExceptionInfo[DataError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# ----------------------------------------------------------------------------------- formats
def test_u_data_style_tab_file_headerless(tmp_path: Path) -> None:
    path = write(
        tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t1\n"
    )
    df = read_ratings(path)
    assert list(df.columns) == CANON
    assert df.dtypes.to_dict() == {
        "user_id": np.dtype(np.int64),
        "item_id": np.dtype(np.int64),
        "rating": np.dtype(np.float32),
        "timestamp": np.dtype(np.int64),
    }
    assert df["user_id"].tolist() == [196, 186, 22]
    assert df["item_id"].tolist() == [242, 302, 377]
    assert df["rating"].tolist() == [3.0, 3.0, 1.0]
    assert df["timestamp"].tolist() == [881250949, 891717742, 1]
    assert isinstance(df.index, pd.RangeIndex)
    assert df.attrs["source"] == str(path)


def test_csv_with_movielens_header(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n2,1,0.5,5\n",
    )
    df = read_ratings(path, rating_scale=(0.5, 5.0))
    assert df["user_id"].tolist() == [1, 1, 2]
    assert df["item_id"].tolist() == [1, 3, 1]
    assert df["rating"].tolist() == [4.0, 4.5, 0.5]
    assert df["timestamp"].tolist() == [964982703, 964981247, 5]


def test_movielens_dat_double_colon(tmp_path: Path) -> None:
    path = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    df = read_ratings(path)
    assert df.values.tolist() == [[1, 1193, 5, 978300760], [1, 661, 3, 978302109]]
    assert df["rating"].dtype == np.float32


@pytest.mark.parametrize(
    ("sep", "text"),
    [
        (";", "user;item;rating\n1;2;3\n4;5;1\n"),
        ("|", "1|2|3\n4|5|1\n"),
        (" ", "1   2 3\n4 5    1\n"),
        ("\t", "user\titem\trating\n1\t2\t3\n4\t5\t1\n"),
    ],
)
def test_delimiters_are_sniffed(tmp_path: Path, sep: str, text: str) -> None:
    df = read_ratings(write(tmp_path, "r.txt", text))
    assert df[["user_id", "item_id", "rating"]].values.tolist() == [[1, 2, 3], [4, 5, 1]]
    assert (df["timestamp"] == 0).all()


def test_explicit_sep_is_used(tmp_path: Path) -> None:
    df = read_ratings(write(tmp_path, "r.txt", "1;2;3\n4;5;1\n"), sep=";")
    assert df["item_id"].tolist() == [2, 5]


def test_gzip_by_suffix_and_by_content(tmp_path: Path) -> None:
    body = b"userId,movieId,rating\n7,8,2.5\n9,10,3\n"
    for name in ("r.csv.gz", "no_suffix.bin"):
        path = write(tmp_path, name, gzip.compress(body))
        df = read_ratings(path)
        assert df[["user_id", "item_id"]].values.tolist() == [[7, 8], [9, 10]]
        assert df["rating"].tolist() == [2.5, 3.0]


def test_bz2_by_content(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv.bz2", bz2.compress(b"1,2,3\n"))
    assert read_ratings(path)["rating"].tolist() == [3.0]


def test_parquet_with_column_mapping(tmp_path: Path) -> None:
    src = pd.DataFrame(
        {
            "who": np.array([3, 1], dtype=np.int32),
            "what": ["a", "b"],
            "stars": [4.5, 2.0],
            "when": [10, 20],
        }
    )
    path = tmp_path / "events.parquet"
    src.to_parquet(path)
    df = read_ratings(
        path, columns={"user_id": "who", "item_id": "what", "rating": "stars", "timestamp": 3}
    )
    assert df["user_id"].dtype == np.int64
    assert df["user_id"].tolist() == [3, 1]
    assert df["item_id"].tolist() == ["a", "b"]
    assert df["rating"].tolist() == [4.5, 2.0]
    assert df["timestamp"].tolist() == [10, 20]


def test_parquet_detected_by_magic_bytes(tmp_path: Path) -> None:
    path = tmp_path / "events.data"
    pd.DataFrame({"user": [1], "item": [2], "rating": [5.0]}).to_parquet(path)
    assert read_ratings(path)[["user_id", "item_id"]].values.tolist() == [[1, 2]]


def test_parquet_bad_value_names_row(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pd.DataFrame({"user": [1, 2, 3], "item": [1, 2, 3], "rating": [1.0, None, 2.0]}).to_parquet(
        path
    )
    with pytest.raises(DataError) as exc:
        read_ratings(path)
    assert "row 2, column 'rating'" in one_line(exc)


# ------------------------------------------------------------------------- column mapping
def test_aliases_are_case_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "TS,Score,ITEM_ID,User\n100,2,20,1\n200,5,30,2\n")
    df = read_ratings(path)
    assert df.values.tolist() == [[1, 20, 2, 100], [2, 30, 5, 200]]


def test_mapping_by_position_headerless(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "x,9,1,4\ny,8,2,5\n")
    df = read_ratings(path, columns={"user_id": 2, "item_id": 1, "rating": 3})
    assert df[["user_id", "item_id", "rating"]].values.tolist() == [[1, 9, 4], [2, 8, 5]]
    with pytest.raises(DataError) as exc:
        read_ratings(path, columns={"user_id": 2, "item_id": 1, "rating": 0})
    assert "line 1, column 0 (rating): 'x' is not a number" in one_line(exc)


def test_mapping_by_position_and_name(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "a,b,c,d\n9,1,4,100\n8,2,5,200\n")
    df = read_ratings(path, columns={"user_id": "b", "item_id": 0, "rating": "d", "timestamp": 2})
    assert df.values.tolist() == [[1, 9, 100, 4], [2, 8, 200, 5]]


def test_headerless_two_columns_is_implicit(tmp_path: Path) -> None:
    df = read_ratings(write(tmp_path, "clicks.tsv", "1\t10\n2\t20\n"))
    assert df["rating"].tolist() == [1.0, 1.0]
    assert df["rating"].dtype == np.float32
    assert df["timestamp"].tolist() == [0, 0]


def test_implicit_flag_ignores_ratings(tmp_path: Path) -> None:
    df = read_ratings(write(tmp_path, "r.csv", "user,item,rating\n1,2,five\n"), implicit=True)
    assert df["rating"].tolist() == [1.0]


def test_header_without_rating_is_implicit(tmp_path: Path) -> None:
    df = read_ratings(write(tmp_path, "r.csv", "user_id,item_id,timestamp\n1,2,3\n"))
    assert df.values.tolist() == [[1, 2, 1, 3]]


def test_string_ids_stay_strings(tmp_path: Path) -> None:
    df = read_ratings(write(tmp_path, "r.csv", "u1,i9,4\nu2,10,3\n"))
    assert df["user_id"].tolist() == ["u1", "u2"]
    assert df["item_id"].tolist() == ["i9", "10"]  # one non-integer id makes the column text
    inter = Interactions.from_frame(df)
    assert inter.users.ids.tolist() == ["u1", "u2"]


def test_integral_float_ids_become_int64(tmp_path: Path) -> None:
    df = read_ratings(write(tmp_path, "r.csv", "user,item\n1.0,2.0\n3.0,4\n"))
    assert df["user_id"].dtype == np.int64
    assert df["item_id"].tolist() == [2, 4]


def test_iso_dates_become_epoch_seconds(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "user,item,rating,time\n1,2,3,2020-01-01T00:00:00Z\n")
    assert read_ratings(path)["timestamp"].tolist() == [1577836800]


def test_utf8_bom_is_transparent(tmp_path: Path) -> None:
    with_header = write(tmp_path, "h.csv", b"\xef\xbb\xbfuserId,movieId,rating\n1,2,3\n")
    assert read_ratings(with_header).values.tolist() == [[1, 2, 3, 0]]
    headerless = write(tmp_path, "n.csv", b"\xef\xbb\xbf1,2,3\n4,5,1\n")
    assert read_ratings(headerless)["user_id"].tolist() == [1, 4]


def test_utf16_with_bom_is_transparent(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "user,item,rating\n1,2,3\n".encode("utf-16"))
    assert read_ratings(path).values.tolist() == [[1, 2, 3, 0]]


def test_explicit_latin1_encoding(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", b"user,item\n1,caf\xe9\n")
    assert read_ratings(path, encoding="latin-1")["item_id"].tolist() == ["café"]


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "\nuser,item,rating\n1,2,3\n\n   \n4,5,bad\n\n")
    with pytest.raises(DataError) as exc:
        read_ratings(path)
    assert "line 6, column 'rating'" in one_line(exc)
    ok = write(tmp_path, "ok.csv", "\nuser,item,rating\n1,2,3\n\n4,5,1\n\n")
    assert read_ratings(ok)["user_id"].tolist() == [1, 4]


def test_result_encodes_into_interactions(tmp_path: Path) -> None:
    df = read_ratings(write(tmp_path, "r.csv", "1,10,5\n2,10,3\n2,30,4\n"))
    inter = Interactions.from_frame(df, rating_scale=(1, 5))
    assert (inter.n_users, inter.n_items, len(inter)) == (2, 2, 3)
    assert inter.csr().toarray().tolist() == [[5.0, 0.0], [3.0, 4.0]]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.integers(0, 10**6),
            st.sampled_from([0.5, 1.0, 3.5, 5.0]),
            st.integers(0, 10**10),  # epoch seconds; >= 1e11 reads as milliseconds
        ),
        min_size=1,
        max_size=30,
        unique_by=lambda t: (t[0], t[1]),
    ),
    st.sampled_from([",", "\t", "::", ";"]),
    st.booleans(),
)
def test_round_trip_any_delimiter(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[int, int, float, int]],
    sep: str,
    with_header: bool,
) -> None:
    lines = [sep.join(["userId", "movieId", "rating", "timestamp"])] if with_header else []
    lines += [sep.join(str(v) for v in row) for row in rows]
    path = tmp_path_factory.mktemp("rt") / "r.txt"
    path.write_text("\n".join(lines) + "\n")
    if all(20_000 <= r[3] <= 80_000 for r in rows):  # read as spreadsheet dates: refused
        with pytest.raises(DataError, match="spreadsheet serial date"):
            read_ratings(path)
        return
    df = read_ratings(path)
    assert df.values.tolist() == [list(r) for r in rows]


# --------------------------------------------------------------------------- duplicates
DUPS = "user,item,rating,timestamp\n1,2,3,10\n1,3,4,11\n1,2,5,12\n2,2,1,13\n1,2,4,9\n"


def test_duplicates_last_keeps_last_and_warns(tmp_path: Path) -> None:
    with pytest.warns(DataWarning, match="merged 2 duplicate"):
        df = read_ratings(write(tmp_path, "d.csv", DUPS))
    assert df.values.tolist() == [[1, 3, 4, 11], [2, 2, 1, 13], [1, 2, 4, 9]]


def test_duplicates_mean_averages_and_keeps_latest_timestamp(tmp_path: Path) -> None:
    with pytest.warns(DataWarning, match="averaged"):
        df = read_ratings(write(tmp_path, "d.csv", DUPS), duplicates="mean")
    # (3 + 5 + 4) / 3 = 4, latest timestamp 12; groups in order of first appearance
    assert df.values.tolist() == [[1, 2, 4, 12], [1, 3, 4, 11], [2, 2, 1, 13]]
    assert df["rating"].dtype == np.float32


def test_duplicates_mean_with_string_ids(tmp_path: Path) -> None:
    text = "u,i,r\na,x,1\nb,x,2\na,x,4\n"
    with pytest.warns(DataWarning):
        df = read_ratings(
            write(tmp_path, "d.csv", text),
            columns={"user_id": "u", "item_id": "i", "rating": "r"},
            duplicates="mean",
        )
    assert df[["user_id", "item_id", "rating"]].values.tolist() == [["a", "x", 2.5], ["b", "x", 2]]


def test_duplicates_error_names_both_lines(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "d.csv", DUPS), duplicates="error")
    msg = one_line(exc)
    assert "d.csv, line 4" in msg
    assert "(1, 2)" in msg
    assert "first on line 2" in msg
    assert "duplicates='last'" in msg


def test_no_warning_without_duplicates(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_ratings(write(tmp_path, "r.csv", "1,2,3\n2,1,3\n"))


def test_bad_duplicates_policy_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duplicates"):
        read_ratings(write(tmp_path, "r.csv", "1,2\n"), duplicates="first")  # type: ignore[arg-type]


# --------------------------------------------------------------------- bad input, one each
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(tmp_path / "nope.csv")
    assert "nope.csv: file not found" in one_line(exc)


def test_missing_column(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv", "userId,rating\n1,5\n"))
    msg = one_line(exc)
    assert "r.csv, line 1: missing column 'item_id'" in msg
    assert "the file has: userId, rating" in msg
    assert "columns={'item_id'" in msg


def test_missing_mapped_column(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv", "u,i\n1,5\n"), columns={"user_id": "uid"})
    assert "missing column 'uid' for user_id" in one_line(exc)


def test_missing_rating_column_when_scale_declared(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv", "user,item\n1,5\n"), rating_scale=(1, 5))
    assert "missing column 'rating'" in one_line(exc)


def test_non_numeric_rating(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "user,item,rating\n1,2,4\n1,3,five\n2,3,six\n")
    with pytest.raises(DataError) as exc:
        read_ratings(path)
    msg = one_line(exc)
    assert "r.csv, line 3, column 'rating': 'five' is not a number (1 more rows like it)" in msg
    assert "implicit=True" in msg


def test_non_numeric_rating_headerless_names_position(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.tsv", "1\t2\t4\n1\t3\tfive\n"))
    assert "r.tsv, line 2, column 2 (rating): 'five'" in one_line(exc)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("user,item,rating\n1,2,4\n1,,3\n", "line 3, column 'item' (item_id): empty cell"),
        ("user,item,rating\n1,2,4\n1,3,NaN\n", "line 3, column 'rating': empty or NaN cell"),
        ("user,item,rating\n1,2,4\n1,3,NA\n", "line 3, column 'rating': empty or NaN cell"),
        ("user,item,rating\n1,2,4\n,3,2\n", "line 3, column 'user' (user_id): empty cell"),
        ("user,item,rating\na,b,4\n  ,c,2\n", "line 3, column 'user' (user_id): empty cell"),
        ("1\t2\t4\t5\n1\t3\t\t6\n", "line 2, column 2 (rating): empty or NaN cell"),
        ("user,item,rating\n1,2\n", "line 2, column 'rating': empty or NaN cell"),
        (
            "user,item,rating,time\na,b,4,5\na,c,3,null\n",
            "line 3, column 'time' (timestamp): empty or NaN cell",
        ),
    ],
)
def test_nan_or_empty_cells(tmp_path: Path, text: str, where: str) -> None:
    """Numbers keep pandas' missing-value words (``NA``, ``null``...) as missing; an id cell
    is missing only when empty, and the message says so."""
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv", text))
    assert where in one_line(exc)


def test_the_missing_value_words_are_pandas_defaults() -> None:
    """The reader's copy of pandas' private default list (kept for the numeric columns)."""
    from pandas._libs.parsers import STR_NA_VALUES

    from recforge.data.io import _NA_WORDS

    assert set(_NA_WORDS) == STR_NA_VALUES


#: Ids a person may have, each one of pandas' default missing-value words.
NA_IDS = ["NA", "null", "None", "NaN", "N/A", "nan", "NULL", "#N/A", "-nan", "<NA>", "n/a", "#NA"]


@pytest.mark.parametrize("sep", [",", "\t", ";", "::", " | "])
def test_ids_spelled_like_missing_values_are_those_ids(tmp_path: Path, sep: str) -> None:
    """``NA``, ``null``, ``None``... in an id column are ids, as written, in every format."""
    rows = [f"{w}{sep}{NA_IDS[-1 - k]}{sep}{1 + k % 5}" for k, w in enumerate(NA_IDS)]
    rows.append(f"bob{sep}NA{sep}3")
    text = "\n".join(rows) + "\n"
    if sep != "::":  # .dat files have no header
        text = f"user{sep}item{sep}rating\n" + text
    df = read_ratings(write(tmp_path, "r.dat" if sep == "::" else "r.csv", text), sep=sep)
    assert df["user_id"].tolist() == [*NA_IDS, "bob"]
    assert df["item_id"].tolist() == [*NA_IDS[::-1], "NA"]
    assert df["rating"].notna().all()


def test_titles_and_event_kinds_spelled_like_missing_values_are_text(tmp_path: Path) -> None:
    """Titles and event kinds are text too: ``None`` is a title, ``null`` a kind; an empty
    title cell is still an item without a title."""
    path = write(
        tmp_path,
        "r.csv",
        "user,item,title,kind\na,1,None,null\nb,2,,view\nc,1,None,view\n",
    )
    df = read_ratings(path, columns={"event": "kind"}, event_weights={"null": 2, "view": 1})
    assert df["title"].astype(object).where(df["title"].notna(), None).tolist() == [
        "None",
        None,
        "None",
    ]
    assert sorted(df["rating"].tolist()) == [1.0, 1.0, 2.0]


def test_rating_outside_declared_scale(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "user,item,rating\n1,2,4\n1,3,6\n1,4,0\n")
    with pytest.raises(DataError) as exc:
        read_ratings(path, rating_scale=(1, 5))
    msg = one_line(exc)
    assert "line 3, column 'rating': 6 is outside the rating scale [1, 5]" in msg
    assert "(1 more rows like it)" in msg
    assert read_ratings(path, rating_scale=(0, 6))["rating"].tolist() == [4, 6, 0]


def test_bad_rating_scale_argument(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        read_ratings(write(tmp_path, "r.csv", "1,2,3\n"), rating_scale=(5, 1))


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv", content))
    assert "r.csv: file is empty" in one_line(exc)


def test_empty_gzip(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file is empty"):
        read_ratings(write(tmp_path, "r.csv.gz", gzip.compress(b"")))


def test_header_only(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv", "userId,movieId,rating,timestamp\n\n"))
    assert "r.csv: has a header (line 1) but no data rows" in one_line(exc)


def test_wrong_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "user;item;rating\n1;2;3\n")
    with pytest.raises(DataError) as exc:
        read_ratings(path, sep=",")
    msg = one_line(exc)
    assert "r.csv, line 1: only 1 column found" in msg
    assert "is the delimiter ';'?" in msg


def test_single_column_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv", "1\n2\n3\n"))
    assert "only 1 column found" in one_line(exc)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", b"user,item\n1,tea\n1,caf\xe9\n")
    with pytest.raises(DataError) as exc:
        read_ratings(path)
    msg = one_line(exc)
    assert "r.csv, line 3, field 2: byte 0xe9 is not valid UTF-8" in msg
    assert "encoding='latin-1'" in msg


def test_non_utf8_bytes_after_the_sniffed_sample(tmp_path: Path) -> None:
    rows = [f"{u},item{u}" for u in range(20_000)]  # > 64 KiB before the bad byte
    body = ("user,item\n" + "\n".join(rows) + "\n").encode() + b"7,caf\xe9\n"
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv", body))
    assert "r.csv, line 20002, field 2: byte 0xe9 is not valid UTF-8" in one_line(exc)


def test_binary_garbage(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", bytes(range(256)) * 8)
    with pytest.raises(DataError) as exc:
        read_ratings(path)
    assert "does not look like a text ratings file" in one_line(exc)


def test_file_without_line_breaks(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv", "1,2," * 30_000))
    assert "no line break in the first 64 KiB" in one_line(exc)


def test_zip_archive_is_refused_with_hint(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "r.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("r.csv", "1,2,3\n")
    with pytest.raises(DataError, match="zip archive; extract"):
        read_ratings(path)


def test_truncated_gzip_small(tmp_path: Path) -> None:
    data = gzip.compress(b"1,2,3\n" * 50)
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv.gz", data[: len(data) // 2]))
    assert "r.csv.gz: gzip stream is truncated or corrupt" in one_line(exc)


def test_truncated_gzip_after_the_sample(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = "\n".join(f"{a},{b},3" for a, b in rng.integers(0, 10**6, (60_000, 2)))
    data = gzip.compress(rows.encode())
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv.gz", data[: int(len(data) * 0.8)]))
    assert "gzip stream is truncated or corrupt" in one_line(exc)


def test_ragged_line(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv", "1,2,3\n4,5,6\n7,8,9,10,11\n"))
    assert "r.csv, line 3: 5 fields where line 1 has 3" in one_line(exc)
    # beyond the sniffed sample the parser itself reports the line
    body = "1,2,3\n" * 30_000 + "7,8,9,10\n"
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "long.csv", body))
    assert "long.csv, line 30001: 4 fields where earlier lines have 3" in one_line(exc)


def test_stray_colon_in_dat_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.dat", "1::2::3::4\n5::6:x::7::8\n"))
    assert "r.dat, line 2: a value contains ':'" in one_line(exc)


def test_column_position_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="out of range"):
        read_ratings(write(tmp_path, "r.csv", "1,2\n"), columns={"rating": 5})


def test_name_mapping_without_header(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no header row"):
        read_ratings(write(tmp_path, "r.csv", "1,2\n"), columns={"user_id": "userId"})


def test_unknown_mapping_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'user'"):
        read_ratings(write(tmp_path, "r.csv", "1,2\n"), columns={"user": 0})


def test_bad_timestamp(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "r.csv", "user,item,rating,ts\n1,2,3,5\n1,3,3,soon\n"))
    assert "line 3, column 'ts' (timestamp): 'soon' is not a number" in one_line(exc)
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, "d.csv", "user,item,rating,ts\n1,2,3,2020-01-01\n1,3,3,5x\n"))
    assert "line 3, column 'ts' (timestamp): '5x' is neither epoch seconds nor a date" in one_line(
        exc
    )


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a directory"):
        read_ratings(tmp_path)


def test_corrupt_parquet(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_ratings(write(tmp_path, "r.parquet", b"PAR1 this is not really parquet"))


def test_data_error_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        read_ratings(tmp_path / "missing.csv")


def test_year_last_dates_read_in_one_order_for_the_whole_column(tmp_path: Path) -> None:
    # Value by value, 01.02.2024 was read as 2 January (month first) beside 14.10.2024 as
    # 14 October (day first): one column, two orders, silently.
    def times(body: str) -> list[str]:
        frame = read_ratings(write(tmp_path, "d.csv", "user;item;rating;time\n" + body))
        return pd.to_datetime(frame["timestamp"], unit="s").dt.strftime("%Y-%m-%d").tolist()

    assert times("a;x;1;01.02.2024\na;y;2;14.10.2024\n") == ["2024-02-01", "2024-10-14"]
    assert times("a;x;1;01.02.2024\na;y;2;03.04.2024\n") == ["2024-02-01", "2024-04-03"]  # dots
    assert times("a;x;1;01/02/2024\na;y;2;10/14/2024\n") == ["2024-01-02", "2024-10-14"]
    assert times("a;x;1;01-02-2024 10:00\na;y;2;31-01-2024\n") == ["2024-02-01", "2024-01-31"]
    # One explicit format from the first value (fast), the values it does not fit parsed one by
    # one in the same order: two-digit years, times with and without seconds, a UTC offset.
    assert times("a;x;1;1.2.2024\na;y;2;13.12.24 5:07\nb;x;1;02.01.2024 10:00:05 +0100\n") == [
        "2024-02-01",
        "2024-12-13",
        "2024-01-02",
    ]
    # ISO beside them keeps year-month-day.
    assert times("a;x;1;2024-03-05\na;y;2;14.10.2024\n") == ["2024-03-05", "2024-10-14"]
    with pytest.raises(DataError, match=r"line 2, .*'01/02/2024' could be day/month or month/day"):
        times("a;x;1;01/02/2024\na;y;2;03/04/2024\n")
    with pytest.raises(DataError, match=r"line 2, .*'13/02/2024' puts the day first but '02/13"):
        times("a;x;1;13/02/2024\na;y;2;02/13/2024\n")
    # An explicit pattern settles what the column cannot.
    frame = read_ratings(
        write(tmp_path, "p.csv", "user;item;rating;time\na;x;1;01/02/2024\n"),
        time_format="%d/%m/%Y",
    )
    assert pd.to_datetime(frame["timestamp"], unit="s").dt.month.tolist() == [2]


def test_spreadsheet_serial_dates_are_refused_unless_named(tmp_path: Path) -> None:
    # 45292 is 2024-01-01 in a spreadsheet; read as epoch seconds it was 1970-01-01 12:34:52.
    path = write(tmp_path, "r.csv", "user,item,rating,date\na,x,4,45292\na,y,3,45301.75\n")
    with pytest.raises(DataError) as exc:
        read_ratings(path)
    text = one_line(exc)
    assert f"{path}, line 2, column 'date' (timestamp): 45292 looks like a spreadsheet" in text
    assert "2024-01-01" in text and "--time-format excel" in text and "as dates" in text
    # The same through a DataFrame (an integer column) and a Parquet file.
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "time": [45292, 45300]})
    with pytest.raises(DataError, match="spreadsheet serial date"):
        read_frame(frame)
    frame.to_parquet(tmp_path / "r.parquet")
    with pytest.raises(DataError, match=r"row 1, column 'time' \(timestamp\): 45292 looks like"):
        read_ratings(tmp_path / "r.parquet")
    # --time-format excel reads them as days since 1899-12-30, the fraction as the time of day.
    got = read_ratings(path, time_format="excel")
    assert pd.to_datetime(got["timestamp"], unit="s").astype(str).tolist() == [
        "2024-01-01 00:00:00",
        "2024-01-10 18:00:00",
    ]
    assert got.attrs["time_format"] == "excel-days"
    # Seconds, when they really are seconds; one value outside the range reads as before.
    assert read_ratings(path, time_format="s")["timestamp"].tolist() == [45292, 45301]
    mixed = write(tmp_path, "m.csv", "user,item,rating,ts\na,x,4,45292\na,y,3,90000\n")
    assert read_ratings(mixed)["timestamp"].tolist() == [45292, 90000]
    far = write(tmp_path, "f.csv", "user,item,rating,ts\na,x,4,45292\na,y,3,3000000\n")
    with pytest.raises(DataError, match=r"line 3, .*: 3000000 is past 9999-12-31"):
        read_ratings(far, time_format="excel")


def test_decimal_commas_in_ratings(tmp_path: Path) -> None:
    frame = read_ratings(write(tmp_path, "r.csv", "user;item;rating\na;x;4,5\na;y;3\nb;x;-0,5\n"))
    assert frame["rating"].tolist() == [4.5, 3.0, -0.5]
    # Commas beside decimal points, or not one decimal comma: no guess, the usual error.
    for bad in ("a;x;4,5\na;y;3.5\n", "a;x;1,500,0\n"):
        with pytest.raises(DataError, match=r"is not a number.*--implicit"):
            read_ratings(write(tmp_path, "b.csv", "user;item;rating\n" + bad))


def test_header_annotations_in_brackets_still_match_the_aliases(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "User ID [hashed],Product ID,Rating (1-10)\nA1,P1,7\n")
    frame = read_ratings(path)
    assert frame.attrs["mapping"] == {
        "user_id": "User ID [hashed]",
        "item_id": "Product ID",
        "rating": "Rating (1-10)",
    }
    assert frame["rating"].tolist() == [7.0]
    twins = write(tmp_path, "t.csv", "user,item,Rating (1-5),Rating (1-10)\n1,2,3,6\n")
    with pytest.raises(DataError, match=r"column 'Rating \(1-5\)' appears twice"):
        read_ratings(twins)


def test_an_unmapped_rating_column_warns_before_the_data_turn_into_clicks(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "r.csv", "user;item;Bewertung;Zeit (UTC)\na;x;4,5;1\nb;y;3;2\n")
    with pytest.warns(DataWarning) as caught:
        frame = read_ratings(path)
    text = " ".join(str(w.message) for w in caught)
    assert "column 'Bewertung' looks like ratings (its name and values like '4,5')" in text
    assert "--rating-col Bewertung" in text and "--implicit" in text
    assert frame.attrs["implicit"] is True
    # A column name with a space is quoted for the shell in the flag to pass.
    assert "--time-col 'Zeit (UTC)'" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_ratings(path, implicit=True, columns={"timestamp": "Zeit (UTC)"})
        read_ratings(path, columns={"rating": "Bewertung", "timestamp": "Zeit (UTC)"})
    frame_in = pd.DataFrame({"user": ["a"], "item": ["x"], "Punkte": [80]})
    expected = r"'Punkte' looks like ratings \(its name and its type int"
    with pytest.warns(DataWarning, match=expected):
        read_frame(frame_in)
    parquet = tmp_path / "r.parquet"
    frame_in.to_parquet(parquet, index=False)
    with pytest.warns(DataWarning, match=expected):  # a Parquet file's column types too
        read_ratings(parquet)


@pytest.mark.parametrize(
    ("name", "content"),
    [("ratings.xlsx", b"PK\x03\x04rest"), ("ratings.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")],
)
def test_spreadsheet_workbooks_are_refused_with_save_as_csv(
    tmp_path: Path, name: str, content: bytes
) -> None:
    with pytest.raises(DataError) as exc:
        read_ratings(write(tmp_path, name, content))
    assert f"{name}: is a spreadsheet workbook" in one_line(exc)
    assert "save the sheet as CSV" in str(exc.value)


# ------------------------------------------------------------------------------- count column
PLAYS = "user,artist,plays\nu1,a,3\nu1,b,2\nu2,a,1\nu2,c,4\nu3,b,2\n"


def _expanded(plays: str) -> str:
    """The same events as ``plays``, each (user, artist) written once per play."""
    rows = [ln.split(",") for ln in plays.strip().splitlines()[1:]]
    return "user,artist\n" + "".join(f"{u},{a}\n" * int(n) for u, a, n in rows)


def _pairs(df: pd.DataFrame) -> dict[tuple[str, str], float]:
    return {(u, i): float(r) for u, i, r in df[["user_id", "item_id", "rating"]].itertuples(False)}


def test_a_count_column_gives_the_values_of_the_expanded_rows(tmp_path: Path) -> None:
    plays = read_ratings(write(tmp_path, "plays.csv", PLAYS), columns={"item_id": "artist"})
    rows = read_ratings(
        write(tmp_path, "rows.csv", _expanded(PLAYS)), columns={"item_id": "artist"}
    )
    assert (
        _pairs(plays)
        == _pairs(rows)
        == {
            ("u1", "a"): 3.0,
            ("u1", "b"): 2.0,
            ("u2", "a"): 1.0,
            ("u2", "c"): 4.0,
            ("u3", "b"): 2.0,
        }
    )
    assert plays.attrs["implicit"] and plays.attrs["duplicates"] == "count"
    assert plays.attrs["count_column"] == "plays"
    assert plays.attrs["mapping"]["count"] == "plays"
    a = Interactions.from_frame(plays)
    b = Interactions.from_frame(rows)
    assert (
        a.to_frame()
        .sort_values(["user_id", "item_id"])
        .reset_index(drop=True)
        .equals(b.to_frame().sort_values(["user_id", "item_id"]).reset_index(drop=True))
    )


def test_a_count_column_is_found_by_its_name_without_warnings(tmp_path: Path) -> None:
    for header in ("plays", "play_count", "PlayCount", "Views", "qty", "Listens (total)"):
        path = write(tmp_path, "p.csv", PLAYS.replace("plays", header, 1))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "looks like ratings" warning on counts
            df = read_ratings(path, columns={"item_id": "artist"})
        assert df.attrs["count_column"] == header
        assert df["rating"].tolist() == [3.0, 2.0, 1.0, 4.0, 2.0]
    # Not a count name: the column is unread, every event weighs 1.
    other = read_ratings(
        write(tmp_path, "o.csv", PLAYS.replace("plays", "amount", 1)), columns={"item_id": "artist"}
    )
    assert other.attrs["count_column"] is None and set(other["rating"]) == {1.0}


def test_repeated_rows_with_counts_sum_under_count_and_keep_meaning_otherwise(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "d.csv", "user,item,plays,ts\n1,10,2,100\n1,10,0.5,300\n2,10,4,200\n")
    summed = read_ratings(path, columns={"timestamp": "ts"})
    assert _pairs(summed) == {(1, 10): 2.5, (2, 10): 4.0}
    assert summed["timestamp"].tolist() == [300, 200]
    with pytest.warns(DataWarning, match="kept the last count"):
        last = read_ratings(path, columns={"timestamp": "ts"}, duplicates="last")
    assert _pairs(last) == {(1, 10): 0.5, (2, 10): 4.0}
    with pytest.warns(DataWarning, match="averaged their counts"):
        mean = read_ratings(path, duplicates="mean")
    assert _pairs(mean) == {(1, 10): 1.25, (2, 10): 4.0}
    with pytest.raises(DataError, match="line 3"):
        read_ratings(path, duplicates="error")


def test_zero_counts_are_dropped_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "z.csv", "user,item,plays\n1,10,0\n1,11,2\n2,10,0\n2,12,1\n")
    with pytest.warns(DataWarning, match="dropped 2 rows whose count in column 'plays' is 0"):
        df = read_ratings(path)
    assert _pairs(df) == {(1, 11): 2.0, (2, 12): 1.0}
    assert df.attrs["zero_counts"] == 2
    # Later errors still name the right line after the zero rows are gone.
    bad = write(tmp_path, "zb.csv", "user,item,plays\n1,10,0\n1,11,2\n1,11,1\n")
    with pytest.warns(DataWarning), pytest.raises(DataError, match="line 4: duplicate"):
        read_ratings(bad, duplicates="error")
    with pytest.raises(DataError, match="every count in column 'plays' is 0"):
        read_ratings(write(tmp_path, "zz.csv", "user,item,plays\n1,10,0\n"))


@pytest.mark.parametrize(
    ("value", "problem"), [("-2", "-2 is a negative count"), ("lots", "'lots' is not a number")]
)
def test_a_bad_mapped_count_is_one_line_naming_file_line_column(
    tmp_path: Path, value: str, problem: str
) -> None:
    path = write(tmp_path, "n.csv", f"user,artist,plays\nu1,a,3\nu1,b,{value}\n")
    with pytest.raises(DataError) as exc:
        read_ratings(path, columns={"item_id": "artist", "count": "plays"})
    text = one_line(exc)
    assert f"{path}, line 3, column 'plays' (count): {problem}" in text
    assert "counts must be numbers >= 0" in text
    # Found only by its name, such a column is not taken as counts (with a warning that says
    # why: the first bad value and its problem, whatever the path holds).
    with pytest.warns(DataWarning, match="named like counts but is not read") as caught:
        df = read_ratings(path, columns={"item_id": "artist"})
    assert df.attrs["count_column"] is None and set(df["rating"]) == {1.0}
    assert f"not read as them ({problem}); pass --count-col plays" in str(caught[0].message)


def test_a_count_column_by_position_in_a_file_without_header(tmp_path: Path) -> None:
    path = write(tmp_path, "h.tsv", "1\t10\t2.5\n2\t10\t3\n")
    df = read_ratings(path, columns={"count": 2})
    assert _pairs(df) == {(1, 10): 2.5, (2, 10): 3.0} and df.attrs["implicit"]


def test_counts_beside_ratings(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "user,item,rating,plays\n1,10,4,3\n2,10,5,1\n")
    with pytest.warns(DataWarning, match="column 'plays' looks like counts but is not read"):
        rated = read_ratings(path)  # a rating column is mapped: counts are not guessed
    assert rated["rating"].tolist() == [4.0, 5.0] and not rated.attrs["implicit"]
    with pytest.warns(DataWarning, match="column 'rating' is not read"):
        counted = read_ratings(path, columns={"count": "plays"})
    assert counted["rating"].tolist() == [3.0, 1.0] and counted.attrs["implicit"]
    with pytest.raises(ConfigError, match="count column"):
        read_ratings(path, columns={"count": "plays", "rating": "rating"})
    with pytest.warns(DataWarning), pytest.raises(DataError, match="make the data implicit"):
        read_ratings(path, columns={"count": "plays"}, rating_scale=(1, 5))
    with pytest.warns(DataWarning, match="pass --count-col plays .* instead of --rating-col"):
        read_ratings(path, columns={"rating": "plays"}, implicit=True)


def test_counts_from_parquet_and_from_a_dataframe(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"user": ["u1", "u1", "u2", "u3"], "item": ["a", "b", "a", "b"], "plays": [3, 0, 1.5, 2]}
    )
    path = tmp_path / "plays.parquet"
    frame.to_parquet(path)
    expected = {("u1", "a"): 3.0, ("u2", "a"): 1.5, ("u3", "b"): 2.0}
    with pytest.warns(DataWarning, match="dropped 1 row whose"):
        assert _pairs(read_ratings(path)) == expected
    with pytest.warns(DataWarning, match="dropped 1 row whose"):
        assert _pairs(read_frame(frame)) == expected
    renamed = frame.rename(columns={"plays": "hours"})
    with pytest.warns(DataWarning, match="dropped 1 row whose"):
        assert _pairs(read_frame(renamed, columns={"count": "hours"})) == expected
    with pytest.raises(DataError, match=r"row 2, column 'hours' \(count\): -1"):
        read_frame(renamed.assign(hours=[3, -1, 1, 1]), columns={"count": "hours"})


def test_counts_with_decimal_commas_or_thousands_separators(tmp_path: Path) -> None:
    euro = write(tmp_path, "e.csv", "user;item;stunden\n1;10;2,5\n2;10;3\n")
    assert read_ratings(euro, columns={"count": "stunden"})["rating"].tolist() == [2.5, 3.0]
    grouped = write(tmp_path, "g.csv", 'user,item,plays\n1,10,"1,234"\n2,10,7\n')
    with pytest.raises(DataError) as exc:
        read_ratings(grouped, columns={"count": "plays"})
    assert "line 2, column 'plays' (count): '1,234' could be a thousands separator" in one_line(exc)


# ------------------------------------------------------------------------------- event column
#: A RetailRocket-style log: u1 viewed a twice, carted it and bought it; u2 viewed b and bought c.
SHOP = (
    "timestamp,visitorid,event,itemid,transactionid\n"
    "1000,u1,view,a,\n"
    "1001,u1,view,a,\n"
    "1002,u1,addtocart,a,\n"
    "1003,u1,transaction,a,t1\n"
    "1004,u2,view,b,\n"
    "1005,u2, transaction ,c,t2\n"
)
WEIGHTS = {"view": 1, "addtocart": 3, "transaction": 5}


def test_an_event_column_is_found_by_its_name_and_each_event_weighs_1(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the kinds are noted, nothing to warn about
        df = read_ratings(write(tmp_path, "shop.csv", SHOP))
    assert df.attrs["mapping"]["event"] == "event" and df.attrs["event_column"] == "event"
    # Kinds stripped (" transaction " is transaction), most rows first.
    assert df.attrs["event_kinds"] == {"view": 3, "transaction": 2, "addtocart": 1}
    assert _pairs(df) == {("u1", "a"): 4.0, ("u2", "b"): 1.0, ("u2", "c"): 1.0}  # as before
    assert df.attrs["event_weights"] is None and df.attrs["event_dropped"] == 0
    for header in ("event_type", "EventType", "action", "behavior", "Behaviour", "activity"):
        renamed = SHOP.replace(",event,", f",{header},", 1)
        found = read_ratings(write(tmp_path, "r.csv", renamed)).attrs
        assert found["event_column"] == header, header


def test_event_weights_are_summed_per_pair_and_0_drops_a_kind(tmp_path: Path) -> None:
    path = write(tmp_path, "shop.csv", SHOP)
    df = read_ratings(path, event_weights=WEIGHTS)
    assert _pairs(df) == {("u1", "a"): 1 + 1 + 3 + 5, ("u2", "b"): 1.0, ("u2", "c"): 5.0}
    assert df.attrs["implicit"] and df.attrs["event_weights"] == WEIGHTS
    no_views = read_ratings(path, event_weights={**WEIGHTS, "view": 0})
    assert _pairs(no_views) == {("u1", "a"): 8.0, ("u2", "c"): 5.0}  # b was only viewed
    assert no_views.attrs["event_dropped"] == 3
    # Under 'last' the last row's weight stands, as a count's does.
    with pytest.warns(DataWarning, match="kept the last"):
        last = read_ratings(path, event_weights=WEIGHTS, duplicates="last")
    assert _pairs(last)[("u1", "a")] == 5.0


def test_event_weights_multiply_a_count_column(tmp_path: Path) -> None:
    path = write(
        tmp_path, "q.csv", "user,item,event,qty\n1,10,view,2\n1,10,purchase,3\n2,10,view,4\n"
    )
    df = read_ratings(path, event_weights={"view": 0.5, "purchase": 10})
    assert df.attrs["count_column"] == "qty"
    assert _pairs(df) == {(1, 10): 0.5 * 2 + 10 * 3, (2, 10): 0.5 * 4}


def test_events_keeps_only_the_kinds_named_with_ratings_too(tmp_path: Path) -> None:
    path = write(tmp_path, "shop.csv", SHOP)
    bought = read_ratings(path, events=["transaction"])
    assert _pairs(bought) == {("u1", "a"): 1.0, ("u2", "c"): 1.0}
    assert bought.attrs["events_kept"] == ("transaction",) and bought.attrs["event_dropped"] == 4
    # With weights, only the kept kinds need one.
    both = read_ratings(
        path, events=["transaction", "addtocart"], event_weights={"transaction": 5, "addtocart": 2}
    )
    assert _pairs(both) == {("u1", "a"): 7.0, ("u2", "c"): 5.0}
    rated = write(
        tmp_path, "rated.csv", "user,item,rating,action\n1,10,4,rate\n1,11,2,skip\n2,10,5,rate\n"
    )
    kept = read_ratings(rated, events=["rate"])
    assert _pairs(kept) == {(1, 10): 4.0, (2, 10): 5.0} and not kept.attrs["implicit"]


def test_event_errors_are_one_line_naming_the_file_column_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "shop.csv", SHOP)
    with pytest.raises(DataError) as exc:
        read_ratings(path, event_weights={"view": 1, "Transaction": 5})
    text = one_line(exc)
    assert f"{path}, line 4, column 'event': 'addtocart' has no weight in --event-weights" in text
    assert "kinds without one: transaction (2 rows), addtocart (1 row)" in text
    assert "'transaction' is not 'Transaction'" in text  # kinds are case-sensitive
    assert "0 drops it), e.g. --event-weights view=1,transaction=1,addtocart=1" in text
    with pytest.raises(DataError) as exc:
        read_ratings(path, events=["transaction", "purchase"])
    text = one_line(exc)
    assert f"{path}, column 'event': --events names 'purchase', which the column does not" in text
    assert "its kinds: view (3 rows), transaction (2 rows), addtocart (1 row)" in text
    with pytest.raises(DataError, match=r"no row is left .*gives view, addtocart, transaction a"):
        read_ratings(path, event_weights=dict.fromkeys(WEIGHTS, 0))
    with pytest.raises(DataError, match=r"no row is left .--events keeps only view; --event-w"):
        read_ratings(path, events=["view"], event_weights={"view": 0})
    with pytest.warns(DataWarning, match="gives a weight to 'purchase', which the column does"):
        read_ratings(path, event_weights={**WEIGHTS, "purchase": 9})
    for bad in ({"view": -1}, {"view": "lots"}, {"view": float("nan")}, {}, {" ": 1}):
        with pytest.raises(ConfigError, match="event_weights"):
            read_ratings(path, event_weights=bad)
    blank = write(tmp_path, "blank.csv", "user,item,kind\n1,10,view\n1,11,\n")
    with pytest.raises(DataError, match=r"line 3, column 'kind' \(event\): empty cell"):
        read_ratings(blank, columns={"event": "kind"})


def test_weights_need_implicit_feedback_as_counts_do(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "user,item,rating,event\n1,10,4,view\n2,10,5,buy\n")
    with pytest.raises(ConfigError, match=r"event weights .* make the data implicit, so the rat"):
        read_ratings(path, columns={"rating": "rating"}, event_weights={"view": 1, "buy": 2})
    with pytest.warns(DataWarning, match="column 'rating' is not read: event weights make"):
        df = read_ratings(path, event_weights={"view": 1, "buy": 2})
    assert _pairs(df) == {(1, 10): 1.0, (2, 10): 2.0} and df.attrs["implicit"]
    both = read_ratings(
        path, columns={"rating": "rating"}, event_weights={"view": 1, "buy": 2}, implicit=True
    )
    assert _pairs(both) == _pairs(df)
    with pytest.warns(DataWarning), pytest.raises(DataError, match="event weights make the"):
        read_ratings(path, event_weights={"view": 1, "buy": 2}, rating_scale=(1, 5))


def test_a_column_named_like_events_is_not_taken_when_numeric_or_not_kinds(tmp_path: Path) -> None:
    numeric = write(tmp_path, "n.csv", "user,item,action\n1,10,3\n2,10,7\n")
    with pytest.warns(
        DataWarning,
        match="'action' is named like event kinds but is not read as them .it holds int64",
    ):
        df = read_ratings(numeric)
    assert df.attrs["event_column"] is None and "event" not in df.attrs["mapping"]
    quoted = write(tmp_path, "q.csv", 'user,item,event\n1,10,"3"\n2,10,"7"\n')
    with pytest.warns(DataWarning, match="not read as them"):
        assert read_ratings(quoted).attrs["event_column"] is None
    many = "user,item,event\n" + "".join(f"{i},10,kind{i}\n" for i in range(51))
    with pytest.warns(DataWarning, match="51 distinct values, more than 50 kinds"):
        assert read_ratings(write(tmp_path, "m.csv", many)).attrs["event_column"] is None
    # Mapped, a numeric column is read as kinds all the same.
    assert read_ratings(numeric, columns={"event": "action"}).attrs["event_kinds"] == {
        "3": 1,
        "7": 1,
    }
    # Asked to weigh without any column of kinds: say which flag names one.
    with pytest.warns(DataWarning), pytest.raises(DataError) as exc:
        read_ratings(numeric, event_weights={"3": 1})
    text = one_line(exc)
    assert "--event-weights need a column of event kinds, but none was found" in text
    assert "column 'action' is named like them but it holds int64 values" in text
    assert "pass --event-col <column>" in text


def test_events_from_parquet_and_from_a_dataframe(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "product_id": [10, 10, 11],
            "event_type": ["view", "cart", "purchase"],
        }
    )
    expected = {(1, 10): 4.0, (2, 11): 5.0}
    kw = {"event_weights": {"view": 1, "cart": 3, "purchase": 5}}
    assert _pairs(read_frame(frame, **kw)) == expected
    frame.to_parquet(tmp_path / "e.parquet")
    assert _pairs(read_ratings(tmp_path / "e.parquet", **kw)) == expected
    cats = frame.assign(event_type=frame["event_type"].astype("category"))
    assert _pairs(read_frame(cats, **kw)) == expected
    assert (
        _pairs(
            read_frame(
                frame.rename(columns={"event_type": "what"}), columns={"event": "what"}, **kw
            )
        )
        == expected
    )
