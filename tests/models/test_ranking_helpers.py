"""The one scores → ranked lists helper (rank_scores) and the public check_fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recforge.models.base as base_mod
from recforge.data.interactions import Interactions
from recforge.data.vocab import IdVocab
from recforge.errors import ArtifactError, ConfigError, DataError, NotFittedError
from recforge.models import create
from recforge.models.base import (
    RecList,
    Recommender,
    finite_scores,
    mask_seen,
    rank_scores,
    reclists_to_frame,
    seen_cells,
    seen_history,
    topk_rows,
)
from recforge.models.baselines import Biases, GlobalMean, Popularity

from ._caps import force_picked_threads, record_thread_caps

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


# ------------------------------------- found by mutation testing (models/base.py, second part)


def _rated_ladder() -> Interactions:
    frame = _popularity_data().to_frame()
    frame["rating"] = (frame["user_id"] * 7 + frame["item_id"].str[1:].astype(int)) % 5 + 1.0
    return Interactions.from_frame(frame, rating_scale=(1.0, 5.0), source="rated-ladder")


def test_reclist_frame_columns_ranks_and_missing_titles() -> None:
    meta = pd.DataFrame({"title": ["A", None]}, index=pd.Index(["a", "b"], name="item_id"))
    rec = RecList(7, np.array(["b", "a", "z"]), np.array([3.0, 2.0, 1.0], np.float32), meta)
    assert len(rec) == 3
    frame = rec.to_frame()
    assert list(frame.columns) == ["user_id", "rank", "item_id", "score", "title"]
    assert frame["user_id"].tolist() == [7, 7, 7]
    assert frame["rank"].tolist() == [1, 2, 3] and frame["rank"].dtype == np.int64
    assert frame["item_id"].tolist() == ["b", "a", "z"]
    assert frame["score"].tolist() == [3.0, 2.0, 1.0]
    # A title only for items the metadata describes with one (None, not NaN or "None").
    assert frame["title"].tolist() == [None, "A", None]
    plain = RecList(7, np.array(["a"]), np.array([1.0], np.float32)).to_frame()
    assert list(plain.columns) == ["user_id", "rank", "item_id", "score"]
    no_title = RecList(7, np.array(["a"]), np.array([1.0], np.float32), meta[[]]).to_frame()
    assert "title" not in no_title.columns


def test_reclist_frame_with_explanations_gains_their_columns() -> None:
    model = Biases(epochs=5).fit(_rated_ladder())
    (rec,) = model.recommend(3, k=2)
    frame = rec.to_frame(model.explain_batch(3, rec.item_ids.tolist()))
    assert {"because", "contributions", "residual"} <= set(frame.columns)


def test_reclists_stack_and_an_empty_stack_keeps_the_columns() -> None:
    empty = reclists_to_frame([])
    assert list(empty.columns) == ["user_id", "rank", "item_id", "score"]
    assert len(empty) == 0
    assert [str(t) for t in empty.dtypes] == ["object", "int64", "object", "float32"]
    a = RecList(1, np.array(["x", "y"]), np.array([2.0, 1.0], np.float32))
    b = RecList(2, np.array(["z"]), np.array([5.0], np.float32))
    both = reclists_to_frame([a, b])
    assert both.index.tolist() == [0, 1, 2]
    assert both["user_id"].tolist() == [1, 1, 2] and both["rank"].tolist() == [1, 2, 1]


def test_config_overrides_and_repr_lists_only_changed_fields() -> None:
    model = Biases(Biases.Config(epochs=3), reg_i=2.5)
    assert model.config.epochs == 3 and model.config.reg_i == 2.5
    assert Biases({"epochs": 4}).config.epochs == 4
    assert Biases().config == Biases.Config()
    assert repr(Biases(epochs=3)) == "Biases(epochs=3)"
    assert repr(Biases()) == "Biases()"
    assert repr(Biases(epochs=3, reg_i=2.5)) in (
        "Biases(epochs=3, reg_i=2.5)",
        "Biases(reg_i=2.5, epochs=3)",
    )


def test_threads_wanted_is_the_configured_count() -> None:
    assert Biases()._threads_wanted() is None
    from recforge.models.als import ALS

    assert ALS(num_threads=3)._threads_wanted() == 3


def test_fit_refuses_an_empty_training_set_and_unfitted_sizes() -> None:
    model = Popularity()
    with pytest.raises(NotFittedError):
        _ = model.n_users
    with pytest.raises(NotFittedError):
        _ = model.n_items
    empty = Interactions.from_frame(
        pd.DataFrame(
            {"user_id": pd.Series([], dtype=np.int64), "item_id": pd.Series([], dtype=np.int64)}
        ),
        source="nothing.csv",
    )
    with pytest.raises(
        DataError, match=r"^nothing.csv: cannot fit popularity on an empty training set$"
    ):
        model.fit(empty)


def test_fit_records_the_training_state() -> None:
    data = _rated_ladder()
    model = Biases(epochs=2).fit(data)
    assert model.users_ is data.users and model.items_ is data.items
    assert model.n_users == data.n_users and model.n_items == data.n_items
    np.testing.assert_array_equal(model.seen_.toarray(), data.csr("binary").toarray())
    assert model.global_mean_ == pytest.approx(data.global_mean)
    assert model.rating_scale_ == (1.0, 5.0)


def _validation_as_fitted(data: Interactions, valid: Interactions) -> list[Interactions]:
    """The validation set ``fit(data, valid)`` hands the family's ``_fit`` (a spy's record)."""
    seen: list[Interactions] = []

    class _Spy(Biases):
        def _fit(self, train: Interactions, valid: Interactions | None) -> None:
            assert valid is not None
            seen.append(valid)
            super()._fit(train, valid)

    _Spy(epochs=1).fit(data, valid)
    return seen


def test_validation_with_its_own_vocabulary_is_reencoded_to_train() -> None:
    data = _rated_ladder()
    frame = data.to_frame()
    valid = Interactions.from_frame(frame.iloc[::-1].reset_index(drop=True), source="valid")
    assert valid.users is not data.users
    seen = _validation_as_fitted(data, valid)
    assert seen[0].users is data.users and seen[0].items is data.items


def test_a_failed_fit_leaves_no_fitted_attributes() -> None:
    class _Broken(Popularity):
        def _fit(self, train: Interactions, valid: Interactions | None) -> None:
            raise RuntimeError("boom")

    model = _Broken()
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(_popularity_data())
    assert not model.is_fitted
    for attr in base_mod._FIT_ATTRIBUTES:
        assert attr not in model.__dict__


def test_predict_refuses_mismatched_lengths_and_gives_nan_for_unknown_ids() -> None:
    model = Biases(epochs=3).fit(_rated_ladder())
    with pytest.raises(ConfigError, match=r"^predict: 2 user ids but 1 item ids$"):
        model.predict([1, 2], ["i1"])
    got = model.predict([1, 99, 1], ["i1", "i1", "nope"])
    assert got.dtype == np.float32
    assert got[0] == pytest.approx(model.predict_idx(np.array([1]), np.array([1]))[0])
    assert np.isnan(got[1]) and np.isnan(got[2])
    assert np.isnan(model.predict([99], ["nope"])).all()


def test_clip_only_for_rating_models_with_a_scale() -> None:
    model = Biases(epochs=3).fit(_rated_ladder())
    values = np.array([0.0, 3.0, 9.0], np.float64)
    out = model._clip(values)
    assert out.tolist() == [1.0, 3.0, 5.0] and out.dtype == np.float32
    pop = Popularity().fit(_rated_ladder())
    out = pop._clip(values)
    assert out.tolist() == [0.0, 3.0, 9.0] and out.dtype == np.float32


def test_default_fold_in_is_refused_and_batches_call_it_per_row() -> None:
    class _NoFoldIn(Popularity):
        fold_in_scores = Recommender.fold_in_scores

    model = _NoFoldIn().fit(_popularity_data())
    with pytest.raises(ConfigError, match=r"^model popularity does not support recommendations"):
        model.fold_in_scores(np.array([0]), np.array([1.0], np.float32))
    biases = Biases(epochs=3).fit(_rated_ladder())
    rows = sp.csr_matrix(
        np.array([[0, 5, 0, 1] + [0] * 8, [0] * 12, [2] + [0] * 10 + [4]], np.float32)
    )
    got = biases.fold_in_scores_batch(rows)
    assert got.shape == (3, 12) and got.dtype == np.float32
    for r, (idx, vals) in enumerate([([1, 3], [5.0, 1.0]), ([], []), ([0, 11], [2.0, 4.0])]):
        expected = biases.fold_in_scores(np.array(idx, np.int64), np.array(vals, np.float32))
        np.testing.assert_array_equal(got[r], expected)


def test_new_user_ratings_are_checked() -> None:
    model = Biases(epochs=3).fit(_rated_ladder())
    with pytest.raises(DataError, match=r"^new-user ratings are empty"):
        model.recommend_for_ratings({})
    with pytest.raises(DataError, match=r"^new-user ratings must be finite numbers$"):
        model.recommend_for_ratings({"i1": float("nan")})
    with pytest.raises(DataError, match=r"^none of the rated items is known to the model$"):
        model.recommend_for_ratings({"nope": 4.0})
    with pytest.raises(ConfigError, match=r"^k must be >= 1, got 0$"):
        model.recommend_for_ratings({"i1": 4.0}, k=0)
    idx, vals = model._fold_in_inputs({"nope": 1.0, "i3": 4.0, "i0": 2.0})
    assert (
        model.items_.lookup(idx).tolist() == ["i3", "i0"]
        and vals.tolist() == [4.0, 2.0]
        and vals.dtype == np.float32
    )


def test_new_user_recommendations_and_predictions_by_hand() -> None:
    model = Biases(epochs=3).fit(_rated_ladder())
    ratings = {"i2": 5.0, "i7": 1.0}
    rated = model.items_.index(list(ratings))
    scores = model.fold_in_scores(rated, np.array([5.0, 1.0], np.float32))
    ranked = model.items_.lookup(np.lexsort((np.arange(12), -scores))).tolist()
    rec = model.recommend_for_ratings(ratings, k=4)
    assert rec.user_id is None
    assert rec.item_ids.tolist() == [i for i in ranked if i not in ratings][:4]
    every = model.recommend_for_ratings(ratings, k=12, exclude_rated=False)
    assert every.item_ids.tolist() == ranked
    # recommend_for_items: each item as a "like", the top of the rating scale.
    liked = model.recommend_for_items(["i2", "i7"], k=4)
    assert (
        liked.item_ids.tolist()
        == model.recommend_for_ratings({"i2": 5.0, "i7": 5.0}, k=4).item_ids.tolist()
    )
    assert len(model.recommend_for_items(["i2"], k=12, exclude_rated=False)) == 12
    assert len(model.recommend_for_items(["i2"], k=12)) == 11
    pred = model.predict_for_ratings(ratings, ["i0", "nope", "i11"])
    assert pred.dtype == np.float32 and np.isnan(pred[1])
    np.testing.assert_allclose(
        pred[[0, 2]], np.clip(scores[model.items_.index(["i0", "i11"])], 1.0, 5.0)
    )


def test_recommend_for_items_of_an_implicit_model_uses_ones() -> None:
    calls: list[np.ndarray] = []

    class _SpyPopularity(Popularity):
        def fold_in_scores(self, item_idx: np.ndarray, ratings: np.ndarray) -> np.ndarray:
            calls.append(ratings)
            return super().fold_in_scores(item_idx, ratings)

    class _SpyBiases(Biases):
        def fold_in_scores(self, item_idx: np.ndarray, ratings: np.ndarray) -> np.ndarray:
            calls.append(ratings)
            return super().fold_in_scores(item_idx, ratings)

    _SpyPopularity().fit(_popularity_data()).recommend_for_items(["i1", "i2"])
    assert calls[0].tolist() == [1.0, 1.0]  # implicit: rating 1
    _SpyBiases(epochs=1).fit(_rated_ladder()).recommend_for_items(["i1"])
    assert calls[1].tolist() == [5.0]  # explicit: the top of the (1, 5) scale


def test_explain_passes_k_and_the_default_hook_is_occlusion() -> None:
    model = GlobalMean().fit(_rated_ladder())
    one = model.explain(3, "i1", k=1)
    assert one.item_id == "i1" and one.user_id == 3 and len(one.contributions) <= 1
    many = model.explain(3, "i1")
    assert len(many.contributions) == min(5, model.seen_[3].nnz)
    batch = model.explain_batch(3, ["i1", "i2"], k=2)
    assert [e.item_id for e in batch] == ["i1", "i2"]
    assert all(len(e.contributions) == 2 for e in batch)
    assert len(model.explain_batch(3, ["i1"])[0].contributions) == 5
    assert one.method == "occlusion"


def test_default_embeddings_and_state_are_empty() -> None:
    model = Popularity().fit(_popularity_data())
    assert model.item_vectors() is None
    assert model.item_embeddings() is None and model.user_embeddings() is None
    assert Recommender.get_state(model) == {}
    assert Recommender.set_state(model, {}) is None


class _Vectors(Popularity):
    """Popularity with planted item vectors, for the base class's cosine similar_items."""

    def item_vectors(self) -> np.ndarray:
        vecs = np.zeros((self.n_items, 2), np.float32)
        vecs[0] = [1.0, 0.0]
        vecs[1] = [2.0, 2.0]  # cos 0.707 with item 0
        vecs[2] = [3.0, 0.3]  # cos 0.995
        vecs[3] = [0.0, 0.0]  # no direction: similarity 0, not NaN
        vecs[4] = [-1.0, 0.0]  # cos -1
        vecs[5:] = [0.0, 1.0]  # cos 0
        return vecs


