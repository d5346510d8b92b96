"""Item- and user-kNN: similarities vs dense formulas, truncation, chunking, scoring, fold-in."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.knn import ItemKNN, UserKNN, neighbour_similarities
from recforge.models.registry import create
from recforge.testing import hit_rate, planted_explicit, planted_implicit, rating_rmse

# 4 users × 4 items, 0 = not rated. Item columns a..d; user rows u1..u4.
TINY = np.array(
    [
        [5, 3, 0, 1],
        [4, 0, 0, 1],
        [1, 1, 0, 5],
        [0, 1, 5, 4],
    ],
    dtype=np.float64,
)


def tiny(values: npt.NDArray[np.float64] = TINY, *, explicit: bool = True) -> Interactions:
    u, i = np.nonzero(values)
    frame = pd.DataFrame({"user_id": u + 1, "item_id": i + 1, "rating": values[u, i]})
    return Interactions.from_frame(frame, rating_scale=(1.0, 5.0) if explicit else None)


def dense_similarity(
    values: npt.NDArray[np.float64],
    mask: npt.NDArray[np.bool_],
    *,
    restricted: bool,
    shrinkage: float = 0.0,
) -> npt.NDArray[np.float64]:
    """Reference: similarities between the ROWS of ``values`` with explicit Python loops."""
    n = values.shape[0]
    out = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            common = mask[a] & mask[b]
            if restricted:
                num = float(np.sum(values[a, common] * values[b, common]))
                den = math.sqrt(
                    float(np.sum(values[a, common] ** 2)) * float(np.sum(values[b, common] ** 2))
                )
            else:
                num = float(values[a] @ values[b])
                den = float(np.linalg.norm(values[a]) * np.linalg.norm(values[b]))
            sim = num / den if den > 0 else 0.0
            n_common = int(common.sum())
            if shrinkage > 0:
                sim *= max(n_common - 1, 0) / (max(n_common - 1, 0) + shrinkage)
            out[a, b] = sim
    return out


def stored(model: ItemKNN | UserKNN) -> npt.NDArray[np.float64]:
    return np.asarray(model.similarity_.toarray(), dtype=np.float64)


def positive_off_diagonal(ref: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out = np.where(ref > 0, ref, 0.0)
    np.fill_diagonal(out, 0.0)
    return out


# ---------------------------------------------------------------------- similarities
def test_item_cosine_hand_value_and_dense_formula() -> None:
    model = ItemKNN(similarity="cosine", k_neighbors=10).fit(tiny())
    sims = stored(model)
    # Items a=(5,4,1,0) and d=(1,1,5,4): cos = (5+4+5+0) / (sqrt(42)·sqrt(43)).
    assert sims[0, 3] == pytest.approx(14 / math.sqrt(42 * 43), rel=1e-6)
    ref = dense_similarity(TINY.T, TINY.T > 0, restricted=False)
    np.testing.assert_allclose(sims, positive_off_diagonal(ref), rtol=1e-6, atol=1e-7)


def test_item_adjusted_cosine_centres_by_user_mean() -> None:
    model = ItemKNN(similarity="adjusted_cosine", shrinkage=0.0, k_neighbors=10).fit(tiny())
    mask = TINY > 0
    user_mean = TINY.sum(axis=1) / mask.sum(axis=1)
    centred = np.where(mask, TINY - user_mean[:, None], 0.0)
    ref = dense_similarity(centred.T, mask.T, restricted=True)
    np.testing.assert_allclose(stored(model), positive_off_diagonal(ref), rtol=1e-6, atol=1e-7)
    # Hand value, items a and b: co-raters u1 (mean 3) and u3 (mean 7/3):
    # e_a = (2, -4/3), e_b = (0, -4/3) -> (16/9) / sqrt((4 + 16/9) · 16/9).
    assert stored(model)[0, 1] == pytest.approx(
        (16 / 9) / math.sqrt((4 + 16 / 9) * 16 / 9), rel=1e-6
    )


def test_user_adjusted_cosine_centres_by_item_mean() -> None:
    model = UserKNN(similarity="adjusted_cosine", shrinkage=0.0, k_neighbors=10).fit(tiny())
    mask = TINY > 0
    item_mean = TINY.sum(axis=0) / mask.sum(axis=0)
    centred = np.where(mask, TINY - item_mean[None, :], 0.0)
    ref = dense_similarity(centred, mask, restricted=True)
    np.testing.assert_allclose(stored(model), positive_off_diagonal(ref), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
def test_pearson_baseline_with_shrinkage(cls: type[ItemKNN] | type[UserKNN]) -> None:
    model = cls(similarity="pearson_baseline", shrinkage=1.0, k_neighbors=10).fit(tiny())
    mask = TINY > 0
    base = model.global_mean_ + model.user_bias_[:, None] + model.item_bias_[None, :]
    resid = np.where(mask, TINY - base, 0.0)
    values, pattern = (resid.T, mask.T) if cls is ItemKNN else (resid, mask)
    ref = dense_similarity(values, pattern, restricted=True, shrinkage=1.0)
    np.testing.assert_allclose(stored(model), positive_off_diagonal(ref), rtol=1e-5, atol=1e-6)
    assert model.similarity_.nnz > 0


def test_default_shrinkage_depends_on_similarity() -> None:
    assert ItemKNN().config.resolved_shrinkage == 0.0
    assert ItemKNN(similarity="pearson_baseline").config.resolved_shrinkage == 100.0
    assert ItemKNN(similarity="adjusted_cosine", shrinkage=5).config.resolved_shrinkage == 5.0


def test_min_support_zeroes_thin_similarities() -> None:
    model = ItemKNN(similarity="cosine", min_support=2, k_neighbors=10).fit(tiny())
    support = ((TINY > 0).T.astype(int) @ (TINY > 0).astype(int)).astype(float)
    sims = stored(model)
    assert np.all(sims[support < 2] == 0)
    assert np.any(sims[support >= 2] > 0)


# ---------------------------------------------------------------------- truncation and chunking
def test_top_k_truncation_keeps_largest() -> None:
    data = planted_explicit(0).train
    full = ItemKNN(k_neighbors=10_000).fit(data)
    top3 = ItemKNN(k_neighbors=3).fit(data)
    dense = stored(full)
    kept = stored(top3)
    assert np.all((kept > 0).sum(axis=1) <= 3)
    for row in range(0, data.n_items, 17):
        expected = np.sort(dense[row])[::-1][:3]
        got = np.sort(kept[row][kept[row] > 0])[::-1]
        np.testing.assert_allclose(got, expected[: len(got)], rtol=1e-6)
        assert len(got) == min(3, int((dense[row] > 0).sum()))
    # The stored rows are a subset of the full similarity values.
    nz = kept > 0
    np.testing.assert_allclose(kept[nz], dense[nz], rtol=1e-6)


@pytest.mark.parametrize("restricted", [False, True])
def test_chunked_equals_unchunked(restricted: bool) -> None:
    data = planted_explicit(1).train
    values = data.csr().T.tocsr()
    pattern = data.csr("binary").T.tocsr()
    kwargs = {"k": 7, "restricted": restricted, "shrinkage": 10.0 if restricted else 0.0}
    whole = neighbour_similarities(values, pattern, chunk_size=data.n_items, **kwargs)
    pieces = neighbour_similarities(values, pattern, chunk_size=13, **kwargs)
    budget = neighbour_similarities(values, pattern, memory_budget_mb=0.05, **kwargs)
    for other in (pieces, budget):
        assert (whole != other).nnz == 0
        np.testing.assert_array_equal(whole.indptr, other.indptr)
        np.testing.assert_array_equal(whole.indices, other.indices)
    assert whole.has_sorted_indices and whole.diagonal().sum() == 0


# ---------------------------------------------------------------------- rating rule
def test_rating_prediction_formula_by_hand() -> None:
    train = tiny()
    model = ItemKNN(similarity="cosine", k_neighbors=2).fit(train)
    sims = stored(model)
    mu, b_u, b_i = model.global_mean_, model.user_bias_, model.item_bias_
    mask = TINY > 0
    expected = np.zeros_like(TINY)
    for u in range(4):
        for i in range(4):
            base = mu + b_u[u] + b_i[i]
            nbrs = [j for j in range(4) if sims[i, j] > 0 and mask[u, j]]
            num = sum(sims[i, j] * (TINY[u, j] - (mu + b_u[u] + b_i[j])) for j in nbrs)
            den = sum(abs(sims[i, j]) for j in nbrs)
            expected[u, i] = base + (num / den if nbrs else 0.0)
    got = model.score_items(np.arange(4))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    uu, ii = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    pairwise = model.predict_idx(uu.ravel(), ii.ravel()).reshape(4, 4)
    np.testing.assert_allclose(pairwise, expected, rtol=1e-5)


@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
def test_min_k_falls_back_to_baseline(cls: type[ItemKNN] | type[UserKNN]) -> None:
    model = cls(min_k=50).fit(tiny())
    base = model.global_mean_ + model.user_bias_[:, None] + model.item_bias_[None, :]
    np.testing.assert_allclose(model.score_items(np.arange(4)), base, rtol=1e-6)


def test_user_rating_prediction_formula_by_hand() -> None:
    model = UserKNN(similarity="cosine", k_neighbors=2).fit(tiny())
    sims = stored(model)
    mu, b_u, b_i = model.global_mean_, model.user_bias_, model.item_bias_
    mask = TINY > 0
    u, i = 3, 0  # user u4 never rated item a; neighbours who did rate it decide
    nbrs = [v for v in range(4) if sims[u, v] > 0 and mask[v, i]]
    num = sum(sims[u, v] * (TINY[v, i] - (mu + b_u[v] + b_i[i])) for v in nbrs)
    den = sum(sims[u, v] for v in nbrs)
    assert nbrs
    expected = mu + b_u[u] + b_i[i] + num / den
    assert model.predict_idx(np.array([u]), np.array([i]))[0] == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------- top-N rule
def test_implicit_scores_are_x_times_s() -> None:
    train = tiny(explicit=False)
    model = ItemKNN(k_neighbors=10).fit(train)
    assert model.feedback_ == "implicit" and not model.predicts_ratings
    x = (TINY > 0).astype(np.float64)
    np.testing.assert_allclose(model.score_items(np.arange(4)), x @ stored(model), rtol=1e-6)
    user = UserKNN(k_neighbors=10).fit(train)
    np.testing.assert_allclose(user.score_items(np.arange(4)), stored(user) @ x, rtol=1e-6)


def test_explicit_data_with_implicit_rule_binarises() -> None:
    model = ItemKNN(feedback="implicit", k_neighbors=10).fit(tiny())
    ref = dense_similarity((TINY.T > 0).astype(float), TINY.T > 0, restricted=False)
    np.testing.assert_allclose(stored(model), positive_off_diagonal(ref), rtol=1e-6)
    assert not model.predicts_ratings


def test_normalize_makes_neighbour_rows_sum_to_one() -> None:
    train = tiny(explicit=False)
    model = ItemKNN(k_neighbors=10, normalize=True).fit(train)
    sims = stored(model)
    rows = sims / np.where(sims.sum(axis=1, keepdims=True) > 0, sims.sum(axis=1, keepdims=True), 1)
    x = (TINY > 0).astype(np.float64)
    np.testing.assert_allclose(model.score_items(np.arange(4)), x @ rows, rtol=1e-6)


def test_co_rater_similarity_needs_explicit_feedback() -> None:
    with pytest.raises(ConfigError, match="needs explicit ratings"):
        ItemKNN(similarity="pearson_baseline").fit(tiny(explicit=False))


# ---------------------------------------------------------------------- planted structure
@pytest.mark.parametrize("name", ["item_knn", "user_knn"])
def test_planted_rmse_below_global_mean(name: str) -> None:
    data = planted_explicit(0)
    model = create(name, similarity="pearson_baseline").fit(data.train)
    mean = create("global_mean").fit(data.train)
    assert rating_rmse(model, data.test) < 0.9 * rating_rmse(mean, data.test)


@pytest.mark.parametrize("name", ["item_knn", "user_knn"])
def test_planted_top_n_beats_popularity(name: str) -> None:
    data = planted_implicit(0)
    model = create(name).fit(data.train)
    pop = create("popularity").fit(data.train)
    assert hit_rate(model, data, 10) > hit_rate(pop, data, 10) + 0.2


# ---------------------------------------------------------------------- new users
def _history(train: Interactions, u: int) -> dict[object, float]:
    csr = train.csr()
    lo, hi = csr.indptr[u], csr.indptr[u + 1]
    return dict(
        zip(train.items.lookup(csr.indices[lo:hi]).tolist(), csr.data[lo:hi].tolist(), strict=True)
    )


@pytest.mark.parametrize("feedback", ["explicit", "implicit"])
def test_item_knn_fold_in_equals_trained_user(feedback: str) -> None:
    data = planted_explicit(0).train
    model = ItemKNN(feedback=feedback).fit(data)
    for u in (0, 17, 123):
        hist = _history(data, u)
        idx, vals = model._fold_in_inputs(hist)
        np.testing.assert_allclose(
            model.fold_in_scores(idx, vals),
            model.score_items(np.array([u]))[0],
            rtol=1e-6,
            atol=1e-6,
        )


@pytest.mark.parametrize("similarity", ["cosine", "adjusted_cosine", "pearson_baseline"])
def test_user_knn_fold_in_similarities_match_training_formula(similarity: str) -> None:
    data = planted_explicit(0).train
    full = UserKNN(similarity=similarity, k_neighbors=10_000).fit(data)
    u = 42
    idx, vals = full._fold_in_inputs(_history(data, u))
    sims = full.fold_in_similarities(idx, vals)
    trained = stored(full)[u]
    others = np.arange(data.n_users) != u
    np.testing.assert_allclose(
        np.where(sims > 0, sims, 0)[others], trained[others], rtol=1e-5, atol=1e-6
    )


def test_user_knn_fold_in_recovers_held_out_taste() -> None:
    data = planted_implicit(0)
    model = UserKNN().fit(data.train)
    hist = _history(data.train, 5)
    rec = model.recommend_for_ratings(hist, k=10)
    assert len(rec) == 10 and not set(rec.item_ids.tolist()) & set(hist)
    # A brand-new user with a trained user's history is that user's nearest neighbour's twin.
    idx, vals = model._fold_in_inputs(hist)
    sims = model.fold_in_similarities(idx, vals)
    assert int(np.argmax(sims)) == 5 and sims[5] == pytest.approx(1.0)


# ---------------------------------------------------------------------- misc
def test_similar_items_uses_stored_neighbourhood() -> None:
    data = planted_explicit(0).train
    model = ItemKNN(k_neighbors=5).fit(data)
    item = data.items.ids[3]
    rec = model.similar_items(item, k=3)
    assert len(rec) == 3 and item not in set(rec.item_ids.tolist())
    assert np.all(np.diff(rec.scores) <= 0)
    row = stored(model)[3]
    np.testing.assert_allclose(rec.scores, np.sort(row)[::-1][:3], rtol=1e-6)
    with pytest.raises(ConfigError):
        UserKNN().fit(data).similar_items(item, k=3)


def test_save_load_round_trip(tmp_path: Path) -> None:
    from recforge.artifacts import load_run

    data = planted_explicit(0).train
    model = UserKNN(similarity="pearson_baseline", k_neighbors=25).fit(data)
    loaded = load_run(model.save(tmp_path / "run")).model
    assert isinstance(loaded, UserKNN) and loaded.feedback_ == "explicit"
    assert (loaded.similarity_ != model.similarity_).nnz == 0
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(loaded.score_items(users), model.score_items(users))


def test_state_shapes_are_checked() -> None:
    data = planted_explicit(0).train
    model = ItemKNN().fit(data)
    state = model.get_state()
    state["similarity_indptr"] = state["similarity_indptr"][:-1]
    with pytest.raises(ValueError, match="similarity"):
        model.set_state(state)
    assert sp.issparse(model.similarity_)


def _use_compiled_kernels(compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send item-kNN through its compiled kernels (skipped without numba) or the numpy path."""
    import recforge.models.knn as knn_mod

    if compiled and not knn_mod._numba_available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(knn_mod, "_numba_available", lambda: compiled)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize(
    "config",
    [
        {"similarity": "cosine"},
        {"similarity": "pearson_baseline", "k_neighbors": 15, "min_k": 2},
        {"feedback": "implicit", "k_neighbors": 20},
        {"feedback": "implicit", "normalize": True},
    ],
)
def test_one_user_scores_are_the_batched_scores_bit_for_bit(
    config: dict[str, object], compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A served request scores one user through its own path (sums over the history's
    # neighbour rows); it must add the same float64 terms in the same order as the batch.
    _use_compiled_kernels(compiled, monkeypatch)
    implicit = config.get("feedback") == "implicit"
    data = (planted_implicit(2) if implicit else planted_explicit(2)).train
    model = ItemKNN(**config).fit(data)  # type: ignore[arg-type]
    batch = model.score_items(np.arange(model.n_users))
    one = np.vstack([model.score_items(np.asarray([u])) for u in range(model.n_users)])
    np.testing.assert_array_equal(one, batch)
    assert np.ptp(one) > 0  # real scores, not a constant row


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("feedback", ["explicit", "implicit"])
def test_new_user_scores_are_the_sparse_products_bit_for_bit(
    feedback: str, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fold_in_scores sums over the given items' neighbour rows; the reference is the formula as
    # sparse products of the new user's rows (a repeated item counts twice in both).
    _use_compiled_kernels(compiled, monkeypatch)
    split = planted_implicit(3) if feedback == "implicit" else planted_explicit(3)
    model = ItemKNN(feedback=feedback, k_neighbors=25).fit(split.train)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    items = np.r_[rng.choice(model.n_items, 12, replace=False), 5, 5]
    ratings = rng.integers(1, 6, len(items)).astype(np.float32)
    data, pattern, b_u = model._fold_in_row(items, ratings)
    if feedback == "implicit":
        want = (data @ model._sim).toarray()[0]
    else:
        num = (data @ model._sim_t).toarray()
        den = (pattern @ model._sim_t).toarray()
        cnt = (pattern @ model._sim_bin_t).toarray()
        base = (model.global_mean_ + b_u + model.item_bias_)[None, :]
        want = model._combine(base, num, den, cnt)[0]
    got = model.fold_in_scores(items, ratings)
    np.testing.assert_array_equal(got, want.astype(np.float32))
    assert np.ptp(got) > 0


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize(
    "config",
    [
        {"similarity": "cosine"},
        {"similarity": "pearson_baseline", "k_neighbors": 15, "min_k": 2},
        {"feedback": "implicit", "k_neighbors": 20},
        {"feedback": "implicit", "normalize": True, "recency_tau": 3.0},
    ],
)
def test_explanation_terms_are_the_dense_slices_bit_for_bit(
    config: dict[str, object], compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A served explanation gathers its targets' neighbour rows at the history's columns in one
    # pass; the terms must be those computed from the dense rows, bit for bit (a repeated
    # history item and a target that is no neighbour of the history included).
    from recforge.models.recency import sequence_weights

    _use_compiled_kernels(compiled, monkeypatch)
    implicit = config.get("feedback") == "implicit"
    data = (planted_implicit(4) if implicit else planted_explicit(4)).train
    model = ItemKNN(**config).fit(data)  # type: ignore[arg-type]
    rng = np.random.default_rng(1)
    idx = np.r_[rng.choice(model.n_items, 9, replace=False), 3, 3].astype(np.int64)
    vals = rng.integers(1, 6, len(idx)).astype(np.float32)
    lonely = np.flatnonzero(np.asarray(model._sim_t[idx].sum(axis=0)).ravel() == 0)
    tgt = np.r_[np.arange(model.n_items), lonely[:1]].astype(np.int64)
    score, weights = model.explain_history(idx, vals, tgt)
    if implicit:
        x = sequence_weights(len(idx), model.config.recency_tau).astype(np.float64)
        w_all = x[:, None] * model._sim[idx][:, tgt].toarray()
        base = np.zeros(len(tgt))
    else:
        b_u = model._fold_in_user_bias(idx, vals.astype(np.float64))
        resid = vals.astype(np.float64) - model.global_mean_ - b_u - model.item_bias_[idx]
        sims = model._sim[tgt].toarray()[:, idx].T
        den = sims.sum(axis=0)
        cnt = (model._sim_bin[tgt].toarray()[:, idx] != 0).sum(axis=1)
        ok = (cnt >= model.config.min_k) & (den > 0)
        scale = np.divide(1.0, den, out=np.zeros_like(den), where=ok)
        w_all = sims * resid[:, None] * scale[None, :]
        base = model.global_mean_ + b_u + model.item_bias_[tgt]
    want = np.ascontiguousarray(w_all.T)
    np.testing.assert_array_equal(weights, want)
    np.testing.assert_array_equal(score, base + want.sum(axis=1))
    assert np.count_nonzero(want) > 50  # real terms, not an all-zero block
