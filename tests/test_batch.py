"""recommend_all / recommend_all_frame: chunking, memory budget, exclusion, raw-id frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from recforge.batch import (
    DEFAULT_MEMORY_BUDGET,
    chunk_size_for,
    recommend_all,
    recommend_all_frame,
)
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, UnknownIdError
from recforge.models.base import Recommender


class FixedScores(Recommender):
    """Test-only model: ``score_items`` reads a fixed (n_users, n_items) matrix and logs calls."""

    name = "fixed_scores"

    def __init__(self, matrix: npt.ArrayLike) -> None:
        super().__init__()
        self.matrix = np.asarray(matrix, dtype=np.float32)
        self.batch_sizes: list[int] = []

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.scores_ = self.matrix

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.float32]:
        self.batch_sizes.append(len(user_idx))
        return self.scores_[np.asarray(user_idx)]


def toy_model() -> FixedScores:
    # users "a", "b", "c"; items 1..4. "a" saw item 1, "b" saw 2 and 3, "c" saw everything.
    train = Interactions.from_frame(
        pd.DataFrame(
            {
                "user_id": ["a", "b", "b", "c", "c", "c", "c"],
                "item_id": [1, 2, 3, 1, 2, 3, 4],
                "rating": [5.0] * 7,
            }
        )
    )
    scores = np.array(
        [
            [4.0, 3.0, 2.0, 1.0],  # a: 1 > 2 > 3 > 4
            [1.0, 2.0, 3.0, 4.0],  # b: 4 > 3 > 2 > 1
            [1.0, 1.0, 1.0, 1.0],  # c: nothing left to recommend
        ]
    )
    return FixedScores(scores).fit(train)


def test_chunk_size_from_budget() -> None:
    # chunk * n_items * 4 bytes * SCORE_OVERHEAD (4) <= budget
    assert chunk_size_for(1000, 160_000) == 10
    assert chunk_size_for(1000, 159_999) == 9
    assert chunk_size_for(1000, 40_000, overhead=1) == 10
    assert chunk_size_for(1000, 80_000, bytes_per_score=2, overhead=1) == 40
    assert chunk_size_for(10**9, 1) == 1  # never zero
    assert chunk_size_for(1000) == DEFAULT_MEMORY_BUDGET // 16_000
    with pytest.raises(ConfigError, match="memory_budget_bytes"):
        chunk_size_for(10, 0)


def test_recommend_all_hand_computed() -> None:
    model = toy_model()
    chunks = list(recommend_all(model, k=2))
    assert len(chunks) == 1
    users, idx, val = chunks[0]
    np.testing.assert_array_equal(users, [0, 1, 2])
    # a: seen 1 -> 2, 3; b: seen 2, 3 -> 4, 1; c: saw all -> padding
    np.testing.assert_array_equal(idx, [[1, 2], [3, 0], [-1, -1]])
    np.testing.assert_allclose(val[:2], [[3.0, 2.0], [4.0, 1.0]])
    assert np.isneginf(val[2]).all()
    # without exclusion, a's top-2 is 1, 2
    _, idx2, _ = next(recommend_all(model, [0], k=2, exclude_seen=False))
    np.testing.assert_array_equal(idx2, [[0, 1]])
    # candidates as indices or as a mask
    _, idx3, _ = next(recommend_all(model, [1], k=3, candidates=[0, 1]))
    np.testing.assert_array_equal(idx3, [[0, -1, -1]])
    mask = np.array([False, False, True, True])
    _, idx4, _ = next(recommend_all(model, [0], k=3, candidates=mask))
    np.testing.assert_array_equal(idx4, [[2, 3, -1]])


def test_recommend_all_chunks_by_memory_budget() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 23, 17
    # user 0 saw every item (so the vocabulary has all of them); every other user saw one item
    train = Interactions.from_frame(
        pd.DataFrame(
            {
                "user_id": np.concatenate([np.zeros(n_items, np.int64), np.arange(1, n_users)]),
                "item_id": np.concatenate(
                    [np.arange(n_items), rng.integers(0, n_items, n_users - 1)]
                ),
            }
        )
    )
    model = FixedScores(rng.normal(size=(train.n_users, train.n_items))).fit(train)
    # budget for exactly 5 users' scores: 5 * 17 * 4 bytes * SCORE_OVERHEAD
    chunks = list(recommend_all(model, k=4, memory_budget_bytes=5 * n_items * 4 * 4))
    assert [len(c[0]) for c in chunks] == [5, 5, 5, 5, 3]
    assert max(model.batch_sizes) <= 5
    users = np.concatenate([c[0] for c in chunks])
    idx = np.concatenate([c[1] for c in chunks])
    ref_idx, ref_val = model.recommend_idx(np.arange(n_users), 4)
    np.testing.assert_array_equal(users, np.arange(n_users))
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(np.concatenate([c[2] for c in chunks]), ref_val)
    # explicit chunk size wins; user order follows the input
    order = np.array([7, 3, 22, 0])
    got = list(recommend_all(model, order, k=2, chunk_size=3))
    assert [list(c[0]) for c in got] == [[7, 3, 22], [0]]


def test_recommend_all_validates() -> None:
    model = toy_model()
    with pytest.raises(ConfigError, match="k must be"):
        next(recommend_all(model, k=0))
    with pytest.raises(ConfigError, match="user indices"):
        next(recommend_all(model, [3]))
    with pytest.raises(ConfigError, match="chunk_size"):
        next(recommend_all(model, chunk_size=0))
    with pytest.raises(ConfigError, match="one per item"):
        next(recommend_all(model, candidates=np.array([True, False])))
    with pytest.raises(ConfigError, match="candidate item indices"):
        next(recommend_all(model, candidates=[9]))


def test_recommend_all_frame_raw_ids() -> None:
    model = toy_model()
    df = recommend_all_frame(model, k=3)
    assert list(df.columns) == ["user_id", "rank", "item_id", "score"]
    # a: 2, 3, 4 (seen 1); b: 4, 1 (only two allowed); c: nothing -> no rows
    assert df["user_id"].tolist() == ["a", "a", "a", "b", "b"]
    assert df["rank"].tolist() == [1, 2, 3, 1, 2]
    assert df["item_id"].tolist() == [2, 3, 4, 4, 1]
    np.testing.assert_allclose(df["score"], [3.0, 2.0, 1.0, 4.0, 1.0])
    # matches the single-user public API
    for uid in ("a", "b"):
        rec = model.recommend(uid, 3)[0]
        sub = df[df["user_id"] == uid]
        assert sub["item_id"].tolist() == rec.item_ids.tolist()
    # subset of users in the given order, raw candidates (unknown ids ignored)
    sub = recommend_all_frame(model, ["b", "a"], k=1, candidates=[1, 99], chunk_size=1)
    assert sub[["user_id", "item_id"]].values.tolist() == [["b", 1]]
    with pytest.raises(UnknownIdError):
        recommend_all_frame(model, ["zz"], k=1)
    empty = recommend_all_frame(model, ["c"], k=2)
    assert len(empty) == 0 and list(empty.columns) == ["user_id", "rank", "item_id", "score"]
