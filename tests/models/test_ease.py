"""EASE: closed form against a hand-built inverse, memory refusal, fold-in, similar items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import recforge.models.ease as ease_mod
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, ModelFitError
from recforge.models.ease import EASE, ease_memory_bytes, parse_bytes
from recforge.models.registry import create
from recforge.testing import hit_rate, make_interactions, planted_implicit

from ._caps import record_thread_caps

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


@pytest.mark.parametrize("weighting", ["binary", "rating"])
def test_one_user_scores_are_the_batched_scores_bit_for_bit(weighting: str) -> None:
    """A served request scores one user without scipy's row product; the answer must not move
    (a changed last bit can reorder near-tied items)."""
    data = make_interactions(60, 40, density=0.3, rating_scale=(1.0, 5.0), seed=5).interactions
    model = EASE(reg=3.0, weighting=weighting).fit(data)
    users = np.arange(model.n_users)
    one = np.vstack([model.score_items(np.array([u])) for u in users.tolist()])
    np.testing.assert_array_equal(one, model.score_items(users))
    assert one.dtype == np.float32


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


# ------------------------------------------------- found by mutation testing (models/ease.py)
def _implicit_with_values() -> tuple[Interactions, np.ndarray]:
    """Implicit events (no rating scale) carrying a value each, e.g. play counts."""
    x = np.array([[3, 1, 0, 0], [0, 2, 5, 0], [1, 0, 4, 0], [0, 1, 2, 7]], dtype=np.float64)
    u, i = np.nonzero(x)
    frame = pd.DataFrame({"user_id": u, "item_id": i, "rating": x[u, i]})
    return Interactions.from_frame(frame, source="plays"), x


def test_auto_weighting_uses_implicit_values_and_is_binary_on_ratings() -> None:
    data, x = _implicit_with_values()
    assert data.rating_scale is None
    auto = EASE(reg=1.0).fit(data)
    np.testing.assert_allclose(auto.weights_, _closed_form(x, 1.0), rtol=1e-5, atol=1e-6)
    binary = EASE(reg=1.0, weighting="binary").fit(data)
    np.testing.assert_allclose(
        binary.weights_, _closed_form((x > 0).astype(float), 1.0), rtol=1e-5, atol=1e-6
    )
    # Explicit ratings: 'auto' is binary, not the stars.
    stars = EASE(reg=2.0).fit(_small())
    expected = _closed_form((RATINGS > 0).astype(float), 2.0)
    np.testing.assert_allclose(stars.weights_, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("weighting", "reg"), [("binary", 50.0), ("rating", 0.01)])
def test_float64_closed_form_without_and_with_a_failing_cholesky(
    weighting: str, reg: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dtype='float64' takes the redo path (Gram + λI in float64, Cholesky). A λ much larger than
    # the co-occurrence counts, or much smaller than the Gram's diagonal, keeps a wrong diagonal
    # (λ instead of counts + λ, counts − λ) positive definite, so only the weights tell.
    x = (RATINGS > 0).astype(np.float64) if weighting == "binary" else RATINGS
    model = EASE(reg=reg, weighting=weighting, dtype="float64").fit(_small())
    assert model.precision_ == "float64" and model.weights_.dtype == np.float32
    np.testing.assert_allclose(model.weights_, _closed_form(x, reg), rtol=1e-4, atol=1e-6)
    # When the float64 Cholesky fails too, LAPACK's general inverse gives the same B.
    monkeypatch.setattr(ease_mod, "spd_inverse", lambda g: None)
    fallback = EASE(reg=reg, weighting=weighting, dtype="float64").fit(_small())
    np.testing.assert_allclose(fallback.weights_, _closed_form(x, reg), rtol=1e-4, atol=1e-6)


def test_condition_bound_at_the_threshold_keeps_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = 2.0
    monkeypatch.setattr(ease_mod, "_largest_eigenvalue", lambda g: ease_mod.F32_MAX_CONDITION * reg)
    assert EASE(reg=reg).fit(_small()).precision_ == "float32"
    monkeypatch.setattr(
        ease_mod, "_largest_eigenvalue", lambda g: ease_mod.F32_MAX_CONDITION * reg * 1.001
    )
    assert EASE(reg=reg).fit(_small()).precision_ == "float64"


def test_float64_redo_is_checked_against_the_budget() -> None:
    data = planted_implicit(0).train  # 200 items: 480 kB in float32, 800 kB in float64
    with pytest.raises(
        ConfigError,
        match=r"800\.0 KB.*memory_budget, raise reg \(a float64 redo means an ill-conditioned "
        r"system\), or filter rare items$",
    ):
        EASE(reg=1e-3, memory_budget="500kB").fit(data)  # ill-conditioned: redone in float64


def test_memory_messages_name_the_right_remedy(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"raise memory_budget, use dtype='float32', or filter"):
        EASE(dtype="float64", memory_budget="1MB").check_memory(1000)
    with pytest.raises(ConfigError, match=r"raise memory_budget, or filter rare items$"):
        EASE(dtype="float32", memory_budget="1MB").check_memory(1000)
    with pytest.raises(ConfigError, match=r"raise memory_budget, or filter rare items$"):
        EASE(memory_budget="1MB").check_memory(1000)  # 'auto' counts float32 already
    # Exactly at the budget is allowed.
    assert EASE(memory_budget="12000000").check_memory(1000) == 12_000_000
    # Within the budget but over what the machine has free now.
    monkeypatch.setattr(ease_mod, "available_memory_bytes", lambda: 2_000_000)
    with pytest.raises(
        ConfigError,
        match=r"need about 12\.0 MB \(3 dense 1000x1000 matrices\) but only 2\.0 MB of memory "
        r"is available; filter rare items",
    ):
        EASE().check_memory(1000)
    with pytest.raises(ConfigError, match=r"only 2\.0 MB .*available; use dtype='float32', filter"):
        EASE(dtype="float64").check_memory(1000)
    monkeypatch.setattr(ease_mod, "available_memory_bytes", lambda: 12_000_000)
    assert EASE().check_memory(1000) == 12_000_000  # exactly what is free is enough


def test_the_default_budget_is_the_memory_the_machine_has(monkeypatch: pytest.MonkeyPatch) -> None:
    # 20 000 items need 4.8 GB in float32: over the old fixed 4 GB default, so a person with
    # that catalogue and a 32 GB machine was refused at the defaults.
    assert EASE().config.memory_budget == "auto"
    assert EASE().config.memory_budget_bytes is None
    assert EASE(memory_budget=" Auto ").config.memory_budget == "auto"
    monkeypatch.setattr(ease_mod, "available_memory_bytes", lambda: 32 * 10**9)
    assert EASE().check_memory(20_000) == 20_000**2 * 12
    monkeypatch.setattr(ease_mod, "available_memory_bytes", lambda: 4 * 10**9)
    with pytest.raises(ConfigError, match=r"need about 4\.8 GB .* only 4\.0 GB of memory"):
        EASE().check_memory(20_000)
    # An explicit budget still binds below what the machine has.
    monkeypatch.setattr(ease_mod, "available_memory_bytes", lambda: 32 * 10**9)
    with pytest.raises(ConfigError, match=r"over memory_budget='4GB'"):
        EASE(memory_budget="4GB").check_memory(20_000)


def test_parse_and_format_bytes_edges() -> None:
    assert parse_bytes(0) == 0 and parse_bytes(0.5) == 0 and parse_bytes(1.9) == 1
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"memory size must be a finite number >= 0"):
            parse_bytes(bad)
    with pytest.raises(ValueError, match=r"^not a memory size: True$"):
        parse_bytes(True)
    with pytest.raises(ValueError, match=r"^not a memory size: '4 parsecs'; write e\.g\."):
        parse_bytes("4 parsecs")
    assert ease_memory_bytes(1000) == 20_000_000  # float64 by default
    fmt = ease_mod.format_bytes
    assert [fmt(v) for v in (2.5e12, 1e12, 1e9, 1e6, 1e3, 999, 0)] == [
        "2.5 TB",
        "1.0 TB",
        "1.0 GB",
        "1.0 MB",
        "1.0 KB",
        "999 B",
        "0 B",
    ]


def test_largest_eigenvalue_is_deterministic_and_an_upper_bound() -> None:
    n = 500
    # λ_max = 1.3 along the all-ones vector, every other eigenvalue 1: a start vector with
    # mixed signs barely sees the top direction in 12 steps; the positive one does.
    g = 0.3 * np.ones((n, n)) / n + np.eye(n)
    torch.manual_seed(1)
    first = ease_mod._largest_eigenvalue(torch.from_numpy(g))
    torch.manual_seed(2)
    assert ease_mod._largest_eigenvalue(torch.from_numpy(g)) == first  # its own generator
    assert 1.3 <= first <= 1.1 * 1.3 + 1e-9
    # A tiny spectrum (λ = 1e-4) is not lost to underflow over the steps.
    tiny = torch.from_numpy(1e-4 * np.eye(5, dtype=np.float32))
    assert ease_mod._largest_eigenvalue(tiny) == pytest.approx(1.1e-4, rel=1e-4)


def test_spd_inverse_refuses_an_inverse_that_overflows() -> None:
    # The Cholesky factor exists, but the inverse of this near-singular float32 matrix is inf.
    g = (np.array([[1.0, 1.0], [1.0, 1.0 + 1e-5]]) * 1e-34).astype(np.float32)
    assert ease_mod.spd_inverse(g) is None


def test_gram_blocks_many_users_and_many_items_exactly() -> None:
    rng = np.random.default_rng(3)
    # > 1024 users: several user blocks accumulate; values that float32 cannot hold exactly
    # show that the blocks are multiplied in float64 when float64 is asked for.
    dense = rng.random((2500, 6)) * (rng.random((2500, 6)) < 0.5)
    x = sp.csr_matrix(dense.astype(np.float32))
    d32 = x.toarray().astype(np.float64)
    np.testing.assert_allclose(ease_mod._gram(x, "float64"), d32.T @ d32, rtol=1e-12)
    # > 4096 items: the block height n_items // 4 stays an integer.
    wide = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 1, 1], [0, 0, 4099])), shape=(2, 4100))
    gram = ease_mod._gram(wide.astype(np.float32), "float32")
    assert gram[0, 0] == 2.0 and gram[0, 4099] == 1.0 and gram.sum() == 5.0


def test_scores_over_many_chunks_and_dtypes() -> None:
    data = planted_implicit(0).train
    model = EASE().fit(data)
    assert model.user_matrix_.dtype == np.float32 and model.weights_.dtype == np.float32
    u = np.arange(2100) % data.n_users  # more than two score chunks
    got = model.score_items(u)
    assert got.dtype == np.float32
    expected = model.user_matrix_.toarray()[u].astype(np.float64) @ model.weights_
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert model.predict_idx(np.array([0, 1]), np.array([2, 3])).dtype == np.float32
    assert model.fold_in_scores(np.array([0, 1]), np.ones(2, np.float32)).dtype == np.float32
    assert len(model.similar_items(data.items.ids[0])) == 10  # k defaults to 10


def test_fit_passes_columns_and_roles_of_a_frame_through() -> None:
    u, i = np.nonzero(RATINGS)
    frame = pd.DataFrame({"customer": u, "product": i, "stars": RATINGS[u, i]})
    x = RATINGS
    by_columns = EASE(reg=2.0, weighting="rating").fit(
        frame, columns={"user": "customer", "item": "product", "rating": "stars"}
    )
    np.testing.assert_allclose(by_columns.weights_, _closed_form(x, 2.0), rtol=1e-5, atol=1e-6)
    by_roles = EASE(reg=2.0, weighting="rating").fit(
        frame, user="customer", item="product", rating="stars"
    )
    np.testing.assert_allclose(by_roles.weights_, _closed_form(x, 2.0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weighting", ["binary", "rating"])
def test_recency_rows_are_values_times_position_weights(weighting: str) -> None:
    tau = 1.5
    u, i = np.nonzero(RATINGS)
    # Timestamps 10 - item: within a user, the lowest item index is the latest event.
    frame = pd.DataFrame({"user_id": u, "item_id": i, "rating": RATINGS[u, i], "timestamp": 10 - i})
    data = Interactions.from_frame(frame, rating_scale=(1.0, 5.0), source="hand")
    model = EASE(reg=2.0, weighting=weighting, recency_tau=tau).fit(data)
    values = RATINGS if weighting == "rating" else (RATINGS > 0).astype(float)
    expected = np.zeros_like(RATINGS)
    for row in range(RATINGS.shape[0]):
        for pos, col in enumerate(np.flatnonzero(RATINGS[row])):
            expected[row, col] = values[row, col] * np.exp(-pos / tau)
    np.testing.assert_allclose(model.user_matrix_.toarray(), expected, rtol=1e-6)


def test_state_dtypes_and_every_inconsistent_csr_is_refused() -> None:
    model = EASE(reg=2.0).fit(_small())
    state = model.get_state()
    assert state["weights"].dtype == np.float32 and state["x_indptr"].dtype == np.int64
    assert state["x_indices"].dtype == np.int32 and state["x_data"].dtype == np.float32
    n_u, n_i = model.n_users, model.n_items
    fresh = EASE(reg=2.0).fit(_small())
    # float64 arrays are stored as float32; the shape comes from the vocabularies, even when
    # the last item has no stored entry.
    fresh.set_state(
        {
            "weights": state["weights"].astype(np.float64),
            "x_indptr": np.array([0, 1] + [1] * (n_u - 1)),
            "x_indices": np.array([0]),
            "x_data": np.array([2.0]),
        }
    )
    assert fresh.weights_.dtype == np.float32 and fresh.user_matrix_.dtype == np.float32
    assert fresh.user_matrix_.shape == (n_u, n_i)
    with pytest.raises(ValueError, match=r"state 'weights' has shape \(4, 3\), expected \(4, 4\)"):
        fresh.set_state({**state, "weights": state["weights"][:, :3]})
    message = r"^state 'x_\*' arrays do not form a users x items CSR matrix$"
    bad_parts = [
        {"x_indptr": state["x_indptr"][:-1]},  # one row short
        {"x_data": state["x_data"][:-1]},  # indices and data differ in length
        {"x_indptr": np.append(state["x_indptr"][:-1], state["x_indptr"][-1] - 1)},
    ]
    for bad in bad_parts:
        with pytest.raises(ValueError, match=message):
            fresh.set_state({**state, **bad})


def test_float32_failure_message_names_both_remedies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ease_mod, "spd_inverse", lambda g: None)
    with pytest.raises(
        ModelFitError,
        match=r"^ease: the float32 Gram matrix is not positive definite at reg=50\.0; increase "
        r"reg or use dtype='float64'$",
    ):
        EASE(reg=50.0, dtype="float32").fit(_small())


# ------------------------------------------------ found by mutation testing (fourth step)
@pytest.mark.parametrize("n_users", [1, 2, 3])
def test_every_row_of_a_small_batch_is_its_users_scores(n_users: int) -> None:
    """The one-user path serves exactly one user; two or three users take the batched path and
    each row is that user's ``X[u] B``."""
    data = make_interactions(30, 20, density=0.3, rating_scale=(1.0, 5.0), seed=3).interactions
    model = EASE(reg=2.0, weighting="rating").fit(data)
    users = np.arange(n_users) + 4
    expected = model.user_matrix_.toarray()[users].astype(np.float64) @ model.weights_
    np.testing.assert_allclose(model.score_items(users), expected, rtol=1e-5, atol=1e-6)


