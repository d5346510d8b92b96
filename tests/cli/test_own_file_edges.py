"""Rough edges a person meets training on their own small file (not MovieLens).

One hand-made German spreadsheet CSV (``Benutzer;Titel;Bewertung;Datum``: film titles as item
ids, decimal-comma half stars, day-first dotted dates) goes through ``train --split none``,
``recommend``, ``similar``, ``export`` and the HTTP service; the checks are the ones each edge
needs, not a full journey (that is ``test_own_data_journey.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recforge.cli import main

FILMS = ("Der Pate", "Casablanca", "Metropolis", "Das Boot", "Lola rennt", "M", "Nosferatu")


def _german_csv(folder: Path, item_col: str = "Titel") -> Path:
    """Eight users, each rating five of seven films (who rated what follows a fixed pattern)."""
    rows = [f"Benutzer;{item_col};Bewertung;Datum"]
    for u in range(8):
        for k in range(5):
            film = FILMS[(u + k) % len(FILMS)]
            stars = f"{1 + (u + 2 * k) % 9 / 2:g}".replace(".", ",")
            rows.append(f"nutzer{u};{film};{stars};{1 + k:02d}.0{1 + u % 9}.2023")
    path = folder / "bewertungen.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _flags(item_col: str = "Titel") -> list[str]:
    return ["--user-col", "Benutzer", "--item-col", item_col, "--rating-col", "Bewertung"]


def test_training_on_all_data_prints_no_evaluate_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _german_csv(tmp_path)
    train = ["train", "-m", "biases", "--data", data, *_flags()]
    out = _cli(capsys, *train, "--split", "none")
    timing = [ln for ln in out.splitlines() if ln.startswith("fit ")]
    assert len(timing) == 1 and "evaluate" not in timing[0], out
    assert "nothing held out" in out
    result = json.loads(_cli(capsys, *train, "--split", "none", "--json"))
    assert "evaluate_s" not in result["timings"] and "fit_s" in result["timings"]
    # With a held-out part the evaluate step is there and timed.
    out = _cli(capsys, *train, "--split", "random:0.2")
    timing = [ln for ln in out.splitlines() if ln.startswith("fit ")]
    assert len(timing) == 1 and ", evaluate " in timing[0], out


def test_rating_scale_flag_takes_a_decimal_comma(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _german_csv(tmp_path)
    stats = json.loads(
        _cli(capsys, "data", "describe", data, *_flags(), "--rating-scale", "0,5:5", "--json")
    )
    assert stats["rating_scale"] == [0.5, 5.0]


def test_spreadsheet_serial_dates_are_refused_and_read_with_time_format_excel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "serial.csv"
    data.write_text("user,item,rating,date\na,x,4,45292\na,y,3,45293\nb,x,5,45310\n")
    out = tmp_path / "run"
    code = main(["train", "-m", "popularity", "--data", str(data), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{data}, line 2, column 'date' (timestamp): 45292 looks like a spreadsheet" in err
    assert "--time-format excel" in err and not out.exists()
    stats = json.loads(_cli(capsys, "data", "describe", data, "--time-format", "excel", "--json"))
    assert stats["read"]["time_format"] == "excel-days"
    assert stats["timestamp_range"] == [1_704_067_200, 1_705_622_400]  # 2024-01-01, -01-19


def test_an_item_column_of_titles_shows_them_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--item-col Titel``: recommend, similar, the export and the service (live and store
    mode) all show each film's name as its title, from the run's one item table."""
    from fastapi.testclient import TestClient

    from recforge.artifacts import load_run
    from recforge.serve import Settings, create_app

    data = _german_csv(tmp_path)
    stats = _cli(capsys, "data", "describe", data, *_flags())
    assert "titles   the item ids (column 'Titel' holds titles)" in stats
    run = tmp_path / "run"
    _cli(capsys, "train", "-m", "ease", "--data", data, *_flags(), "--split", "none", "--out", run)
    recs = json.loads(_cli(capsys, "recommend", run, "--user", "nutzer0", "-k", "2", "--json"))
    assert [i["title"] for i in recs[0]["items"]] == [i["item_id"] for i in recs[0]["items"]]
    assert recs[0]["user_id"] == "nutzer0"
    table = _cli(capsys, "recommend", run, "--user", "nutzer0", "-k", "2")
    assert "title" not in table  # the table does not repeat the ids as a title column
    sim = json.loads(_cli(capsys, "similar", run, "--item", "Casablanca", "-k", "2", "--json"))
    assert all(i["title"] == i["item_id"] for i in sim["items"])
    # The queried item is named for what it is (it was under "user_id").
    assert sim["item_id"] == "Casablanca" and "user_id" not in sim
    frame = load_run(run).model.recommend(["nutzer0"], 2)[0].to_frame()
    assert frame["title"].tolist() == frame["item_id"].tolist()
    db = f"sqlite:///{tmp_path / 'recs.db'}"
    _cli(capsys, "export", run, "--db", db, "-k", "2")
    for settings in (Settings(run=str(run)), Settings(store=db)):
        with TestClient(create_app(settings)) as client:
            got = client.get("/users/nutzer0/recommendations", params={"k": 2})
            assert got.status_code == 200, got.text
            assert all(i["title"] == i["item_id"] for i in got.json()["items"]), got.text
            found = client.get("/items", params={"query": "metro"}).json()
            assert [i["title"] for i in found["items"]] == ["Metropolis"], found