def test_similar_items_is_cosine_without_the_item_itself() -> None:
    model = _Vectors().fit(_popularity_data())
    ids = model.items_.ids
    rec = model.similar_items(ids[0], k=4)
    assert rec.user_id == ids[0]
    assert rec.item_ids.tolist() == [ids[2], ids[1], ids[3], ids[5]]
    np.testing.assert_allclose(
        rec.scores, [3 / np.hypot(3, 0.3), 2 / np.hypot(2, 2), 0.0, 0.0], rtol=1e-6
    )
    rec = model.similar_items(ids[3], k=2)
    assert rec.item_ids.tolist() == [ids[0], ids[1]] and rec.scores.tolist() == [0.0, 0.0]
    assert len(model.similar_items(ids[0])) == 10


def test_load_refuses_another_family_and_returns_its_own(tmp_path: Path) -> None:
    model = Popularity().fit(_popularity_data())
    path = model.save(tmp_path / "run")
    assert path == tmp_path / "run"
    loaded = Popularity.load(path)
    assert isinstance(loaded, Popularity)
    np.testing.assert_array_equal(loaded.score_items(np.arange(3)), model.score_items(np.arange(3)))
    assert isinstance(Recommender.load(path), Popularity)
    with pytest.raises(
        ArtifactError, match=r"holds a popularity model, not biases; load it with Popularity.load"
    ):
        Biases.load(path)