def test_one_user_whose_ratings_are_all_equal_is_scaled_by_them() -> None:
    """The one-user shortcut skips the multiplication only for all-ones rows: a row of 2s is
    2 × (B[0] + B[1])."""
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 2, 3, 3],
            "item_id": [10, 11, 10, 11, 12, 11, 12],
            "rating": [2.0, 2.0, 5.0, 3.0, 1.0, 4.0, 4.0],
        }
    )
    data = Interactions.from_frame(frame, rating_scale=(1.0, 5.0), source="hand")
    model = EASE(reg=1.0, weighting="rating").fit(data)
    u = int(data.users.index(np.array([1]))[0])
    b = model.weights_.astype(np.float64)
    np.testing.assert_allclose(model.score_items(np.array([u]))[0], 2 * (b[0] + b[1]), rtol=1e-6)


def test_explain_history_scores_every_target_separately() -> None:
    """One history explained for several targets gives each target its own score (the
    fold-in's), not their total."""
    data = make_interactions(40, 25, density=0.3, rating_scale=(1.0, 5.0), seed=8).interactions
    model = EASE(reg=2.0, weighting="rating").fit(data)
    items = np.array([3, 7, 11], dtype=np.int64)
    ratings = np.array([5.0, 2.0, 4.0], dtype=np.float32)
    targets = np.array([0, 5, 9, 20], dtype=np.int64)
    score, weights = model.explain_history(items, ratings, targets)
    expected = model.fold_in_scores(items, ratings)[targets]
    np.testing.assert_allclose(score, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights.sum(axis=1), score, rtol=1e-12)


