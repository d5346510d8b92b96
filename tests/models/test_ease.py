"""EASE: closed form against a hand-built inverse, memory refusal, fold-in, similar items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import recforge.models.ease as ease_mod
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, ModelFitError
from recforge.models.ease import EASE, ease_memory_bytes, parse_bytes
from recforge.models.registry import create
from recforge.testing import hit_rate, planted_implicit

# 5 users x 4 items; a zero means "no interaction".
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
        {"user_id": u + 10, "item_id": i + 100, "rating": RATINGS[u, i], "timestamp": 0}
    )
    return Interactions.from_frame(frame, rating_scale=(1.0, 5.0), source="hand")


def _closed_form(x: np.ndarray, lam: float) -> np.ndarray:
    """B = I − P diagMat(1/diag(P)), P = (XᵀX + λI)⁻¹, straight from Steck (2019)."""
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    return np.eye(x.shape[1]) - p @ np.diag(1.0 / np.diag(p))


@pytest.mark.parametrize("weighting", ["binary", "rating"])
def test_weights_match_the_closed_form(weighting: str) -> None:
    lam = 2.0
    x = (RATINGS > 0).astype(np.float64) if weighting == "binary" else RATINGS
    model = EASE(reg=lam, weighting=weighting).fit(_small())
    expected = _closed_form(x, lam)
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.diag(model.weights_), 0.0)
    # Optimality: only the diagonal is constrained, so the gradient (XᵀX + λI)B − XᵀX of the
    # loss must vanish off the diagonal.
    grad = (x.T @ x + lam * np.eye(4)) @ model.weights_.astype(np.float64) - x.T @ x
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(grad[off], 0.0, atol=1e-4)
    scores = model.score_items(np.arange(5))
    np.testing.assert_allclose(scores, x @ expected, rtol=1e-5, atol=1e-5)


def test_float32_gram_agrees_with_float64() -> None:
    data = _small()
    a = EASE(reg=2.0, dtype="float64").fit(data)
    b = EASE(reg=2.0, dtype="float32").fit(data)
    np.testing.assert_allclose(a.weights_, b.weights_, atol=1e-5)


def test_gram_accumulates_over_user_blocks() -> None:
    data = planted_implicit(0).train
    x = data.csr("binary")
    dense = x.toarray().astype(np.float64)
    np.testing.assert_allclose(ease_mod._gram(x, "float64"), dense.T @ dense)


def test_predict_idx_matches_score_items() -> None:
    data = _small()
    model = EASE(reg=2.0, weighting="rating").fit(data)
    u = np.array([0, 0, 1, 2, 3, 4, 4])
    i = np.array([0, 3, 2, 1, 0, 2, 3])
    np.testing.assert_allclose(
        model.predict_idx(u, i), model.score_items(u)[np.arange(len(u)), i], rtol=1e-6
    )


def test_memory_refusal_happens_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def _boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Gram matrix must not be built over the budget")

    monkeypatch.setattr(ease_mod, "_gram", _boom)
    data = planted_implicit(0).train  # 200 items: 200² x 20 bytes = 800 kB in float64
    model = create("ease", memory_budget="500kB", dtype="float64")
    with pytest.raises(ConfigError, match=r"200 items need about 800\.0 KB.*memory_budget"):
        model.fit(data)
    assert not model.is_fitted
    # float32 needs 200² x 12 bytes = 480 kB: it fits the same budget (and would build the Gram).
    with pytest.raises(AssertionError, match="Gram"):
        create("ease", memory_budget="500kB", dtype="float32").fit(data)


def test_memory_estimate() -> None:
    assert ease_memory_bytes(1000, "float64") == 1000**2 * 20
    assert ease_memory_bytes(1000, "float32") == 1000**2 * 12
    assert ease_memory_bytes(1000, "auto") == 1000**2 * 12  # float32 first
    assert EASE().check_memory(1000) == 12_000_000
    assert EASE(dtype="float64").check_memory(1000) == 20_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GB", 4 * 10**9),
        ("512MB", 512 * 10**6),
        ("2GiB", 2 * 2**30),
        ("1.5 kb", 1500),
        ("100", 100),
        (2048, 2048),
    ],
)
def test_parse_bytes(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["lots", "4 parsecs", "-1GB", ""])
def test_bad_memory_budget_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="memory_budget"):
        create("ease", memory_budget=bad)


def test_fold_in_of_a_training_user_reproduces_their_scores() -> None:
    data = planted_implicit(0).train
    model = EASE().fit(data)
    csr = data.csr()
    for u in (0, 7, 123):
        items = csr.indices[csr.indptr[u] : csr.indptr[u + 1]].astype(np.int64)
        got = model.fold_in_scores(items, np.full(len(items), 3.0, dtype=np.float32))
        np.testing.assert_allclose(got, model.score_items(np.array([u]))[0], rtol=1e-5, atol=1e-6)


def test_fold_in_uses_ratings_when_rating_weighted() -> None:
    data = _small()
    model = EASE(reg=2.0, weighting="rating").fit(data)
    got = model.fold_in_scores(np.array([0, 3]), np.array([5.0, 1.0], dtype=np.float32))
    expected = 5.0 * model.weights_[0] + 1.0 * model.weights_[3]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_similar_items_rank_by_weight_row() -> None:
    data = planted_implicit(0).train
    model = EASE().fit(data)
    item = data.items.ids[5]
    rec = model.similar_items(item, k=5)
    row = model.weights_[5].astype(np.float64).copy()
    row[5] = -np.inf
    assert rec.item_ids.tolist() == data.items.lookup(np.argsort(-row, kind="stable")[:5]).tolist()
    # The same list a new user with that single item gets.
    again = model.recommend_for_ratings({item: 1.0}, k=5)
    assert again.item_ids.tolist() == rec.item_ids.tolist()


def test_beats_popularity_on_planted_data() -> None:
    data = planted_implicit(0)
    got = hit_rate(EASE().fit(data.train), data)
    pop = hit_rate(create("popularity").fit(data.train), data)
    assert got >= pop + 0.4


# ---------------------------------------------------------------------- found by mutation testing
def test_similar_items_never_returns_the_item_itself() -> None:
    model = create("ease", {"reg": 1.0}).fit(_small())
    item = model.items_.ids[0]
    # Asking for the whole catalogue: the item's own weight (0, the diagonal constraint) would
    # rank among the others if it were not excluded.
    rec = model.similar_items(item, k=model.n_items)
    assert len(rec) == model.n_items - 1 and item not in set(rec.item_ids.tolist())
    one = model.similar_items(item, k=1)
    assert len(one) == 1 and one.item_ids[0] == rec.item_ids[0]
    with pytest.raises(ConfigError, match="k must be >= 1, got 0"):
        model.similar_items(item, k=0)


def test_auto_precision_is_float32_and_matches_float64() -> None:
    data = planted_implicit(0).train
    auto = EASE(reg=50.0).fit(data)
    exact = EASE(reg=50.0, dtype="float64").fit(data)
    assert auto.precision_ == "float32" and exact.precision_ == "float64"
    np.testing.assert_allclose(auto.weights_, exact.weights_, atol=2e-5)


def test_ill_conditioned_auto_falls_back_to_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    data = planted_implicit(0).train
    # A tiny λ makes λ_max/λ huge: float32 is not trusted, the inverse is redone in float64.
    tiny = EASE(reg=1e-3).fit(data)
    assert tiny.precision_ == "float64"
    exact = EASE(reg=1e-3, dtype="float64").fit(data)
    np.testing.assert_array_equal(tiny.weights_, exact.weights_)
    # A failed float32 factorisation also falls back.
    monkeypatch.setattr(ease_mod, "F32_MAX_CONDITION", float("inf"))
    real = ease_mod.spd_inverse
    monkeypatch.setattr(
        ease_mod, "spd_inverse", lambda g: None if g.dtype == np.float32 else real(g)
    )
    assert EASE(reg=50.0).fit(data).precision_ == "float64"
    with pytest.raises(ModelFitError, match="dtype='float64'"):
        EASE(reg=50.0, dtype="float32").fit(data)


def test_spd_inverse_is_the_inverse_and_refuses_indefinite() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 30))
    g = a @ a.T + 5 * np.eye(30)
    inv = ease_mod.spd_inverse(g.copy())
    assert inv is not None
    np.testing.assert_allclose(inv @ g, np.eye(30), atol=1e-8)
    assert ease_mod.spd_inverse(-g.astype(np.float32)) is None


def test_largest_eigenvalue_bounds_the_spectrum() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(40, 40))
    g = a @ a.T
    top = float(np.linalg.eigvalsh(g)[-1])
    est = ease_mod._largest_eigenvalue(torch.from_numpy(g))
    assert 0.8 * top <= est <= 1.1 * top + 1e-9