def test_seen_history_gives_ratings_and_timeline_positions() -> None:
    frame = pd.DataFrame(
        {
            "user_id": [0, 0, 0, 1, 1, 0],
            "item_id": ["b", "a", "c", "a", "b", "b"],
            "rating": [4.0, 2.0, 5.0, 3.0, 1.0, 4.0],
            "timestamp": [20, 10, 30, 5, 1, 40],
        }
    )
    data = Interactions.from_frame(frame, source="timeline")
    ratings, order = seen_history(data)
    csr = data.csr("binary")
    assert order.dtype == np.int32 and ratings.dtype == np.float32
    # user 0: a (t10) pos 0, b (t20, t40) mean of 1 and 3 = 2, c (t30) pos 2; user 1: b 0, a 1
    cells = {}
    for u in range(2):
        for p in range(csr.indptr[u], csr.indptr[u + 1]):
            cells[(u, data.items.ids[csr.indices[p]])] = (int(order[p]), float(ratings[p]))
    assert cells[(0, "a")] == (0, 2.0)
    assert cells[(0, "b")][0] == 2
    assert cells[(0, "c")] == (2, 5.0)
    assert cells[(1, "b")] == (0, 1.0) and cells[(1, "a")] == (1, 3.0)


def test_mask_seen_sets_minus_inf_in_place() -> None:
    seen = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32))
    scores = np.ones((2, 3), np.float32)
    assert mask_seen(scores, seen, np.array([1, 0])) is None
    assert np.isneginf(scores).tolist() == [[False, True, False], [True, False, True]]


