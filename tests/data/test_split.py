"""Tests of the evaluation split protocols (recforge.data.split).

Leak and order properties are checked here *independently* of ``check_no_leak`` (on raw ids with
pandas), so a bug in the checker cannot hide a bug in a protocol.
"""

from __future__ import annotations

import os
import pickle
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.data import split as S
from recforge.data.interactions import Interactions
from recforge.data.synthetic import make_interactions
from recforge.data.vocab import IdVocab
from recforge.errors import ConfigError, DataError, UnknownIdError


# ----------------------------------------------------------------------------------------- helpers
def frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    cols = ["user_id", "item_id", "rating", "timestamp"][: len(rows[0])]
    return pd.DataFrame(rows, columns=cols)


def inter(rows: list[tuple[Any, ...]], **kw: Any) -> Interactions:
    return Interactions.from_frame(frame(rows), **kw)


def row_set(x: Interactions | None) -> Counter[tuple[Any, ...]]:
    if x is None:
        return Counter()
    f = x.to_frame()
    return Counter(zip(f.user_id, f.item_id, f.rating, f.timestamp, strict=True))


def pairs(x: Interactions) -> set[tuple[Any, Any]]:
    f = x.to_frame()
    return set(zip(f.user_id, f.item_id, strict=True))


def canon(*parts: Interactions | None) -> pd.DataFrame:
    """All rows of the parts as one frame in a canonical order (a multiset, compared fast)."""
    df = pd.concat([p.to_frame() for p in parts if p is not None], ignore_index=True)
    return df.sort_values(list(df.columns), kind="mergesort").reset_index(drop=True)


def assert_partition(data: Interactions, split: S.Split) -> None:
    """Every row of data is in exactly one part, with its rating and timestamp intact."""
    pd.testing.assert_frame_equal(canon(split.train, split.test, split.valid), canon(data))


def assert_no_shared_pairs(split: S.Split) -> None:
    parts = [split.train, split.test] + ([split.valid] if split.valid is not None else [])
    for a in range(len(parts)):
        for b in range(a + 1, len(parts)):
            assert not pairs(parts[a]) & pairs(parts[b])


def assert_time_ordered(earlier: Interactions, later: Interactions) -> None:
    """No user has an event in ``later`` strictly before one of theirs in ``earlier``."""
    e = earlier.to_frame().groupby("user_id")["timestamp"].max()
    lt = later.to_frame().groupby("user_id")["timestamp"].min()
    common = e.index.intersection(lt.index)
    assert (lt[common] >= e[common]).all()


def assert_encoding_rule(split: S.Split) -> None:
    tr = split.train
    # train is compact: every vocabulary entry occurs
    assert np.all(tr.user_counts() > 0) and np.all(tr.item_counts() > 0)
    for part in (split.test, split.valid):
        if part is None:
            continue
        np.testing.assert_array_equal(part.users.ids[: tr.n_users], tr.users.ids)
        np.testing.assert_array_equal(part.items.ids[: tr.n_items], tr.items.ids)
        # known raw ids have the same index as in train; unknown ones are beyond train's range
        f = part.to_frame()
        u_tr = tr.users.index(f.user_id.to_numpy(), missing="negative")
        i_tr = tr.items.index(f.item_id.to_numpy(), missing="negative")
        known_u, known_i = u_tr >= 0, i_tr >= 0
        np.testing.assert_array_equal(part.user_idx[known_u], u_tr[known_u])
        np.testing.assert_array_equal(part.item_idx[known_i], i_tr[known_i])
        assert np.all(part.user_idx[~known_u] >= tr.n_users)
        assert np.all(part.item_idx[~known_i] >= tr.n_items)
        # ... and the result equals the library's own reencode
        ref = part.reencode(tr.users, tr.items, unknown="extend")
        np.testing.assert_array_equal(ref.user_idx, part.user_idx)
        np.testing.assert_array_equal(ref.item_idx, part.item_idx)
        assert ref.users == part.users and ref.items == part.items


@pytest.fixture(scope="module")
def syn() -> Interactions:
    return make_interactions(150, 90, density=0.1, seed=11).interactions


# All single-Split protocols, for the shared property tests.
PROTOCOLS: dict[str, Callable[[Interactions], S.Split]] = {
    "random": lambda d: S.random_holdout(d, 0.2, seed=1),
    "random+valid": lambda d: S.random_holdout(d, 0.2, seed=1, valid_ratio=0.1),
    "kfold-0": lambda d: S.kfold(d, 4, seed=2)[0],
    "kfold-3": lambda d: S.kfold(d, 4, seed=2)[3],
    "temporal-user": lambda d: S.temporal_user(d, 0.25, min_events=3),
    "temporal-user-n": lambda d: S.temporal_user(d, test_n=2, min_events=3),
    "global-temporal": lambda d: S.global_temporal(d, test_ratio=0.3),
    "loo": lambda d: S.leave_latest_out(d),
    "loo+valid": lambda d: S.leave_latest_out(d, n=1, valid=True),
}
TEMPORAL = {"temporal-user", "temporal-user-n", "global-temporal", "loo", "loo+valid"}


# ---------------------------------------------------------------------------------------- protocol
def test_protocol_describe_and_round_trip() -> None:
    params = {"test_ratio": 0.2, "seed": np.int64(42)}
    p = S.Protocol("random-holdout", params)
    assert p.describe() == "random-holdout(test_ratio=0.2, seed=42)"
    assert str(p) == p.describe()
    assert type(p.params["seed"]) is int  # numpy scalars become plain values
    params["seed"] = 7  # the protocol keeps its own copy
    assert p.params["seed"] == 42
    assert S.Protocol.from_dict(p.to_dict()) == p
    assert hash(S.Protocol.from_dict(p.to_dict())) == hash(p)
    assert S.Protocol("ml100k-u1").describe() == "ml100k-u1"
    assert pickle.loads(pickle.dumps(p)) == p


# ------------------------------------------------------------------------------- shared properties
@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_protocol_partitions_rows_without_leaks(syn: Interactions, name: str) -> None:
    split = PROTOCOLS[name](syn)
    assert isinstance(split, S.Split)
    assert len(split.train) > 0 and len(split.test) > 0
    assert_partition(syn, split)
    assert_no_shared_pairs(split)
    assert_encoding_rule(split)
    if name in TEMPORAL:
        assert split.protocol.temporal
        assert_time_ordered(split.train, split.test)
        if split.valid is not None:
            assert_time_ordered(split.train, split.valid)
            assert_time_ordered(split.valid, split.test)
    # metadata carries over to every part
    for part in (split.train, split.test, split.valid):
        if part is not None:
            assert part.item_meta is syn.item_meta
            assert part.rating_scale == syn.rating_scale
            assert part.source == syn.source
    s = split.summary()
    assert s["n_train"] + s["n_test"] + s["n_valid"] == len(syn)
    assert s["protocol"] == split.protocol.describe()


uids = st.integers(1, 8)
iids = st.integers(1, 12)


@st.composite
def small_data(draw: st.DrawFn) -> Interactions:
    keys = draw(st.lists(st.tuples(uids, iids), min_size=6, max_size=60, unique=True))
    # few distinct timestamps, so ties are common
    ts = draw(st.lists(st.integers(0, 5), min_size=len(keys), max_size=len(keys)))
    rows = [(u, i, float((u * i) % 5 + 1), t) for (u, i), t in zip(keys, ts, strict=True)]
    return inter(rows, rating_scale=(1.0, 5.0))


@settings(max_examples=40, deadline=None)
@given(small_data(), st.sampled_from(sorted(PROTOCOLS)))
def test_protocols_property(data: Interactions, name: str) -> None:
    try:
        split = PROTOCOLS[name](data)
    except DataError as exc:
        # tiny data may leave a part empty; that must be refused with a clear message, not a leak
        assert "no event in test" in str(exc) or "too few" in str(exc) or "every event" in str(exc)
        return
    assert_partition(data, split)
    assert_no_shared_pairs(split)
    assert_encoding_rule(split)
    if name in TEMPORAL:
        assert_time_ordered(split.train, split.test)
        if split.valid is not None:
            assert_time_ordered(split.valid, split.test)


# --------------------------------------------------------------------------------- random hold-out
def tiny(n: int = 10) -> Interactions:
    return inter([(u, 100 + u, 3.0, u) for u in range(n)])


@pytest.mark.parametrize(
    ("n", "ratio", "valid", "expected"),
    [
        (10, 0.2, 0.0, (8, 2, 0)),
        (10, 0.25, 0.0, (7, 3, 0)),
        (10, 0.2, 0.1, (7, 2, 1)),
        (7, 0.5, 0.0, (3, 4, 0)),
    ],
)
def test_random_holdout_counts(
    n: int, ratio: float, valid: float, expected: tuple[int, int, int]
) -> None:
    split = S.random_holdout(tiny(n), ratio, seed=0, valid_ratio=valid)
    n_valid = 0 if split.valid is None else len(split.valid)
    assert (len(split.train), len(split.test), n_valid) == expected
    assert split.protocol.name == "random-holdout"
    assert split.protocol.params["test_ratio"] == ratio


