"""Explanations: hand-computed exact weights (EASE, item-kNN, ALS), inputs, the like threshold.

The faithfulness check of every family runs in the shared model contract
(:meth:`recforge.testing.ModelContract.test_explanations_are_faithful`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, UnknownIdError
from recforge.explain import explanations_frame, like_threshold, liked_only
from recforge.models.als import ALS
from recforge.models.base import Recommender
from recforge.models.ease import EASE
from recforge.models.knn import ItemKNN
from recforge.models.registry import create

# 5 users x 4 items; a zero means "no interaction". Timestamps put each user's items in
# reverse item order, so timeline order differs from index order.
RATINGS = np.array(
    [
        [5, 3, 0, 1],
        [4, 0, 0, 1],
        [1, 1, 0, 5],
        [0, 0, 4, 4],
        [0, 1, 5, 4],
    ],
    dtype=np.float64,
)


def _small() -> Interactions:
    u, i = np.nonzero(RATINGS)
    frame = pd.DataFrame(
        {"user_id": u + 10, "item_id": i + 100, "rating": RATINGS[u, i], "timestamp": 10 - i}
    )
    return Interactions.from_frame(frame, rating_scale=(1.0, 5.0), source="hand")


def _ease_weights(x: np.ndarray, lam: float) -> np.ndarray:
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    return np.eye(x.shape[1]) - p @ np.diag(1.0 / np.diag(p))


def _weights(model: Recommender, user: object, item: object) -> dict[object, float]:
    exp = model.explain(user, item, k=10)
    return {c.item_id: c.weight for c in exp.contributions}


@pytest.mark.parametrize("weighting", ["binary", "rating"])
def test_ease_weights_are_x_times_b(weighting: str) -> None:
    model = EASE(reg=2.0, weighting=weighting).fit(_small())
    x = (RATINGS > 0).astype(float) if weighting == "binary" else RATINGS
    b = _ease_weights(x, 2.0)
    # User 10 rated items 100, 101, 103; explain item 102 (column 2).
    exp = model.explain(10, 102, k=10)
    expected = {100 + j: x[0, j] * b[j, 2] for j in (0, 1, 3)}
    got = {c.item_id: c.weight for c in exp.contributions}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-5)
    assert exp.method == "exact" and exp.residual == pytest.approx(0.0, abs=1e-5)
    assert exp.score == pytest.approx(float(x[0] @ b[:, 2]), abs=1e-5)
    assert exp.rest == 0.0
    # Largest weight first.
    weights = [c.weight for c in exp.contributions]
    assert weights == sorted(weights, reverse=True)


def test_ease_recency_weights_follow_the_timeline() -> None:
    tau = 1.5
    model = EASE(reg=2.0, recency_tau=tau).fit(_small())
    b = _ease_weights((RATINGS > 0).astype(float), 2.0)
    # Timestamps 10 - i: user 10's latest event is item 100, then 101, then 103.
    from_end = {100: 0, 101: 1, 103: 2}
    got = _weights(model, 10, 102)
    for item, pos in from_end.items():
        assert got[item] == pytest.approx(np.exp(-pos / tau) * b[item - 100, 2], abs=1e-5)
    # The same history given as a new user, oldest first, gives the same weights.
    new = _weights(model, {103: 1.0, 101: 3.0, 100: 5.0}, 102)
    assert new == pytest.approx(got, abs=1e-6)
    # ... and an ordered item list too (EASE ignores the stars).
    assert _weights(model, [103, 101, 100], 102) == pytest.approx(got, abs=1e-6)


def test_item_knn_implicit_weights_are_cosine_similarities() -> None:
    model = ItemKNN(feedback="implicit", k_neighbors=10).fit(_small())
    x = (RATINGS > 0).astype(float)
    counts = x.sum(axis=0)
    cos = (x.T @ x) / np.sqrt(np.outer(counts, counts))
    # User 12 rated 100, 101, 103; explain 102 -> weight_j = cos(j, 102).
    got = _weights(model, 12, 102)
    assert got == pytest.approx({100 + j: cos[j, 2] for j in (0, 1, 3)}, abs=1e-6)
    exp = model.explain(12, 102)
    assert exp.residual == pytest.approx(0.0, abs=1e-6)
    assert exp.score == pytest.approx(sum(cos[j, 2] for j in (0, 1, 3)), abs=1e-5)


def test_item_knn_explicit_weights_and_baseline_residual() -> None:
    model = ItemKNN(similarity="cosine", feedback="explicit", k_neighbors=10).fit(_small())
    ratings = {100: 5.0, 101: 2.0, 103: 4.0}
    exp = model.explain(ratings, 102, k=10)
    idx = np.array([0, 1, 3])
    vals = np.array([5.0, 2.0, 4.0])
    b_i = model.item_bias_
    b_u = (vals - model.global_mean_ - b_i[idx]).sum() / (model.config.reg_u + 3)
    sims = model.similarity_.toarray().astype(np.float64)[2, idx]
    resid = vals - model.global_mean_ - b_u - b_i[idx]
    expected = sims * resid / sims.sum()
    got = {c.item_id: c.weight for c in exp.contributions}
    assert got == pytest.approx(dict(zip((100 + idx).tolist(), expected, strict=True)), abs=1e-5)
    assert exp.residual == pytest.approx(model.global_mean_ + b_u + b_i[2], abs=1e-5)
    assert exp.score == pytest.approx(float(model.fold_in_scores(idx, vals)[2]), abs=1e-4)


def test_als_weights_follow_hu_koren_volinsky_section_5() -> None:
    model = ALS(n_factors=3, iterations=5, reg=0.5, alpha=2.0, weighting="rating").fit(_small())
    y = model.item_factors_.astype(np.float64)
    idx = np.array([0, 1, 3])
    r = np.array([5.0, 3.0, 1.0])
    c = 1.0 + 2.0 * r
    y_i = y[idx]
    w_u = np.linalg.inv(y.T @ y + (y_i * (c - 1)[:, None]).T @ y_i + 0.5 * np.eye(3))
    expected = c * (y[2] @ w_u @ y_i.T)  # s_ij^u c_uj of the paper, j over the history
    exp = model.explain({100: 5.0, 101: 3.0, 103: 1.0}, 102, k=10)
    got = {c_.item_id: c_.weight for c_ in exp.contributions}
    assert got == pytest.approx(dict(zip((100 + idx).tolist(), expected, strict=True)), abs=1e-5)
    assert exp.residual == pytest.approx(0.0, abs=1e-4)
    assert exp.score == pytest.approx(float(y[2] @ w_u @ (y_i.T @ c)), abs=1e-4)
    # A known user: the same decomposition of the re-solved factor, the drift in the residual.
    known = model.explain(10, 102, k=10)
    total = sum(x.weight for x in known.contributions) + known.rest + known.residual
    assert total == pytest.approx(known.score, abs=1e-4)
    assert known.score == pytest.approx(float(model.predict_idx(np.array([0]), np.array([2]))[0]))


def test_scaled_sigmoid_models_decompose_the_logit() -> None:
    model = create("biased_mf", {"epochs": 2, "n_factors": 4}).fit(_small())
    exp = model.explain({100: 5.0, 103: 1.0}, 102)
    assert exp.link == "scaled_sigmoid" and exp.method == "exact"
    lo, hi = model.resolved_y_range() or (0.0, 0.0)
    assert exp.score == pytest.approx(lo + (hi - lo) / (1 + np.exp(-exp.raw_score)), abs=1e-5)
    total = sum(c.weight for c in exp.contributions) + exp.rest + exp.residual
    assert total == pytest.approx(exp.raw_score, abs=1e-6)
    assert exp.score == pytest.approx(
        float(model.fold_in_scores(np.array([0, 3]), np.array([5.0, 1.0], np.float32))[2]),
        abs=1e-4,
    )


@pytest.mark.parametrize(
    "model",
    [
        EASE(reg=2.0, weighting="rating"),
        ItemKNN(similarity="cosine", feedback="explicit", k_neighbors=10),
        ItemKNN(similarity="cosine", feedback="implicit"),
        ALS(n_factors=3, iterations=5, reg=0.5, alpha=2.0, weighting="rating"),
        ALS(n_factors=3, iterations=5, objective="explicit"),
        create("mf", {"epochs": 2, "n_factors": 4}),
        create("biased_mf", {"epochs": 2, "n_factors": 4}),
    ],
    ids=["ease", "item_knn_explicit", "item_knn_implicit", "als", "als_explicit", "mf", "bmf"],
)
def test_one_history_fast_path_is_the_csr_path_bit_for_bit(model: Recommender) -> None:
    """The served explanation skips the one-row CSR (explain_history); same numbers exactly."""
    model.fit(_small())
    items = np.array([3, 0, 1], dtype=np.int64)  # timeline order, not sorted
    ratings = np.array([4.0, 5.0, 2.0], dtype=np.float32)
    targets = np.array([2, 1, 2, 0], dtype=np.int64)
    score, weights = model.explain_history(items, ratings, targets)
    ref_score, ref_weights = Recommender.explain_history(model, items, ratings, targets)
    assert type(model).explain_history is not Recommender.explain_history
    assert weights.shape == (4, 3)
    np.testing.assert_array_equal(score, ref_score)
    np.testing.assert_array_equal(weights, ref_weights)


def test_occlusion_weights_are_drop_one_score_changes() -> None:
    model = create("user_knn", {"feedback": "implicit"}).fit(_small())
    idx = np.array([0, 1, 3])
    vals = np.array([5.0, 3.0, 1.0], np.float32)
    exp = model.explain({100: 5.0, 101: 3.0, 103: 1.0}, 102, k=10)
    assert exp.method == "occlusion"
    full = float(model.fold_in_scores(idx, vals)[2])
    for c in exp.contributions:
        keep = idx != c.item_id - 100
        drop = full - float(model.fold_in_scores(idx[keep], vals[keep])[2])
        assert c.weight == pytest.approx(drop, abs=1e-6)


def test_k_rest_sentence_and_frame() -> None:
    data = _small()
    model = EASE(reg=2.0).fit(data)
    full = model.explain(10, 102, k=10)
    top1 = model.explain(10, 102, k=1)
    assert len(top1.contributions) == 1
    assert top1.rest == pytest.approx(sum(c.weight for c in full.contributions[1:]), abs=1e-6)
    pos = [c for c in full.contributions if c.weight > 0]
    assert top1.because(2) == pos[:1] and full.because(2) == pos[:2]
    assert top1.sentence().startswith("Because you rated ") or not pos
    recs = model.recommend(10, k=2)[0]
    exps = model.explain_batch(10, list(recs.item_ids))
    frame = recs.to_frame(exps)
    assert list(frame.columns[-3:]) == ["because", "contributions", "residual"]
    assert len(frame) == len(recs) and frame["because"].tolist() == [e.sentence() for e in exps]
    assert explanations_frame(recs, exps).equals(frame)
    with pytest.raises(ConfigError):
        recs.to_frame([])
    with pytest.raises(UnknownIdError):
        model.explain(999, 102)
    with pytest.raises(UnknownIdError):
        model.explain(10, 999)


def test_known_user_history_survives_save_and_load(tmp_path: Path) -> None:
    model = EASE(reg=2.0, weighting="rating", recency_tau=2.0).fit(_small())
    before = model.explain(14, 100, k=5)
    loaded = Recommender.load(model.save(tmp_path / "run"))
    np.testing.assert_array_equal(loaded.seen_ratings_, model.seen_ratings_)
    np.testing.assert_array_equal(loaded.seen_order_, model.seen_order_)
    assert loaded.explain(14, 100, k=5) == before


def test_the_stars_count_only_where_the_model_ignores_them() -> None:
    data = _small()
    ease = EASE(reg=2.0).fit(data)
    assert like_threshold(ease) == 3.0
    assert liked_only(ease, {100: 5.0, 101: 1.0, 103: 3.0}) == {100: 5.0}
    biases = create("biases").fit(data)
    assert like_threshold(biases) is None
    assert liked_only(biases, {100: 5.0, 101: 1.0}) == {100: 5.0, 101: 1.0}


@pytest.mark.parametrize(
    "model",
    [
        EASE(reg=2.0, weighting="rating"),
        ItemKNN(similarity="cosine", feedback="implicit"),
        ItemKNN(similarity="cosine", feedback="explicit", k_neighbors=10),
    ],
    ids=["ease", "item_knn_implicit", "item_knn_explicit"],
)
def test_because_idx_lists_what_explanations_call_because(model: Recommender) -> None:
    """The service's `because` (top positive weights by argmax passes) is Explanation.because
    (a full sort, ties to the earlier history item), for every user, item and n."""
    from recforge.explain import because_idx, explain_items

    model.fit(_small())
    items = list(model.items_.ids.tolist())
    ties = 0
    for user in model.users_.ids.tolist():
        exps = explain_items(model, user, items, k=4)
        for n in (1, 2, 3, 5):
            got = because_idx(model, user, model.items_.index(np.asarray(items)), n)
            want = [
                [(int(model.items_.index_one(c.item_id)), c.weight) for c in e.because(n)]
                for e in exps
            ]
            assert got == want
        ties += sum(len({c.weight for c in e.because(4)}) < len(e.because(4)) for e in exps)
    if isinstance(model, ItemKNN) and model.feedback_ == "implicit":
        assert ties > 0  # equal weights occur, so the tie order is exercised