def test_topk_rows_gives_int64_indices_and_float32_values() -> None:
    scores = np.array([[0.5, 2.0, 1.0], [3.0, 1.0, 2.0]], dtype=np.float64)
    for k in (2, 3):  # the partial selection and the full sort
        idx, val = topk_rows(scores, k)
        assert idx.dtype == np.int64 and val.dtype == np.float32
        assert idx.tolist() == [[1, 2, 0][:k], [0, 2, 1][:k]]
        assert val.tolist() == [[2.0, 1.0, 0.5][:k], [3.0, 2.0, 1.0][:k]]


def test_batch_fold_in_passes_index_and_float32_arrays() -> None:
    seen: list[tuple[np.dtype, np.dtype]] = []

    class _Spy(Biases):
        def fold_in_scores(self, item_idx: np.ndarray, ratings: np.ndarray) -> np.ndarray:
            seen.append((item_idx.dtype, ratings.dtype))
            return super().fold_in_scores(item_idx, ratings)

    model = _Spy(epochs=2).fit(_rated_ladder())
    model.fold_in_scores_batch(sp.csr_matrix(np.array([[0, 2.5, 0, 1] + [0] * 8], np.float64)))
    assert seen == [(np.dtype(np.int64), np.dtype(np.float32))]


def test_new_user_lists_default_to_ten_and_accept_k_one() -> None:
    model = Biases(epochs=2).fit(_rated_ladder())
    assert len(model.recommend_for_ratings({"i1": 4.0})) == 10
    assert len(model.recommend_for_items(["i1"])) == 10
    assert len(model.recommend_for_ratings({"i1": 4.0}, k=1)) == 1


