"""DataFrames in and out: fit(df, columns=...), RecList.to_frame, the public namespace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recforge
from recforge.data.frames import as_training_data, canonical_columns, frame_to_interactions
from recforge.data.interactions import Interactions
from recforge.data.io import read_frame, read_ratings
from recforge.errors import ConfigError, DataError
from recforge.models.base import RecList, reclists_to_frame


def clicks(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A click log a person would have: string ids, 1-10 stars, datetimes, odd column names."""
    rng = np.random.default_rng(seed)
    # Every (customer, product) pair once: duplicates are another module's subject.
    pairs = rng.choice(25 * 15, size=n, replace=False)
    return pd.DataFrame(
        {
            "customer": [f"c{p // 15}" for p in pairs],
            "product": [f"p{p % 15}" for p in pairs],
            "stars": rng.integers(1, 11, n),
            "when": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
        }
    )


MAPPING = {"user": "customer", "item": "product", "rating": "stars", "time": "when"}


def test_fit_dataframe_equals_fit_of_the_same_csv(tmp_path: Path) -> None:
    df = clicks()
    # Write the same events as a CSV with canonical headers and epoch seconds.
    csv = tmp_path / "clicks.csv"
    pd.DataFrame(
        {
            "user_id": df["customer"],
            "item_id": df["product"],
            "rating": df["stars"],
            "timestamp": df["when"].astype("int64") // 10**9,
        }
    ).to_csv(csv, index=False)
    from_file = Interactions.from_frame(read_ratings(csv), rating_scale=(1.0, 10.0))

    a = recforge.create("ease", reg=50.0).fit(df, columns=MAPPING)
    b = recforge.create("ease", reg=50.0).fit(from_file)
    assert a.rating_scale_ == (1.0, 10.0)  # inferred from the data's min and max
    users = ["c0", "c3", "c17"]
    ra, rb = a.recommend(users, k=5), b.recommend(users, k=5)
    for x, y in zip(ra, rb, strict=True):
        assert x.item_ids.tolist() == y.item_ids.tolist()
        np.testing.assert_allclose(x.scores, y.scores, rtol=1e-6)


def test_frame_timestamps_and_ids_are_exact() -> None:
    df = pd.DataFrame(
        {
            "customer": ["a", "b"],
            "product": [10, 20],
            "when": pd.to_datetime(["1970-01-02 00:00:00", "2024-05-01 12:00:00"], utc=True),
        }
    )
    data = frame_to_interactions(
        df, columns={"user": "customer", "item": "product", "time": "when"}
    )
    frame = data.to_frame()
    assert frame["timestamp"].tolist() == [86400, 1714564800]
    assert frame["item_id"].tolist() == [10, 20]  # int ids stay ints
    assert data.rating_scale is None and frame["rating"].tolist() == [1.0, 1.0]


def test_usual_column_names_need_no_mapping() -> None:
    df = pd.DataFrame({"userId": [1, 1, 2], "movieId": [5, 6, 5], "rating": [4.0, 2.0, 5.0]})
    model = recforge.create("popularity").fit(df)
    assert model.recommend([2], k=1)[0].item_ids.tolist() == [6]


def test_column_roles_as_keywords() -> None:
    df = clicks()
    a = recforge.create("ease").fit(df, user="customer", item="product", rating="stars")
    b = recforge.create("ease").fit(
        df, columns={"user": "customer", "item": "product"}, rating="stars"
    )
    assert (
        a.recommend(["c1"], k=4)[0].item_ids.tolist()
        == b.recommend(["c1"], k=4)[0].item_ids.tolist()
    )
    with pytest.raises(ConfigError, match="user given both"):
        recforge.create("ease").fit(df, columns={"user_id": "customer"}, user="customer")
    with pytest.raises(ConfigError, match="already Interactions"):
        recforge.create("ease").fit(frame_to_interactions(df, columns=MAPPING), user="customer")


def test_title_role_as_a_keyword() -> None:
    # The title column of the frame itself, as fit(df, columns={"title": ...}) reads it.
    df = clicks().assign(label=lambda d: "Film " + d["product"].astype(str))
    model = recforge.create("ease").fit(df, user="customer", item="product", title="label")
    top = model.recommend(["c1"], k=2)[0].to_frame()
    assert top["title"].tolist() == ["Film " + str(i) for i in top["item_id"]]


def test_canonical_columns_accepts_short_and_canonical_keys() -> None:
    assert canonical_columns({"user": "u", "item_id": "i", "time": "t"}) == {
        "user_id": "u",
        "item_id": "i",
        "timestamp": "t",
    }
    with pytest.raises(ConfigError, match="unknown key 'customer'"):
        canonical_columns({"customer": "c"})
    with pytest.raises(ConfigError, match="mapped twice"):
        canonical_columns({"user": "a", "user_id": "b"})


def test_bad_frames_get_one_line_naming_the_problem() -> None:
    df = clicks(20)
    with pytest.raises(DataError, match=r"missing column 'buyer'.*customer, product"):
        recforge.create("ease").fit(df, columns={"user": "buyer", "item": "product"})
    bad = df.assign(stars=df["stars"].astype(object))
    bad.loc[3, "stars"] = "five"
    with pytest.raises(DataError, match=r"DataFrame, row 4, column 'stars' \(rating\): 'five'"):
        recforge.create("ease").fit(bad, columns=MAPPING)
    with pytest.raises(DataError, match="rating scale"):
        frame_to_interactions(df, columns=MAPPING, rating_scale=(1.0, 5.0))
    with pytest.raises(DataError, match="read_ratings"):
        recforge.create("ease").fit("ratings.csv")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no rows"):
        read_frame(df.iloc[:0])


