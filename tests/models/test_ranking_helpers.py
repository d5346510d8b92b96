"""The one scores → ranked lists helper (rank_scores) and the public check_fitted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recforge.models.base as base_mod
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, NotFittedError
from recforge.models import create
from recforge.models.base import Recommender, finite_scores, rank_scores, seen_cells, topk_rows
from recforge.models.baselines import Biases

MAX = np.finfo(np.float32).max


def test_non_finite_scores_rank_last_but_are_kept() -> None:
    scores = np.array([[np.nan, 2.0, np.inf, -np.inf, 1.0]], dtype=np.float32)
    original = scores.copy()
    idx, val = rank_scores(scores, 5)
    # finite first (2.0 at 1, 1.0 at 4), then the three non-finite ones as -max, lower index first
    assert idx.tolist() == [[1, 4, 0, 2, 3]]
    np.testing.assert_array_equal(val, [[2.0, 1.0, -MAX, -MAX, -MAX]])
    np.testing.assert_array_equal(scores, original)  # the input is not modified
    assert finite_scores(scores).tolist() == [[-MAX, 2.0, -MAX, -MAX, 1.0]]


def test_excluded_items_and_cells_are_dropped_and_fill_minus_one() -> None:
    scores = np.array([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    not_candidates = np.array([False, True, False, False])
    cells = (np.array([0, 1, 1]), np.array([0, 3, 2]))
    idx, val = rank_scores(scores, 4, exclude_items=not_candidates, exclude=cells)
    assert idx.tolist() == [[2, 3, -1, -1], [0, -1, -1, -1]]
    assert val[0, :2].tolist() == [3.0, 2.0] and np.isneginf(val[0, 2:]).all()
    assert val[1, 0] == 1.0 and np.isneginf(val[1, 1:]).all()


def test_k_is_capped_at_the_catalogue_and_float64_is_kept_on_request() -> None:
    scores = np.array([[0.1, 0.1 + 1e-12, 0.3]])
    idx, _ = rank_scores(scores, 10)
    assert idx.shape == (1, 3)
    assert idx.tolist() == [[2, 0, 1]]  # float32: the two 0.1s tie, lower index first
    idx64, _ = rank_scores(scores, 10, dtype=np.float64)
    assert idx64.tolist() == [[2, 1, 0]]


def test_seen_cells_follow_the_requested_users() -> None:
    seen = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=np.float32))
    rows, cols = seen_cells(seen, np.array([2, 0]))
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 2),
    ]


def test_one_row_ranking_matches_the_batched_path_with_ties_and_exclusions() -> None:
    """A served request ranks one row without torch; the order must be the batch path's."""
    rng = np.random.default_rng(3)
    for trial in range(200):
        n = int(rng.integers(2, 60))
        # few distinct values: many ties, some straddling the cut; -inf as excluded items
        row = rng.integers(0, 4, size=n).astype(np.float32)
        row[rng.random(n) < 0.3] = -np.inf
        k = int(rng.integers(1, n))
        one_idx, one_val = topk_rows(row[None, :], k)
        # the same row twice takes the general (torch) path
        both_idx, both_val = topk_rows(np.vstack([row, row]), k)
        assert one_idx.tolist()[0] == both_idx.tolist()[0], (trial, row, k)
        np.testing.assert_array_equal(one_val[0], both_val[0])
        assert one_idx.dtype == np.int64 and one_val.dtype == np.float32


def test_seen_cells_of_one_user_and_of_users_without_events() -> None:
    seen = sp.csr_matrix(np.array([[0, 0, 0], [0, 1, 1], [1, 0, 0]], dtype=np.float32))
    rows, cols = seen_cells(seen, np.array([1]))
    assert rows.tolist() == [0, 0] and cols.tolist() == [1, 2]
    rows, cols = seen_cells(seen, np.array([0, 2, 0, 1]))
    assert rows.tolist() == [1, 3, 3] and cols.tolist() == [0, 1, 2]
    assert rows.dtype == np.int64 and cols.dtype == np.int64