def test_titles_that_repeat_the_ids_stay_out_of_the_table_after_a_split_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Parts of an item column of titles carry the ids again as a ``title`` column, so the run
    trained from them reads its titles from a title column, not from the ids; the table still
    leaves out a title column that only repeats the ids (it looks at the titles, not at where
    they came from), and ``--json`` still carries them."""
    data = _german_csv(tmp_path)
    split = tmp_path / "split"
    _cli(capsys, "data", "split", data, *_flags(), "-p", "random:0.2", "-o", split)
    part = split / "train.csv"
    read = json.loads(_cli(capsys, "data", "describe", part, "--json"))["read"]
    assert read["titles_column"] == "title" and read["titles_from"] is None
    run = tmp_path / "run"
    parts = ["--train", part, "--test", split / "test.csv"]
    _cli(capsys, "train", "-m", "ease", *parts, "--out", run)
    table = _cli(capsys, "recommend", run, "--user", "nutzer0", "-k", "2")
    assert "title" not in table
    recs = json.loads(_cli(capsys, "recommend", run, "--user", "nutzer0", "-k", "2", "--json"))
    assert [i["title"] for i in recs[0]["items"]] == [i["item_id"] for i in recs[0]["items"]]


MOVIES = {10: "Alien", 20: "Heat", 30: "Ran", 40: "Metropolis", 50: "Casablanca"}


def _titled_csv(folder: Path, *, conflict: bool = False, title_col: str = "title") -> Path:
    """``user,movie_id,title,rating``: eight users, each rating four of five movies, every row
    with its movie's title (with ``conflict``, one row of movie 20 says ``Heat (1995)``)."""
    rows = [f"user,movie_id,{title_col},rating"]
    movies = list(MOVIES.items())
    for u in range(8):
        for k in range(4):
            movie, title = movies[(u + k) % len(movies)]
            if conflict and (u, movie) == (0, 20):
                title = "Heat (1995)"
            rows.append(f"u{u},{movie},{title},{1 + (u + 2 * k) % 5}")
    path = folder / "ratings.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_a_title_column_of_the_ratings_file_titles_recommendations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No flag: the ``title`` column is found by its name, said by ``data describe`` (and not
    warned about), and ``recommend``/``similar`` show the titles."""
    data = _titled_csv(tmp_path)
    assert main(["data", "describe", str(data)]) == 0
    described = capsys.readouterr()
    assert "titles   column 'title'\n" in described.out and "warning" not in described.err
    run = tmp_path / "run"
    _cli(capsys, "train", "-m", "ease", "--data", data, "--split", "none", "--out", run)
    recs = json.loads(_cli(capsys, "recommend", run, "--user", "u0", "-k", "1", "--json"))
    items = recs[0]["items"]
    assert items and all(i["title"] == MOVIES[i["item_id"]] for i in items), items
    sim = json.loads(_cli(capsys, "similar", run, "--item", "10", "-k", "2", "--json"))
    assert all(i["title"] == MOVIES[i["item_id"]] for i in sim["items"]), sim


def test_conflicting_titles_are_counted_and_the_most_frequent_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _titled_csv(tmp_path, conflict=True)
    stats = json.loads(_cli(capsys, "data", "describe", data, "--json"))
    assert stats["read"]["titles_column"] == "title" and stats["read"]["title_conflicts"] == 1
    text = _cli(capsys, "data", "describe", data)
    assert "titles   column 'title'  (1 item had conflicting titles" in text
    run = tmp_path / "run"
    _cli(capsys, "train", "-m", "ease", "--data", data, "--split", "none", "--out", run)
    sim = json.loads(_cli(capsys, "similar", run, "--item", "10", "-k", "4", "--json"))
    titles = {i["item_id"]: i["title"] for i in sim["items"]}
    assert titles[20] == "Heat", titles  # 5 rows say Heat, 1 says Heat (1995)


def test_split_files_keep_the_titles_for_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``data split`` writes each row's title beside it (and split.json says which column), so
    ``train --train/--test`` gives the run the same titles; here from a column that only
    ``--title-col`` names (``Bezeichnung``, German for a product's name), or its older
    spelling ``--item-title-col``."""
    data = _titled_csv(tmp_path, title_col="Bezeichnung")
    split = tmp_path / "split"
    for flag in ("--item-title-col", "--title-col"):
        _cli(capsys, "data", "split", data, flag, "Bezeichnung", "-p", "random:0.2", "-o", split)
        assert json.loads((split / "split.json").read_text())["title_col"] == "title"
        header = (split / "train.csv").read_text().splitlines()[0]
        assert header == "user_id,item_id,rating,title"
    run = tmp_path / "run"
    parts = ["--train", split / "train.csv", "--test", split / "test.csv"]
    _cli(capsys, "train", "-m", "ease", *parts, "--out", run)
    recs = json.loads(_cli(capsys, "recommend", run, "--user", "u0", "-k", "1", "--json"))
    items = recs[0]["items"]
    assert items and all(i["title"] == MOVIES[i["item_id"]] for i in items), items