def test_random_holdout_seeds(syn: Interactions) -> None:
    a = S.random_holdout(syn, seed=5)
    b = S.random_holdout(syn, seed=5)
    c = S.random_holdout(syn, seed=6)
    assert row_set(a.test) == row_set(b.test)
    assert a.train.fingerprint() == b.train.fingerprint()
    assert row_set(a.test) != row_set(c.test)
    assert a.protocol.describe() == "random-holdout(test_ratio=0.2, seed=5)"


@pytest.mark.parametrize("kw", [{"test_ratio": 0.0}, {"test_ratio": 1.0}, {"valid_ratio": 0.8}])
def test_random_holdout_bad_ratios(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        S.random_holdout(tiny(), **kw)


def test_too_little_data_is_a_data_error() -> None:
    with pytest.raises(DataError, match="too few"):
        S.random_holdout(tiny(2), 0.1)


def test_duplicate_pairs_are_refused() -> None:
    data = inter([(1, 1, 3.0, 0), (1, 1, 4.0, 1), (2, 1, 3.0, 0), (2, 2, 3.0, 0)])
    for fn in (S.random_holdout, S.leave_latest_out, S.temporal_user):
        with pytest.raises(DataError, match=r"duplicate \(user_id, item_id\) rows, e.g. \(1, 1\)"):
            fn(data)


# ------------------------------------------------------------------------------------------ k-fold
def test_kfold_covers_each_row_exactly_once(syn: Interactions) -> None:
    folds = S.kfold(syn, k=4, seed=3)
    assert len(folds) == 4
    total: Counter[tuple[Any, ...]] = Counter()
    for f, split in enumerate(folds):
        total += row_set(split.test)
        assert_partition(syn, split)
        assert split.protocol.params == {"k": 4, "fold": f, "seed": 3}
    assert total == row_set(syn)
    sizes = sorted(len(s.test) for s in folds)
    assert sizes[-1] - sizes[0] <= 1


def test_kfold_seeds_and_bad_k(syn: Interactions) -> None:
    a = S.kfold(syn, 3, seed=1)
    b = S.kfold(syn, 3, seed=1)
    c = S.kfold(syn, 3, seed=2)
    assert [row_set(x.test) for x in a] == [row_set(x.test) for x in b]
    assert row_set(a[0].test) != row_set(c[0].test)
    with pytest.raises(ConfigError):
        S.kfold(syn, 1)
    with pytest.raises(DataError):
        S.kfold(tiny(3), 5)


# -------------------------------------------------------------------------------------- predefined
def test_predefined_unknown_counts_and_encoding_by_hand() -> None:
    train = frame([(1, 10, 4.0, 1), (1, 20, 3.0, 2), (2, 10, 5.0, 3)])
    test = frame(
        [
            (2, 20, 1.0, 4),  # known user, known item
            (3, 10, 2.0, 5),  # unknown user
            (1, 30, 3.0, 6),  # unknown item
            (4, 40, 4.0, 7),  # unknown user and item
            (3, 20, 5.0, 8),  # unknown user
        ]
    )
    split = S.predefined(train, test, name="hand-u1", rating_scale=(1.0, 5.0), source="hand")
    assert split.protocol.describe() == "hand-u1"
    assert split.train.users.ids.tolist() == [1, 2]
    assert split.test.users.ids.tolist() == [1, 2, 3, 4]
    assert split.test.items.ids.tolist() == [10, 20, 30, 40]
    assert split.test.user_idx.tolist() == [1, 2, 0, 3, 2]
    assert split.test.item_idx.tolist() == [1, 0, 2, 3, 1]
    assert split.n_test_unknown_users == 3
    assert split.n_test_unknown_items == 2
    assert split.known_test_mask().tolist() == [True, False, False, False, False]
    known = split.test_known()
    assert known.users is split.train.users and known.items is split.train.items
    assert known.to_frame()[["user_id", "item_id"]].values.tolist() == [[2, 20]]
    s = split.summary()
    assert (s["n_test_unknown_user_ids"], s["n_test_unknown_item_ids"]) == (2, 2)
    assert (s["n_test_users"], s["n_test_items"]) == (4, 4)
    for part in (split.train, split.test):
        assert part.rating_scale == (1.0, 5.0) and part.source == "hand"


def test_predefined_accepts_interactions_and_carries_their_metadata(syn: Interactions) -> None:
    base = S.random_holdout(syn, seed=0)
    again = S.predefined(base.train, base.test, name="copy")
    assert row_set(again.test) == row_set(base.test)
    assert again.test.item_meta is syn.item_meta
    assert again.train.source == syn.source


def test_predefined_refuses_overlapping_files() -> None:
    train = frame([(1, 10, 4.0, 1), (2, 10, 5.0, 3)])
    test = frame([(2, 10, 1.0, 4)])
    with pytest.raises(DataError, match=r"pair \(user 2, item 10\) is in both train and test"):
        S.predefined(train, test, name="bad")


def test_split_constructor_enforces_the_encoding_rule() -> None:
    train = inter([(1, 10, 4.0, 1), (2, 20, 5.0, 3)])
    test = inter([(2, 10, 1.0, 4)], users=IdVocab([2, 1]), items=train.items)
    with pytest.raises(DataError, match="not encoded against train"):
        S.Split(train, test, None, S.Protocol("x"))


# ------------------------------------------------------------------------------- temporal per user
def test_temporal_user_by_hand() -> None:
    rows = [("A", i, 3.0, t) for i, t in zip([1, 2, 3, 4, 5], [5, 1, 3, 2, 4], strict=True)]
    rows += [
        ("B", i, 3.0, i) for i in range(1, 26)
    ]  # 25 events: 0.28 · 25 = 7, not 8 by float noise
    rows += [("C", i, 3.0, i) for i in range(1, 4)]  # 3 events < min_events: all train
    rows += [("D", i, 3.0, 7) for i in (50, 10, 40, 20, 30)]  # all tied: ties by item id
    data = inter(rows)
    split = S.temporal_user(data, 0.28)
    test = split.test.to_frame()
    got = {u: sorted(g.item_id) for u, g in test.groupby("user_id")}
    assert got == {"A": [1, 5], "B": list(range(19, 26)), "D": [40, 50]}  # ceil(0.28·5) = 2
    assert split.protocol.describe() == "temporal-user(test_ratio=0.28, min_events=5)"
    by_n = S.temporal_user(data, test_n=1).test.to_frame()
    assert sorted(zip(by_n.user_id, by_n.item_id, strict=True)) == [("A", 1), ("B", 25), ("D", 50)]
    # test_n is capped so each user keeps one training event
    big = S.temporal_user(data, test_n=50, min_events=1)
    assert sorted(big.train.to_frame().groupby("user_id").size().tolist()) == [1, 1, 1, 1]


def test_temporal_ties_use_raw_item_id_not_index() -> None:
    # A vocabulary whose index order (30, 10, 20) differs from raw-id order.
    items = IdVocab([30, 10, 20], name="item")
    users = IdVocab(["u"], name="user")
    data = Interactions(
        np.zeros(3, np.int32),
        np.array([0, 1, 2], np.int32),
        np.ones(3, np.float32),
        np.full(3, 5, np.int64),
        users,
        items,
    )
    split = S.temporal_user(data, test_n=1, min_events=2)
    assert split.test.to_frame().item_id.tolist() == [30]


def test_temporal_user_seeded_tie_breaking() -> None:
    rows = [(u, i, 3.0, 0) for u in range(1, 21) for i in range(1, 11)]  # no timestamps at all
    data = inter(rows)
    by_id = S.temporal_user(data, test_n=2)
    assert set(by_id.test.to_frame().item_id) == {9, 10}  # deterministic: highest item ids
    a, b = S.temporal_user(data, test_n=2, seed=1), S.temporal_user(data, test_n=2, seed=1)
    c = S.temporal_user(data, test_n=2, seed=2)
    assert row_set(a.test) == row_set(b.test) != row_set(c.test)
    assert len(set(a.test.to_frame().item_id)) > 2
    assert a.protocol.params["seed"] == 1


def test_temporal_user_argument_errors(syn: Interactions) -> None:
    with pytest.raises(ConfigError, match="not both"):
        S.temporal_user(syn, 0.2, test_n=2)
    with pytest.raises(ConfigError):
        S.temporal_user(syn, test_n=0)
    with pytest.raises(DataError, match="no event in test"):
        S.temporal_user(tiny(), 0.2)  # every user has one event


# -------------------------------------------------------------------------------------- global cut
def test_global_temporal_by_hand() -> None:
    data = inter([(u % 3, u, 3.0, u) for u in range(1, 11)])  # timestamps 1..10
    split = S.global_temporal(data, test_ratio=0.2)
    assert sorted(split.test.timestamp.tolist()) == [9, 10]
    assert split.protocol.describe() == "global-temporal(test_ratio=0.2, cutoff=9)"
    cut = S.global_temporal(data, cutoff=8)
    assert sorted(cut.test.timestamp.tolist()) == [8, 9, 10]
    assert cut.protocol.params == {"cutoff": 8}
    ties = inter([(1, 1, 3.0, 1), (1, 2, 3.0, 2), (2, 1, 3.0, 3), (2, 2, 3.0, 3), (3, 1, 3.0, 3)])
    assert len(S.global_temporal(ties, test_ratio=0.2).test) == 3  # ties at the cut go to test
    with pytest.raises(DataError, match="timestamps missing"):
        S.global_temporal(inter([(1, 1, 3.0, 0), (2, 2, 3.0, 0)]))
    with pytest.raises(ConfigError):
        S.global_temporal(data, cutoff=3, test_ratio=0.2)


def test_global_temporal_counts_new_users_and_items() -> None:
    data = inter([(1, 1, 3.0, 1), (2, 2, 3.0, 2), (3, 1, 3.0, 10), (1, 3, 3.0, 11)])
    split = S.global_temporal(data, cutoff=10)
    assert split.n_test_unknown_users == 1  # user 3 appears only after the cut
    assert split.n_test_unknown_items == 1  # item 3 too
    assert split.known_test_mask().tolist() == [False, False]


# -------------------------------------------------------------------------------- leave latest out
def test_leave_latest_out_by_hand() -> None:
    rows = [("solo", 1, 3.0, 1)]
    rows += [("two", 1, 3.0, 1), ("two", 2, 3.0, 2)]
    rows += [("three", 3, 3.0, 30), ("three", 1, 3.0, 10), ("three", 2, 3.0, 20)]
    data = inter(rows)

    def rows_by_user(x: Interactions | None) -> dict[str, list[int]]:
        assert x is not None
        return {u: sorted(g.item_id) for u, g in x.to_frame().groupby("user_id")}

    plain = S.leave_latest_out(data)
    assert rows_by_user(plain.test) == {"three": [3], "two": [2]}
    assert rows_by_user(plain.train) == {"solo": [1], "three": [1, 2], "two": [1]}
    assert plain.valid is None
    with_valid = S.leave_latest_out(data, valid=True)
    assert rows_by_user(with_valid.test) == {"three": [3], "two": [2]}
    assert rows_by_user(with_valid.valid) == {"three": [2]}  # "two" would be left with no train
    assert rows_by_user(with_valid.train) == {"solo": [1], "three": [1], "two": [1]}
    assert with_valid.protocol.describe() == "leave-latest-out(n=1, valid=True)"


# ---------------------------------------------------------------------------------- held-out users
def test_heldout_users_structure(syn: Interactions) -> None:
    h = S.heldout_users(syn, valid_users=10, test_users=0.1, seed=3)
    assert isinstance(h, S.HeldOutSplit)
    assert h.valid_foldin is not None and h.valid_target is not None
    train_users = set(h.train.users.ids)
    test_users = set(h.test_foldin.to_frame().user_id) | set(h.test_target.to_frame().user_id)
    valid_users = set(h.valid_foldin.to_frame().user_id)
    assert len(test_users) == 15 and len(valid_users) == 10
    assert not train_users & test_users and not train_users & valid_users
    assert not test_users & valid_users
    assert train_users | test_users | valid_users == set(syn.users.ids)
    for foldin, target in ((h.test_foldin, h.test_target), (h.valid_foldin, h.valid_target)):
        assert foldin.users is target.users  # rows of their CSR line up
        assert foldin.items == h.train.items  # train's item index space
        assert not pairs(foldin) & pairs(target)
        # 80/20 per user: target = ceil(0.2 n) of each user's events
        n_f = foldin.user_counts()
        n_t = target.user_counts()
        n = n_f + n_t
        np.testing.assert_array_equal(
            n_t, np.minimum(np.maximum(np.ceil(0.2 * n - 1e-9), 1), n - 1)
        )
    # nothing lost: all held-out rows are in fold-in or target (no unknown items in this data)
    assert h.n_dropped_unknown_items == 0
    total = row_set(h.train) + row_set(h.test_foldin) + row_set(h.test_target)
    total += row_set(h.valid_foldin) + row_set(h.valid_target)
    assert total == row_set(syn)
    assert h.summary()["n_test_users"] == 15


def test_heldout_users_seeds_and_min_events(syn: Interactions) -> None:
    a = S.heldout_users(syn, seed=1)
    b = S.heldout_users(syn, seed=1)
    c = S.heldout_users(syn, seed=2)
    assert row_set(a.test_target) == row_set(b.test_target)
    assert set(a.test_foldin.users.ids) != set(c.test_foldin.users.ids)
    counts = syn.user_counts()
    big = S.heldout_users(syn, min_events=int(np.median(counts)))
    held = big.test_foldin.users.index(syn.users.ids, missing="negative") >= 0
    assert np.all(counts[held] >= np.median(counts))


def test_heldout_users_drops_unknown_items_by_hand() -> None:
    # Three users with >= 5 events (eligible) are all held out; two small users stay in train.
    rows = [(u, i, 3.0, 0) for u in ("e1", "e2", "e3") for i in (1, 2, 3, 4, 5)]
    rows += [("e1", 99, 3.0, 0)]  # item 99 only rated by a held-out user
    rows += [("s1", 1, 3.0, 0), ("s1", 2, 3.0, 0), ("s2", 3, 3.0, 0), ("s2", 4, 3.0, 0)]
    rows += [("s2", 5, 3.0, 0)]
    h = S.heldout_users(inter(rows), valid_users=1, test_users=2, seed=0, min_events=5)
    assert set(h.train.users.ids) == {"s1", "s2"}
    assert h.n_dropped_unknown_items == 1
    assert h.valid_foldin is not None and h.valid_target is not None
    assert h.valid_foldin.n_users == 1 and h.test_foldin.n_users == 2
    # 5 events each: ceil(0.2 · 5) = 1 target per user, 4 fold-in
    assert len(h.test_target) == 2 and len(h.test_foldin) == 8
    assert 99 not in set(h.test_foldin.items.ids)


def test_heldout_users_too_many_users(syn: Interactions) -> None:
    with pytest.raises(DataError, match="too few"):
        S.heldout_users(syn, valid_users=100, test_users=100)
    with pytest.raises(ConfigError):
        S.heldout_users(syn, test_users=1.5)


# -------------------------------------------------------------------------------------- leak check
def test_check_no_leak_catches_shared_pair() -> None:
    data = inter([(1, 10, 4.0, 1), (2, 10, 5.0, 3), (2, 20, 5.0, 2)])
    bad = S.Split.from_parts(
        data.subset(np.array([0, 1])),
        data.subset(np.array([1, 2])),
        protocol=S.Protocol("planted"),
        check=False,
    )
    with pytest.raises(
        DataError, match=r"planted: pair \(user 2, item 10\) is in both train and test"
    ):
        S.check_no_leak(bad)


def test_check_no_leak_catches_shared_pair_between_valid_and_test_with_unknown_ids() -> None:
    # Unknown ids are extended separately in valid and test, so they must be compared by raw id.
    data = inter([(1, 10, 4.0, 1), (2, 20, 5.0, 3), (3, 30, 5.0, 4)])
    bad = S.Split.from_parts(
        data.subset(np.array([0])),
        data.subset(np.array([2])),
        data.subset(np.array([1, 2])),
        protocol=S.Protocol("planted"),
        check=False,
    )
    with pytest.raises(DataError, match=r"pair \(user 3, item 30\) is in both valid and test"):
        S.check_no_leak(bad)


def test_check_no_leak_temporal_order() -> None:
    data = inter([(1, 10, 4.0, 5), (1, 20, 5.0, 3), (2, 20, 5.0, 1)])
    train, test = data.subset(np.array([0, 2])), data.subset(np.array([1]))
    fine = S.Split.from_parts(train, test, protocol=S.Protocol("untimed"), check=False)
    S.check_no_leak(fine)  # order is only checked for temporal protocols
    bad = S.Split.from_parts(train, test, protocol=S.Protocol("timed", temporal=True), check=False)
    with pytest.raises(DataError, match="user 1 has a test event at 3 before a train event at 5"):
        S.check_no_leak(bad)


def test_check_no_leak_heldout_user_in_train(syn: Interactions) -> None:
    h = S.heldout_users(syn, seed=0)
    leaky = S.HeldOutSplit(syn, None, None, h.test_foldin, h.test_target, h.protocol)
    with pytest.raises(DataError, match=r"held-out test user .* also occurs in train"):
        S.check_no_leak(leaky)


# -------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("name", ["random", "temporal-user", "global-temporal", "loo", "kfold-0"])
def test_carve_validation_uses_train_only(syn: Interactions, name: str) -> None:
    parent = PROTOCOLS[name](syn)
    val = S.carve_validation(parent)
    assert row_set(val.train) + row_set(val.test) == row_set(parent.train)
    assert not pairs(val.test) & pairs(parent.test)
    assert val.protocol.params["from_train_of"] == parent.protocol.describe()
    expected = {"kfold-0": "random-holdout", "random": "random-holdout", "loo": "leave-latest-out"}
    assert val.protocol.name == expected.get(name, name)
    if name == "kfold-0":
        assert val.protocol.params["test_ratio"] == pytest.approx(0.25)


def test_carve_validation_explicit_protocol_and_alias(syn: Interactions) -> None:
    parent = S.random_holdout(syn, seed=0)
    val = S.validation_split(parent.train, "random", test_ratio=0.1, seed=3)
    assert val.protocol.name == "random-holdout"
    assert len(val.test) == round(0.1 * len(parent.train))
    assert val.protocol.params["seed"] == 3
    loo = S.carve_validation(parent, "loo")
    assert loo.protocol.name == "leave-latest-out"
    with pytest.raises(ConfigError):
        S.carve_validation(parent, "kfold")


# ------------------------------------------------------------------------------------------- specs
@pytest.mark.parametrize(
    ("spec", "describe"),
    [
        ("random:0.2", "random-holdout(test_ratio=0.2, seed=42)"),
        ("random:0.2:seed=7", "random-holdout(test_ratio=0.2, seed=7)"),
        (
            "random-holdout:test_ratio=0.3:valid_ratio=0.1",
            "random-holdout(test_ratio=0.3, seed=42, valid_ratio=0.1)",
        ),
        ("kfold:5:fold=2", "kfold(k=5, fold=2, seed=42)"),
        ("temporal-user:0.2", "temporal-user(test_ratio=0.2, min_events=5)"),
        ("temporal-user:test_n=2:min_events=3", "temporal-user(test_n=2, min_events=3)"),
        ("global-temporal:0.2", None),
        ("loo", "leave-latest-out(n=1, valid=False)"),
        ("LOO:valid=true", "leave-latest-out(n=1, valid=True)"),
        (
            "heldout-users",
            "heldout-users(valid_users=0.1, test_users=0.1, foldin_ratio=0.8, seed=42, "
            "min_events=5)",
        ),
    ],
)
def test_make_split_specs(syn: Interactions, spec: str, describe: str | None) -> None:
    result = S.make_split(syn, spec)
    assert isinstance(result, S.Split | S.HeldOutSplit)
    if describe is not None:
        assert result.protocol.describe() == describe
    else:
        assert result.protocol.name == "global-temporal"


def test_make_split_kfold_gives_all_folds(syn: Interactions) -> None:
    folds = S.make_split(syn, "kfold:5")
    assert isinstance(folds, list) and len(folds) == 5
    assert [f.protocol.params["fold"] for f in folds] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("ml100k:u1", r"unknown split 'ml100k'; valid specs: random:0\.2.*handled by the CLI"),
        ("bogus", "unknown split 'bogus'"),
        ("random:0.2:sed=7", "unknown parameter 'sed'; valid: test_ratio, seed, valid_ratio"),
        ("random:0.2:0.3", "expected key=value"),
        ("random:1.5", "test_ratio must be a number in"),
        ("kfold:5:fold=9", "fold must be an integer in 0..4"),
        ("random:0.2:seed=1:seed=2", "seed given twice"),
    ],
)
def test_make_split_bad_specs(syn: Interactions, spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        S.make_split(syn, spec)


def test_parse_split_spec_values() -> None:
    assert S.parse_split_spec("random") == ("random-holdout", {})
    assert S.parse_split_spec("temporal_user:0.5:seed=none") == (
        "temporal-user",
        {"test_ratio": 0.5, "seed": None},
    )
    assert S.parse_split_spec("kfold:3:fold=1") == ("kfold", {"k": 3, "fold": 1})
    assert len(S.valid_split_specs()) == 6


def test_split_pickles(syn: Interactions) -> None:
    split = S.random_holdout(syn, seed=0)
    back = pickle.loads(pickle.dumps(split))
    assert back.protocol == split.protocol
    assert back.test.fingerprint() == split.test.fingerprint()


# ------------------------------------------------------------------------------------- MovieLens
def _ml100k_dir() -> Path:
    root = os.environ.get("RECFORGE_DATA_DIR")
    folder = Path(root) / "ml-100k" if root else None
    if folder is None or not (folder / "u1.base").is_file():
        pytest.skip("RECFORGE_DATA_DIR is unset or holds no ml-100k/ folder")
    return folder


def _read_ml100k(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", names=["user_id", "item_id", "rating", "timestamp"])


@pytest.mark.movielens
def test_ml100k_predefined_folds_partition_u_data() -> None:
    folder = _ml100k_dir()
    full = Interactions.from_frame(_read_ml100k(folder / "u.data"))
    tests: list[Interactions] = []
    for fold in ("u1", "u2", "u3", "u4", "u5"):
        split = S.predefined(
            _read_ml100k(folder / f"{fold}.base"),
            _read_ml100k(folder / f"{fold}.test"),
            name=f"ml100k-{fold}",
            rating_scale=(1.0, 5.0),
        )
        assert (len(split.train), len(split.test)) == (80_000, 20_000)
        assert split.n_test_unknown_users == 0  # every user is in every base file
        assert_partition(full, split)
        assert_encoding_rule(split)
        tests.append(split.test)
    # the five test files are disjoint and together cover u.data
    pd.testing.assert_frame_equal(canon(*tests), canon(full))


# ---------------------------------------------------- found by mutation testing (data/split.py)
def _tiny() -> Interactions:
    """Three users, timestamps 1..9: u1 has 4 events, u2 3, u3 2 (source "tiny")."""
    rows = [
        (1, 10, 4.0, 1), (1, 20, 3.0, 2), (1, 30, 5.0, 3), (1, 40, 2.0, 4),
        (2, 10, 1.0, 5), (2, 20, 2.0, 6), (2, 50, 3.0, 7),
        (3, 30, 4.0, 8), (3, 60, 5.0, 9),
    ]  # fmt: skip
    return inter(rows, source="tiny")


SPEC_LIST = ", ".join(S.valid_split_specs())
BAD_CALLS: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: S.random_holdout(_tiny(), 0.2, valid_ratio=0.8), ConfigError,
     "valid_ratio must be in [0, 1) with test_ratio + valid_ratio < 1, got 0.8"),
    (lambda: S.random_holdout(_tiny(), 0.2, valid_ratio=-0.1), ConfigError,
     "valid_ratio must be in [0, 1) with test_ratio + valid_ratio < 1, got -0.1"),
    (lambda: S.random_holdout(_tiny(), 0.01), DataError,
     "tiny: 9 events are too few for test_ratio=0.01, valid_ratio=0.0; every part needs at "
     "least one event"),
    (lambda: S.random_holdout(_tiny(), 0.5, valid_ratio=0.04), DataError,
     "tiny: 9 events are too few for test_ratio=0.5, valid_ratio=0.04; every part needs at "
     "least one event"),
    (lambda: S.random_holdout(_tiny(), 1.0), ConfigError,
     "test_ratio must be a number in (0, 1), got 1.0"),
    (lambda: S.random_holdout(_tiny(), "0.2"), ConfigError,  # type: ignore[arg-type]
     "test_ratio must be a number in (0, 1), got '0.2'"),
    (lambda: S.kfold(_tiny(), 1), ConfigError, "kfold needs an integer k >= 2, got 1"),
    (lambda: S.kfold(_tiny(), 2.0), ConfigError,  # type: ignore[arg-type]
     "kfold needs an integer k >= 2, got 2.0"),
    (lambda: S.kfold_fold(_tiny(), 3, 3), ConfigError,
     "kfold fold must be an integer in 0..2, got 3"),
    (lambda: S.kfold_fold(_tiny(), 3, -1), ConfigError,
     "kfold fold must be an integer in 0..2, got -1"),
    (lambda: S.kfold_fold(_tiny(), 3, 1.0), ConfigError,  # type: ignore[arg-type]
     "kfold fold must be an integer in 0..2, got 1.0"),
    (lambda: S.kfold(_tiny(), 10), DataError, "tiny: 9 events cannot fill k=10 folds"),
    (lambda: S.predefined(frame([(1, 10)]).iloc[:0], frame([(1, 10)]), name="u9"), DataError,
     "u9: predefined split 'u9' has an empty train or test part"),
    (lambda: S.predefined(frame([(1, 10)]), frame([(2, 10)]).iloc[:0], name="u9", source="s"),
     DataError, "s: predefined split 'u9' has an empty train or test part"),
    (lambda: S.predefined([1], frame([(1, 10)])), ConfigError,  # type: ignore[arg-type]
     "predefined: train must be a DataFrame or Interactions, got list"),
    (lambda: S.predefined(frame([(1, 10)]), None), ConfigError,  # type: ignore[arg-type]
     "predefined: test must be a DataFrame or Interactions, got NoneType"),
    (lambda: S.temporal_user(_tiny(), 0.2, test_n=1), ConfigError,
     "temporal_user takes test_ratio or test_n, not both"),
    (lambda: S.temporal_user(_tiny(), test_n=0), ConfigError, "test_n must be >= 1, got 0"),
    (lambda: S.temporal_user(_tiny(), min_events=0), ConfigError,
     "min_events must be >= 1, got 0"),
    (lambda: S.temporal_user(_tiny(), 1.5), ConfigError,
     "test_ratio must be a number in (0, 1), got 1.5"),
    (lambda: S.temporal_user(_tiny(), min_events=5), DataError,
     "tiny: temporal-user put no event in test (users have too few events?); lower "
     "min_events or use a random protocol"),
    (lambda: S.global_temporal(_tiny(), cutoff=3, test_ratio=0.2), ConfigError,
     "global_temporal takes cutoff or test_ratio, not both"),
    (lambda: S.global_temporal(_tiny(), test_ratio=0.0), ConfigError,
     "test_ratio must be a number in (0, 1), got 0.0"),
    (lambda: S.global_temporal(inter([(1, 10, 1.0, 5)], source="one")), DataError,
     "one: 1 events are too few to split"),
    (lambda: S.global_temporal(_tiny(), cutoff=0), DataError,
     "tiny: every event is at or after the cut 0 (are timestamps missing?); pass an explicit "
     "cutoff or use a random protocol"),
    (lambda: S.global_temporal(_tiny(), cutoff=100), DataError,
     "tiny: global-temporal put no event in test (users have too few events?); lower "
     "min_events or use a random protocol"),
    (lambda: S.leave_latest_out(_tiny(), n=0), ConfigError, "leave_latest_out needs n >= 1, got 0"),
    (lambda: S.leave_latest_out(_tiny(), n=4), DataError,
     "tiny: leave-latest-out put no event in test (users have too few events?); lower "
     "min_events or use a random protocol"),
    (lambda: S.heldout_users(_tiny(), foldin_ratio=1.0), ConfigError,
     "foldin_ratio must be a number in (0, 1), got 1.0"),
    (lambda: S.heldout_users(_tiny(), min_events=3, foldin_events=3), ConfigError,
     "foldin_events must be in 1..2 (below min_events), got 3"),
    (lambda: S.heldout_users(_tiny(), min_events=3, foldin_events=0), ConfigError,
     "foldin_events must be in 1..2 (below min_events), got 0"),
    (lambda: S.heldout_users(_tiny(), test_users=0, valid_users=0), ConfigError,
     "test_users=0 selects no user out of 3"),
    (lambda: S.heldout_users(_tiny(), test_users=0.1, valid_users=0), ConfigError,
     "test_users=0.1 selects no user out of 3"),
    (lambda: S.heldout_users(_tiny(), test_users=3, valid_users=0, min_events=2), DataError,
     "tiny: 3 users have >= 2 events, too few to hold out 3 test and 0 validation users and "
     "keep training users"),
    (lambda: S.heldout_users(_tiny(), test_users=1, valid_users=1, min_events=4), DataError,
     "tiny: 1 users have >= 4 events, too few to hold out 1 test and 1 validation users and "
     "keep training users"),
    (lambda: S.heldout_users(_tiny(), test_users=True), ConfigError,  # type: ignore[arg-type]
     "test_users must be a fraction in [0, 1) or a user count, got True"),
    (lambda: S.heldout_users(_tiny(), valid_users=-1), ConfigError,
     "valid_users must be a fraction in [0, 1) or a user count, got -1"),
    (lambda: S.heldout_users(_tiny(), valid_users="1"), ConfigError,  # type: ignore[arg-type]
     "valid_users must be a fraction in [0, 1) or a user count, got '1'"),
    (lambda: S.heldout_users(_tiny(), test_users=1.0), ConfigError,
     "test_users=1.0: a float is a fraction and must be < 1; pass an int count"),
    (lambda: S.carve_validation(_tiny(), "k-fold"), ConfigError,
     "carve_validation: kfold does not give one validation split; use random"),
    (lambda: S.carve_validation(_tiny(), "heldout"), ConfigError,
     "carve_validation: heldout-users does not give one validation split; use random"),
    (lambda: S.parse_split_spec("random:0.2:0.3"), ConfigError,
     "split spec 'random:0.2:0.3': expected key=value, got '0.3'"),
    (lambda: S.parse_split_spec("random:seed=1:seed=2"), ConfigError,
     "split spec 'random:seed=1:seed=2': seed given twice"),
    (lambda: S.parse_split_spec("random:0.2:sed=7"), ConfigError,
     "split random-holdout: unknown parameter 'sed'; valid: test_ratio, seed, valid_ratio"),
    (lambda: S.parse_split_spec("random:zz=1:aa=2"), ConfigError,
     "split random-holdout: unknown parameter 'aa'; valid: test_ratio, seed, valid_ratio"),
    (lambda: S.parse_split_spec(" Bogus_Name "), ConfigError,
     f"unknown split 'Bogus_Name'; valid specs: {SPEC_LIST} (provider folds such as "
     "ml100k:u1 are handled by the CLI)"),
    (lambda: S.make_split(_tiny(), "kfold:3:fold=3"), ConfigError,
     "split spec 'kfold:3:fold=3': fold must be an integer in 0..2"),
    (lambda: S.make_split(_tiny(), "kfold:3:fold=x"), ConfigError,
     "split spec 'kfold:3:fold=x': fold must be an integer in 0..2"),
    (lambda: S.random_holdout(inter([(1, 10), (2, 20), (1, 10), (2, 20)], source="dup")),
     DataError,
     "dup: 2 duplicate (user_id, item_id) rows, e.g. (1, 10); a split would put copies on "
     "both sides — deduplicate first (read_ratings' duplicate policy 'last' or 'mean')"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS)
def test_every_refusal_has_its_exact_message(
    call: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message


def test_split_summary_and_repr_by_hand() -> None:
    train = frame([(1, 10, 4.0, 1), (1, 20, 3.0, 2), (2, 10, 5.0, 3)])
    test = frame([(2, 20, 1.0, 4), (3, 10, 2.0, 5), (1, 30, 3.0, 6)])
    valid = frame([(4, 40, 4.0, 7)])
    split = S.predefined(train, test, valid=valid, name="hand", params={"fold": 1}, source="h")
    assert split.summary() == {
        "protocol": "hand(fold=1)",
        "protocol_name": "hand",
        "params": {"fold": 1},
        "source": "h",
        "n_train": 3,
        "n_test": 3,
        "n_valid": 1,
        "n_train_users": 2,
        "n_train_items": 2,
        "n_test_users": 3,
        "n_test_items": 3,
        "n_test_unknown_users": 1,
        "n_test_unknown_items": 1,
        "n_test_unknown_user_ids": 1,
        "n_test_unknown_item_ids": 1,
        "n_valid_unknown_users": 1,
        "n_valid_unknown_items": 1,
    }
    assert repr(split) == "Split(hand(fold=1): train=3, test=3, valid=1)"
    assert split.known_test_mask("valid").tolist() == [False]
    assert len(split.test_known("valid")) == 0
    plain = S.predefined(train, test, name="hand")
    assert repr(plain) == "Split(hand: train=3, test=3)"
    summary = plain.summary()
    assert summary["n_valid"] == 0 and "n_valid_unknown_users" not in summary
    with pytest.raises(ConfigError) as info:
        plain.known_test_mask("valid")
    assert str(info.value) == "split hand has no valid part"


def test_split_constructor_names_the_part() -> None:
    train = inter([(1, 10, 4.0, 1), (2, 20, 5.0, 3)])
    good = inter([(2, 20, 1.0, 4)], users=train.users, items=train.items)
    bad = inter([(2, 10, 1.0, 4)], users=IdVocab([2, 1]), items=train.items)
    msg = (
        "Split: {} is not encoded against train's vocabularies; build splits with "
        "Split.from_parts(...) or a recforge.data.split protocol"
    )
    for test, valid, part in ((bad, None, "test"), (good, bad, "valid")):
        with pytest.raises(DataError) as info:
            S.Split(train, test, valid, S.Protocol("x"))
        assert str(info.value) == msg.format(part)
    short_items = inter([(2, 10, 1.0, 4)], users=train.users, items=IdVocab([10]))
    with pytest.raises(DataError):
        S.Split(train, short_items, None, S.Protocol("x"))
    short_users = inter([(1, 20, 1.0, 4)], users=IdVocab([1]), items=train.items)
    with pytest.raises(DataError):
        S.Split(train, short_users, None, S.Protocol("x"))


def test_heldout_summary_and_repr_by_hand() -> None:
    rows = [(u, i, 3.0, 0) for u in ("e1", "e2", "e3") for i in (1, 2, 3, 4, 5)]
    rows += [("e1", 99, 3.0, 0)]
    rows += [("s1", 1, 3.0, 0), ("s1", 2, 3.0, 0), ("s2", 3, 3.0, 0), ("s2", 4, 3.0, 0)]
    h = S.heldout_users(inter(rows, source="hs"), valid_users=1, test_users=2, seed=0, min_events=5)
    describe = "heldout-users(valid_users=1, test_users=2, foldin_ratio=0.8, seed=0, min_events=5)"
    assert h.summary() == {
        "protocol": describe,
        "protocol_name": "heldout-users",
        "params": {"valid_users": 1, "test_users": 2, "foldin_ratio": 0.8, "seed": 0,
                   "min_events": 5},
        "source": "hs",
        "n_train": 4,
        "n_train_users": 2,
        "n_train_items": 4,
        "n_test_users": 2,
        "n_test_foldin": 6,
        "n_test_target": 2,
        "n_dropped_unknown_items": 4,  # item 5 of each held-out user, and 99
        "n_valid_users": 1,
        "n_valid_foldin": 3,
        "n_valid_target": 1,
    }  # fmt: skip
    assert repr(h) == f"HeldOutSplit({describe}: train=4, test users=2)"
    no_valid = S.heldout_users(inter(rows), valid_users=0, test_users=1, min_events=5, seed=0)
    s = no_valid.summary()
    assert (s["n_valid_users"], s["n_valid_foldin"], s["n_valid_target"]) == (0, 0, 0)
    assert no_valid.valid_foldin is None and no_valid.valid_target is None
    fixed = S.heldout_users(inter(rows), test_users=1, valid_users=0, min_events=5,
                            foldin_events=2, seed=0)  # fmt: skip
    assert fixed.protocol.params["foldin_events"] == 2
    assert fixed.test_foldin.user_counts().tolist() == [2]


def test_heldout_targets_follow_the_ratio_and_the_fixed_count() -> None:
    rows = [(u, i, 3.0, 0) for u in range(6) for i in range(u + 4)]  # 4..9 events per user
    data = inter(rows)
    for ratio in (0.5, 0.7):
        h = S.heldout_users(data, valid_users=0, test_users=5, foldin_ratio=ratio, min_events=4,
                            seed=1)  # fmt: skip
        n_t, n_f = h.test_target.user_counts(), h.test_foldin.user_counts()
        n = n_t + n_f
        np.testing.assert_array_equal(
            n_t, np.minimum(np.maximum(np.ceil((1 - ratio) * n - 1e-9), 1), n - 1)
        )
    h = S.heldout_users(data, valid_users=0, test_users=5, min_events=4, foldin_events=3, seed=1)
    assert h.test_foldin.user_counts().tolist() == [3] * 5
    n = h.test_foldin.user_counts() + h.test_target.user_counts()
    assert h.test_target.user_counts().tolist() == (n - 3).tolist()


def test_protocol_from_a_minimal_dict_and_its_hash() -> None:
    p = S.Protocol.from_dict({"name": "x"})
    assert p == S.Protocol("x") and p.params == {} and p.temporal is False
    assert S.Protocol.from_dict({"name": "t", "temporal": 1}).temporal is True
    assert S.Protocol("x", {1: np.float64(0.5)}).params == {"1": 0.5}
    assert type(S.Protocol("x", {"a": np.float64(0.5)}).params["a"]) is float
    assert S.Protocol("x", {"a": 1}).to_dict() == {
        "name": "x",
        "params": {"a": 1},
        "temporal": False,
    }
    assert hash(S.Protocol("x", {"a": 1})) == hash("x(a=1)")


def test_spec_values_are_parsed_like_their_type() -> None:
    spec = "random:0.3:seed=7:valid-ratio=0.1"
    assert S.parse_split_spec(spec) == (
        "random-holdout",
        {"test_ratio": 0.3, "seed": 7, "valid_ratio": 0.1},
    )
    for raw, value in [("true", True), ("YES", True), ("false", False), ("No", False),
                       ("none", None), ("NULL", None), ("12", 12), ("-3", -3), ("1e-2", 0.01),
                       ("abc", "abc")]:  # fmt: skip
        got = S._parse_value(raw)
        assert got == value and type(got) is type(value)
    assert S.parse_split_spec("loo:2") == ("leave-latest-out", {"n": 2})
    assert S.parse_split_spec(" kfold : 3 ")[0] == "kfold"
    assert S.make_split(_tiny(), "kfold:3:fold=1").protocol.params == {
        "k": 3,
        "fold": 1,
        "seed": 42,
    }


def test_random_holdout_and_kfold_rows_follow_the_seeded_permutation() -> None:
    data = _tiny()
    perm = np.random.default_rng(5).permutation(9)
    split = S.random_holdout(data, 0.3, seed=5, valid_ratio=0.2)
    assert sorted(split.test.timestamp.tolist()) == sorted((perm[:3] + 1).tolist())
    assert split.valid is not None
    assert sorted(split.valid.timestamp.tolist()) == sorted((perm[3:5] + 1).tolist())
    assert split.protocol.params == {"test_ratio": 0.3, "seed": 5, "valid_ratio": 0.2}
    fold = S.kfold_fold(data, 4, 3, seed=5)
    assert sorted(fold.test.timestamp.tolist()) == sorted((np.array_split(perm, 4)[3] + 1).tolist())
    assert fold.protocol.params == {"k": 4, "fold": 3, "seed": 5}
    assert S._round_count(2.5) == 3 and S._round_count(0.5) == 1 and S._round_count(0.49) == 0
    assert S._round_count(0.28 * 25) == 7


def test_carve_validation_defaults_from_the_parent() -> None:
    data = make_interactions(40, 30, density=0.3, seed=3).interactions
    parent = S.kfold(data, 4, seed=9)[0]
    carved = S.carve_validation(parent)
    assert carved.protocol.params == {"test_ratio": 0.25, "seed": 9,
                                      "from_train_of": parent.protocol.describe()}  # fmt: skip
    assert carved.valid is None and len(carved.train) + len(carved.test) == len(parent.train)
    gt = S.global_temporal(data, cutoff=int(np.median(data.timestamp)))
    carved_gt = S.carve_validation(gt)
    assert carved_gt.protocol.name == "global-temporal"
    assert carved_gt.protocol.params["test_ratio"] == 0.2 and carved_gt.protocol.temporal
    gt_ratio = S.global_temporal(data, test_ratio=0.3)
    assert S.carve_validation(gt_ratio).protocol.params["test_ratio"] == 0.3
    rv = S.random_holdout(data, 0.2, seed=4, valid_ratio=0.1)
    carved_rv = S.carve_validation(rv)
    assert carved_rv.protocol.params == {"test_ratio": 0.2, "seed": 4,
                                         "from_train_of": rv.protocol.describe()}  # fmt: skip
    loo = S.leave_latest_out(data, valid=True)
    assert S.carve_validation(loo).protocol.params["valid"] is False  # not inherited
    plain = S.carve_validation(data)
    assert plain.protocol.name == "random-holdout"
    assert plain.protocol.params["from_train_of"] == data.source
    other = S.predefined(parent.train, parent.test, name="given")
    assert S.carve_validation(other).protocol.name == "random-holdout"
    assert S.carve_validation(other, seed=3).protocol.params["seed"] == 3


def test_held_out_user_in_both_validation_and_test_is_a_leak() -> None:
    rows = [(u, i, 3.0, 0) for u in ("e1", "e2", "e3") for i in (1, 2, 3, 4, 5)]
    rows += [("s1", 1, 3.0, 0), ("s1", 2, 3.0, 0)]
    h = S.heldout_users(inter(rows), valid_users=1, test_users=1, seed=0, min_events=5)
    leaky = S.HeldOutSplit(h.train, h.test_foldin, h.test_target, h.test_foldin, h.test_target,
                           h.protocol)  # fmt: skip
    who = h.test_foldin.users.ids[0]
    with pytest.raises(DataError) as info:
        S.check_no_leak(leaky)
    assert (
        str(info.value)
        == f"{h.protocol.describe()}: user {who!r} is both a validation and a test user"
    )
    in_train = S.HeldOutSplit(h.test_foldin, None, None, h.test_foldin, h.test_target, h.protocol)
    with pytest.raises(DataError) as info:
        S.check_no_leak(in_train)
    assert str(info.value).startswith(f"{h.protocol.describe()}: ")
    valid_in_train = S.HeldOutSplit(h.valid_foldin, h.valid_foldin, h.valid_target,
                                    h.test_foldin, h.test_target, h.protocol)  # fmt: skip
    with pytest.raises(DataError) as info:
        S.check_no_leak(valid_in_train)
    assert "held-out valid user" in str(info.value)
    shared = S.HeldOutSplit(h.train, None, None, h.test_foldin, h.test_foldin, h.protocol)
    with pytest.raises(DataError) as info:
        S.check_no_leak(shared)
    assert "is in both test_foldin and test_target" in str(info.value)


def test_leak_messages_are_exact() -> None:
    data = inter([(1, 10, 4.0, 5), (1, 20, 5.0, 3), (2, 20, 5.0, 1)])
    train, test = data.subset(np.array([0, 2])), data.subset(np.array([1]))
    bad = S.Split.from_parts(train, test, protocol=S.Protocol("timed", temporal=True), check=False)
    with pytest.raises(DataError) as info:
        S.check_no_leak(bad)
    assert str(info.value) == "timed: user 1 has a test event at 3 before a train event at 5"
    shared = S.Split.from_parts(data.subset(np.array([0, 1])), data.subset(np.array([1])),
                                protocol=S.Protocol("p"), check=False)  # fmt: skip
    with pytest.raises(DataError) as info:
        S.check_no_leak(shared)
    assert str(info.value) == "p: pair (user 1, item 20) is in both train and test"


def test_unorderable_item_ids_break_ties_by_index() -> None:
    items = IdVocab(np.array([30, "a", 10], dtype=object), name="item")
    assert S._id_rank(items).tolist() == [0, 1, 2]
    assert S._id_rank(IdVocab([30, 10, 20])).tolist() == [2, 0, 1]


def test_timeline_order_is_lexsorts_order_packed_or_not() -> None:
    # The packed-key stable argsort must give lexsort's order, duplicates included (stable).
    from recforge.data.split import _timeline_order

    rng = np.random.default_rng(0)
    n = 5000
    users = rng.integers(0, 50, n)
    tie = rng.integers(0, 30, n)
    for ts in (
        rng.integers(-1000, 1000, n),  # negative timestamps: shifted by their minimum
        rng.integers(0, 5, n),  # many exact duplicates of (user, ts, tie)
        rng.integers(0, 2**62, n),  # too wide to pack: the lexsort fallback
        rng.random(n),  # float timestamps: the lexsort fallback
    ):
        np.testing.assert_array_equal(_timeline_order(users, ts, tie), np.lexsort((tie, ts, users)))


# --------------------------------------- found by mutation testing (data/split.py, fourth step)
def _tiny_with_absent_user() -> Interactions:
    """_tiny plus user 4 with one event; user 3's events dropped but 3 kept in the vocabulary."""
    rows = [(1, 10, 4.0, 1), (1, 20, 3.0, 2), (1, 30, 5.0, 3), (1, 40, 2.0, 4),
            (2, 10, 1.0, 5), (2, 20, 2.0, 6), (2, 50, 3.0, 7),
            (3, 30, 4.0, 8), (3, 60, 5.0, 9), (4, 70, 1.0, 10)]  # fmt: skip
    data = inter(rows, source="tiny")
    return data.subset(data.user_idx != 2)  # users present: 1 (4 events), 2 (3), 4 (1)


DUPLICATES = "duplicate (user_id, item_id) rows, e.g."
DEDUPLICATE = (
    "; a split would put copies on both sides — deduplicate first (read_ratings' duplicate "
    "policy 'last' or 'mean')"
)
NO_ITEM_ID = "missing column 'item_id'; expected user_id, item_id[, rating, timestamp]"
BAD_CALLS_4: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: S.heldout_users(_tiny(), test_users=2, valid_users=1, min_events=2), DataError,
     "tiny: 3 users have >= 2 events, too few to hold out 2 test and 1 validation users and "
     "keep training users"),
    (lambda: S.heldout_users(_tiny_with_absent_user(), test_users=0.1, valid_users=0),
     ConfigError, "test_users=0.1 selects no user out of 3"),
    (lambda: S.random_holdout(_tiny(), 0.5, valid_ratio=0.45), DataError,
     "tiny: 9 events are too few for test_ratio=0.5, valid_ratio=0.45; every part needs at "
     "least one event"),
    (lambda: S.carve_validation(_tiny(), "random", bogus=1), ConfigError,
     "split random-holdout: unknown parameter 'bogus'; valid: test_ratio, seed, valid_ratio"),
    (lambda: S.parse_split_spec("random:0.2:fold=0"), ConfigError,
     "split random-holdout: unknown parameter 'fold'; valid: test_ratio, seed, valid_ratio"),
    (lambda: S.predefined(frame([(1, 10)]), frame([(2, 10)]), valid=[1]),  # type: ignore[arg-type]
     ConfigError, "predefined: valid must be a DataFrame or Interactions, got list"),
    (lambda: S.predefined(pd.DataFrame({"user_id": [1]}), frame([(2, 10)]), name="u9",
                          source="s"), DataError, f"s (train): {NO_ITEM_ID}"),
    (lambda: S.predefined(pd.DataFrame({"user_id": [1]}), frame([(2, 10)]), name="u9"),
     DataError, f"u9 (train): {NO_ITEM_ID}"),
    (lambda: S.predefined(frame([(1, 10)]), pd.DataFrame({"user_id": [2]}), name="u9",
                          source="s"), DataError, f"s (test): {NO_ITEM_ID}"),
    (lambda: S.predefined(frame([(1, 10)]), frame([(2, 10)]), name="u9",
                          valid=pd.DataFrame({"user_id": [3]})), DataError,
     f"u9 (valid): {NO_ITEM_ID}"),
    (lambda: S.random_holdout(inter([(1, 10), (1, 10)], source="dup")), DataError,
     f"dup: 1 {DUPLICATES} (1, 10){DEDUPLICATE}"),
    (lambda: S.kfold(inter([(1, 10), (2, 10), (2, 10)], source="dup"), 2), DataError,
     f"dup: 1 {DUPLICATES} (2, 10){DEDUPLICATE}"),  # one item
    (lambda: S.temporal_user(inter([(1, 10), (2, 20), (2, 20)], source="dup")), DataError,
     f"dup: 1 {DUPLICATES} (2, 20){DEDUPLICATE}"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS_4)
def test_more_refusals_have_their_exact_message(
    call: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message


def test_smallest_accepted_counts_and_the_defaults() -> None:
    data = _tiny()  # timestamps 1..9 are the row numbers + 1
    assert [len(s.test) for s in S.kfold(data, 2)] == [5, 4]  # k = 2 is the smallest k
    perm = np.random.default_rng(42).permutation(9)
    folds = S.kfold(data)  # k = 5, seed = 42
    assert [s.protocol.params for s in folds] == [{"k": 5, "fold": f, "seed": 42} for f in range(5)]
    one = S.kfold_fold(data, 3, 0)  # seed = 42
    assert one.protocol.params == {"k": 3, "fold": 0, "seed": 42}
    assert sorted(one.test.timestamp.tolist()) == sorted((np.array_split(perm, 3)[0] + 1).tolist())
    assert len(S.kfold_fold(data, 9, 8).test) == 1  # as many folds as events
    assert S.make_split(data, "kfold:3:fold=0").protocol.params["fold"] == 0
    single = S.random_holdout(data, 0.1)  # round(0.9) = 1 test event
    assert (len(single.train), len(single.test), single.valid) == (8, 1, None)
    lone_train = S.random_holdout(data, 0.5, valid_ratio=0.3)  # 5 test, round(2.7) = 3 valid
    assert lone_train.valid is not None
    assert (len(lone_train.train), len(lone_train.test), len(lone_train.valid)) == (1, 5, 3)
    latest = S.global_temporal(data, test_ratio=0.1)  # round(0.9) = 1: the cut is the last event
    assert latest.test.timestamp.tolist() == [9]
    assert latest.protocol.params == {"test_ratio": 0.1, "cutoff": 9}
    # ceil(0.2 · n_u) = 1 latest event of each user (4, 3 and 2 events)
    assert S.temporal_user(data, 0.2, min_events=2).test.timestamp.tolist() == [4, 7, 9]


def test_leave_latest_out_with_two_events_and_validation_by_hand() -> None:
    rows = [("big", i, 3.0, i) for i in (1, 2, 3, 4, 5)] + [
        ("mid", i, 3.0, i) for i in (1, 2, 3, 4)
    ]
    split = S.leave_latest_out(inter(rows), n=2, valid=True)
    assert split.valid is not None
    assert sorted(pairs(split.test)) == [("big", 4), ("big", 5), ("mid", 3), ("mid", 4)]
    assert sorted(pairs(split.valid)) == [("big", 2), ("big", 3)]  # "mid" needs 2·2 + 1 events
    assert sorted(pairs(split.train)) == [("big", 1), ("mid", 1), ("mid", 2)]


def test_temporal_leak_check_accepts_empty_parts() -> None:
    data = inter([(1, 10, 1.0, 1), (1, 20, 1.0, 2), (2, 10, 1.0, 3), (2, 30, 1.0, 4)])
    loo = S.leave_latest_out(data, valid=True)  # nobody has 3 events: valid is empty
    assert loo.valid is not None and len(loo.valid) == 0 and len(loo.test) == 2
    empty = data.subset(np.zeros(len(data), dtype=np.bool_))
    timed = S.Protocol("timed", temporal=True)
    both_empty = S.Split.from_parts(data, empty, empty, protocol=timed)
    assert repr(both_empty) == "Split(timed: train=4, test=0, valid=0)"


def _heldout_rows() -> list[tuple[Any, ...]]:
    """e1 and e2 (5 events) are eligible; e2's items 98 and 99 are absent from train (s1, s2)."""
    rows = [("e1", i, 3.0, 0) for i in (1, 2, 3, 4, 5)]
    rows += [("e2", i, 3.0, 0) for i in (1, 2, 3, 98, 99)]
    rows += [("s1", i, 3.0, 0) for i in (1, 2, 3, 4)] + [("s2", 5, 3.0, 0)]
    return rows


def test_heldout_target_counts_at_their_bounds() -> None:
    data = inter(_heldout_rows())
    kw: dict[str, Any] = {"valid_users": 0, "test_users": 2, "min_events": 5, "seed": 0}
    # e1 keeps 5 events, e2 3 (98 and 99 dropped). ceil(0.9 · n) is capped at n - 1 targets.
    h = S.heldout_users(data, foldin_ratio=0.1, **kw)
    assert h.n_dropped_unknown_items == 2
    assert h.test_target.users.ids.tolist() == ["e1", "e2"]
    assert h.test_target.user_counts().tolist() == [4, 2]
    assert h.test_foldin.user_counts().tolist() == [1, 1]
    # foldin_events = 3: e2 has only 3 known events left and keeps them all as fold-in.
    fixed = S.heldout_users(data, foldin_events=3, **kw)
    assert fixed.test_foldin.user_counts().tolist() == [3, 3]
    assert fixed.test_target.user_counts().tolist() == [2, 0]
    # foldin_events = 1 is the smallest accepted
    one = S.heldout_users(data, foldin_events=1, **kw)
    assert one.test_foldin.user_counts().tolist() == [1, 1]
    assert one.test_target.user_counts().tolist() == [4, 2]


def test_heldout_targets_are_drawn_by_the_seed_not_the_first_rows() -> None:
    data = inter(_heldout_rows())
    chosen: set[Any] = set()
    for seed in range(10):
        h = S.heldout_users(data, valid_users=0, test_users=2, min_events=5, seed=seed)
        target = h.test_target.to_frame()
        chosen |= set(target.item_id[target.user_id == "e1"])
    # e1 has one target (ceil(0.2 · 5)); taking each user's first rows would always give item 1
    assert len(chosen) > 1


def test_heldout_parts_name_their_user_vocabulary() -> None:
    h = S.heldout_users(inter(_heldout_rows()), valid_users=0, test_users=2, min_events=5)
    for part in (h.test_foldin, h.test_target):
        with pytest.raises(UnknownIdError) as info:
            part.users.index(["nobody"])
        assert str(info.value) == "unknown user id 'nobody'"


def test_predefined_defaults_and_metadata_on_every_part() -> None:
    train, test = frame([(1, 10, 4.0, 1), (2, 20, 5.0, 3)]), frame([(1, 20, 1.0, 4)])
    plain = S.predefined(train, test)
    assert (plain.protocol.describe(), plain.train.source) == ("predefined", "predefined")
    item_meta = pd.DataFrame({"item_id": [10, 20], "title": ["a", "b"]})
    user_meta = pd.DataFrame({"user_id": [1, 2], "age": [30, 40]})
    split = S.predefined(train, test, valid=frame([(2, 10, 2.0, 5)]), item_meta=item_meta,
                         user_meta=user_meta, rating_scale=(1.0, 5.0), source="src")  # fmt: skip
    known = split.test_known()
    for part in (split.train, split.test, split.valid, known):
        assert part is not None
        assert part.item_meta is item_meta and part.user_meta is user_meta
        assert (part.rating_scale, part.source) == ((1.0, 5.0), "src")
    # From an Interactions train: its own metadata is kept when none is passed.
    again = S.predefined(split.train, split.test)
    assert again.train.user_meta is user_meta and again.test.user_meta is user_meta
    assert again.train.item_meta is item_meta and again.test.rating_scale == (1.0, 5.0)


def test_predefined_temporal_flag_is_kept_and_checked() -> None:
    train, test = frame([(1, 10, 4.0, 5), (2, 20, 5.0, 3)]), frame([(2, 10, 1.0, 4)])
    split = S.predefined(train, test, name="cut", temporal=True)
    assert split.protocol.temporal is True
    with pytest.raises(DataError) as info:
        S.predefined(train, frame([(1, 20, 1.0, 4)]), name="cut", temporal=True)
    assert str(info.value) == "cut: user 1 has a test event at 4 before a train event at 5"


def test_spec_value_may_contain_an_equals_sign() -> None:
    assert S.parse_split_spec("random:seed=a=b") == ("random-holdout", {"seed": "a=b"})


def test_parts_list_only_the_ids_they_use() -> None:
    data = inter(
        [(1, 10, 1.0, 1), (1, 20, 1.0, 2), (2, 10, 1.0, 3), (3, 30, 1.0, 4), (4, 10, 1.0, 5)]
    )
    # Subsets keep data's whole vocabulary; user 3 and item 30 are in no part.
    split = S.predefined(data.subset(np.array([0, 2])), data.subset(np.array([1, 4])))
    assert split.test.users.ids.tolist() == [1, 2, 4]
    assert split.test.items.ids.tolist() == [10, 20]
    assert split.summary()["n_test_unknown_user_ids"] == 1


def test_held_out_leak_messages_are_exact() -> None:
    rows = [(u, i, 3.0, 0) for u in ("e1", "e2", "e3") for i in (1, 2, 3, 4, 5)]
    rows += [("s1", 1, 3.0, 0), ("s1", 2, 3.0, 0)]
    h = S.heldout_users(inter(rows), valid_users=1, test_users=1, seed=0, min_events=5)
    assert h.valid_foldin is not None and h.valid_target is not None
    name = h.protocol.describe()
    tester = h.test_foldin.users.ids[0]
    first = h.test_foldin.to_frame().iloc[0]
    bad = [
        (S.HeldOutSplit(h.test_foldin, None, None, h.test_foldin, h.test_target, h.protocol),
         f"{name}: held-out test user {tester!r} also occurs in train"),
        (S.HeldOutSplit(h.train, None, None, h.test_foldin, h.test_foldin, h.protocol),
         f"{name}: pair (user {first.user_id!r}, item {int(first.item_id)}) is in both "
         "test_foldin and test_target"),
        # a validation fold-in user who is a test user leaks, whoever the validation targets are
        (S.HeldOutSplit(h.train, h.test_foldin, h.valid_target, h.test_foldin, h.test_target,
                        h.protocol),
         f"{name}: user {tester!r} is both a validation and a test user"),
    ]  # fmt: skip
    for split, message in bad:
        with pytest.raises(DataError) as info:
            S.check_no_leak(split)
        assert str(info.value) == message
    # validation fold-in without targets: there is no fold-in/target pair to compare
    S.check_no_leak(S.HeldOutSplit(h.train, h.valid_foldin, None, h.test_foldin, h.test_target,
                                   h.protocol))  # fmt: skip


def test_timeline_order_falls_back_where_a_packed_key_would_be_wrong() -> None:
    from recforge.data.split import _timeline_order

    cases = [
        # a negative tie would set every high bit of its key
        (np.array([0, 1]), np.array([0, 0]), np.array([0, -1])),
        # 1 + 62 + 1 = 64 bits: user 1 would land on the sign bit
        (np.array([0, 1]), np.array([0, 2**62 - 1]), np.array([0, 1])),
    ]
    for users, ts, tie in cases:
        np.testing.assert_array_equal(_timeline_order(users, ts, tie), [0, 1])
