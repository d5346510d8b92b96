"""MovieLens registry, local/cached/downloaded copies, checksums, metadata parsers and folds.

Unit tests build tiny releases in tmp_path (this machine is offline; downloads use file:// URLs or
a replaced fetch function). Tests marked ``movielens`` read the real copies in RECFORGE_DATA_DIR.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data import movielens as ml
from recforge.data.movielens import (
    ML100K_FOLDS,
    MOVIELENS,
    MovieLensRelease,
    load_movielens,
    load_movielens_fold,
    movielens_dir,
    split_title_year,
    verify_archive,
)
from recforge.errors import DataError, DataWarning

# ----------------------------------------------------------------------------- tiny releases
U_DATA = "1\t10\t5\t100\n1\t20\t3\t101\n2\t10\t4\t102\n3\t30\t1\t103\n"
U_GENRE = "unknown|0\nAction|1\nAnimation|2\nChildren's|3\nComedy|4\n\n"
U_ITEM = (
    "10|Toy Story (1995)|01-Jan-1995||http://x|0|0|1|1|1\n"
    "20|Misérables, Les (1995)|01-Jan-1995||http://y|0|1|0|0|0\n"
    "30|unknown||||1|0|0|0|0\n"
)
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|T8H1N\n"


def tiny_100k(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(U_DATA)
    (folder / "u.genre").write_text(U_GENRE)
    (folder / "u.item").write_bytes(U_ITEM.encode("latin-1"))
    (folder / "u.user").write_text(U_USER)
    lines = U_DATA.splitlines(keepends=True)
    (folder / "u1.base").write_text("".join(lines[:3]))
    (folder / "u1.test").write_text("".join(lines[3:]))
    return folder


def zip_folder(
    folder: Path, archive: Path, inside: str, extra: dict[str, str] | None = None
) -> str:
    """Zip ``folder`` as ``inside/...``; return the archive's sha256."""
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{inside}/", "")
        for f in sorted(folder.iterdir()):
            zf.write(f, f"{inside}/{f.name}")
        for name, text in (extra or {}).items():
            zf.writestr(name, text)
    return hashlib.sha256(archive.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("RECFORGE_CACHE_DIR", str(root))
    monkeypatch.delenv("RECFORGE_DATA_DIR", raising=False)
    return root


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache that leaves RECFORGE_DATA_DIR alone (for the real-data tests)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("RECFORGE_CACHE_DIR", str(root))
    return root


def patch_release(monkeypatch: pytest.MonkeyPatch, name: str, **changes: object) -> None:
    """Swap a registry entry (counts cleared: tiny copies never match the published ones)."""
    base = dict(n_ratings=None, n_users=None, n_items=None)
    base.update(changes)
    monkeypatch.setitem(MOVIELENS, name, dataclasses.replace(MOVIELENS[name], **base))  # type: ignore[arg-type]


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# ------------------------------------------------------------------------------- registry
def test_registry_names_urls_and_checksums() -> None:
    assert list(MOVIELENS) == [
        "ml-100k",
        "ml-latest-small",
        "ml-1m",
        "ml-1m-ratings",
        "ml-10m",
        "ml-20m",
        "ml-25m",
        "ml-32m",
        "ml-latest",
    ]
    for name, rel in MOVIELENS.items():
        assert isinstance(rel, MovieLensRelease)
        assert rel.name == name
        if name == "ml-1m-ratings":  # local-only: nothing to download
            assert rel.url is None
            continue
        assert rel.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        for digest, size in ((rel.sha256, 64), (rel.md5, 32)):
            assert digest is None or (len(digest) == size and int(digest, 16) >= 0)
    assert MOVIELENS["ml-100k"].sha256 == (
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
    )
    assert MOVIELENS["ml-latest-small"].sha256 == (
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"
    )
    assert MOVIELENS["ml-1m"].sha256 == (
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
    )
    assert MOVIELENS["ml-latest"].sha256 is None and MOVIELENS["ml-latest"].md5 is None
    assert MOVIELENS["ml-10m"].folder == "ml-10M100K"
    assert MOVIELENS["ml-100k"].rating_scale == MOVIELENS["ml-1m"].rating_scale == (1.0, 5.0)
    assert all(MOVIELENS[n].rating_scale == (0.5, 5.0) for n in ("ml-latest-small", "ml-25m"))
    assert [n for n, r in MOVIELENS.items() if r.has_user_meta] == [
        "ml-100k",
        "ml-1m",
        "ml-1m-ratings",
    ]
    assert [n for n, r in MOVIELENS.items() if not r.has_timestamps] == ["ml-1m-ratings"]


def test_unknown_name_lists_valid_names(cache: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_movielens("ml-5m")
    msg = str(exc.value)
    assert "unknown MovieLens release 'ml-5m'" in msg
    assert "ml-100k" in msg and "ml-32m" in msg


# ---------------------------------------------------------------------- locating a copy
def test_offline_without_copy_says_where_to_put_files(cache: Path, tmp_path: Path) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    with pytest.raises(DataError) as exc:
        load_movielens("ml-100k", data_dir=empty, download=False)
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"{empty}/ml-100k/" in msg
    assert f"{empty}/ml-100k.zip" in msg
    assert "RECFORGE_DATA_DIR" in msg


def test_failed_download_is_data_error_and_leaves_no_trace(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, dest: Path) -> None:
        dest.write_bytes(b"partial")
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(ml, "_fetch", offline)
    with pytest.raises(DataError, match="download failed"):
        load_movielens("ml-100k")
    assert leftovers(cache) == ["movielens"]


def test_unzipped_folder_in_data_dir_is_used_in_place(cache: Path, tmp_path: Path) -> None:
    folder = tiny_100k(tmp_path / "data" / "ml-100k")
    assert movielens_dir("ml-100k", data_dir=tmp_path / "data") == folder
    with pytest.warns(DataWarning, match="differs from the published release"):
        data = load_movielens("ml-100k", data_dir=tmp_path / "data")
    assert (data.n_users, data.n_items, len(data)) == (3, 3, 4)
    assert not cache.exists()  # nothing copied


def test_env_var_is_the_default_data_dir(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tiny_100k(tmp_path / "data" / "ml-100k")
    monkeypatch.setenv("RECFORGE_DATA_DIR", str(tmp_path / "data"))
    assert movielens_dir("ml-100k") == folder


def test_official_zip_in_data_dir_is_verified_and_extracted_to_cache(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tiny_100k(tmp_path / "src")
    data = tmp_path / "data"
    data.mkdir()
    sha = zip_folder(src, data / "ml-100k.zip", "ml-100k", {"ml-100k/../evil.txt": "x"})
    patch_release(monkeypatch, "ml-100k", sha256=sha)
    folder = movielens_dir("ml-100k", data_dir=data)
    assert folder == cache / "movielens" / "ml-100k"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".recforge-release.json", *(f.name for f in src.iterdir())]
    )
    assert not (cache / "movielens" / "evil.txt").exists()  # unsafe member skipped
    assert (folder / "u.item").read_bytes() == (src / "u.item").read_bytes()
    # once extracted, the cache serves it even without the zip
    (data / "ml-100k.zip").unlink()
    inter = load_movielens("ml-100k", data_dir=data)
    assert inter.item_meta is not None and inter.item_meta.loc[10, "title"] == "Toy Story"


def test_zip_with_wrong_checksum_is_refused_and_nothing_cached(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    zip_folder(tiny_100k(tmp_path / "src"), data / "ml-100k.zip", "ml-100k")
    patch_release(monkeypatch, "ml-100k", sha256="0" * 64)
    with pytest.raises(DataError) as exc:
        load_movielens("ml-100k", data_dir=data)
    assert "checksum mismatch for ml-100k" in str(exc.value)
    assert "ml-100k.zip" in str(exc.value)
    assert leftovers(cache) == []


def test_download_from_file_url_verifies_and_extracts(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served.zip"
    sha = zip_folder(tiny_100k(tmp_path / "src"), served, "ml-100k")
    patch_release(monkeypatch, "ml-100k", sha256=sha, url=served.as_uri())
    inter = load_movielens("ml-100k")
    assert (inter.n_users, inter.n_items, len(inter)) == (3, 3, 4)
    assert inter.source == "ml-100k"
    names = leftovers(cache)
    assert "movielens/ml-100k/u.data" in names
    assert not [n for n in names if n.endswith((".part", ".tmp"))]


def test_download_checksum_mismatch_leaves_nothing_in_cache(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served.zip"
    zip_folder(tiny_100k(tmp_path / "src"), served, "ml-100k")
    patch_release(monkeypatch, "ml-100k", sha256="f" * 64, url=served.as_uri())
    with pytest.raises(DataError, match="checksum mismatch"):
        load_movielens("ml-100k")
    assert leftovers(cache) == ["movielens"]


def test_md5_is_checked_when_no_sha256(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "ml-100k.zip"
    zip_folder(tiny_100k(tmp_path / "src"), archive, "ml-100k")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    good = dataclasses.replace(MOVIELENS["ml-100k"], sha256=None, md5=md5)
    assert verify_archive(archive, good) == hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(DataError, match="md5"):
        verify_archive(archive, dataclasses.replace(good, md5="0" * 32))


def test_structural_check_without_checksums(tmp_path: Path) -> None:
    rel = dataclasses.replace(MOVIELENS["ml-100k"], sha256=None, md5=None)
    archive = tmp_path / "ml-100k.zip"
    zip_folder(tiny_100k(tmp_path / "src"), archive, "ml-100k")
    verify_archive(archive, rel)
    wrong = tmp_path / "wrong.zip"
    zip_folder(tiny_100k(tmp_path / "src"), wrong, "something-else")
    with pytest.raises(DataError, match=r"zip has no ml-100k/u\.data"):
        verify_archive(wrong, rel)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a valid zip"):
        verify_archive(garbage, rel)


# --------------------------------------------------------------------------- ml-100k format
def test_ml100k_metadata_from_tiny_copy(cache: Path, tmp_path: Path) -> None:
    tiny_100k(tmp_path / "data" / "ml-100k")
    with pytest.warns(DataWarning):
        inter = load_movielens("ml-100k", data_dir=tmp_path / "data")
    assert inter.rating_scale == (1.0, 5.0)
    items = inter.item_meta
    assert items is not None
    assert items.index.name == "item_id"
    assert items.loc[10, "title"] == "Toy Story"
    assert items.loc[10, "year"] == 1995
    assert items.loc[10, "genres"] == ["Animation", "Children's", "Comedy"]
    assert items.loc[20, "title"] == "Misérables, Les"  # latin-1 decoded
    assert items.loc[20, "genres"] == ["Action"]
    assert items.loc[30, "title"] == "unknown"
    assert pd.isna(items.loc[30, "year"])
    assert str(items["year"].dtype) == "Int64"
    users = inter.user_meta
    assert users is not None
    assert users.loc[3].to_dict() == {
        "age": 23,
        "gender": "M",
        "occupation": "writer",
        "zip": "T8H1N",
    }
    assert users.loc[1, "zip"] == "85711"  # zips stay strings


def test_without_metadata(cache: Path, tmp_path: Path) -> None:
    tiny_100k(tmp_path / "data" / "ml-100k")
    with pytest.warns(DataWarning):
        inter = load_movielens("ml-100k", data_dir=tmp_path / "data", with_metadata=False)
    assert inter.item_meta is None and inter.user_meta is None


def test_fold_reader(cache: Path, tmp_path: Path) -> None:
    tiny_100k(tmp_path / "data" / "ml-100k")
    train, test = load_movielens_fold("ml-100k", "u1", data_dir=tmp_path / "data")
    assert list(train.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert train.values.tolist() == [[1, 10, 5, 100], [1, 20, 3, 101], [2, 10, 4, 102]]
    assert test.values.tolist() == [[3, 30, 1, 103]]
    with pytest.raises(DataError, match="unknown ml-100k fold 'u9'"):
        load_movielens_fold("ml-100k", "u9", data_dir=tmp_path / "data")
    with pytest.raises(DataError, match="missing"):
        load_movielens_fold("ml-100k", "ua", data_dir=tmp_path / "data")
    with pytest.raises(DataError, match="no predefined folds"):
        load_movielens_fold("ml-1m", "u1")


# ------------------------------------------------------------------- ml-1m / ml-10m formats
def test_ml1m_ratings_local_source(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data" / "ml-1m-ratings"
    folder.mkdir(parents=True)
    (folder / "ratings.csv").write_text("userId,movieId,rating\n1,1193,5\n2,1,3\n2,1193,4\n")
    (folder / "movies.dat").write_bytes(
        b"1::Toy Story (1995)::Animation|Children's|Comedy\n"
        b"1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
    )
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    patch_release(monkeypatch, "ml-1m-ratings")
    inter = load_movielens("ml-1m-ratings", data_dir=tmp_path / "data")
    assert inter.source == "ml-1m-ratings" and len(inter) == 3
    assert inter.rating_scale == (1.0, 5.0)
    assert not inter.has_timestamps  # no time in the file: time-based splits must refuse it
    assert inter.item_meta is not None and inter.item_meta.loc[1193, "genres"] == ["Drama"]
    assert inter.user_meta is not None and inter.user_meta.loc[2, "age_group"] == "56+"


def test_ml1m_ratings_is_never_downloaded(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fetch(url: str, dest: Path) -> None:
        raise AssertionError("a local-only source must not be downloaded")

    monkeypatch.setattr(ml, "_fetch", no_fetch)
    with pytest.raises(DataError, match=r"local-only source.*ml-1m-ratings/"):
        movielens_dir("ml-1m-ratings", data_dir=tmp_path / "empty")


@pytest.mark.movielens
def test_ml1m_ratings_real_copy(data_dir: Path) -> None:
    if not (data_dir / "ml-1m-ratings" / "ratings.csv").is_file():
        pytest.skip(f"no ml-1m-ratings/ in {data_dir}")
    inter = load_movielens("ml-1m-ratings", data_dir=data_dir, download=False)
    assert (len(inter), inter.n_users, inter.n_items) == (1_000_209, 6040, 3706)
    assert not inter.has_timestamps


def test_ml1m_format(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "data" / "ml-1m"
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n2::1::3::978302109\n")
    (folder / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "5::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi\n".encode("latin-1")
    )
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    patch_release(monkeypatch, "ml-1m")
    inter = load_movielens("ml-1m", data_dir=tmp_path / "data")
    items, users = inter.item_meta, inter.user_meta
    assert items is not None and users is not None
    assert items.loc[1193].to_dict() == {
        "title": "One Flew Over the Cuckoo's Nest",
        "year": 1975,
        "genres": ["Drama"],
    }
    assert items.loc[5, "title"] == "Cité des enfants perdus, La"
    assert users.loc[1].to_dict() == {
        "age": 1,
        "age_group": "Under 18",
        "gender": "F",
        "occupation": "K-12 student",
        "zip": "48067",
    }
    assert users.loc[2, "occupation"] == "self-employed"
    assert users.loc[2, "age_group"] == "56+"


def test_ml10m_format_with_tags(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data" / "ml-10M100K"  # the zip's folder name is accepted too
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("1::122::5::838985046\n1::185::4.5::838983525\n")
    (folder / "movies.dat").write_text(
        "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n"
    )
    (folder / "tags.dat").write_text(
        "15::122::dark hero::1188263867\n20::122::a::b tag::1188263880\n15::122::dark hero::1\n"
    )
    patch_release(monkeypatch, "ml-10m")
    inter = load_movielens("ml-10m", data_dir=tmp_path / "data")
    assert inter.rating.tolist() == [5.0, 4.5]
    assert inter.item_meta is not None
    assert inter.item_meta.loc[122, "tags"] == ["dark hero", "a::b tag"]
    assert inter.item_meta.loc[185, "tags"] == []
    assert inter.user_meta is None


def test_csv_format_with_links_and_tags(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data" / "ml-latest"
    folder.mkdir(parents=True)
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,3,0.5,964981247\n"
    )
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        '1,"American President, The (1995)",Comedy|Drama|Romance\n'
        "3,Babylon 5,(no genres listed)\n"
        "4,Hyena Road (2015) ,Drama\n"
    )
    (folder / "links.csv").write_text("movieId,imdbId,tmdbId\n1,0112346,9087\n3,0105946,\n")
    (folder / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n2,1,funny,1\n3,1, funny ,2\n3,1,politics,3\n"
    )
    inter = load_movielens("ml-latest", data_dir=tmp_path / "data")
    assert inter.rating_scale == (0.5, 5.0)
    items = inter.item_meta
    assert items is not None
    assert items.loc[1, "title"] == "American President, The"
    assert items.loc[1, "tags"] == ["funny", "politics"]
    assert items.loc[3, "genres"] == []
    assert pd.isna(items.loc[3, "year"])
    assert items.loc[4, "year"] == 2015 and items.loc[4, "title"] == "Hyena Road"
    assert items.loc[1, "imdb_id"] == "0112346"  # leading zero kept
    assert items.loc[1, "tmdb_id"] == 9087 and pd.isna(items.loc[3, "tmdb_id"])
    assert len(items) == 3  # metadata keeps unrated movies; the vocabulary does not
    assert inter.n_items == 2


def test_split_title_year_cases() -> None:
    out = split_title_year(
        pd.Series(
            [
                "Toy Story (1995)",
                "Babylon 5 (1994-1998)",
                "Land Before Time III: The Time of the Great Giving (1995) (V)",
                "Two Friends (1986) ",
                "Nocturnal Animals",
                "1984 (1984)",
            ]
        )
    )
    assert out["title"].tolist() == [
        "Toy Story",
        "Babylon 5",
        "Land Before Time III: The Time of the Great Giving (V)",
        "Two Friends",
        "Nocturnal Animals",
        "1984",
    ]
    assert out["year"].tolist()[:4] == [1995, 1994, 1995, 1986]
    assert pd.isna(out["year"].iloc[4])
    assert out["year"].iloc[5] == 1984


# ---------------------------------------------------------------------------- real releases
def _require(data_dir: Path, name: str) -> None:
    if not (data_dir / name).is_dir():
        pytest.skip(f"{data_dir} has no {name}/ folder")


@pytest.mark.movielens
def test_real_ml100k(data_dir: Path, own_cache: Path) -> None:
    _require(data_dir, "ml-100k")
    inter = load_movielens("ml-100k", data_dir=data_dir, download=False)
    assert (inter.n_users, inter.n_items, len(inter)) == (943, 1682, 100_000)
    assert inter.rating_scale == (1.0, 5.0) and inter.source == "ml-100k"
    assert sorted(np.unique(inter.rating).tolist()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    items, users = inter.item_meta, inter.user_meta
    assert items is not None and users is not None
    assert len(items) == 1682 and len(users) == 943
    toy = items.loc[1]
    assert (toy["title"], toy["year"]) == ("Toy Story", 1995)
    assert {"Animation", "Children's", "Comedy"} <= set(toy["genres"])
    assert users.loc[1].to_dict() == {
        "age": 24,
        "gender": "M",
        "occupation": "technician",
        "zip": "85711",
    }
    assert not own_cache.exists()


@pytest.mark.movielens
def test_real_ml100k_folds(data_dir: Path, own_cache: Path) -> None:
    _require(data_dir, "ml-100k")
    full = load_movielens("ml-100k", data_dir=data_dir, with_metadata=False).to_frame()
    for fold in ML100K_FOLDS:
        train, test = load_movielens_fold("ml-100k", fold, data_dir=data_dir)
        assert len(train) + len(test) == 100_000
        assert len(test) == (20_000 if fold.startswith("u") and fold[1].isdigit() else 9430)
        both = pd.concat([train, test]).sort_values(["user_id", "item_id"]).reset_index(drop=True)
        ref = full.sort_values(["user_id", "item_id"]).reset_index(drop=True)
        assert (
            both[["user_id", "item_id"]].to_numpy() == ref[["user_id", "item_id"]].to_numpy()
        ).all()


@pytest.mark.movielens
def test_real_ml_latest_small(data_dir: Path, own_cache: Path) -> None:
    _require(data_dir, "ml-latest-small")
    inter = load_movielens("ml-latest-small", data_dir=data_dir, download=False)
    assert (inter.n_users, inter.n_items, len(inter)) == (610, 9724, 100_836)
    assert inter.rating_scale == (0.5, 5.0)
    assert float(inter.rating.min()) == 0.5 and float(inter.rating.max()) == 5.0
    items = inter.item_meta
    assert items is not None and len(items) == 9742
    toy = items.loc[1]
    assert (toy["title"], toy["year"]) == ("Toy Story", 1995)
    assert "Animation" in toy["genres"]
    assert "pixar" in toy["tags"]
    assert inter.user_meta is None


@pytest.mark.movielens
def test_real_ml_latest_small_zip_is_verified_and_extracted(
    data_dir: Path, own_cache: Path, tmp_path: Path
) -> None:
    archive = data_dir / "_archives" / "ml-latest-small.zip"
    if not archive.is_file():
        pytest.skip(f"{archive} not present")
    local = tmp_path / "zips"
    local.mkdir()
    shutil.copy(archive, local / "ml-latest-small.zip")
    inter = load_movielens("ml-latest-small", data_dir=local, download=False)
    assert (inter.n_users, inter.n_items, len(inter)) == (610, 9724, 100_836)
    marker = own_cache / "movielens" / "ml-latest-small" / ".recforge-release.json"
    assert MOVIELENS["ml-latest-small"].sha256 in marker.read_text()