def test_similar_items_scores_are_cosines_for_any_query_norm() -> None:
    model = _Vectors().fit(_popularity_data())
    ids = model.items_.ids
    rec = model.similar_items(ids[2], k=2)  # query [3, 0.3]: not a unit vector
    q = np.array([3.0, 0.3])
    want = {0: 3.0 / np.hypot(3, 0.3), 1: (6.0 + 0.6) / (np.hypot(2, 2) * np.hypot(3, 0.3))}
    assert rec.item_ids.tolist() == [ids[0], ids[1]]
    np.testing.assert_allclose(rec.scores, [want[0], want[1]], rtol=1e-6)
    assert np.linalg.norm(q) != 1.0


def test_fit_reads_a_frame_through_its_column_mapping() -> None:
    frame = (
        _rated_ladder()
        .to_frame()
        .rename(columns={"user_id": "customer", "item_id": "product", "rating": "stars"})
    )
    model = Biases(epochs=2).fit(
        frame, columns={"user": "customer", "item": "product", "rating": "stars"}
    )
    assert model.n_items == 12 and model.items_.ids.tolist()[0] == "i0"
    assert model.global_mean_ == pytest.approx(frame["stars"].mean())
    # The same roles as keywords, plus a reader option (the rating scale).
    by_keyword = Biases(epochs=2).fit(
        frame, user="customer", item="product", rating="stars", rating_scale=(1.0, 5.0)
    )
    assert by_keyword.rating_scale_ == (1.0, 5.0) and by_keyword.n_users == model.n_users


