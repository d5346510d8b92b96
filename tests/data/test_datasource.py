"""DataSource, the own-data reading rules behind it, thresholds and repeat counts as weights."""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data.datasource import DataSource, parse_rating_scale, parse_sep
from recforge.data.io import read_ratings
from recforge.data.sources import load_dataset, load_with_info
from recforge.errors import ConfigError, DataError, DataWarning
from recforge.eval.thresholds import scale_thresholds


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ DataSource
def test_path_is_stored_absolute_and_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "r.csv", "u,i\n1,2\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    src = DataSource.of("./sub/../r.csv")
    assert src.path == str((tmp_path / "r.csv").resolve())
    again = DataSource(**src.to_json_dict())  # what a run manifest holds, read back
    assert again == src
    assert DataSource.of("ml-100k").path == "ml-100k"  # release names stay names


def test_missing_file_is_one_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file, and not a MovieLens release"):
        DataSource.of(tmp_path / "nope.csv")


def test_old_manifest_data_string_still_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "userId,movieId,rating\n1,2,4\n")
    src = DataSource.from_manifest({"data": str(path)})
    assert src is not None and src.path == str(path.resolve()) and src.columns() is None
    assert DataSource.from_manifest({}) is None


@pytest.mark.parametrize(
    ("text", "sep"),
    [("tab", "\t"), ("\\t", "\t"), (",", ","), (";", ";"), ("|", "|"), ("::", "::")],
)
def test_separator_names(text: str, sep: str) -> None:
    assert parse_sep(text) == sep


def test_bad_separator_and_scale_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="--sep"):
        parse_sep("#")
    assert parse_rating_scale("1:10") == (1.0, 10.0)
    assert parse_rating_scale("0.5:5") == (0.5, 5.0)
    with pytest.raises(ConfigError, match="LOW must be below HIGH"):
        parse_rating_scale("5:1")
    with pytest.raises(ConfigError, match="LOW:HIGH"):
        parse_rating_scale("ten")


@pytest.mark.parametrize(
    ("text", "scale"),
    [
        ("0,5:5", (0.5, 5.0)),  # a decimal comma, as a German user types the scale
        ("0,5..5", (0.5, 5.0)),
        ("0,5-5", (0.5, 5.0)),
        ("1,5:10,5", (1.5, 10.5)),
        ("0.5:4,5", (0.5, 4.5)),
        ("-2,5:2,5", (-2.5, 2.5)),
        ("1,5", (1.0, 5.0)),  # a comma alone still separates: 1 to 5, as before
        ("1,10", (1.0, 10.0)),
        (" 0,5 : 5 ", (0.5, 5.0)),
    ],
)
def test_rating_scale_accepts_a_decimal_comma_beside_another_separator(
    text: str, scale: tuple[float, float]
) -> None:
    assert parse_rating_scale(text) == scale


@pytest.mark.parametrize("text", ["0,5,5", "0,5:5,", "1,2,3:5", "0,5:"])
def test_rating_scale_with_ambiguous_commas_is_refused_with_the_fix(text: str) -> None:
    with pytest.raises(ConfigError, match=r"e\.g\. 1:5 or 0\.5:5 \(or 0,5:5\)"):
        parse_rating_scale(text)


def test_digit_column_is_a_position_and_bad_combinations_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "7,8,3\n")
    assert DataSource.of(path, user_col="0").user_col == 0
    with pytest.raises(ConfigError, match="implicit"):
        DataSource.of(path, implicit=True, rating_scale=(1, 5))
    with pytest.raises(ConfigError, match="--items"):
        DataSource.of(path, item_id_col="id")
    with pytest.raises(ConfigError, match="--items"):
        DataSource.of(path, item_feature_cols=("genre",))
    # --item-title-col alone names the ratings file's own title column (digits: a position).
    assert DataSource.of(path, item_title_col="2").columns() == {"title": 2}


def test_title_col_names_the_ratings_title_column(tmp_path: Path) -> None:
    """``title_col`` (``--title-col``) maps the title role as the other ``*_col`` fields map
    theirs (digits: a position); ``item_title_col`` alone stays its older spelling, and the
    two together without ``items`` are one line naming both flags."""
    path = write(tmp_path, "r.csv", "7,8,3,Alien\n")
    assert DataSource.of(path, title_col="3").title_col == 3
    assert DataSource.of(path, title_col="3").columns() == {"title": 3}
    assert DataSource.of(path, title_col="name").columns() == {"title": "name"}
    with pytest.raises(ConfigError) as exc:
        DataSource.of(path, title_col="name", item_title_col="name")
    assert "\n" not in str(exc.value)
    assert "--title-col and --item-title-col" in str(exc.value)
    # With an item file, item_title_col is that file's column: the two name different files.
    items = write(tmp_path, "i.csv", "id,name\n8,Alien\n")
    both = DataSource.of(path, title_col="3", items=str(items), item_title_col="name")
    assert both.columns() == {"title": 3}
    again = DataSource(**both.to_json_dict())  # what a run's manifest holds, read back
    assert again == both and again.title_col == 3
    assert DataSource.from_manifest({"data_source": both.to_json_dict()}) == both
    with pytest.raises(ConfigError, match="--title-col: options for files only"):
        DataSource.of("ml-100k", title_col="title")
    # columns={"title": ...} of load_dataset names the ratings' title column, as read_ratings'.
    from recforge.data.sources import as_source

    assert as_source(path, columns={"title": "name"}).title_col == "name"


# ------------------------------------------------------------------------------ reading
def test_header_of_text_over_iso_times_is_detected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "clicks.csv",
        "customer,product,clicked_at\nc1,p1,2024-01-01T10:00:00\nc1,p2,2024-01-02\n",
    )
    src = DataSource.of(path, user_col="customer", item_col="product", time_col="clicked_at")
    inter, info = load_with_info(src)
    assert inter.users.ids.tolist() == ["c1"] and inter.rating_scale is None
    assert inter.timestamp.tolist() == [1704103200, 1704153600]
    assert info["mapping"] == {
        "user_id": "customer",
        "item_id": "product",
        "timestamp": "clicked_at",
    }
    assert info["time_format"] == "iso"


