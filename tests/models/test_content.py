"""Content-based model: TF-IDF, features, profiles, genre known answers, hybrid, fold-in, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recforge.artifacts import load_run
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError
from recforge.models.content import ContentBased, item_features, tfidf
from recforge.models.registry import create
from recforge.testing import planted_explicit

GENRES = ["Comedy", "Drama", "Horror", "Western"]


def genre_catalogue(n_per_genre: int = 10) -> pd.DataFrame:
    """Items 1..40, ten per genre; titles share only a word common to all (dropped by max_df)."""
    ids = np.arange(1, 4 * n_per_genre + 1)
    return pd.DataFrame(
        {
            "title": [f"Movie {j}" for j in ids],
            "genres": [[GENRES[(j - 1) // n_per_genre]] for j in ids],
        },
        index=pd.Index(ids, name="item_id"),
    )


def genre_of(item_id: int, n_per_genre: int = 10) -> str:
    return GENRES[(int(item_id) - 1) // n_per_genre]


# ---------------------------------------------------------------------- TF-IDF and features
def test_tfidf_by_hand() -> None:
    # 3 documents, 3 terms: t0 in docs 0 and 1 (twice in doc 0), t1 in doc 0, t2 in every doc.
    counts = sp.csr_matrix(np.array([[2, 1, 1], [1, 0, 1], [0, 0, 1]], dtype=float))
    got, kept = tfidf(counts)
    idf = [math.log(4 / 3) + 1, math.log(4 / 2) + 1, math.log(4 / 4) + 1]
    raw = np.array([[2 * idf[0], idf[1], idf[2]], [idf[0], 0, idf[2]], [0, 0, idf[2]]])
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(got.toarray(), expected, rtol=1e-12)
    np.testing.assert_array_equal(kept, [0, 1, 2])
    # min_df=2 drops t1 (one document); max_df=0.9 drops t2 (every document).
    got, kept = tfidf(counts, min_df=2, max_df=0.9)
    np.testing.assert_array_equal(kept, [0])
    np.testing.assert_allclose(got.toarray(), [[1.0], [1.0], [0.0]])


def test_tfidf_max_terms_keeps_most_frequent() -> None:
    counts = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [1, 1, 0]], dtype=float))
    _, kept = tfidf(counts, max_terms=2)
    np.testing.assert_array_equal(kept, [0, 1])


def test_item_features_blocks_and_names() -> None:
    meta = pd.DataFrame(
        {
            "title": ["Toy Story (1995)", "Story of Toys (1995)", "Heat (1995)", "Alien (1979)"],
            "genres": [["Animation", "Comedy"], "Comedy|Drama", ["(no genres listed)"], None],
            "tags": [["pixar", "pixar", "funny"], ["funny"], [], ["space"]],
        },
        index=pd.Index([10, 20, 30, 40], name="item_id"),
    )
    feats, names = item_features(meta, np.array([20, 10, 40, 30, 99]), max_df=0.9)
    assert feats.shape[0] == 5
    # Genres: Animation, Comedy, Drama; tags in >= 2 items: funny; title words in >= 2 items and at
    # most 90 %: 1995 (3 of 4) and story ("toy"/"toys" differ, each in one title).
    assert names == [
        "genre:Animation", "genre:Comedy", "genre:Drama", "tag:funny",
        "title:1995", "title:story",
    ]  # fmt: skip
    dense = feats.toarray()
    np.testing.assert_allclose(np.linalg.norm(dense[:4], axis=1), [1, 1, 0, 1])
    assert np.all(dense[4] == 0), "an item without metadata has no features"
    assert np.all(dense[2] == 0), "Alien: no genre, unique tag, unique title words"
    # Item 20 ("Comedy|Drama" string form): genre block [0, 1, 1]/sqrt(2) before the final scaling.
    assert dense[0, 1] == pytest.approx(dense[0, 2]) and dense[0, 0] == 0


def test_year_block_links_items_of_the_same_era() -> None:
    meta = pd.DataFrame(
        {
            "genres": [["Drama"]] * 4,
            "year": pd.array([1995, 1995, 1998, None], dtype="Int64"),
        },
        index=pd.Index([1, 2, 3, 4], name="item_id"),
    )
    feats, names = item_features(meta, np.array([1, 2, 3, 4]), max_df=0.9)
    # "1990s" is in 3 of 4 items (kept under max_df 0.9), "1995" in 2, "1998" in one (dropped).
    assert names == ["genre:Drama", "year:1990s", "year:1995"]
    dense = feats.toarray()
    assert dense[0, 2] > 0 and dense[1, 2] > 0 and dense[2, 2] == 0
    assert dense[2, 1] > 0 and dense[3, 1] == 0, "an unknown year adds no year feature"


def test_missing_metadata_is_a_data_error() -> None:
    frame = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1], "rating": [4.0, 3.0, 5.0]})
    bare = Interactions.from_frame(frame, rating_scale=(1.0, 5.0))
    with pytest.raises(DataError, match="needs item metadata"):
        ContentBased().fit(bare)
    wrong = pd.DataFrame({"title": ["x", "y"]}, index=pd.Index(["a", "b"], name="item_id"))
    mismatched = Interactions.from_frame(frame, item_meta=wrong, rating_scale=(1.0, 5.0))
    with pytest.raises(DataError, match="genres/tags/titles"):
        ContentBased().fit(mismatched)


# ---------------------------------------------------------------------- known answers
def single_genre_users(*, explicit: bool, seed: int = 0) -> Interactions:
    """User g·10+k rated 4 random items of genre g only (ratings 3..5, or implicit)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(40):
        genre = user % 4
        items = rng.choice(np.arange(genre * 10 + 1, genre * 10 + 11), 4, replace=False)
        for item in items:
            rows.append((user + 1, int(item), float(rng.integers(3, 6)) if explicit else 1.0))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    return Interactions.from_frame(
        frame, item_meta=genre_catalogue(), rating_scale=(1.0, 5.0) if explicit else None
    )