def test_lapack_region_ms_by_hand() -> None:
    """n²·16 multiply-adds a region at 2e7 a millisecond in float32, half that rate in float64."""
    assert ease_mod.lapack_region_ms(1000) == pytest.approx(0.8)
    assert ease_mod.lapack_region_ms(1000, np.float32) == pytest.approx(0.8)
    assert ease_mod.lapack_region_ms(1000, np.float64) == pytest.approx(1.6)
    assert ease_mod.lapack_region_ms(500, "float64") == pytest.approx(0.4)


def test_lapack_work_estimates_reach_the_thread_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread cap is asked with the estimate of the call it wraps: the power iteration's n²
    products, then the Cholesky regions in the Gram matrix's own dtype."""
    asked = record_thread_caps(monkeypatch, ease_mod, "capped")
    gram = np.eye(30, dtype=np.float32) * 2.0
    assert ease_mod.spd_inverse(gram.copy()) is not None
    assert asked == [pytest.approx(ease_mod.lapack_region_ms(30, np.float32))]
    asked.clear()
    assert ease_mod.spd_inverse(gram.astype(np.float64)) is not None
    assert asked == [pytest.approx(ease_mod.lapack_region_ms(30, np.float64))]
    asked.clear()
    data = make_interactions(40, 25, density=0.3, seed=8).interactions
    EASE(reg=2.0, dtype="auto").fit(data)
    n = data.n_items
    assert asked[0] == pytest.approx(n * n / 2e7)
    assert asked[1] == pytest.approx(ease_mod.lapack_region_ms(n, np.float32))