def test_unmapped_time_column_warns_with_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "r.tsv", "member\tfilm\tstars\twhen\n1\t2\t7\t1700000000\n")
    with pytest.warns(DataWarning, match=r"column 'when' looks like a time.*--time-col when"):
        inter = load_dataset(path, columns={"user_id": "member", "item_id": "film"})
    assert not inter.has_timestamps


def test_epoch_milliseconds_are_detected_and_forced(tmp_path: Path) -> None:
    frame = pd.DataFrame({"u": [1, 2], "i": [3, 4], "ts": [1_700_000_000_123, 1_700_000_060_999]})
    path = tmp_path / "e.parquet"
    frame.to_parquet(path)
    got = read_ratings(path, columns={"user_id": "u", "item_id": "i"})
    assert got["timestamp"].tolist() == [1_700_000_000, 1_700_000_060]
    assert got.attrs["time_format"] == "epoch-ms"
    secs = write(tmp_path, "s.csv", "u,i,t\n1,2,1700000000\n")
    forced = read_ratings(secs, columns={"user_id": "u", "item_id": "i", "timestamp": "t"},
                          time_format="ms")  # fmt: skip
    assert forced["timestamp"].tolist() == [1_700_000]


def test_strftime_time_format_and_bad_time_names_line_and_value(tmp_path: Path) -> None:
    cols = {"user_id": "u", "item_id": "i", "timestamp": "d"}
    path = write(tmp_path, "d.csv", "u,i,d\n1,2,31/12/2023\n1,3,01/01/2024\n")
    got = read_ratings(path, columns=cols, time_format="%d/%m/%Y")
    assert got["timestamp"].tolist() == [1703980800, 1704067200]
    bad = write(tmp_path, "b.csv", "u,i,d\n1,2,31/12/2023\n1,3,someday\n")
    with pytest.raises(DataError, match=r"b\.csv, line 3, column 'd' \(timestamp\): 'someday'"):
        read_ratings(bad, columns=cols, time_format="%d/%m/%Y")


def test_named_mapping_requires_a_header(tmp_path: Path) -> None:
    path = write(tmp_path, "n.csv", "1,2,5\n")
    with pytest.raises(DataError, match=r"no header row.*--user-col 0"):
        read_ratings(path, columns={"user_id": "member"})


def test_missing_mapped_column_lists_the_file_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "member,film\n1,2\n")
    with pytest.raises(DataError, match=r"missing column 'person'.*member, film.*--user-col"):
        read_ratings(path, columns={"user_id": "person", "item_id": "film"})


