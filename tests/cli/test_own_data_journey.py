"""A person's own files, end to end from the command line, with flags only (no renaming).

Four files are made here: a click log with string ids and ISO-8601 times
(``customer,product,clicked_at``, repeats included), a 1-10 TSV with odd column names
(``member\\tfilm\\tstars\\twhen``), a Parquet file with int64 ids and epoch-millisecond times, and
a German spreadsheet's CSV (BOM, ``;``, decimal-comma half stars, ``31.12.2024 10:00`` dates).
Each goes describe → split → train (ease, als, two_tower, biased_mf) → evaluate → recommend →
similar → report → export → serve (API and page).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recforge.cli import main
from recforge.serve import Settings, create_app

N_USERS, N_ITEMS, PER_USER = 40, 30, 12
EPOCHS = ["--epochs", "2"]


@dataclass
class OwnFile:
    """One made-up file, the flags that read it, and what describe must find."""

    name: str
    path: Path
    flags: list[str]
    implicit: bool
    time_format: str
    user: str  # a raw user id as typed on the command line
    item: str
    scale: tuple[float, float] | None = None


def _events(seed: int) -> pd.DataFrame:
    """Users with a taste for one block of items (so models have something to learn)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(N_USERS):
        block = u % 3
        pool = np.arange(block * 10, block * 10 + 10)
        picks = np.concatenate(
            [rng.choice(pool, 9, replace=False), rng.choice(N_ITEMS, PER_USER - 9)]
        )
        for k, i in enumerate(picks):
            rows.append((u, int(i), k))
    return pd.DataFrame(rows, columns=["u", "i", "k"])