@pytest.mark.parametrize("explicit", [False, True])
def test_single_genre_users_get_their_genre(explicit: bool) -> None:
    # Implicit data, or explicit data ranked by interest with feedback="implicit". (Ranked by
    # predicted rating, one-genre ratings say nothing about other genres: see the next test.)
    data = single_genre_users(explicit=explicit)
    model = create("content", feedback="implicit").fit(data)
    known = data.items.ids
    seen = data.csr("binary")
    for rec in model.recommend(data.users.ids, k=6):
        want = GENRES[(int(rec.user_id) - 1) % 4]
        u = data.users.index_one(rec.user_id)
        rated = set(known[seen[u].indices].tolist())
        n_left = sum(genre_of(i) == want and i not in rated for i in known.tolist())
        assert n_left >= 3
        assert [genre_of(i) for i in rec.item_ids[:n_left]] == [want] * min(n_left, 6)


def liked_and_disliked_genres() -> Interactions:
    """Users of group A rate Comedy 5 and Horror 1; group B the reverse (item biases cancel)."""
    rng = np.random.default_rng(3)
    rows = []
    for user in range(60):
        likes, hates = (0, 2) if user % 2 == 0 else (2, 0)
        for genre, rating in ((likes, 5.0), (hates, 1.0)):
            for item in rng.choice(np.arange(genre * 10 + 1, genre * 10 + 11), 4, replace=False):
                rows.append((user + 1, int(item), rating))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    return Interactions.from_frame(frame, item_meta=genre_catalogue(), rating_scale=(1.0, 5.0))


def test_explicit_profile_prefers_liked_over_disliked_genre() -> None:
    data = liked_and_disliked_genres()
    model = ContentBased().fit(data)
    assert model.predicts_ratings and model.alpha_ > 0.5
    comedy = np.arange(1, 11)
    horror = np.arange(21, 31)
    fan, hater = data.users.ids[0], data.users.ids[1]  # user 1 likes comedy, user 2 horror
    fan_c = model.predict([fan] * 10, comedy)
    fan_h = model.predict([fan] * 10, horror)
    assert fan_c.min() > fan_h.max() + 1.0
    (rec,) = model.recommend([hater], k=3)
    assert all(genre_of(i) == "Horror" for i in rec.item_ids)


def test_profile_weights_by_hand() -> None:
    data = single_genre_users(explicit=True)
    model = ContentBased(interest_weight=0.5).fit(data)
    row = data.csr()[0]
    r = row.data.astype(float)
    centred = r - r.mean()
    expected = centred / np.abs(centred).sum() + 0.5 / len(r)
    weights = model._profile_weights(data.csr())[0]
    np.testing.assert_allclose(weights.data, expected, rtol=1e-12)
    np.testing.assert_array_equal(weights.indices, row.indices)