def test_repeats_are_counted_for_implicit_data(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "u,i,t\na,x,5\na,y,6\na,x,9\na,x,7\nb,x,1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # counting is the expected path: no warning
        got = read_ratings(path, columns={"user_id": "u", "item_id": "i", "timestamp": "t"})
    pairs = {(r.user_id, r.item_id): (r.rating, r.timestamp) for r in got.itertuples()}
    assert pairs == {("a", "x"): (3.0, 9), ("a", "y"): (1.0, 6), ("b", "x"): (1.0, 1)}
    assert got.attrs["duplicates"] == "count"
    explicit = write(tmp_path, "e.csv", "user,item,rating\n1,2,4\n1,2,5\n")
    with pytest.raises(ConfigError, match="implicit"):
        read_ratings(explicit, duplicates="count")


def test_item_file_gives_titles_and_categories(tmp_path: Path) -> None:
    ratings = write(tmp_path, "r.csv", "user,item\n1,10\n2,11\n")
    items = write(tmp_path, "items.csv", "id,name,cat\n10,Lamp,home|light\n11,Mug,kitchen\n")
    src = DataSource.of(
        ratings,
        items=str(items),
        item_id_col="id",
        item_title_col="name",
        item_feature_cols=("cat",),
    )
    meta = src.load().item_meta
    assert meta.loc[10, "title"] == "Lamp" and meta.loc[10, "genres"] == ["home", "light"]
    wrong = src.replace(item_title_col="label")
    with pytest.raises(DataError, match=r"missing column 'label'.*id, name, cat.*--item-title-col"):
        wrong.load()


@pytest.mark.parametrize("infer_string", [True, False])
def test_missing_titles_and_categories_in_an_item_file_stay_missing(
    tmp_path: Path, infer_string: bool
) -> None:
    """Parquet nulls and empty CSV cells are no title (None), never the text 'None' or 'nan'
    (``astype(str)`` wrote those with pandas 2's object strings, which ``infer_string=False``
    brings back; with pandas 3's str a null category crashed the '|' split)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ratings = write(tmp_path, "r.csv", "user,item\n1,10\n2,11\n3,12\n")
    csv = write(tmp_path, "items.csv", "id,name,cat\n10,Lamp,home|light\n11,,\n12,  ,kitchen\n")
    table = {"id": [10, 11, 12], "name": ["Lamp", None, "  "], "cat": ["home|light", None, "x"]}
    pq.write_table(pa.table(table), tmp_path / "items.parquet")
    with contextlib.ExitStack() as stack:
        if not infer_string:
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")  # pandas 3 deprecates turning the option off
            try:
                stack.enter_context(pd.option_context("future.infer_string", False))
            except pd.errors.OptionError:
                pytest.skip("this pandas has no object strings to fall back to")
        for items in (csv, tmp_path / "items.parquet"):
            src = DataSource.of(ratings, items=str(items), item_title_col="name")
            meta = src.replace(item_feature_cols=("cat",)).load().item_meta
            assert meta["title"].tolist() == ["Lamp", None, None], items
            assert meta["genres"].tolist()[:2] == [["home", "light"], []], items


def test_missing_titles_in_a_dataframe_item_table_show_as_null() -> None:
    """Item metadata given as a DataFrame with NaN titles: the CLI's item info says None."""
    from recforge.cli.render import item_info
    from recforge.data.frames import frame_to_interactions

    frame = pd.DataFrame({"user": ["a", "b", "b"], "item": [1, 2, 3], "rating": [4, 3, 5]})
    meta = pd.DataFrame({"title": ["Lamp", np.nan, None]}, index=pd.Index([1, 2, 3]))
    data = frame_to_interactions(frame, item_meta=meta)
    assert [item_info(data.item_meta, i).get("title") for i in (1, 2, 3)] == ["Lamp", None, None]


def test_an_item_column_of_titles_titles_its_items(tmp_path: Path) -> None:
    """A German export ``Benutzer;Titel;Bewertung``: the films' names are the ids and titles."""
    ratings = write(tmp_path, "r.csv", "Benutzer;Titel;Bewertung\na;Das Boot;4\nb;M;3,5\n")
    src = DataSource.of(ratings, user_col="Benutzer", item_col="Titel", rating_col="Bewertung")
    data, info = load_with_info(src)
    assert data.item_meta is not None
    assert data.item_meta["title"].to_dict() == {"Das Boot": "Das Boot", "M": "M"}
    assert info["titles_from"] == "Titel"
    # Other names that say titles: the same (movie is also found by alias, unmapped).
    assert (
        DataSource.of(write(tmp_path, "a.csv", "user,movie\na,Heat\n")).load().item_meta is not None
    )
    for header in ("movie", "Movie Title", "book_name", "Song (original)", "films"):
        path = write(tmp_path, "h.csv", f"user,{header},rating\na,Alien,4\nb,Heat,3\n")
        meta = DataSource.of(path, item_col=header).load().item_meta
        assert meta is not None and meta.loc["Heat", "title"] == "Heat", header
    # Not for id-like column names, integer ids, codes (every id one word with a digit), or
    # a file without a header.
    codes = (("product", "Alien"), ("movie", "12"), ("movie_id", "Alien"), ("movie", "tt0111161"))
    for header, ids in codes:
        path = write(tmp_path, "n.csv", f"user,{header},rating\na,{ids},4\n")
        assert DataSource.of(path, item_col=header).load().item_meta is None, header
    bare = write(tmp_path, "b.csv", "a,Alien,4\nb,Heat,3\n")
    assert load_dataset(bare).item_meta is None


def test_titles_from_ids_fill_what_the_item_file_leaves_out(tmp_path: Path) -> None:
    ratings = write(tmp_path, "r.csv", "user,title\n1,Alien\n2,Heat\n3,Ran\n")
    items = write(tmp_path, "i.csv", "id,name,genre\nAlien,Alien (1979),scifi\nHeat,,crime\n")
    src = DataSource.of(ratings, item_col="title", items=str(items), item_feature_cols=("genre",))
    meta = src.load().item_meta
    # The item file's title first; an empty one, or an item it lacks, falls back to the id.
    assert meta["title"].to_dict() == {"Alien": "Alien (1979)", "Heat": "Heat", "Ran": "Ran"}
    assert meta.loc["Heat", "genres"] == ["crime"]


def test_a_dataframe_with_a_title_column_of_ids_is_titled_too() -> None:
    from recforge.data.frames import frame_to_interactions

    frame = pd.DataFrame({"user": ["a", "b"], "Titel": ["Das Boot", "M"], "rating": [4, 3]})
    data = frame_to_interactions(frame, columns={"item": "Titel"})
    assert data.item_meta is not None and data.item_meta.loc["M", "title"] == "M"


# ------------------------------------------------------------------------------ thresholds
@pytest.mark.parametrize(
    ("scale", "like", "relevance"),
    [((1, 5), 3.0, 4.0), ((1, 10), 5.5, 7.75), ((0, 100), 50.0, 75.0)],
)
def test_thresholds_follow_the_scale(
    scale: tuple[float, float], like: float, relevance: float
) -> None:
    thr = scale_thresholds(scale)
    assert (thr.like, thr.relevance) == (like, relevance)
    assert f"like > {like:g}, relevant >= {relevance:g}" in thr.describe()


def test_thresholds_override_and_implicit() -> None:
    assert scale_thresholds((1, 10), relevance=9).relevance == 9
    implicit = scale_thresholds(None)
    assert implicit.like is None and implicit.relevance is None
    assert "implicit" in implicit.describe()


# ------------------------------------------------------------------------------ weights
def test_counts_change_ease_and_pair_model_inputs(tmp_path: Path) -> None:
    from recforge.models.ease import EASE
    from recforge.models.mf import BiasedMF

    rows = ["user,item"] + [f"{u},{i}" for u in range(6) for i in range(4)] + ["0,1"] * 5
    data = load_dataset(write(tmp_path, "w.csv", "\n".join(rows) + "\n"))
    assert data.rating_scale is None and float(data.rating.max()) == 6.0
    ease = EASE().fit(data)
    assert ease.user_matrix_[0, 1] == 6.0  # 'auto': counts are the input weights
    binary = EASE({"weighting": "binary"}).fit(data)
    assert binary.user_matrix_[0, 1] == 1.0
    mf = BiasedMF({"epochs": 1})
    mf.rating_scale_ = None
    u, i = mf._positives(data, weighted=True)
    # 6 repeats -> 1 + floor(log2 6) = 3 copies of (0, 1); every other pair once.
    assert len(u) == len(data) + 2
    assert int(((u == 0) & (i == data.items.index(np.array([1]))[0])).sum()) == 3


def test_read_ratings_takes_a_datasource(tmp_path: Path) -> None:
    path = write(tmp_path, "r.tsv", "member\tfilm\tstars\n7\t8\t9\n")
    src = DataSource.of(path, user_col="member", item_col="film", rating_col="stars", sep="tab")
    got = read_ratings(src)
    assert got[["user_id", "item_id", "rating"]].values.tolist() == [[7, 8, 9.0]]


def test_recency_and_temporal_splits_need_timestamps(tmp_path: Path) -> None:
    from recforge.pipeline import train_run

    rows = ["user,item"] + [f"{u},{i}" for u in range(8) for i in range(6)]
    src = DataSource.of(write(tmp_path, "n.csv", "\n".join(rows) + "\n"))
    with pytest.raises(ConfigError, match=r"recency_tau=5 .* no timestamps.*--time-col"):
        train_run("ease", src, config={"recency_tau": 5.0}, out=tmp_path / "run")
    for spec in ("temporal-user:0.2", "global-temporal:0.2", "loo"):
        with pytest.raises(ConfigError, match=r"orders events in time.*no timestamps"):
            train_run("ease", src, split=spec)
    assert not (tmp_path / "run").exists()


def test_text_header_over_text_ids_is_detected(tmp_path: Path) -> None:
    # Without flags, the header is still recognised as one: the error names its columns.
    path = write(tmp_path, "c.csv", "kunde,artikel\nc1,p9\nc2,p3\n")
    with pytest.raises(DataError, match=r"the file has: kunde, artikel\); pass --user-col"):
        read_ratings(path)
    got = read_ratings(path, columns={"user_id": "kunde", "item_id": "artikel"})
    assert got["user_id"].tolist() == ["c1", "c2"]
    # customer / product are aliases: a shop's export needs no flags.
    shop = write(tmp_path, "s.csv", "customer,product\nc1,p9\nc2,p3\n")
    assert read_ratings(shop).attrs["mapping"] == {"user_id": "customer", "item_id": "product"}
    plain = write(tmp_path, "p.csv", "u1,i9\nu2,i7\n")  # rows alike: no header
    assert read_ratings(plain)["user_id"].tolist() == ["u1", "u2"]


def test_listening_logs_need_no_flags_and_aliases_go_by_priority(tmp_path: Path) -> None:
    # A listening log's usual headers are aliases: no --user-col/--item-col/--time-col needed.
    log = write(
        tmp_path,
        "l.csv",
        "listener,track,listened_at\nl1,t9,2025-03-01T10:00:00Z\nl2,t3,2025-03-02T11:00:00Z\n",
    )
    mapping = read_ratings(log).attrs["mapping"]
    assert mapping == {"user_id": "listener", "item_id": "track", "timestamp": "listened_at"}
    # The earlier alias wins whatever the column order: sessions do not shadow users.
    both = write(tmp_path, "b.csv", "session_id,user_id,song,artist\ns1,u1,t1,a1\ns2,u2,t2,a2\n")
    assert read_ratings(both).attrs["mapping"] == {"user_id": "user_id", "item_id": "song"}


def test_both_missing_id_columns_are_named_in_one_error(tmp_path: Path) -> None:
    # One round trip, not two: the error lists both columns and both flags.
    path = write(tmp_path, "f.csv", "fan,thing\nf1,x9\nf2,x3\n")
    with pytest.raises(DataError) as err:
        read_ratings(path)
    msg = str(err.value)
    assert "missing columns 'user_id' and 'item_id'" in msg
    assert "pass --user-col <column> --item-col <column>" in msg
    assert "the file has: fan, thing" in msg and "\n" not in msg
    one = write(tmp_path, "o.csv", "user,thing\nu1,x9\nu2,x3\n")
    with pytest.raises(DataError, match=r"missing column 'item_id' \(looked for item_id:"):
        read_ratings(one)


def test_no_header_flag_overrides_detection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recforge.cli import main

    path = write(tmp_path, "h.csv", "alice,book\nbob,dvd42\nalice,dvd42\n")
    assert main(["data", "describe", str(path), "--json"]) == 2  # taken for a header
    capsys.readouterr()
    assert main(["data", "describe", str(path), "--no-header", "--json"]) == 0
    assert '"n_ratings": 3' in capsys.readouterr().out


def test_file_options_on_a_movielens_name_are_refused_not_ignored() -> None:
    from recforge.errors import ConfigError

    assert DataSource.of("ml-100k").is_movielens  # the name alone is fine
    with pytest.raises(ConfigError, match=r"ml-100k is a MovieLens release.*--sep, --user-col"):
        DataSource.of("ml-100k", user_col="u", sep=",")
    with pytest.raises(ConfigError, match="--rating-scale: options for files only"):
        DataSource.of("ml-latest-small", rating_scale=(1, 10))


# ------------------------------------------------------------------ a title column of the ratings
#: A ratings export that carries each movie's title on every row (items 10, 20, 30).
TITLED = (
    "user,movie_id,title,rating\n"
    "a,10,Alien,4\nb,10,Alien,5\na,20,Heat,3\nc,20,Heat,4\nb,30,Ran,2\nc,30,Ran,5\n"
)


def test_a_title_column_of_the_ratings_titles_the_items(tmp_path: Path) -> None:
    """``user,movie_id,title,rating``: named (--item-title-col) or found by its name, the
    title column gives the item table its titles; it is no rating or time column."""
    path = write(tmp_path, "r.csv", TITLED)
    for src in (DataSource.of(path, item_title_col="title"), DataSource.of(path)):
        data, info = load_with_info(src)
        assert data.item_meta is not None
        assert data.item_meta["title"].to_dict() == {10: "Alien", 20: "Heat", 30: "Ran"}
        assert info["titles_column"] == "title" and info["title_conflicts"] == 0
        assert info["titles_from"] is None  # the ids are integers, not titles
        assert info["mapping"] == {"user_id": "user", "item_id": "movie_id", "rating": "rating"}
    frame = read_ratings(path)
    assert frame["title"].tolist() == ["Alien", "Alien", "Heat", "Heat", "Ran", "Ran"]
    assert frame.attrs["title_column"] == "title"
    # By position in a file without a header, as the other columns.
    bare = write(tmp_path, "b.csv", "a,10,4,Alien\nb,20,3,Heat\n")
    meta = DataSource.of(bare, item_title_col="3").load().item_meta
    assert meta is not None and meta["title"].to_dict() == {10: "Alien", 20: "Heat"}


@pytest.mark.parametrize(
    "header",
    [
        "title",
        "name",
        "item_name",
        "product_name",
        "movie_title",
        "Titel",
        "Filmtitel",
        "Product Name",
        "Titles",
        "título",
        "recipe_name",  # beside recipe_id: the item column's own noun
    ],
)
def test_a_column_named_like_titles_that_holds_text_is_the_title_column(
    tmp_path: Path, header: str
) -> None:
    path = write(
        tmp_path, "r.csv", f"user,recipe_id,{header},rating\na,1,Pho,4\nb,2,Ramen,3\nc,1,Pho,5\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unmapped-column warning about it either
        data, info = load_with_info(DataSource.of(path, item_col="recipe_id"))
    assert info["titles_column"] == header
    assert data.item_meta is not None and data.item_meta.loc[2, "title"] == "Ramen"


@pytest.mark.parametrize(
    ("header", "values"),
    [
        ("username", ("alice", "bob", "carol")),  # a person, not the item
        ("artist_name", ("Bach", "Bach", "Satie")),
        ("title", ("1", "2", "1")),  # numbers
        ("title", ("tt01", "tt02", "tt01")),  # codes
        ("year", ("Pho", "Ramen", "Pho")),
    ],
)
def test_other_columns_give_no_titles(
    tmp_path: Path, header: str, values: tuple[str, str, str]
) -> None:
    a, b, c = values
    path = write(tmp_path, "r.csv", f"user,item,{header},rating\nu,1,{a},4\nv,2,{b},3\nw,1,{c},5\n")
    data, info = load_with_info(DataSource.of(path))
    assert data.item_meta is None and info["titles_column"] is None, header
    assert "title" not in read_ratings(path).columns


def test_a_name_column_that_varies_within_items_is_no_title_column(tmp_path: Path) -> None:
    """``name`` holding who rated (it differs on most items' rows): not read as titles, with a
    warning naming the flag that reads it anyway."""
    path = write(
        tmp_path,
        "r.csv",
        "user,name,item,rating\n"
        "u1,Ann,1,4\nu2,Bo,1,4\nu3,Ann,2,4\nu4,Bo,2,4\nu5,Ann,3,4\nu6,Bo,3,4\n",
    )
    with pytest.warns(DataWarning, match=r"column 'name' is named like titles, but 3 of the 3"):
        data, info = load_with_info(DataSource.of(path))
    assert data.item_meta is None and info["titles_column"] is None
    # Named, it is read: the most frequent name, a tie going to the later row.
    meta = DataSource.of(path, item_title_col="name").load().item_meta
    assert meta is not None and meta["title"].to_dict() == {1: "Bo", 2: "Bo", 3: "Bo"}


def test_conflicting_titles_take_the_most_frequent_then_the_latest_row(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.csv",
        "user,item,title,rating,time\n"
        "a,1,Heat,4,100\nb,1,Heat (1995),4,300\nc,1,Heat,4,200\n"  # 2 against 1
        "a,2,Ran (1985),3,500\nb,2,Ran,3,400\n"  # a tie: the latest time wins
        "a,3,Alien,5,0\nb,3,,5,0\n",  # an empty cell is no title (and no conflict)
    )
    data, info = load_with_info(DataSource.of(path, item_title_col="title"))
    assert data.item_meta is not None
    assert data.item_meta["title"].to_dict() == {1: "Heat", 2: "Ran (1985)", 3: "Alien"}
    assert info["title_conflicts"] == 2
    # Without times, a tie goes to the later row in the file.
    flat = write(tmp_path, "f.csv", "user,item,title\na,1,Ran (1985)\nb,1,Ran\nc,2,M\n")
    data, info = load_with_info(DataSource.of(flat, item_title_col="title"))
    assert data.item_meta is not None and data.item_meta.loc[1, "title"] == "Ran"
    assert info["title_conflicts"] == 1


def test_every_row_carries_its_items_chosen_title_after_repeats_merge(tmp_path: Path) -> None:
    """The title is chosen once, as the file is read, and written on every row of its item,
    repeats merged or not; the item table takes the same choice (the reader hands it on per
    item), so the first row in the file (a minority title here) is not what it shows."""
    path = write(
        tmp_path,
        "r.csv",
        "user,item,title,rating,time\n"
        "a,1,Heat (1995),4,100\na,1,Heat,5,300\nb,1,Heat,4,200\n"  # a's two rows merge
        "a,2,Ran,3,500\nb,2,Ran (1985),3,400\nc,2,Ran (1985),2,600\n",
    )
    src = DataSource.of(path, item_title_col="title")
    with pytest.warns(DataWarning, match="merged 1 duplicate"):
        frame = read_ratings(path, **src.read_kwargs())
    assert len(frame) == 5  # a's repeat of item 1 merged (the last rating kept)
    rows = frame.groupby("item_id", observed=True)["title"].agg(lambda t: sorted(set(t)))
    assert rows.to_dict() == {1: ["Heat"], 2: ["Ran (1985)"]}
    with pytest.warns(DataWarning, match="merged 1 duplicate"):
        meta = src.load().item_meta
    assert meta is not None and meta["title"].to_dict() == {1: "Heat", 2: "Ran (1985)"}


def test_each_items_title_is_chosen_once_as_the_rows_are_read() -> None:
    """:func:`resolve_titles` gives each item's one title twice over, per row (the frame's
    public ``title``) and once per item (``by_item``, what the item table is built from):
    the same choice, an item without any title left out of ``by_item``."""
    from recforge.data.items import resolve_titles

    ids = pd.Series([2, 1, 2, 1, 3])
    found = resolve_titles(ids, pd.Series(["B", "A", "B2", "A", None]), np.zeros(5, np.int64))
    assert found.by_item.to_dict() == {2: "B2", 1: "A"}  # a tie goes to the later row
    assert found.by_item.index.name == "item_id"
    per_row = pd.Series(found.per_row, dtype=object)
    assert per_row[:4].tolist() == found.by_item.reindex(ids[:4]).tolist()
    assert per_row.isna().tolist() == [False] * 4 + [True]


def test_items_whose_rows_are_all_dropped_get_no_title(tmp_path: Path) -> None:
    """Titles are chosen from every row; then rows counting 0, and rows of kinds ``events``
    leaves out, go. An item with no row left is no item of the data: the item table gives no
    title for it (a file and a DataFrame alike)."""
    from recforge.data.frames import frame_to_interactions

    path = write(
        tmp_path,
        "r.csv",
        "user,item,title,plays,event\n"
        "a,1,Heat,3,view\nb,2,Ran,0,view\nc,3,Alien,2,buy\nc,1,Heat,1,buy\nd,4,Jaws,1,view\n",
    )
    frame = pd.read_csv(path)
    for events, want in ((None, [1, 3, 4]), (("view",), [1, 4])):
        titles = {i: t for i, t in {1: "Heat", 3: "Alien", 4: "Jaws"}.items() if i in want}
        with pytest.warns(DataWarning, match="dropped 1 row whose count"):
            meta = DataSource.of(path, events=events).load().item_meta
        assert meta is not None and meta["title"].to_dict() == titles, events
        with pytest.warns(DataWarning, match="dropped 1 row whose count"):
            meta = frame_to_interactions(frame, events=events).item_meta
        assert meta is not None and meta["title"].to_dict() == titles, events


def test_an_item_file_wins_where_it_gives_a_title(tmp_path: Path) -> None:
    ratings = write(tmp_path, "r.csv", TITLED)
    items = write(tmp_path, "i.csv", "id,name,genre\n10,Alien (1979),scifi\n20,,crime\n")
    src = DataSource.of(ratings, items=str(items), item_feature_cols=("genre",))
    meta = src.load().item_meta
    assert meta is not None
    # The item file's title first; an empty one, or an item it lacks, from the ratings' column.
    assert meta["title"].to_dict() == {10: "Alien (1979)", 20: "Heat", 30: "Ran"}
    assert meta.loc[20, "genres"] == ["crime"]
    # The same with a ratings' title column only --title-col names (not found by its name).
    renamed = write(tmp_path, "b.csv", TITLED.replace(",title,", ",Bezeichnung,"))
    assert DataSource.of(renamed, items=str(items)).load().item_meta["title"].to_dict() == {
        10: "Alien (1979)",
        20: None,
    }
    src = DataSource.of(renamed, items=str(items), title_col="Bezeichnung", item_title_col="name")
    meta = src.load().item_meta
    assert meta is not None
    assert meta["title"].to_dict() == {10: "Alien (1979)", 20: "Heat", 30: "Ran"}


def test_a_dataframe_and_a_file_take_titles_in_the_same_order(tmp_path: Path) -> None:
    """An item table's title first, then the ratings' title column, then the ids of an item
    column of titles: alike for a file with ``--items`` and ``fit(df, item_meta=...)``."""
    from recforge.data.frames import frame_to_interactions

    ratings = write(
        tmp_path,
        "r.csv",
        "user,movie,title\na,Alien,Alien (1979)\nb,Heat,Heat (1995)\nc,Ran,\nd,Jaws,\n",
    )
    items = write(tmp_path, "i.csv", "id,name\nAlien,Alien (Director's Cut)\nRan,Ran (1985)\n")
    want = {
        "Alien": "Alien (Director's Cut)",  # the item table wins over the title column
        "Heat": "Heat (1995)",  # the title column fills what the item table lacks
        "Ran": "Ran (1985)",
        "Jaws": "Jaws",  # nothing gives one: the id, the item column holding titles
    }
    from_file = DataSource.of(ratings, items=str(items)).load().item_meta
    assert from_file is not None and from_file["title"].to_dict() == want
    table = pd.DataFrame(
        {"title": ["Alien (Director's Cut)", "Ran (1985)"]},
        index=pd.Index(["Alien", "Ran"], name="item_id"),
    )
    frame = pd.read_csv(ratings, dtype=str, keep_default_na=False)
    from_frame = frame_to_interactions(frame, item_meta=table).item_meta
    assert from_frame is not None and from_frame["title"].to_dict() == want


def test_a_missing_title_column_is_one_line_naming_the_file_and_its_columns(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "r.csv", TITLED)
    for given in ({"title_col": "film"}, {"item_title_col": "film"}):  # the older spelling too
        with pytest.raises(DataError) as exc:
            DataSource.of(path, **given).load()
        text = str(exc.value)
        assert "\n" not in text
        assert text == (
            f"{path.resolve()}, line 1: missing column 'film' for title; the file has columns: "
            "user, movie_id, title, rating; fix --title-col (columns['title'])"
        )


def test_an_explicit_title_column_is_not_also_warned_about(tmp_path: Path) -> None:
    """A magazine's name in ``Zeitschrift`` (German; 'Zeit' reads like a time): named as the
    title column, no 'looks like a time' warning about it."""
    path = write(tmp_path, "r.csv", "user,item,Zeitschrift\na,1,Die Zeit\nb,2,Stern\n")
    with pytest.warns(DataWarning, match="column 'Zeitschrift' looks like a time"):
        load_dataset(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = DataSource.of(path, item_title_col="Zeitschrift").load().item_meta
    assert meta is not None and meta.loc[1, "title"] == "Die Zeit"


def test_a_dataframe_and_a_parquet_file_with_a_title_column(tmp_path: Path) -> None:
    from recforge.data.frames import frame_to_interactions

    frame = pd.DataFrame(
        {
            "customer": ["c1", "c2", "c1"],
            "sku": ["A-1", "B-2", "C-3"],
            "product_name": ["Lamp", "Mug", None],
        }
    )
    for columns in ({"user": "customer", "item": "sku"}, {"user": "customer", "title": 2}):
        data = frame_to_interactions(frame, columns=columns)
        assert data.item_meta is not None, columns
        assert data.item_meta["title"].to_dict() == {"A-1": "Lamp", "B-2": "Mug"}
    frame.to_parquet(tmp_path / "r.parquet")
    meta = DataSource.of(tmp_path / "r.parquet", user_col="customer").load().item_meta
    assert meta is not None and meta["title"].to_dict() == {"A-1": "Lamp", "B-2": "Mug"}


def test_split_parts_keep_titles_that_look_like_codes(tmp_path: Path) -> None:
    """Model names such as ``XR-200`` are not taken for titles by their look alone; the parts
    ``write_split`` writes say in split.json which column holds titles, so they come back."""
    from recforge.data.split_io import write_split
    from recforge.pipeline import files_split, resolve_split

    models = {"a1": "XR-200", "b2": "S24", "c3": "T-1000", "d4": "K9"}
    rows = [f"u{u},{sku},{models[sku]}" for u in range(6) for sku in list(models)[u % 2 :][:3]]
    ratings = write(tmp_path, "r.csv", "customer,sku,model\n" + "\n".join(rows) + "\n")
    data = DataSource.of(ratings, title_col="model").load()
    write_split(resolve_split(data, "random:0.3"), tmp_path / "split")
    parts = [DataSource.of(tmp_path / "split" / f"{p}.csv") for p in ("train", "test")]
    assert DataSource.of(parts[0].path).load().item_meta is None  # by its look: codes
    train = files_split(*parts).train
    assert train.item_meta is not None
    assert train.item_meta["title"].to_dict() == {s: models[s] for s in train.items.ids}
    # A folder split before --title-col records the column as item_title_col: still read.
    sidecar = tmp_path / "split" / "split.json"
    meta = json.loads(sidecar.read_text())
    meta["item_title_col"] = meta.pop("title_col")
    sidecar.write_text(json.dumps(meta))
    train = files_split(*parts).train
    assert train.item_meta is not None
    assert train.item_meta["title"].to_dict() == {s: models[s] for s in train.items.ids}


def test_split_parts_given_the_original_title_column_read_their_own(tmp_path: Path) -> None:
    """``write_split(title_from=...)`` records the original's title column; a part read with
    it (``title_col``, or ``item_title_col`` without an item file) reads its ``title``
    column, alone or beside an item file. A file that is no part is read as it is."""
    import shutil

    from recforge.data.split_io import write_split
    from recforge.pipeline import files_split, resolve_split

    models = {"a1": "Lamp", "b2": "Mug", "c3": "Vase", "d4": "Rug"}
    rows = [f"u{u},{sku},{models[sku]}" for u in range(6) for sku in list(models)[u % 2 :][:3]]
    ratings = write(tmp_path, "r.csv", "customer,sku,model\n" + "\n".join(rows) + "\n")
    data = DataSource.of(ratings, title_col="model").load()
    write_split(resolve_split(data, "random:0.3"), tmp_path / "split", title_from="model")
    items = write(tmp_path, "i.csv", "sku,name\na1,Desk lamp\n")
    for given in ({"title_col": "model"}, {"item_title_col": "model"}):
        parts = [DataSource.of(tmp_path / "split" / f"{p}.csv", **given) for p in ("train", "test")]
        train = files_split(*parts).train
        assert train.item_meta is not None
        assert train.item_meta["title"].to_dict() == {s: models[s] for s in train.items.ids}
        assert read_ratings(parts[1])["title"].notna().all()
    part = DataSource.of(tmp_path / "split" / "train.csv", title_col="model", items=str(items))
    meta = part.replace(item_title_col="name").load().item_meta
    assert meta is not None and meta["title"].to_dict() == {
        s: "Desk lamp" if s == "a1" else models[s] for s in meta.index
    }
    shutil.copy(tmp_path / "split" / "train.csv", tmp_path / "split" / "mine.csv")
    with pytest.raises(DataError, match="missing column 'model' for title"):
        DataSource.of(tmp_path / "split" / "mine.csv", title_col="model").load()
    with pytest.raises(ConfigError, match="holds the titles read from column 'model', not from 2"):
        DataSource.of(tmp_path / "split" / "train.csv", title_col=2).load()


def test_an_item_file_for_split_parts_overrides_their_recorded_title_column(
    tmp_path: Path,
) -> None:
    """``--items`` for the parts says where titles come from, so split.json's title column is
    not mapped: the item file's titles alone (the parts' code-like titles are not taken by
    their look either)."""
    from recforge.data.split_io import write_split
    from recforge.pipeline import files_split, resolve_split

    models = {"a1": "XR-200", "b2": "S24", "c3": "T-1000", "d4": "K9"}
    rows = [f"u{u},{sku},{models[sku]}" for u in range(6) for sku in models]
    ratings = write(tmp_path, "r.csv", "customer,sku,model\n" + "\n".join(rows) + "\n")
    data = DataSource.of(ratings, item_title_col="model").load()
    write_split(resolve_split(data, "random:0.3"), tmp_path / "split")
    items = write(tmp_path, "i.csv", "sku,name\na1,Robot vacuum\n")
    parts = [
        DataSource.of(tmp_path / "split" / f"{p}.csv", items=str(items)) for p in ("train", "test")
    ]
    train = files_split(*parts).train
    assert train.item_meta is not None
    assert train.item_meta["title"].dropna().to_dict() == {"a1": "Robot vacuum"}


# ------------------------------------------------------------------------------ count column
def test_count_col_maps_a_count_column_and_refuses_ratings_beside_it(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "user,artist,hours\nu1,a,2.5\nu1,a,1\nu2,b,4\n")
    src = DataSource.of(path, item_col="artist", count_col="hours")
    assert src.columns() == {"item_id": "artist", "count": "hours"}
    assert DataSource.of(path, count_col="2").count_col == 2  # digits: a position
    data, info = load_with_info(src)
    assert data.rating_scale is None  # counts make the data implicit
    assert sorted(data.rating.tolist()) == [3.5, 4.0]  # 2.5 + 1 summed; fractional kept
    assert info["count_column"] == "hours" and info["mapping"]["count"] == "hours"
    again = DataSource(**src.to_json_dict())  # a run's manifest keeps the count column
    assert again.count_col == "hours"
    with pytest.raises(ConfigError, match=r"count column \('hours'\) makes the data implicit"):
        DataSource.of(path, count_col="hours", rating_col="stars").load()
    with pytest.raises(ConfigError, match="count column"):
        DataSource.of(path, count_col="hours", rating_scale=(1, 5))
    assert DataSource.of(path, count_col="hours", rating_col="x", implicit=True).implicit
    with pytest.raises(ConfigError, match="--count-col"):
        DataSource.of("ml-100k", count_col="plays")


def test_split_parts_keep_fractional_counts(tmp_path: Path) -> None:
    """Implicit parts carry a count column (named in split.json), so weights that repeated
    rows could not hold (2.5 hours) come back from the files as they were."""
    from recforge.data.split_io import write_split
    from recforge.pipeline import files_split, resolve_split

    rows = [f"u{u},s{i},{(u + i) % 4 * 1.25}" for u in range(6) for i in range(5)]
    path = write(tmp_path, "w.csv", "user,show,hours\n" + "\n".join(rows) + "\n")
    with pytest.warns(DataWarning, match="count in column 'hours' is 0"):
        data = DataSource.of(path, item_col="show", count_col="hours").load()
    split = resolve_split(data, "random:0.3")
    write_split(split, tmp_path / "split")
    assert '"count_col": "count"' in (tmp_path / "split" / "split.json").read_text()
    parts = [DataSource.of(tmp_path / "split" / f"{p}.csv") for p in ("train", "test")]
    back = files_split(*parts)
    for name in ("train", "test"):
        want, got = getattr(split, name).to_frame(), getattr(back, name).to_frame()
        key = ["user_id", "item_id"]
        want, got = want.sort_values(key), got.sort_values(key)
        assert want[key].values.tolist() == got[key].values.tolist()
        assert np.allclose(want["rating"], got["rating"])
    assert back.train.rating_scale is None and 1.25 in set(back.train.rating.tolist())


# ------------------------------------------------------------------------------ event column
SHOP = "visitorid,itemid,event\nv1,a,view\nv1,a,transaction\nv2,b,addtocart\nv2,a,view\n"


def test_event_settings_on_a_data_source_and_in_a_run_manifest(tmp_path: Path) -> None:
    from recforge.cli._data_options import DataFlags

    path = write(tmp_path, "events.csv", SHOP)
    flags = DataFlags(event_col="event", event_weights=" view=1, addtocart=3,transaction=5")
    src = flags.source(path)
    assert src.event_weights == {"view": 1.0, "addtocart": 3.0, "transaction": 5.0}
    assert src.columns() == {"event": "event"}
    assert DataFlags(events="transaction, addtocart").source(path).events == (
        "transaction",
        "addtocart",
    )
    data, info = load_with_info(src)
    assert sorted(data.rating.tolist()) == [1.0, 3.0, 6.0]
    assert info["event_column"] == "event" and info["event_weights"] == src.event_weights
    again = DataSource(**src.to_json_dict())  # a run's manifest keeps the event settings
    assert again == src and sorted(again.load().rating.tolist()) == [1.0, 3.0, 6.0]
    assert hash(again) == hash(src)  # still hashable with its dict of weights
    assert DataSource.of(path, event_col="2").event_col == 2  # digits: a position
    for text, problem in (
        ("view=x", "the weight 'x' of 'view' is not a number"),
        ("view=-1", "the weight -1 of 'view' is not a number >= 0"),
        ("view", "'view' has no weight"),
        ("view=1,view=2", "'view' is given twice"),
    ):
        with pytest.raises(ConfigError, match=problem):
            DataFlags(event_weights=text).source(path)
    with pytest.raises(ConfigError, match="--events"):
        DataFlags(events=" , ").source(path)
    with pytest.raises(ConfigError, match="--event-weights"):
        DataSource.of(path, event_weights={"view": -2})
    with pytest.raises(ConfigError, match="--event-col, --event-weights"):
        DataSource.of("ml-100k", event_col="event", event_weights={"view": 1})
    with pytest.raises(ConfigError, match=r"event weights .* make the data implicit"):
        DataSource.of(path, rating_col="event", event_weights={"view": 1}).load()


def test_split_parts_carry_the_event_weights_and_record_them(tmp_path: Path) -> None:
    """The weights fold into the parts' count column; split.json records the event settings,
    so the parts read back (also with the same flags given again) give the same weights, and
    other flags are refused rather than applied twice."""
    from recforge.data.split_io import read_split_meta, write_split
    from recforge.pipeline import files_split, resolve_split

    kinds = ("view", "view", "addtocart", "transaction")
    rows = [f"v{u},i{(u + k) % 7},{kinds[(u * k) % 4]}" for u in range(12) for k in range(6)]
    path = write(tmp_path, "events.csv", "visitorid,itemid,event\n" + "\n".join(rows) + "\n")
    weights = {"view": 1.0, "addtocart": 3.0, "transaction": 5.0}
    src = DataSource.of(path, event_weights=weights)
    split = resolve_split(src.load(), "random:0.3")
    write_split(split, tmp_path / "split", events=src.event_settings())
    meta = read_split_meta(tmp_path / "split" / "train.csv")
    assert meta is not None and meta["count_col"] == "count"
    assert meta["events"] == {"event_col": None, "event_weights": weights, "events": None}
    parts = [DataSource.of(tmp_path / "split" / f"{p}.csv") for p in ("train", "test")]
    for given in ({}, {"event_weights": weights}):  # the same flags again are already applied
        back = files_split(*(p.replace(**given) for p in parts))
        for name in ("train", "test"):
            key = ["user_id", "item_id"]
            want = getattr(split, name).to_frame().sort_values(key)
            got = getattr(back, name).to_frame().sort_values(key)
            assert want[key].values.tolist() == got[key].values.tolist()
            assert np.allclose(want["rating"], got["rating"])
    assert {3.0, 5.0} <= set(back.train.rating.tolist())  # the weights, not repeat counts
    other = [p.replace(event_weights={**weights, "view": 0}) for p in parts]
    with pytest.raises(ConfigError, match="were written with --event-weights view=1"):
        files_split(*other)
    # One part read alone (train --data <part>) follows the same rule.
    alone = parts[0].replace(event_weights=weights).load()
    assert np.allclose(np.sort(alone.rating), np.sort(back.train.rating))
    with pytest.raises(ConfigError, match="were written with --event-weights view=1"):
        other[0].load()