def make_click_log(folder: Path) -> OwnFile:
    ev = _events(0)
    ev = ev.drop_duplicates(["u", "i"])
    # Every third event is clicked again later: a repeat, kept as a count.
    again = ev.iloc[::3].assign(k=lambda d: d["k"] + 40)
    ev = pd.concat([ev, again], ignore_index=True)
    start = pd.Timestamp("2024-03-01T08:00:00")
    frame = pd.DataFrame(
        {
            "customer": [f"cust-{u:03d}" for u in ev["u"]],
            "product": [f"SKU{i:04d}" for i in ev["i"]],
            "clicked_at": (start + pd.to_timedelta(ev["u"] * 3600 + ev["k"] * 60, unit="s"))
            .dt.strftime("%Y-%m-%dT%H:%M:%S")
            .to_list(),
        }
    )
    path = folder / "clicks.csv"
    frame.to_csv(path, index=False)
    items = pd.DataFrame(
        {
            "sku": [f"SKU{i:04d}" for i in range(N_ITEMS)],
            "name": [f"Gadget {i}" for i in range(N_ITEMS)],
            "category": [["audio", "home", "garden"][i // 10] for i in range(N_ITEMS)],
        }
    )
    items.to_csv(folder / "products.csv", index=False)
    flags = ["--user-col", "customer", "--item-col", "product", "--time-col", "clicked_at"]
    flags += ["--items", str(folder / "products.csv"), "--item-id-col", "sku"]
    flags += ["--item-title-col", "name", "--item-feature-cols", "category"]
    return OwnFile("clicks", path, flags, True, "iso", "cust-001", "SKU0003")


def make_ten_point_tsv(folder: Path) -> OwnFile:
    ev = _events(1).drop_duplicates(["u", "i"])
    rng = np.random.default_rng(5)
    liked = (ev["i"] // 10) == (ev["u"] % 3)
    stars = np.where(liked, rng.integers(7, 11, len(ev)), rng.integers(1, 6, len(ev)))
    frame = pd.DataFrame(
        {
            "member": ev["u"].to_numpy() + 500,
            "film": ev["i"].to_numpy() + 9000,
            "stars": stars,
            "when": 1_700_000_000 + ev["u"].to_numpy() * 86_400 + ev["k"].to_numpy() * 600,
        }
    )
    path = folder / "ratings.tsv"
    frame.to_csv(path, sep="\t", index=False)
    flags = ["--user-col", "member", "--item-col", "film", "--rating-col", "stars"]
    flags += ["--time-col", "when", "--sep", "tab", "--rating-scale", "1:10"]
    return OwnFile("tsv", path, flags, False, "epoch-s", "501", "9003", (1.0, 10.0))


def make_parquet(folder: Path) -> OwnFile:
    ev = _events(2).drop_duplicates(["u", "i"])
    frame = pd.DataFrame(
        {
            "account": (ev["u"].to_numpy() + 10_000_000_000).astype(np.int64),
            "sku": (ev["i"].to_numpy() + 70_000).astype(np.int64),
            "event_ms": (1_690_000_000_000 + ev["u"].to_numpy() * 3_600_000 + ev["k"] * 1000)
            .to_numpy()
            .astype(np.int64),
        }
    )
    path = folder / "events.parquet"
    frame.to_parquet(path, index=False)
    flags = ["--user-col", "account", "--item-col", "sku", "--time-col", "event_ms"]
    return OwnFile("parquet", path, flags, True, "epoch-ms", "10000000001", "70003")


def make_european_csv(folder: Path) -> OwnFile:
    """As a German spreadsheet saves it: BOM, ';', decimal commas, day-first dotted dates."""
    ev = _events(3).drop_duplicates(["u", "i"])
    liked = (ev["i"] // 10) == (ev["u"] % 3)
    halves = np.where(liked, 4.0 + (ev["k"] % 3) / 2, 1.0 + (ev["k"] % 4) / 2)
    when = pd.Timestamp("2024-01-03") + pd.to_timedelta(ev["u"] * 5 + ev["k"], unit="D")
    frame = pd.DataFrame(
        {
            "Kunde": [f"kunde.{u:03d}@example.de" for u in ev["u"]],
            "Artikel": [f"Artikel {i}" for i in ev["i"]],
            "Bewertung": [f"{x:g}".replace(".", ",") for x in halves],
            "Datum": when.dt.strftime("%d.%m.%Y %H:%M"),
        }
    )
    path = folder / "bewertungen.csv"
    path.write_text(frame.to_csv(sep=";", index=False), encoding="utf-8-sig")
    flags = ["--user-col", "Kunde", "--item-col", "Artikel", "--rating-col", "Bewertung"]
    flags += ["--time-col", "Datum", "--rating-scale", "0.5:5"]
    return OwnFile(
        "euro", path, flags, False, "day-first dates", "kunde.001@example.de", "Artikel 3",
        (0.5, 5.0),
    )  # fmt: skip


MAKERS = {
    "clicks": make_click_log,
    "tsv": make_ten_point_tsv,
    "parquet": make_parquet,
    "euro": make_european_csv,
}


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def cli_json(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Any:
    return json.loads(cli(capsys, *args, "--json"))


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_own_file_journey(
    kind: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    own = MAKERS[kind](tmp_path)
    monkeypatch.chdir(work)

    # describe: the mapping it used, the time range, the feedback kind.
    stats = cli_json(capsys, "data", "describe", own.path, *own.flags)
    assert stats["n_users"] == N_USERS
    assert stats["read"]["time_format"] == own.time_format
    assert stats["timestamp_range"] is not None
    assert stats["read"]["mapping"]["user_id"] == own.flags[own.flags.index("--user-col") + 1]
    assert stats["explicit"] is (not own.implicit)
    if own.scale is not None:
        assert stats["rating_scale"] == list(own.scale)
    if kind == "clicks":  # repeats became counts (weights), not extra events
        assert max(float(v) for v in stats["rating_histogram"]) == 2.0
    text = cli(capsys, "data", "describe", own.path, *own.flags)
    assert "time     " in text and ".." in text

    # split, then train from the written files (the round trip) and from the file itself.
    split_dir = work / "split"
    cli(capsys, "data", "split", own.path, *own.flags, "-p", "temporal-user:0.2", "-o", split_dir)
    runs = work / "runs"
    for model in ("ease", "als"):
        result = cli_json(
            capsys,
            "train",
            "-m",
            model,
            "--train",
            split_dir / "train.csv",
            "--test",
            split_dir / "test.csv",
            "--out",
            runs / model,
        )
        assert result["ranking"]["summary"]["n_users_evaluated"] > 0
    for model in ("two_tower", "biased_mf"):
        result = cli_json(
            capsys,
            "train",
            "-m",
            model,
            "--data",
            own.path,
            *own.flags,
            "--split",
            "temporal-user:0.2",
            *EPOCHS,
            "--out",
            runs / model,
        )
        assert "temporal-user" in result["protocol"]

    # evaluate from another directory: the run stored its data's absolute path and mapping.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    metrics = cli_json(capsys, "evaluate", runs / "two_tower", "--k", "5,10,20")
    assert metrics["ranking"]["protocol"]["ks"] == [5, 10, 20]
    if own.scale == (1.0, 10.0):
        assert "like > 5.5, relevant >= 7.75" in metrics["protocol"]
        assert metrics["ranking"]["protocol"]["relevance_threshold"] == 7.75
    elif own.scale == (0.5, 5.0):  # the decimal-comma half stars read as numbers
        assert metrics["ranking"]["protocol"]["relevance_threshold"] == 3.875
    else:
        assert "implicit" in metrics["protocol"]
    text = cli(capsys, "evaluate", runs / "ease")
    assert "protocol files(" in text

    # recommend and similar speak the file's own ids (strings stay strings).
    recs = cli_json(capsys, "recommend", runs / "biased_mf", "--user", own.user, "-k", "5")
    assert len(recs[0]["items"]) == 5
    assert str(recs[0]["user_id"]) == own.user
    if kind == "clicks":
        assert recs[0]["items"][0]["title"].startswith("Gadget ")
    sim = cli_json(capsys, "similar", runs / "ease", "--item", own.item, "-k", "3")
    assert len(sim["items"]) == 3
    assert own.item not in {str(i["item_id"]) for i in sim["items"]}

    report = cli_json(capsys, "report", runs / "ease", "--out", elsewhere / "report")
    assert Path(report["html"]).is_file()

    # production: all the data, exported to SQLite and served (store and live).
    prod = runs / "prod"
    result = cli_json(
        capsys, "train", "-m", "ease", "--data", own.path, *own.flags, "--split", "none",
        "--out", prod,
    )  # fmt: skip
    assert "ranking" not in result and "all-data" in result["protocol"]
    manifest = json.loads((prod / "manifest.json").read_text())
    assert manifest["all_data"] is True
    assert Path(manifest["data_source"]["path"]).is_absolute()
    db = f"sqlite:///{elsewhere / 'recs.db'}"
    exported = cli_json(capsys, "export", prod, "--db", db, "-k", "5")
    assert exported["export"]["users"] == N_USERS
    for settings in (Settings(store=db), Settings(run=str(prod))):
        with TestClient(create_app(settings)) as client:
            got = client.get(f"/users/{own.user}/recommendations", params={"k": 3})
            assert got.status_code == 200, got.text
            assert len(got.json()["items"]) == 3
            if kind == "clicks":  # the item file's titles and categories reach the API
                first = got.json()["items"][0]
                assert first["title"].startswith("Gadget ")
                assert first["genres"][0] in {"audio", "home", "garden"}
    # A model with item vectors serves similar items too; the page is there.
    with TestClient(create_app(Settings(run=str(runs / "biased_mf")))) as client:
        similar = client.get(f"/items/{own.item}/similar", params={"k": 2})
        assert similar.status_code == 200, similar.text
        assert len(similar.json()["items"]) == 2
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()


def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = make_ten_point_tsv(tmp_path)
    out = tmp_path / "run"

    def fails(*args: str | Path) -> str:
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert code == 2, err
        errors = [ln for ln in err.splitlines() if not ln.startswith("recforge: warning:")]
        assert len(errors) == 1 and errors[0].startswith("recforge: error: "), err
        assert not out.exists()
        return errors[0]

    base = ["train", "-m", "ease", "--data", own.path, "--out", out]
    # A mapped column that is absent: the line names the columns the file has.
    err = fails(*base, "--user-col", "person", "--item-col", "film")
    assert "'person'" in err and "member, film, stars, when" in err and "--user-col" in err
    # A scale the data violates: the first offending line.
    err = fails(*base, *own.flags[:-1], "1:5")
    assert "line " in err and "outside the rating scale [1, 5]" in err
    # An unparseable time: the line and the value.
    broken = tmp_path / "broken.tsv"
    lines = own.path.read_text().splitlines()
    lines[3] = "\t".join([*lines[3].split("\t")[:3], "last tuesday"])
    broken.write_text("\n".join(lines) + "\n")
    err = fails("train", "-m", "ease", "--data", broken, *own.flags, "--out", out)
    assert "line 4" in err and "'last tuesday'" in err
    # A temporal split on data without timestamps: refused, one line.
    no_time = [f for f in own.flags if f not in ("--time-col", "when")]
    err = fails(*base, *no_time, "--split", "temporal-user:0.2")
    assert "no timestamps" in err and "--time-col" in err


def test_runs_written_before_data_sources_still_evaluate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    own = make_ten_point_tsv(tmp_path)
    plain = tmp_path / "ratings.csv"  # an old run's data: known column names, relative path
    pd.read_csv(own.path, sep="\t").rename(
        columns={"member": "userId", "film": "movieId", "stars": "rating", "when": "timestamp"}
    ).to_csv(plain, index=False)
    monkeypatch.chdir(tmp_path)
    cli(capsys, "train", "-m", "ease", "--data", "ratings.csv", "--out", "run")
    manifest_path = tmp_path / "run" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["data_source"]["path"] == str(plain.resolve())
    del manifest["data_source"]
    manifest["data"] = "ratings.csv"  # as old runs recorded it
    manifest_path.write_text(json.dumps(manifest))
    metrics = cli_json(capsys, "evaluate", "run")
    assert metrics["ranking"]["summary"]["n_users_evaluated"] > 0
    assert "like > 5.5" in metrics["protocol"]  # 1..10 inferred from the data