def test_check_fitted_is_public() -> None:
    model = create("popularity")
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.check_fitted()


# --------------------------------------------------- found by mutation testing (models/base.py)
def _popularity_data() -> Interactions:
    """12 items, item j seen by users 1..j+1 (item 11 most popular); user 0 saw item 5 only."""
    users: list[int] = []
    items: list[int] = []
    for item in range(12):
        for u in range(item + 2):
            if not (u == 0 and item != 5):  # user 0 has exactly one event, on item 5
                users.append(u)
                items.append(item)
    frame = pd.DataFrame({"user_id": users, "item_id": [f"i{j}" for j in items]})
    return Interactions.from_frame(frame, source="popularity-ladder")


def test_recommend_defaults_to_ten_and_ignores_unknown_candidates() -> None:
    model = create("popularity").fit(_popularity_data())
    (rec,) = model.recommend(0)
    expected = [f"i{j}" for j in (11, 10, 9, 8, 7, 6, 4, 3, 2, 1)]  # i5 was seen
    assert rec.item_ids.tolist() == expected
    assert type(rec.user_id) is int  # a plain int (JSON-ready), not numpy's int64
    # Candidates: an unknown id is ignored, item index 0 counts like any other.
    (rec,) = model.recommend(0, k=5, candidates=["i0", "nope", "i3", "i5"])
    assert rec.item_ids.tolist() == ["i3", "i0"]


class _GatherOnly(Biases):
    """Biases scored through the base class's chunked gather (no fast predict_idx)."""

    predict_idx = Recommender.predict_idx


@pytest.mark.parametrize("chunk", [1024, 2, 1])
def test_default_predict_idx_gathers_score_items_across_chunks(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base_mod, "DEFAULT_SCORE_CHUNK", chunk)
    frame = _popularity_data().to_frame()
    # Ratings that differ by user, so a row taken from the wrong user shows.
    frame["rating"] = (frame["user_id"] * 7 + frame["item_id"].str[1:].astype(int)) % 5 + 1.0
    data = Interactions.from_frame(frame, rating_scale=(1.0, 5.0), source="rated-ladder")
    model = _GatherOnly(epochs=5).fit(data)
    rng = np.random.default_rng(0)
    users = rng.integers(0, model.n_users, 40)  # unsorted, with repeats
    items = rng.integers(0, model.n_items, 40)
    scores = model.score_items(np.arange(model.n_users))
    assert len(np.unique(scores[:, 0])) > 5  # the users' rows really differ
    got = model.predict_idx(users, items)
    assert got.dtype == np.float32 and got.shape == (40,)
    np.testing.assert_array_equal(got, scores[users, items])
    assert model.predict_idx(np.array([], np.int64), np.array([], np.int64)).shape == (0,)


def test_recommend_idx_returns_int64_indices_and_refuses_k_below_one() -> None:
    model = create("popularity").fit(_popularity_data())
    idx, val = model.recommend_idx(np.array([0, 1]), 3)
    assert idx.dtype == np.int64 and val.dtype == np.float32 and idx.shape == (2, 3)
    with pytest.raises(ConfigError, match=r"^k must be >= 1, got 0$"):
        model.recommend_idx(np.array([0]), 0)


def test_recommendations_carry_the_item_titles() -> None:
    data = _popularity_data()
    meta = pd.DataFrame(
        {"title": [f"Title {j}" for j in range(12)]},
        index=pd.Index([f"i{j}" for j in range(12)], name="item_id"),
    )
    data = Interactions.from_frame(data.to_frame(), item_meta=meta, source="titled")
    (rec,) = create("popularity").fit(data).recommend(0, k=2)
    assert rec.to_frame()["title"].tolist() == ["Title 11", "Title 10"]


@pytest.mark.parametrize("k", [0, -3])
def test_topk_rows_of_nothing_is_an_empty_block_per_row(k: int) -> None:
    idx, val = topk_rows(np.ones((2, 3), dtype=np.float32), k)
    assert idx.shape == (2, 0) and idx.dtype == np.int64
    assert val.shape == (2, 0) and val.dtype == np.float32
