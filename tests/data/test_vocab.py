"""Unit tests of IdVocab: raw id ⇄ index bijection, missing-id policies, extension, JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.data.vocab import IdVocab
from recforge.errors import ConfigError, DataError, UnknownIdError


def test_index_and_lookup_follow_given_order() -> None:
    v = IdVocab([10, 3, 7], name="user")
    assert len(v) == 3
    assert v.index([7, 10, 3]).tolist() == [2, 0, 1]
    assert v.index_one(3) == 1
    assert v.lookup([2, 0]).tolist() == [7, 10]
    assert v.index(np.array([3, 3, 10])).dtype == np.int64


def test_from_values_is_sorted_distinct_and_order_independent() -> None:
    a = IdVocab.from_values([5, 1, 5, 3, 1])
    b = IdVocab.from_values([3, 1, 5])
    assert a.ids.tolist() == [1, 3, 5]
    assert a == b
    s = IdVocab.from_values(np.array(["b", "a", "b"], dtype=object))
    assert s.ids.tolist() == ["a", "b"]


def test_missing_policies() -> None:
    v = IdVocab(["x", "y"], name="item")
    with pytest.raises(UnknownIdError, match="unknown item id 'z'") as exc:
        v.index(["x", "z"])
    assert isinstance(exc.value, KeyError)  # fits into existing `except KeyError` clauses
    assert v.index(["z", "y", "q"], missing="negative").tolist() == [-1, 1, -1]
    with pytest.raises(UnknownIdError):
        v.index_one("nope")


def test_type_mismatch_is_unknown_not_a_crash() -> None:
    strs = IdVocab(["1", "2"])
    assert strs.index([1, 2], missing="negative").tolist() == [-1, -1]
    ints = IdVocab([1, 2])
    assert ints.index(["1"], missing="negative").tolist() == [-1]
    # A mixed list must not be stringified by numpy: 1 is not "1".
    assert strs.index([1, "2"], missing="negative").tolist() == [-1, 1]


def test_accepts_numpy_and_pandas_string_inputs() -> None:
    v = IdVocab(np.array(["a", "bb", "c"]))  # fixed-width numpy strings become objects
    assert v.ids.dtype == object
    assert v.index(pd.Series(["c", "a"])).tolist() == [2, 0]
    assert v.index(np.array(["bb"])).tolist() == [1]


def test_integral_floats_become_ints_and_fractional_floats_are_rejected() -> None:
    v = IdVocab(np.array([1.0, 2.0]))
    assert v.ids.dtype == np.int64
    assert v.index([2]).tolist() == [1]
    with pytest.raises(DataError, match="integers or strings"):
        IdVocab(np.array([1.5, 2.0]))


def test_duplicates_rejected() -> None:
    with pytest.raises(DataError, match="duplicate id 3"):
        IdVocab([1, 3, 3], name="user")
    with pytest.raises(DataError, match="duplicate"):
        IdVocab(["a", "b", "a"])


def test_extend_keeps_existing_indices_and_appends_sorted_new_ids() -> None:
    v = IdVocab([10, 3, 7])
    w = v.extend([11, 3, 5, 11])
    assert w.ids.tolist() == [10, 3, 7, 5, 11]
    assert w.index([10, 3, 7]).tolist() == v.index([10, 3, 7]).tolist()
    assert v.ids.tolist() == [10, 3, 7]  # the original is unchanged
    assert v.extend([3, 10]) is v


def test_extend_with_other_kind_becomes_object_and_keeps_indices() -> None:
    v = IdVocab([2, 1])
    w = v.extend(["a"])
    assert w.ids.dtype == object
    assert w.index([2, 1, "a"]).tolist() == [0, 1, 2]


def test_immutable_ids() -> None:
    v = IdVocab([1, 2, 3])
    with pytest.raises(ValueError, match="read-only"):
        v.ids[0] = 9


def test_contains_eq_and_hash() -> None:
    a, b = IdVocab([1, 2], name="user"), IdVocab([1, 2], name="item")
    assert 2 in a and 5 not in a
    assert a == b  # equality is about ids; the name only labels messages
    assert hash(a) == hash(b)  # hash must agree with eq
    assert len({a, b}) == 1
    assert a != IdVocab([2, 1])
    assert a != [1, 2]


@pytest.mark.parametrize(
    "ids",
    [[5, 1, 99], ["u9", "u1", "ä"], [], ["1", "01"]],
    ids=["int", "str", "empty", "numeric-looking-str"],
)
def test_json_round_trip(ids: list[object]) -> None:
    v = IdVocab(ids, name="user")
    text = v.to_json()
    w = IdVocab.from_json(text)
    assert w == v
    assert w.name == "user"
    assert w.ids.tolist() == v.ids.tolist()
    assert [type(x) for x in w.ids.tolist()] == [type(x) for x in v.ids.tolist()]
    if ids and isinstance(ids[0], int):
        assert json.loads(text)["ids"] == ids  # ints are stored as JSON numbers
        assert w.ids.dtype == np.int64


def test_json_round_trip_of_mixed_ids_keeps_types() -> None:
    v = IdVocab([1, 2]).extend(["a"])
    w = IdVocab.from_json(v.to_json())
    assert w.ids.tolist() == [1, 2, "a"]
    assert w.index([1, "a"]).tolist() == [0, 2]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.integers(-(2**62), 2**62), st.text(max_size=6)), unique=True, max_size=30)
)
def test_json_round_trip_property(ids: list[object]) -> None:
    # A mix of ints and strings where the strings never collide with ints as values.
    v = IdVocab(np.asarray(ids, dtype=object) if ids else np.zeros(0, np.int64))
    w = IdVocab.from_json(v.to_json())
    assert w.ids.tolist() == v.ids.tolist()
    if ids:
        assert w.index(v.ids).tolist() == list(range(len(v)))


# ---------------------------------------------------------------------- found by mutation testing
def test_lookup_of_no_indices_is_empty() -> None:
    vocab = IdVocab(["a", "b"], name="item")
    assert vocab.lookup([]).tolist() == []  # a plain empty list is float64 in numpy
    assert vocab.lookup(np.array([1, 0])).tolist() == ["b", "a"]


def test_extend_keeps_the_name() -> None:
    vocab = IdVocab([1, 2], name="item")
    grown = vocab.extend([3])
    assert grown.name == "item" and grown.ids.tolist() == [1, 2, 3]
    with pytest.raises(UnknownIdError, match="unknown item id 9"):
        grown.index([9])


def test_names_and_json_kinds_are_kept() -> None:
    assert IdVocab.from_values([3, 1, 3], name="user").name == "user"
    assert IdVocab.from_json('{"kind": "int", "ids": [1, 2]}').name == "id"  # the default
    assert json.loads(IdVocab([1, "a"]).to_json())["kind"] == "mixed"
    assert json.loads(IdVocab(["a"]).to_json())["kind"] == "str"
    empty = IdVocab.from_json(IdVocab([], name="item").to_json())
    assert len(empty) == 0 and empty.ids.dtype == np.int64 and empty.name == "item"


def test_index_takes_any_iterable_and_the_default_name() -> None:
    vocab = IdVocab([10, 20, 30])
    assert vocab.name == "id"
    assert vocab.index(iter([30, 10])).tolist() == [2, 0]  # a generator, not only sequences
    assert vocab.index(pd.Series([20], index=[7])).tolist() == [1]
    strings = IdVocab(["a", "b"])
    assert strings.index(np.array([1]), missing="negative").tolist() == [-1]  # 1 is not "1"


def test_ids_of_any_shape_are_flattened() -> None:
    assert IdVocab(np.array([[3], [1]])).ids.tolist() == [3, 1]
    assert IdVocab.from_values(np.array([[2, 1], [1, 2]])).ids.tolist() == [1, 2]
    assert IdVocab(np.asarray("solo")).ids.tolist() == ["solo"]


def test_from_values_default_name_and_the_float_id_message() -> None:
    assert IdVocab.from_values([2, 1]).name == "id"
    with pytest.raises(DataError, match=r"^ids must be integers or strings, got non-integral"):
        IdVocab([1.5, 2.0])


def test_index_refuses_an_unknown_missing_policy() -> None:
    v = IdVocab.from_values(["a", "b"])
    with pytest.raises(ConfigError, match="missing must be 'error' or 'negative', got 'negativ'"):
        v.index(["a", "zz"], missing="negativ")  # type: ignore[arg-type]


# --- found by mutation testing (data/vocab.py, second pass) -----------------------------------


def test_overflowing_int_vocabulary_names_itself_or_the_default() -> None:
    big = str(2**64)
    with pytest.raises(DataError) as info:
        IdVocab.from_json(f'{{"name": "user", "kind": "int", "ids": [1, {big}]}}')
    assert str(info.value) == "user vocabulary holds an id outside the 64-bit integer range"
    with pytest.raises(DataError) as info:
        IdVocab.from_json(f'{{"kind": "int", "ids": [{big}]}}')
    assert str(info.value) == "id vocabulary holds an id outside the 64-bit integer range"


def test_small_lookups_answer_like_the_general_path() -> None:
    # Short lists and tuples take a dict lookup; each case below must give what
    # pandas' get_indexer gives for the same ids.
    v = IdVocab([0, 1, 2], name="item")
    # True == 1 and hash(True) == hash(1) in a dict, but a bool is not an integer id.
    assert v.index([True, False], missing="negative").tolist() == [-1, -1]
    with pytest.raises(UnknownIdError, match="unknown item id True"):
        v.index((True,))
    assert v.index([[2], [0]]).tolist() == [2, 0]  # nested (unhashable) ids are flattened
    assert v.index([1.0]).tolist() == [1]  # an integral float is the integer id
    empty = v.index([])
    assert empty.dtype == np.int64 and empty.tolist() == []
    assert v.index(()).dtype == np.int64
    ids = list(range(3)) * 11  # 33 ids: longer than the dict path takes
    assert v.index(ids).tolist() == ids and v.index(ids[:32]).tolist() == ids[:32]
    strings = IdVocab(["a", "b"])
    assert strings.index([np.str_("b"), "a"]).tolist() == [1, 0]
    assert v.index([np.int64(2), 1]).tolist() == [2, 1]


def test_short_lists_of_known_ids_skip_get_indexer(monkeypatch: pytest.MonkeyPatch) -> None:
    # The dict path exists for speed (get_indexer costs ~0.1 ms a call, a request looks ids
    # up a dozen times): up to 32 known plain ids must not reach pandas at all.
    v = IdVocab(list(range(40)), name="item")

    def refuse(_: object) -> None:
        raise AssertionError("get_indexer called for a short list of known ids")

    general = v._index
    monkeypatch.setattr(v, "_index", type("NoIndexer", (), {"get_indexer": staticmethod(refuse)})())
    assert v.index(list(range(32))).tolist() == list(range(32))
    assert v.index((np.int64(5), 7)).tolist() == [5, 7]
    assert v.index_one(39) == 39
    with pytest.raises(AssertionError):
        v.index(list(range(33)))  # longer inputs go the general way
    monkeypatch.setattr(v, "_index", general)
    s = IdVocab(["a", "b"])
    monkeypatch.setattr(s, "_index", type("NoIndexer", (), {"get_indexer": staticmethod(refuse)})())
    assert s.index(["b", np.str_("a")]).tolist() == [1, 0]