def test_the_split_title_col_given_again_for_the_parts_reads_their_title_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The parts have a ``title`` column, not the original's ``Bezeichnung``: the same
    ``--title-col Bezeichnung`` (or ``--item-title-col``) given again for them, as to the split,
    reads it (``--data`` and ``--train/--test``; evaluate re-reads them too); another column
    is one line naming the fix, as in a folder split before the column was recorded."""
    data = _titled_csv(tmp_path, title_col="Bezeichnung")
    split = tmp_path / "split"
    _cli(
        capsys, "data", "split", data, "--title-col", "Bezeichnung", "-p", "random:0.2", "-o", split
    )
    assert json.loads((split / "split.json").read_text())["source_title_col"] == "Bezeichnung"
    train, test = split / "train.csv", split / "test.csv"
    runs = {
        "data": ["--data", train, "--split", "none", "--title-col", "Bezeichnung"],
        "parts": ["--train", train, "--test", test, "--item-title-col", "Bezeichnung"],
    }
    for name, flags in runs.items():
        run = tmp_path / name
        _cli(capsys, "train", "-m", "popularity", *flags, "--out", run)
        recs = json.loads(_cli(capsys, "recommend", run, "--user", "u0", "-k", "2", "--json"))
        items = recs[0]["items"]
        assert items and all(i["title"] == MOVIES[i["item_id"]] for i in items), (name, items)
    _cli(capsys, "evaluate", tmp_path / "parts")
    described = _cli(capsys, "data", "describe", train, "--title-col", "Bezeichnung")
    assert "titles   column 'title'\n" in described
    for flag in ("--title-col", "--item-title-col"):
        code = main(["train", "-m", "popularity", "--data", str(train), flag, "Name"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert (
            f"{train.resolve()}: split.json says this part's 'title' column holds the titles "
            f"read from column 'Bezeichnung', not from 'Name'; drop {flag} (the part's titles "
            f"are read anyway), or split the original file again with {flag} Name" in err
        )
    sidecar = split / "split.json"  # as a folder split before the column was recorded
    sidecar.write_text(sidecar.read_text().replace('"source_title_col"', '"unknown"'))
    code = main(["data", "describe", str(train), "--title-col", "Bezeichnung"])
    err = capsys.readouterr().err
    assert code == 2 and "records no column of the original they came from; drop" in err, err
    _cli(capsys, "data", "describe", train)  # without the flag the parts' titles are read


def test_a_missing_title_column_is_one_line_naming_the_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _titled_csv(tmp_path)
    run = tmp_path / "run"
    commands = (["data", "describe"], ["train", "-m", "popularity", "--out", str(run), "--data"])
    for args in commands:
        for flag in ("--title-col", "--item-title-col"):  # the older spelling: the same error
            code = main([*args, str(data), flag, "film"])
            err = capsys.readouterr().err
            assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
            assert (
                f"{data.resolve()}, line 1: missing column 'film' for title; the file has "
                "columns: user, movie_id, title, rating; fix --title-col" in err
            )
    assert not run.exists()


def _plays_csv(folder: Path, counts: bool = True) -> Path:
    """A Last.fm-style file, one row per (user, artist) with its plays (some fractional, one
    zero); ``counts=False`` writes the same pairs without the plays column."""
    rows = ["user,artist,plays" if counts else "user,artist"]
    for u in range(10):
        for k in range(5):
            plays = (u * 7 + k * 3) % 11 * 1.5
            rows.append(f"fan{u},band{(u + 2 * k) % 9}" + (f",{plays:g}" if counts else ""))
    path = folder / ("plays.csv" if counts else "pairs.csv")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_describe_shows_the_count_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _cli(capsys, "data", "describe", _plays_csv(tmp_path), "--item-col", "artist")
    assert "count=plays" in next(ln for ln in out.splitlines() if ln.startswith("columns"))
    assert "feedback implicit (counts from column 'plays' are confidence weights)" in out
    assert "dropped  " in out and "with count 0 in column 'plays'" in out
    bad = tmp_path / "neg.csv"
    bad.write_text("user,artist,plays\nfan0,band1,3\nfan0,band2,-1\n", encoding="utf-8")
    code = main(["data", "describe", str(bad), "--item-col", "artist", "--count-col", "plays"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "line 3, column 'plays' (count): -1 is a negative count" in err


def test_als_on_a_plays_file_is_weighted_by_the_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recforge.artifacts import load_run

    factors = []
    for counts in (True, False):
        run = tmp_path / f"run-{counts}"
        data = _plays_csv(tmp_path, counts)
        args = ["train", "-m", "als", "--data", data, "--item-col", "artist"]
        _cli(capsys, *args, "--split", "none", "--seed", "3", "--out", run)
        model = load_run(run).model
        rows = model.items_.index(np.array([f"band{i}" for i in range(9)]))
        factors.append(np.asarray(model.item_factors_)[rows])
    assert not np.allclose(factors[0], factors[1])  # the plays weighed the fit


def test_split_files_keep_the_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    split = tmp_path / "split"
    data = _plays_csv(tmp_path)
    _cli(capsys, "data", "split", data, "--item-col", "artist", "-p", "random:0.2", "-o", split)
    assert json.loads((split / "split.json").read_text())["count_col"] == "count"
    header = (split / "train.csv").read_text().splitlines()[0]
    assert header.split(",")[-1] == "count"
    stats = json.loads(_cli(capsys, "data", "describe", split / "train.csv", "--json"))
    whole = json.loads(_cli(capsys, "data", "describe", data, "--item-col", "artist", "--json"))
    assert stats["read"]["count_column"] == "count"
    assert set(stats["rating_histogram"]) <= set(whole["rating_histogram"])
    assert "1.5" in stats["rating_histogram"]  # fractional plays, not rounded repeats
    parts = ["--train", split / "train.csv", "--test", split / "test.csv"]
    result = json.loads(_cli(capsys, "train", "-m", "als", *parts, "--json"))
    assert "implicit" in result["protocol"]


def _shop_csv(folder: Path) -> Path:
    """A RetailRocket-style log: many views, some add-to-carts, few purchases (epoch ms)."""
    rows = ["timestamp,visitorid,event,itemid,transactionid"]
    for u in range(12):
        for k in range(8):
            kind = ("view", "view", "view", "addtocart", "view", "transaction")[(u + 3 * k) % 6]
            tid = f"t{u}{k}" if kind == "transaction" else ""
            rows.append(f"{1_434_000_000_000 + 1000 * (8 * u + k)},{u},{kind},{(u * k) % 9},{tid}")
    path = folder / "events.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


WEIGHTS = "view=1,addtocart=3,transaction=5"


def test_describe_shows_the_event_kinds_and_what_was_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _shop_csv(tmp_path)
    out = _cli(capsys, "data", "describe", data)
    assert "event=event" in next(ln for ln in out.splitlines() if ln.startswith("columns"))
    kinds = next(ln for ln in out.splitlines() if ln.startswith("kinds"))
    assert kinds.startswith("kinds    view ") and "(column 'event')" in kinds
    assert "each kind weighs 1: weigh them with --event-weights view=1,addtocart=1," in out
    assert "keep only some with --events transaction" in out  # the rarest kind
    out = _cli(capsys, "data", "describe", data, "--event-weights", WEIGHTS)
    assert "feedback implicit (event weights are confidence weights, summed per" in out
    assert " x3  " in out and "(column 'event'; --event-weights)" in out
    assert "each kind weighs 1" not in out
    out = _cli(capsys, "data", "describe", data, "--events", "transaction")
    kinds = next(ln for ln in out.splitlines() if ln.startswith("kinds"))
    assert "view 64 dropped" in kinds and "--events; 80 rows dropped)" in kinds
    stats = json.loads(_cli(capsys, "data", "describe", data, "--events", "transaction", "--json"))
    assert stats["n_ratings"] == 16 and stats["read"]["events_kept"] == ["transaction"]
    code = main(["data", "describe", str(data), "--event-weights", "view=1,transaction=5"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{data}, line " in err and "column 'event': 'addtocart' has no weight" in err
    assert "e.g. --event-weights view=1,addtocart=1,transaction=5" in err


def test_als_on_an_event_log_is_weighted_by_the_event_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recforge.artifacts import load_run

    data = _shop_csv(tmp_path)
    factors = []
    for flags in ([], ["--event-weights", WEIGHTS]):
        run = tmp_path / f"run-{len(flags)}"
        args = ["train", "-m", "als", "--data", data, *flags]
        _cli(capsys, *args, "--split", "none", "--seed", "3", "--out", run)
        loaded = load_run(run)
        rows = loaded.model.items_.index(np.arange(9))
        factors.append(np.asarray(loaded.model.item_factors_)[rows])
        source = json.loads((run / "manifest.json").read_text())["data_source"]
        assert source["event_weights"] == (
            {"view": 1.0, "addtocart": 3.0, "transaction": 5.0} if flags else None
        )
        recs = json.loads(_cli(capsys, "recommend", run, "--user", "0", "-k", "2", "--json"))
        assert len(recs[0]["items"]) == 2, recs
    assert not np.allclose(factors[0], factors[1])  # the weights weighed the fit
    run = tmp_path / "bought"
    _cli(capsys, "train", "-m", "als", "--data", data, "--events", "transaction", "--out", run)
    assert json.loads((run / "manifest.json").read_text())["data_source"]["events"] == [
        "transaction"
    ]


def test_split_files_carry_the_event_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = tmp_path / "split"
    data = _shop_csv(tmp_path)
    _cli(capsys, "data", "split", data, "--event-weights", WEIGHTS, "-p", "random:0.2", "-o", split)
    meta = json.loads((split / "split.json").read_text())
    assert meta["count_col"] == "count" and meta["events"]["event_weights"]["addtocart"] == 3
    header = (split / "train.csv").read_text().splitlines()[0]
    assert header == "user_id,item_id,timestamp,count"  # no event column: weights folded in
    parts = ["--train", split / "train.csv", "--test", split / "test.csv"]
    result = json.loads(_cli(capsys, "train", "-m", "als", *parts, "--json"))
    again = json.loads(
        _cli(capsys, "train", "-m", "als", *parts, "--event-weights", WEIGHTS, "--json")
    )
    # The same flags are not applied twice (the scores, timings aside, are the same).
    assert result["ranking"]["summary"] == again["ranking"]["summary"]
    code = main(
        [
            "train",
            "-m",
            "als",
            *map(str, parts),
            "--event-weights",
            "view=0,addtocart=3,transaction=5",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "were written with --event-weights view=1,addtocart=3,transaction=5" in err


def test_ids_spelled_like_missing_values_survive_train_recommend_and_a_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user called ``NA`` and items called ``null``/``None`` (pandas' missing-value words)
    are those ids from the file to the run and back out of ``recommend``, through the item
    file and through the parts ``data split`` writes."""
    users, items = ("NA", "None", "bob", "carl", "n/a", "dana"), ("null", "NA", "x1", "x2", "x3")
    rows = [
        f"{u},{items[(k + j) % 5]},{1 + (k + 2 * j) % 5},{10 * k + j}"
        for k, u in enumerate(users)
        for j in range(4)
    ]
    data = tmp_path / "na.csv"
    data.write_text("user,item,rating,time\n" + "\n".join(rows) + "\n", encoding="utf-8")
    catalog = tmp_path / "items.csv"
    catalog.write_text("item,name\nnull,The Null Film\nNA,Not Applicable\nx1,One\n")
    stats = json.loads(_cli(capsys, "data", "describe", data, "--json"))
    assert (stats["n_users"], stats["n_items"]) == (6, 5), stats
    run = tmp_path / "run"
    flags = ["--items", catalog, "--split", "none", "--out", run]
    _cli(capsys, "train", "-m", "popularity", "--data", data, *flags)
    recs = json.loads(_cli(capsys, "recommend", run, "--user", "NA", "-k", "5", "--json"))
    assert recs[0]["user_id"] == "NA", recs
    # NA rated null, NA, x1 and x2: x3 is left, untitled.
    assert [(i["item_id"], i.get("title")) for i in recs[0]["items"]] == [("x3", None)], recs
    recs = json.loads(_cli(capsys, "recommend", run, "--user", "None", "-k", "5", "--json"))
    assert [(i["item_id"], i.get("title")) for i in recs[0]["items"]] == [
        ("null", "The Null Film")
    ], recs
    split = tmp_path / "split"
    _cli(capsys, "data", "split", data, "-p", "temporal-user:0.25:min_events=2", "-o", split)
    parts = ["--train", split / "train.csv", "--test", split / "test.csv"]
    _cli(capsys, "train", "-m", "popularity", *parts, "--out", tmp_path / "parts_run")
    recs = json.loads(
        _cli(capsys, "recommend", tmp_path / "parts_run", "--user", "n/a", "-k", "1", "--json")
    )
    assert recs[0]["user_id"] == "n/a" and len(recs[0]["items"]) == 1, recs