def test_mapping_with_interactions_is_refused() -> None:
    data = frame_to_interactions(clicks(20), columns=MAPPING)
    with pytest.raises(ConfigError, match="already Interactions"):
        as_training_data(data, columns=MAPPING)


def test_valid_frame_is_encoded_with_train_vocabularies() -> None:
    train_df = pd.DataFrame({"u": ["a", "a", "b"], "i": ["x", "y", "x"], "r": [5.0, 3.0, 4.0]})
    valid_df = pd.DataFrame({"u": ["b", "zed"], "i": ["y", "x"], "r": [2.0, 1.0]})
    cols = {"user": "u", "item": "i", "rating": "r"}
    train, valid = as_training_data(train_df, valid_df, columns=cols)
    assert valid is not None
    assert valid.users is train.users and valid.items is train.items
    # "zed" is unknown to training: its row cannot be scored and is dropped.
    assert valid.to_frame()[["user_id", "item_id", "rating"]].values.tolist() == [["b", "y", 2.0]]
    model = recforge.create("biased_mf", epochs=2, seed=0).fit(train_df, valid_df, columns=cols)
    assert model.is_fitted


def test_reclist_to_frame_with_titles() -> None:
    meta = pd.DataFrame({"title": ["Tea", None]}, index=pd.Index(["x", "y"], name="item_id"))
    rec = RecList(
        "u1", np.array(["y", "x", "z"], dtype=object), np.array([3, 2, 1], np.float32), meta
    )
    frame = rec.to_frame()
    assert list(frame.columns) == ["user_id", "rank", "item_id", "score", "title"]
    assert frame["rank"].tolist() == [1, 2, 3]
    assert frame["title"].tolist() == [None, "Tea", None]  # unknown title / unknown item: None
    plain = RecList(7, np.array([1, 2]), np.array([0.5, 0.25], np.float32)).to_frame()
    assert list(plain.columns) == ["user_id", "rank", "item_id", "score"]
    assert plain.values.tolist() == [[7, 1, 1, 0.5], [7, 2, 2, 0.25]]


def test_recommendations_frame_carries_model_titles() -> None:
    df = pd.DataFrame({"u": ["a", "a", "b", "c"], "i": ["x", "y", "x", "y"]})
    meta = pd.DataFrame({"title": ["Green tea", "Blue mug"]}, index=pd.Index(["x", "y"]))
    model = recforge.create("popularity").fit(
        df, columns={"user": "u", "item": "i"}, item_meta=meta
    )
    frame = reclists_to_frame(model.recommend(["b", "c"], k=5))
    assert frame[["user_id", "rank", "item_id", "title"]].values.tolist() == [
        ["b", 1, "y", "Blue mug"],
        ["c", 1, "x", "Green tea"],
    ]
    empty = reclists_to_frame([])
    assert list(empty.columns) == ["user_id", "rank", "item_id", "score"] and len(empty) == 0


def test_public_namespace_is_listed_and_lazy() -> None:
    wanted = {
        "read_ratings",
        "read_frame",
        "Interactions",
        "create",
        "available",
        "load_run",
        "evaluate",
        "load_movielens",
        "Recommender",
        "RecList",
        "reclists_to_frame",
        "RecError",
        "DataError",
    }
    assert wanted <= set(recforge.__all__) <= set(dir(recforge))
    assert "importlib" not in dir(recforge)
    for name in recforge.__all__:
        assert getattr(recforge, name) is not None
    code = (
        "import json, sys, recforge; "
        "print(json.dumps([m in sys.modules for m in ('torch', 'pandas', 'numpy')]))"
    )
    src = str(Path(recforge.__file__).resolve().parents[1])
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(res.stdout) == [False, False, False]


def test_repeated_clicks_in_a_frame_are_counted_like_a_file() -> None:
    df = pd.DataFrame({"customer": ["a", "a", "a", "b"], "product": ["x", "x", "y", "x"]})
    data = frame_to_interactions(df, columns={"user": "customer", "item": "product"})
    frame = data.to_frame().sort_values(["user_id", "item_id"])
    assert frame[["user_id", "item_id", "rating"]].values.tolist() == [
        ["a", "x", 2.0],
        ["a", "y", 1.0],
        ["b", "x", 1.0],
    ]
    assert data.rating_scale is None and not data.has_timestamps


def test_fit_takes_the_event_column_as_a_keyword_role_with_weights_or_kinds() -> None:
    df = pd.DataFrame(
        {
            "customer": ["a", "a", "a", "b", "b"],
            "product": ["x", "x", "y", "x", "y"],
            "what": ["view", "purchase", "view", "view", "cart"],
        }
    )
    weights = {"view": 1, "cart": 2, "purchase": 10}
    read = {"user": "customer", "item": "product"}
    keyword, _ = as_training_data(df, **read, event="what", event_weights=weights)
    mapped, _ = as_training_data(df, columns={**read, "event": "what"}, event_weights=weights)
    for data in (keyword, mapped):
        frame = data.to_frame().sort_values(["user_id", "item_id"])
        assert frame["rating"].tolist() == [11.0, 1.0, 1.0, 2.0]
    bought, _ = as_training_data(df, **read, event="what", events=["purchase"])
    assert bought.to_frame()[["user_id", "item_id"]].values.tolist() == [["a", "x"]]
    with pytest.raises(ConfigError, match="event given both as a keyword and in columns"):
        as_training_data(df, columns={"event": "what"}, event="what")
    model = recforge.create("popularity").fit(df, **read, event="what", events=["view"])
    assert model is not None
