"""Unit tests of Interactions: encoding, CSR views, filters, re-encoding, fingerprint, immutability.

Everything is checked against values computed by hand on a five-row frame.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.data.vocab import IdVocab
from recforge.errors import DataError, UnknownIdError


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["b", "a", "b", "c", "a"],
            "item_id": [20, 10, 30, 20, 20],
            "rating": [4.0, 5.0, 2.0, 3.0, 1.0],
            "timestamp": [100, 50, 70, 10, 60],
        }
    )


@pytest.fixture
def inter(frame: pd.DataFrame) -> Interactions:
    return Interactions.from_frame(frame, rating_scale=(1.0, 5.0), source="tiny")


def test_from_frame_encodes_with_sorted_vocabularies(inter: Interactions) -> None:
    assert inter.users.ids.tolist() == ["a", "b", "c"]
    assert inter.items.ids.tolist() == [10, 20, 30]
    assert inter.user_idx.tolist() == [1, 0, 1, 2, 0]
    assert inter.item_idx.tolist() == [1, 0, 2, 1, 1]
    assert inter.user_idx.dtype == np.int32 and inter.item_idx.dtype == np.int32
    assert inter.rating.dtype == np.float32 and inter.timestamp.dtype == np.int64
    assert (len(inter), inter.n_users, inter.n_items) == (5, 3, 3)
    assert inter.density == pytest.approx(5 / 9)
    assert inter.global_mean == pytest.approx(3.0)
    assert inter.is_explicit
    assert repr(inter) == "Interactions(tiny: 3 users, 3 items, 5 events)"


def test_from_frame_defaults_for_missing_rating_and_timestamp() -> None:
    x = Interactions.from_frame(pd.DataFrame({"user_id": [1, 2], "item_id": [5, 5]}))
    assert x.rating.tolist() == [1.0, 1.0]
    assert x.timestamp.tolist() == [0, 0]
    assert not x.is_explicit


def test_from_frame_missing_column_names_it() -> None:
    with pytest.raises(DataError, match=r"f\.csv: missing column 'item_id'"):
        Interactions.from_frame(pd.DataFrame({"user_id": [1]}), source="f.csv")


def test_to_frame_round_trip(frame: pd.DataFrame, inter: Interactions) -> None:
    back = inter.to_frame()
    assert back["user_id"].tolist() == frame["user_id"].tolist()
    assert back["item_id"].tolist() == frame["item_id"].tolist()
    assert back["rating"].tolist() == frame["rating"].tolist()
    assert back["timestamp"].tolist() == frame["timestamp"].tolist()


def test_csr_values_and_shape(inter: Interactions) -> None:
    m = inter.csr()
    assert m.shape == (3, 3)
    assert m.dtype == np.float32
    expected = np.array([[5, 1, 0], [0, 4, 2], [0, 3, 0]], dtype=np.float32)
    np.testing.assert_array_equal(m.toarray(), expected)
    assert m.has_sorted_indices
    np.testing.assert_array_equal(inter.csr("binary").toarray(), (expected > 0).astype(np.float32))
    assert inter.csr() is m  # cached


def test_counts_and_history(inter: Interactions) -> None:
    assert inter.user_counts().tolist() == [2, 2, 1]
    assert inter.item_counts().tolist() == [1, 3, 1]
    items, ratings = inter.user_history(1)
    assert items.tolist() == [1, 2] and ratings.tolist() == [4.0, 2.0]


def test_subset_by_mask_and_rows_keeps_vocabularies(inter: Interactions) -> None:
    by_mask = inter.subset(inter.rating >= 3)
    by_rows = inter.subset(np.array([0, 1, 3]))
    for s in (by_mask, by_rows):
        assert s.rating.tolist() == [4.0, 5.0, 3.0]
        assert s.users is inter.users and s.items is inter.items
        assert s.rating_scale == (1.0, 5.0) and s.source == "tiny"


def test_compact_keeps_only_used_ids_and_raw_rows(inter: Interactions) -> None:
    s = inter.subset(np.array([0, 2]))  # only user b, items 20 and 30
    c = s.compact()
    assert c.users.ids.tolist() == ["b"]
    assert c.items.ids.tolist() == [20, 30]
    assert c.user_idx.tolist() == [0, 0] and c.item_idx.tolist() == [0, 1]
    pd.testing.assert_frame_equal(c.to_frame(), s.to_frame())


def test_k_core_needs_several_rounds() -> None:
    # u3 and D have one event: round 1 drops them; that leaves C and u4 with one event each,
    # which round 2 drops. A single pass would wrongly keep (u2, C) and (u4, A).
    df = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u2", "u3", "u4", "u4"],
            "item_id": ["A", "B", "A", "B", "C", "C", "D", "A"],
        }
    )
    x = Interactions.from_frame(df)
    core = x.k_core(2)
    assert core.users.ids.tolist() == ["u1", "u2"]
    assert core.items.ids.tolist() == ["A", "B"]
    assert sorted(zip(*core.to_frame()[["user_id", "item_id"]].T.values, strict=True)) == [
        ("u1", "A"),
        ("u1", "B"),
        ("u2", "A"),
        ("u2", "B"),
    ]
    assert x.k_core(1).n_users == 4  # k <= 1 only compacts


def test_reencode_extend_appends_unknown_ids(inter: Interactions) -> None:
    other = Interactions.from_frame(
        pd.DataFrame(
            {"user_id": ["z", "a", "y"], "item_id": [10, 99, 20], "rating": [1.0, 2.0, 3.0]}
        )
    )
    r = other.reencode(inter.users, inter.items, unknown="extend")
    assert r.users.ids.tolist() == ["a", "b", "c", "y", "z"]
    assert r.items.ids.tolist() == [10, 20, 30, 99]
    assert r.user_idx.tolist() == [4, 0, 3]
    assert r.item_idx.tolist() == [0, 3, 1]
    assert r.rating.tolist() == [1.0, 2.0, 3.0]


def test_reencode_drop_and_error(inter: Interactions) -> None:
    other = Interactions.from_frame(
        pd.DataFrame(
            {"user_id": ["z", "a", "b"], "item_id": [10, 99, 20], "rating": [1.0, 2.0, 3.0]}
        )
    )
    d = other.reencode(inter.users, inter.items, unknown="drop")
    assert d.users is inter.users and d.items is inter.items
    assert d.user_idx.tolist() == [1] and d.item_idx.tolist() == [1] and d.rating.tolist() == [3.0]
    with pytest.raises(UnknownIdError):
        other.reencode(inter.users, inter.items, unknown="error")


def test_fingerprint_is_stable_and_sensitive(frame: pd.DataFrame, inter: Interactions) -> None:
    again = Interactions.from_frame(frame.copy())
    assert inter.fingerprint() == again.fingerprint()
    assert len(inter.fingerprint()) == 64
    changed = frame.copy()
    changed.loc[2, "rating"] = 3.0
    assert Interactions.from_frame(changed).fingerprint() != inter.fingerprint()
    assert inter.subset(np.arange(4)).fingerprint() != inter.fingerprint()


def test_immutability(inter: Interactions) -> None:
    for arr in (inter.user_idx, inter.item_idx, inter.rating, inter.timestamp):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        inter.source = "other"  # type: ignore[misc]
    before = inter.rating.copy()
    inter.subset(np.array([0])).compact()
    inter.with_ratings(np.zeros(len(inter)))
    np.testing.assert_array_equal(inter.rating, before)


def test_with_ratings_implicit_drops_scale(inter: Interactions) -> None:
    liked = inter.with_ratings((inter.rating > 3).astype(np.float32), implicit=True)
    assert liked.rating.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert liked.rating_scale is None
    assert inter.with_ratings(inter.rating).rating_scale == (1.0, 5.0)


def test_mismatched_columns_rejected() -> None:
    v = IdVocab([1])
    with pytest.raises(DataError, match="rating has 2 rows, expected 1"):
        Interactions(
            np.zeros(1, np.int32),
            np.zeros(1, np.int32),
            np.ones(2, np.float32),
            np.zeros(1, np.int64),
            v,
            v,
        )


def test_binary_csr_counts_a_repeated_pair_once() -> None:
    # A frame built in Python may repeat a (user, item) pair: the binary view says "interacted"
    # (1), the rating view keeps the sum (the count when every row weighs 1).
    frame = pd.DataFrame({"user_id": [1, 1, 1, 2], "item_id": [7, 7, 8, 7], "rating": 1.0})
    data = Interactions.from_frame(frame)
    binary = data.csr("binary").toarray()
    np.testing.assert_array_equal(binary, [[1.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(data.csr("rating").toarray(), [[2.0, 1.0], [1.0, 0.0]])