def test_validation_with_train_users_but_its_own_items_is_reencoded() -> None:
    data = _rated_ladder()
    reversed_items = IdVocab(data.items.ids[::-1].copy(), name="item")
    frame = data.to_frame()
    valid = Interactions.from_frame(frame, users=data.users, items=reversed_items, source="v")
    assert valid.users is data.users and valid.items is not data.items
    seen = _validation_as_fitted(data, valid)
    assert seen[0].items is data.items
    np.testing.assert_array_equal(seen[0].item_idx, data.item_idx)


class _ValidSpy(Biases):
    """Biases that records the validation data its _fit receives."""

    received: list[Interactions] = []

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        assert valid is not None
        self.received.append(valid)
        super()._fit(train, valid)


def test_validation_with_its_own_users_is_reencoded_and_unknown_ids_dropped() -> None:
    data = _rated_ladder()
    frame = data.to_frame()
    extra = pd.DataFrame({"user_id": [99], "item_id": ["i3"], "rating": [2.0], "timestamp": [0]})
    frame = pd.concat([frame, extra], ignore_index=True)
    users = IdVocab(np.r_[data.users.ids[::-1], 99], name="user")
    valid = Interactions.from_frame(frame, users=users, items=data.items, source="v")
    assert valid.items is data.items and valid.users is not data.users
    _ValidSpy.received = []
    _ValidSpy(epochs=1).fit(data, valid)
    (got,) = _ValidSpy.received
    assert got.users is data.users and len(got) == len(data)  # user 99 is dropped
    np.testing.assert_array_equal(got.user_idx, data.user_idx)


def test_fit_runs_with_the_threads_the_model_asks_for() -> None:
    import torch

    used: list[int] = []

    class _TwoThreads(Biases):
        # Not the default: the test session's RECFORGE_NUM_THREADS is 1.
        def _threads_wanted(self) -> int | None:
            return 2

        def _fit(self, train: Interactions, valid: Interactions | None) -> None:
            used.append(torch.get_num_threads())
            super()._fit(train, valid)

    before = torch.get_num_threads()
    _TwoThreads(epochs=1).fit(_rated_ladder())
    assert used == [2] and torch.get_num_threads() == before


def test_bad_model_config_is_named_after_the_family() -> None:
    with pytest.raises(ConfigError) as info:
        Biases(epochs=0)
    assert str(info.value) == "model biases: epochs: Input should be greater than or equal to 1"
    with pytest.raises(ConfigError) as info:
        Biases({"epochs": 2}, bogus=1)
    assert str(info.value) == (
        "model biases: bogus: unknown key; valid keys are: epochs, reg_i, reg_u, seed"
    )