def test_explicit_rating_rule_formula() -> None:
    data = planted_explicit(0).train
    model = ContentBased().fit(data)
    u, i = 7, 11
    p = model._profiles[u].toarray()[0]
    f = model.features_[i].toarray()[0]
    cos = p @ f / (np.linalg.norm(p) * np.linalg.norm(f))
    expected = model.global_mean_ + model.user_bias_[u] + model.item_bias_[i] + model.alpha_ * cos
    assert model.predict_idx(np.array([u]), np.array([i]))[0] == pytest.approx(expected, rel=1e-6)
    assert model.score_items(np.array([u]))[0, i] == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------- fold-in, similar items
@pytest.mark.parametrize("config", [{}, {"feedback": "implicit"}, {"interest_weight": 1.0}])
def test_fold_in_equals_trained_user(config: dict[str, object]) -> None:
    data = planted_explicit(0).train
    model = create("content", config).fit(data)
    csr = data.csr()
    for u in (0, 50, 299):
        lo, hi = csr.indptr[u], csr.indptr[u + 1]
        scores = model.fold_in_scores(csr.indices[lo:hi].astype(np.int64), csr.data[lo:hi])
        np.testing.assert_allclose(
            scores, model.score_items(np.array([u]))[0], rtol=1e-6, atol=1e-7
        )


def test_similar_items_share_the_genre() -> None:
    data = single_genre_users(explicit=False)
    model = ContentBased().fit(data)
    rec = model.similar_items(1, k=5)
    assert 1 not in set(rec.item_ids.tolist()) and len(rec) == 5
    assert all(genre_of(i) == "Comedy" for i in rec.item_ids)
    vecs = model.item_vectors()
    assert vecs.shape[0] == data.n_items


# ---------------------------------------------------------------------- hybrid
def test_hybrid_config_validation() -> None:
    with pytest.raises(ConfigError, match="cannot be 'content'"):
        ContentBased(hybrid_with="content")
    with pytest.raises(ConfigError, match="unknown model"):
        ContentBased(hybrid_with="no_such_model")
    with pytest.raises(ConfigError, match="hybrid_with is not"):
        ContentBased(hybrid_config={"k_neighbors": 5})


def test_hybrid_rating_blend_is_convex_combination() -> None:
    data = planted_explicit(0).train
    pure = ContentBased().fit(data)
    knn = create("item_knn", k_neighbors=30).fit(data)
    hybrid = ContentBased(
        hybrid_with="item_knn", hybrid_weight=0.25, hybrid_config={"k_neighbors": 30}
    )
    hybrid.fit(data)
    users = np.arange(0, data.n_users, 9)
    expected = 0.75 * pure.score_items(users) + 0.25 * knn.score_items(users)
    np.testing.assert_allclose(hybrid.score_items(users), expected, rtol=1e-5)
    assert hybrid.predicts_ratings


def test_hybrid_zscore_blend_on_implicit_scores() -> None:
    data = planted_explicit(0).train
    hybrid = ContentBased(
        feedback="implicit", hybrid_with="item_knn", hybrid_config={"feedback": "implicit"}
    ).fit(data)
    assert not hybrid.predicts_ratings
    users = np.arange(5)
    pure = ContentBased(feedback="implicit").fit(data).score_items(users).astype(float)
    knn = create("item_knn", feedback="implicit").fit(data).score_items(users).astype(float)

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)

    np.testing.assert_allclose(
        hybrid.score_items(users), 0.5 * z(pure) + 0.5 * z(knn), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("feedback", ["explicit", "implicit"])
def test_hybrid_save_load_identical(feedback: str, tmp_path: Path) -> None:
    data = planted_explicit(0).train
    model = ContentBased(
        feedback=feedback,
        hybrid_with="user_knn",
        hybrid_weight=0.6,
        hybrid_config={"k_neighbors": 20, "feedback": feedback},
    ).fit(data)
    run = load_run(model.save(tmp_path / "run"))
    loaded = run.model
    assert isinstance(loaded, ContentBased) and loaded.config == model.config
    assert loaded.hybrid_ is not None and loaded.hybrid_.name == "user_knn"
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(loaded.score_items(users), model.score_items(users))
    hist = {data.items.ids[j]: 4.0 for j in (1, 5, 9)}
    np.testing.assert_array_equal(
        loaded.recommend_for_ratings(hist, k=10).item_ids,
        model.recommend_for_ratings(hist, k=10).item_ids,
    )