# ------------------------------------------ found by mutation testing (models/base.py, fourth step)
def test_scoring_threads_are_capped_by_one_chunks_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    """recommend_idx asks the BLAS cap for one chunk's work: min(users, chunk) × items cells at
    _SCORE_MS_PER_CELL milliseconds each."""
    asked = record_thread_caps(monkeypatch, base_mod, "blas_capped")
    model = create("popularity").fit(_popularity_data())
    model.recommend_idx(np.array([0, 1, 0]), k=3)
    monkeypatch.setattr(base_mod, "DEFAULT_SCORE_CHUNK", 2)
    model.recommend_idx(np.array([0, 1, 0]), k=3)
    per_cell = base_mod._SCORE_MS_PER_CELL
    assert asked == [
        pytest.approx(3 * model.n_items * per_cell),
        pytest.approx(2 * model.n_items * per_cell),
    ]


def _needs_numba() -> None:
    from recforge.train.fused_mf import numba_available

    if not numba_available():
        pytest.skip("numba is not installed")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [5, 20])
def test_compiled_topk_ranks_nan_rows_like_the_torch_path(
    dtype: type, k: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows holding a NaN leave the compiled heap for the reference selection; every row's
    answer (indices and values) is the torch path's, ties by lower index included."""
    _needs_numba()
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, (6, 20)).astype(dtype)  # many ties
    scores[1, [3, 7]] = np.nan
    scores[4, 0] = np.nan
    scores[2, 5] = -np.inf
    got_idx, got_val = topk_rows(scores, k)
    monkeypatch.setattr(base_mod, "_compiled_topk", lambda s, k: None)
    want_idx, want_val = topk_rows(scores, k)
    np.testing.assert_array_equal(got_idx, want_idx)
    np.testing.assert_array_equal(got_val, want_val)
    assert got_idx.dtype == np.int64 and got_val.dtype == np.float32


def test_compiled_topk_takes_float_blocks_on_threads_for_their_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """float32/float64 blocks of several rows go to the compiled kernel, on as many threads as
    their cells are worth (one for a small block, whatever torch allows); other dtypes do not."""
    _needs_numba()
    import torch

    import recforge.models._topk_kernels as kernels_mod
    import recforge.threads as threads_mod

    calls: list[str] = []
    real_kernel, real_map = kernels_mod.topk_block, threads_mod.map_in_threads

    def _kernel(block, *args):  # type: ignore[no-untyped-def]
        calls.append(str(block.dtype))
        return real_kernel(block, *args)

    threads_used: list[int] = []

    def _map(fn, items, n_threads):  # type: ignore[no-untyped-def]
        threads_used.append(n_threads)
        return real_map(fn, items, n_threads)

    monkeypatch.setattr(kernels_mod, "topk_block", _kernel)
    monkeypatch.setattr(threads_mod, "map_in_threads", _map)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        scores = np.arange(40, dtype=np.float64).reshape(4, 10)
        for dtype in (np.float32, np.float64):
            idx, _ = topk_rows(scores.astype(dtype), 3)
            assert idx[:, 0].tolist() == [9, 9, 9, 9]
        assert calls == ["float32", "float64"] and threads_used == [1, 1]
        for dtype in (np.float16, np.int64):
            idx, val = topk_rows(scores.astype(dtype), 3)
            assert idx[:, 0].tolist() == [9, 9, 9, 9]
            assert idx.dtype == np.int64 and val.dtype == np.float32
        assert calls == ["float32", "float64"]
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("mode", ["all", "one"])
def test_compiled_topk_is_the_same_whichever_thread_count_is_picked(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rows are independent: a block's top-k on the picked thread count (1 or the fit's) must be
    # the one-thread result to the last bit, ties included.
    _needs_numba()
    import torch

    import recforge.threads as threads_mod

    scores = np.random.default_rng(4).integers(0, 30, (37, 50)).astype(np.float32)
    want_idx, want_val = topk_rows(scores, 7)
    given = force_picked_threads(monkeypatch, threads_mod, mode)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        got_idx, got_val = topk_rows(scores, 7)
    finally:
        torch.set_num_threads(before)
    assert given == [3 if mode == "all" else 1]
    np.testing.assert_array_equal(got_idx, want_idx)
    np.testing.assert_array_equal(got_val, want_val)
