"""ALS: the batched solvers against per-row numpy solves, planted known answers, fold-in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import recforge.models.als as als_mod
from recforge.artifacts import load_run
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, ModelFitError
from recforge.models.als import ALS
from recforge.models.registry import create
from recforge.testing import hit_rate, planted_explicit, planted_implicit, rating_rmse

from ._caps import force_picked_threads, record_thread_caps

SMALL = {"n_factors": 12, "iterations": 8}


@pytest.fixture(scope="module")
def implicit_model() -> ALS:
    model = ALS(solver="cholesky", n_factors=16, iterations=12)
    return model.fit(planted_implicit(0).train)


@pytest.fixture(scope="module")
def explicit_model() -> ALS:
    model = ALS(objective="explicit", solver="cholesky", n_factors=16, iterations=12)
    return model.fit(planted_explicit(0).train)


# ---------------------------------------------------------------------------- the batched solver
def _random_problem(seed: int, n_rows: int = 60, n_other: int = 40, k: int = 6):
    """A random sparse row × partner matrix with some empty rows, partner factors and state."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_rows, n_other)) < rng.random((n_rows, 1)) * 0.6) * rng.integers(
        1, 6, (n_rows, n_other)
    )
    dense[:3] = 0  # rows without events must come out regular (zero right-hand side)
    mat = sp.csr_matrix(dense.astype(np.float32))
    other = rng.normal(0, 0.5, (n_other, k)).astype(np.float32)
    current = rng.normal(0, 0.5, (n_rows, k)).astype(np.float32)
    return dense.astype(np.float64), mat, other, current


def _reference(dense, other, gram, weights, targets, reg_diag, row_scale, offsets):
    """Per-row numpy solve of (G + Σ w y yᵀ + s·diag(d)) x = Σ t y (the test may loop)."""
    out = np.zeros((dense.shape[0], other.shape[1]))
    y = other.astype(np.float64)
    for u in range(dense.shape[0]):
        cols = np.flatnonzero(dense[u])
        w, t = weights(dense[u, cols]), targets(dense[u, cols]) - offsets[cols]
        a = gram + (y[cols] * w[:, None]).T @ y[cols] + row_scale[u] * np.diag(reg_diag)
        out[u] = np.linalg.solve(a, y[cols].T @ t)
    return out


@pytest.mark.parametrize("objective", ["implicit", "explicit"])
@pytest.mark.parametrize("cells", [als_mod.CHUNK_CELLS, 64])
def test_batched_solvers_match_per_row_solves(
    objective: str, cells: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny chunks (cells=64) force many chunks and one row per chunk: the chunking must not matter.
    monkeypatch.setattr(als_mod, "CHUNK_CELLS", cells)
    dense, mat, other, current = _random_problem(1)
    k = other.shape[1]
    alpha, lam = 2.0, 0.3
    if objective == "implicit":
        conf = 1.0 + alpha * mat.data
        side = als_mod._make_side(mat, conf - 1.0, conf)
        gram_np = other.T.astype(np.float64) @ other
        gram = torch.from_numpy(other.T @ other)
        reg_diag = np.full(k, lam)
        row_scale = np.ones(len(dense))
        offsets = np.zeros(other.shape[0])
        expected = _reference(
            dense, other, gram_np, lambda r: alpha * r, lambda r: 1 + alpha * r,
            reg_diag, row_scale, offsets,
        )  # fmt: skip
    else:
        side = als_mod._make_side(mat, np.ones(mat.nnz, np.float32), mat.data)
        gram, gram_np = None, np.zeros((k, k))
        reg_diag = np.r_[np.full(k - 1, lam), 0.1]
        row_scale = np.maximum((dense > 0).sum(1), 1).astype(np.float64)
        offsets = np.linspace(2.5, 4.0, other.shape[0])
        expected = _reference(
            dense, other, gram_np, np.ones_like, lambda r: r, reg_diag, row_scale, offsets
        )
    kwargs = {
        "gram": gram,
        "reg_diag": torch.tensor(reg_diag, dtype=torch.float32),
        "row_scale": torch.tensor(row_scale, dtype=torch.float32),
        "offsets": None if objective == "implicit" else offsets.astype(np.float32),
    }
    chol = als_mod._solve_side(
        side, torch.from_numpy(other), torch.from_numpy(current),
        solver="cholesky", cg_steps=1, **kwargs,
    )  # fmt: skip
    np.testing.assert_allclose(chol.numpy(), expected, rtol=1e-3, atol=1e-4)
    assert np.all(chol.numpy()[:3] == 0) or objective == "explicit"
    # CG converges to the same solution given enough steps (k steps in exact arithmetic).
    cg = als_mod._solve_side(
        side, torch.from_numpy(other), torch.from_numpy(current),
        solver="cg", cg_steps=3 * k, **kwargs,
    )  # fmt: skip
    np.testing.assert_allclose(cg.numpy(), expected, rtol=1e-3, atol=1e-3)
    # A few warm-started steps move towards it: the error shrinks.
    few = als_mod._solve_side(
        side, torch.from_numpy(other), torch.from_numpy(current),
        solver="cg", cg_steps=2, **kwargs,
    )  # fmt: skip
    assert np.abs(few.numpy() - expected).sum() < np.abs(current - expected).sum()


def test_chunks_cover_every_row_once_and_bound_padding() -> None:
    _, mat, _, _ = _random_problem(2, n_rows=300)
    side = als_mod._make_side(mat, np.ones(mat.nnz, np.float32), mat.data)
    chunks = list(als_mod._chunks(side, 6))
    rows = np.concatenate(chunks)
    assert sorted(rows.tolist()) == list(range(300))
    for chunk in chunks:
        counts = side.counts[chunk]
        if counts.min() > 0:
            assert counts.max() < 1.5 * counts.min() + 1


# ---------------------------------------------------------------------------- known answers
def test_implicit_beats_popularity_on_planted_data(implicit_model: ALS) -> None:
    data = planted_implicit(0)
    got = hit_rate(implicit_model, data)
    pop = hit_rate(create("popularity").fit(data.train), data)
    assert got >= pop + 0.4, (got, pop)


def test_explicit_rmse_well_below_global_mean(explicit_model: ALS) -> None:
    data = planted_explicit(0)
    got = rating_rmse(explicit_model, data.test)
    base = rating_rmse(create("global_mean").fit(data.train), data.test)
    assert got <= 0.75 * base, (got, base)
    pred = explicit_model.predict(
        data.test.users.lookup(data.test.user_idx), data.test.items.lookup(data.test.item_idx)
    )
    assert pred.min() >= 1.0 and pred.max() <= 5.0


def test_predicts_ratings_follows_the_objective() -> None:
    assert ALS.predicts_ratings is False
    assert create("als").predicts_ratings is False
    assert create("als", objective="explicit").predicts_ratings is True


@pytest.mark.parametrize("objective", ["implicit", "explicit"])
@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_training_loss_never_increases(objective: str, solver: str) -> None:
    data = planted_explicit(1) if objective == "explicit" else planted_implicit(1)
    model = ALS(objective=objective, solver=solver, track_loss=True, **SMALL).fit(data.train)
    loss = model.history_["train_loss"].to_numpy()
    assert len(loss) == SMALL["iterations"] and np.isfinite(loss).all()
    assert np.all(np.diff(loss) <= 1e-6 * np.abs(loss[:-1])), loss
    assert loss[-1] < loss[0]


def test_explicit_history_reports_valid_rmse() -> None:
    data = planted_explicit(0)
    model = ALS(objective="explicit", **SMALL).fit(data.train, valid=data.test)
    assert {"train_rmse", "valid_rmse"} <= set(model.history_.columns)
    assert model.history_["valid_rmse"].iloc[-1] == pytest.approx(
        rating_rmse(model, data.test), rel=1e-4
    )


@pytest.mark.parametrize("objective", ["implicit", "explicit"])
def test_cg_and_cholesky_agree(objective: str) -> None:
    data = planted_explicit(0) if objective == "explicit" else planted_implicit(0)
    cfg = {"objective": objective, "n_factors": 16, "iterations": 15, "track_loss": True}
    cg = ALS(solver="cg", **cfg).fit(data.train)
    chol = ALS(solver="cholesky", **cfg).fit(data.train)
    # Same objective value at the end (CG solves each block approximately) ...
    assert cg.history_["train_loss"].iloc[-1] == pytest.approx(
        chol.history_["train_loss"].iloc[-1], rel=0.02
    )
    # ... and nearly the same rankings.
    users = np.arange(data.train.n_users)
    top_cg, _ = cg.recommend_idx(users, 10)
    top_ch, _ = chol.recommend_idx(users, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_cg, top_ch, strict=True)])
    assert overlap >= 0.8, overlap
    if objective == "implicit":
        assert abs(hit_rate(cg, data) - hit_rate(chol, data)) <= 0.05
    else:
        assert rating_rmse(cg, data.test) == pytest.approx(rating_rmse(chol, data.test), rel=0.02)


def test_users_without_events_get_zero_factors() -> None:
    data = planted_implicit(0).train
    keep = data.user_idx >= 5  # users 0..4 stay in the vocabulary with no events
    sub = Interactions(
        data.user_idx[keep], data.item_idx[keep], data.rating[keep], data.timestamp[keep],
        data.users, data.items,
    )  # fmt: skip
    model = ALS(solver="cholesky", **SMALL).fit(sub)
    np.testing.assert_allclose(model.user_factors_[:5], 0.0, atol=1e-7)
    assert np.isfinite(model.score_items(np.arange(10))).all()


# ---------------------------------------------------------------------------- confidence
def test_confidence_functions() -> None:
    r = np.array([1.0, 2.0, 5.0], dtype=np.float32)
    lin = ALS(alpha=2.0, weighting="rating")._confidence(r)
    np.testing.assert_allclose(lin, [3.0, 5.0, 11.0])
    binary = ALS(alpha=2.0, weighting="binary")._confidence(r)
    np.testing.assert_allclose(binary, [3.0, 3.0, 3.0])
    log = ALS(alpha=2.0, confidence="log", log_eps=0.5)._confidence(r)
    np.testing.assert_allclose(log, 1.0 + 2.0 * np.log1p(r / 0.5), rtol=1e-6)


# ---------------------------------------------------------------------------- new users
def _top10_overlap(model: ALS, data: Interactions, users: np.ndarray) -> float:
    csr = data.csr()
    trained, _ = model.recommend_idx(users, 10)
    overlaps = []
    for row, u in enumerate(users):
        lo, hi = csr.indptr[u], csr.indptr[u + 1]
        scores = model.fold_in_scores(csr.indices[lo:hi].astype(np.int64), csr.data[lo:hi])
        scores[csr.indices[lo:hi]] = -np.inf
        folded = np.argsort(-scores, kind="stable")[:10]
        overlaps.append(len(set(folded) & set(trained[row])) / 10)
    return float(np.mean(overlaps))


def test_fold_in_reproduces_trained_rankings(implicit_model: ALS, explicit_model: ALS) -> None:
    users = np.arange(0, 300, 10)
    assert _top10_overlap(implicit_model, planted_implicit(0).train, users) >= 0.8
    assert _top10_overlap(explicit_model, planted_explicit(0).train, users) >= 0.8


def test_fold_in_vector_solves_the_user_half_step(implicit_model: ALS) -> None:
    # Refit only the users against the final item factors: fold-in must give the same vector.
    data = planted_implicit(0).train
    csr = data.csr()
    side = als_mod._make_side(
        csr, implicit_model._confidence(csr.data) - 1.0, implicit_model._confidence(csr.data)
    )
    y = torch.from_numpy(implicit_model.item_factors_)
    solved = implicit_model._implicit_half(side, torch.zeros(data.n_users, 16), y).numpy()
    for u in (0, 17, 250):
        lo, hi = csr.indptr[u], csr.indptr[u + 1]
        vec, bias = implicit_model.fold_in_vector(
            csr.indices[lo:hi].astype(np.int64), csr.data[lo:hi]
        )
        assert bias == 0.0
        np.testing.assert_allclose(vec, solved[u], rtol=1e-3, atol=1e-4)


def test_new_user_recommendations_follow_their_ratings(explicit_model: ALS) -> None:
    data = planted_explicit(0)
    items = data.train.items.ids
    lover = explicit_model.predict_for_ratings({i: 5.0 for i in items[:10]}, items[10:20])
    hater = explicit_model.predict_for_ratings({i: 1.0 for i in items[:10]}, items[10:20])
    assert lover.mean() > hater.mean() + 0.5
    rec = explicit_model.recommend_for_ratings({items[0]: 5.0, items[1]: 4.0}, k=5)
    assert len(rec) == 5 and not {items[0], items[1]} & set(rec.item_ids.tolist())


# ---------------------------------------------------------------------------- state
def test_save_load_gives_identical_scores(explicit_model: ALS, tmp_path: Path) -> None:
    loaded = load_run(explicit_model.save(tmp_path / "run")).model
    assert isinstance(loaded, ALS) and loaded.predicts_ratings
    users = np.arange(explicit_model.n_users)
    np.testing.assert_array_equal(loaded.score_items(users), explicit_model.score_items(users))
    ratings = {explicit_model.items_.ids[3]: 4.0, explicit_model.items_.ids[8]: 2.0}
    np.testing.assert_array_equal(
        loaded.recommend_for_ratings(ratings, k=10).item_ids,
        explicit_model.recommend_for_ratings(ratings, k=10).item_ids,
    )


@pytest.mark.parametrize("backend", ["torch", "implicit", "numba"])
@pytest.mark.parametrize("threads", [1, 2])
def test_seed_determinism(backend: str, threads: int) -> None:
    if backend == "implicit" and als_mod._native_cg() is None:
        pytest.skip("implicit is not installed")
    if backend == "numba" and als_mod._numba_cg() is None:
        pytest.skip("numba is not installed")
    data = planted_implicit(2).train
    cfg = {**SMALL, "backend": backend, "num_threads": threads}
    a = ALS(seed=3, **cfg).fit(data)
    b = ALS(seed=3, **cfg).fit(data)
    c = ALS(seed=4, **cfg).fit(data)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert not np.array_equal(a.item_factors_, c.item_factors_)


def test_set_state_rejects_wrong_shapes(implicit_model: ALS) -> None:
    state = implicit_model.get_state()
    other = ALS(solver="cholesky", n_factors=8)
    other.users_, other.items_ = implicit_model.users_, implicit_model.items_
    with pytest.raises(ValueError, match="user_factors"):
        other.set_state(state)


def test_bad_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="objective"):
        create("als", objective="pairwise")
    with pytest.raises(ConfigError, match="reg"):
        create("als", reg=0.0)


# ---------------------------------------------------------------------------- implicit backend
def _torch_cg_half_step(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any, torch.Tensor]:
    """A random implicit half-step problem (conf = 1 + 2r, λ = 0.3) and recforge's torch CG
    answer after 3 steps: ``(dense, other, current, side, torch_out)``."""
    dense, mat, other, current = _random_problem(seed)
    k = other.shape[1]
    conf = (1.0 + 2.0 * mat.data).astype(np.float32)
    side = als_mod._make_side(mat, conf - 1.0, conf, native=True)
    torch_out = als_mod._solve_side(
        side, torch.from_numpy(other), torch.from_numpy(current),
        gram=torch.from_numpy(other.T @ other), reg_diag=torch.full((k,), 0.3),
        row_scale=torch.ones(len(dense)), offsets=None, solver="cg", cg_steps=3,
    )  # fmt: skip
    return dense, other, current, side, torch_out


def test_native_half_step_equals_torch_cg_half_step() -> None:
    # The implicit package's compiled CG solves the same system with the same steps: one
    # half-step from the same warm start must agree with recforge's unpadded torch CG.
    native = als_mod._native_cg()
    if native is None:
        pytest.skip("implicit is not installed")
    _, other, current, side, torch_out = _torch_cg_half_step(3)
    out = current.copy()
    native.least_squares_cg(side.native, out, other, 0.3, num_threads=1, cg_steps=3)
    np.testing.assert_allclose(out, torch_out.numpy(), rtol=1e-3, atol=1e-4)


def test_backends_fit_the_same_model() -> None:
    if als_mod._native_cg() is None:
        pytest.skip("implicit is not installed")
    data = planted_implicit(0)
    fits = {
        b: ALS(backend=b, track_loss=True, **SMALL).fit(data.train) for b in ("torch", "implicit")
    }
    assert fits["torch"].backend_ == "torch" and fits["implicit"].backend_ == "implicit"
    np.testing.assert_allclose(
        fits["torch"].history_["train_loss"], fits["implicit"].history_["train_loss"], rtol=1e-3
    )
    users = np.arange(data.train.n_users)
    np.testing.assert_allclose(
        fits["torch"].score_items(users), fits["implicit"].score_items(users), atol=1e-3
    )


def test_backend_implicit_without_the_package_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(als_mod, "_native_cg", lambda: None)
    monkeypatch.setattr(als_mod, "_numba_cg", lambda: None)
    with pytest.raises(ConfigError, match="pip install implicit"):
        ALS(backend="implicit", **SMALL).fit(planted_implicit(0).train)
    with pytest.raises(ConfigError, match="pip install numba"):
        ALS(backend="numba", **SMALL).fit(planted_implicit(0).train)
    # 'auto' falls back to recforge's own kernels.
    assert ALS(**SMALL).fit(planted_implicit(0).train).backend_ == "torch"


def test_auto_backend_prefers_numba_then_implicit(monkeypatch: pytest.MonkeyPatch) -> None:
    if als_mod._numba_cg() is None:
        pytest.skip("numba is not installed")
    data = planted_implicit(0).train
    assert ALS(**SMALL).fit(data).backend_ == "numba"
    # The explicit objective and the Cholesky solver always run on torch.
    assert ALS(solver="cholesky", **SMALL).fit(data).backend_ == "torch"
    assert ALS(objective="explicit", **SMALL).fit(planted_explicit(0).train).backend_ == "torch"
    if als_mod._native_cg() is not None:
        monkeypatch.setattr(als_mod, "_numba_cg", lambda: None)
        assert ALS(**SMALL).fit(data).backend_ == "implicit"


# ---------------------------------------------------------------------------- numba backend
def test_numba_half_step_equals_torch_cg_half_step() -> None:
    kernels = als_mod._numba_cg()
    if kernels is None:
        pytest.skip("numba is not installed")
    dense, other, current, side, torch_out = _torch_cg_half_step(5)
    k = other.shape[1]
    model = ALS(reg=0.3, cg_steps=3)
    model._native = kernels
    out = model._numba_half(side.native, torch.from_numpy(current.copy()), torch.from_numpy(other))
    np.testing.assert_allclose(out.numpy(), torch_out.numpy(), rtol=1e-3, atol=1e-4)
    assert np.all(out.numpy()[:3] == 0.0)  # rows without events: their exact solution 0
    # Many CG steps reach the exact per-row solution.
    model = ALS(reg=0.3, cg_steps=30)
    model._native = kernels
    exact = _reference(
        dense, other, other.T.astype(np.float64) @ other, lambda v: 2.0 * v,
        lambda v: 1.0 + 2.0 * v, np.full(k, 0.3), np.ones(len(dense)), np.zeros(other.shape[0]),
    )  # fmt: skip
    out = model._numba_half(side.native, torch.from_numpy(current.copy()), torch.from_numpy(other))
    np.testing.assert_allclose(out.numpy(), exact, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("backend", ["numba", "implicit"])
def test_compiled_fit_is_identical_for_any_thread_count_and_any_picker_choice(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The half-steps' thread count is picked by measured speed (picked_threads): whichever
    # count timing picks, half-step by half-step, the fit must be the same to the last bit.
    if (als_mod._numba_cg() if backend == "numba" else als_mod._native_cg()) is None:
        pytest.skip(f"{backend} is not installed")
    data = planted_implicit(1).train
    one = ALS(backend=backend, num_threads=1, **SMALL).fit(data)
    for mode in ("all", "alternate", "one"):
        given = force_picked_threads(monkeypatch, als_mod, mode)
        two = ALS(backend=backend, num_threads=2, **SMALL).fit(data)
        assert (2 in given) == (mode != "one") and (1 in given) == (mode != "all"), mode
        np.testing.assert_array_equal(one.user_factors_, two.user_factors_, err_msg=mode)
        np.testing.assert_array_equal(one.item_factors_, two.item_factors_, err_msg=mode)
    monkeypatch.undo()
    # And with the real picker, whatever it chose on this machine.
    two = ALS(backend=backend, num_threads=2, **SMALL).fit(data)
    np.testing.assert_array_equal(one.user_factors_, two.user_factors_)
    torch_fit = ALS(backend="torch", **SMALL).fit(data)
    users = np.arange(data.n_users)
    np.testing.assert_allclose(one.score_items(users), torch_fit.score_items(users), atol=1e-3)


def test_loss_is_computed_only_when_asked_for() -> None:
    from recforge.train.checkpoint import training_context

    data = planted_implicit(0)
    plain = ALS(**SMALL).fit(data.train)
    assert list(plain.history_.columns) == ["epoch", "seconds"]
    assert len(plain.history_) == SMALL["iterations"]
    assert "train_loss" in ALS(**SMALL).fit(data.train, valid=data.test).history_.columns
    assert "train_loss" in ALS(track_loss=True, **SMALL).fit(data.train).history_.columns
    with training_context():
        assert "train_loss" in ALS(**SMALL).fit(data.train).history_.columns
        assert "train_loss" not in ALS(track_loss=False, **SMALL).fit(data.train).history_
    # Tracking the loss does not change the fit.
    tracked = ALS(track_loss=True, **SMALL).fit(data.train)
    np.testing.assert_array_equal(tracked.item_factors_, plain.item_factors_)


# ------------------------------------------------------- found by mutation testing (models/als.py)
def _tiny(seed: int = 0, *, scale: tuple[float, float] | None = (1.0, 5.0)) -> Interactions:
    """12 users × 9 items, ratings 1-5, every user and item with at least one event."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((12, 9)) < 0.45) * rng.integers(1, 6, (12, 9))
    dense[np.arange(12), np.arange(12) % 9] = rng.integers(1, 6, 12)
    u, i = np.nonzero(dense)
    frame = pd.DataFrame({"user_id": u, "item_id": i, "rating": dense[u, i].astype(np.float64)})
    return Interactions.from_frame(frame, rating_scale=scale, source="tiny")


EXPLICIT_VARIANTS = [
    {"biases": True, "weighted_reg": True, "bias_reg": 0.05},
    {"biases": True, "weighted_reg": False},
    {"biases": False, "weighted_reg": True},
    {"biases": True, "weighted_reg": True, "bias_reg": 0.0},
]


def _explicit_row(y, x_bias, ratings, mu, reg, bias_reg, biases, weighted):
    """Per-row reference of the explicit half-step: returns (factors, bias)."""
    k = y.shape[1]
    z = np.hstack([y, np.ones((len(y), 1))]) if biases else y
    t = ratings - mu - x_bias
    d = np.r_[np.full(k, reg), bias_reg] if biases else np.full(k, reg)
    s = max(len(y), 1) if weighted else 1.0
    sol = np.linalg.solve(z.T @ z + s * np.diag(np.maximum(d, 1e-12)), z.T @ t)
    return (sol[:k], sol[k]) if biases else (sol, 0.0)


@pytest.mark.parametrize("variant", EXPLICIT_VARIANTS)
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_explicit_half_step_solves_each_rows_equations(variant: dict, solver: str) -> None:
    data = _tiny(1)
    model = ALS(objective="explicit", solver=solver, reg=0.3, cg_steps=40, n_factors=3, **variant)
    model.global_mean_ = data.global_mean
    csr = data.csr("rating")
    side = als_mod._make_side(csr, np.ones(csr.nnz, np.float32), csr.data)
    rng = np.random.default_rng(2)
    x0 = torch.from_numpy(rng.normal(0, 0.3, (12, 3)).astype(np.float32))
    y = rng.normal(0, 0.5, (9, 3)).astype(np.float32)
    b_u = rng.normal(0, 0.2, 12).astype(np.float32)
    b_i = rng.normal(0, 0.2, 9).astype(np.float32)
    x, bias = model._explicit_half(side, x0, torch.from_numpy(y), b_u.copy(), b_i)
    assert bias.dtype == np.float32 and x.shape == (12, 3)
    lam_b = variant.get("bias_reg", 0.3)
    for u in range(12):
        cols = csr.indices[csr.indptr[u] : csr.indptr[u + 1]]
        r = csr.data[csr.indptr[u] : csr.indptr[u + 1]].astype(np.float64)
        want_x, want_b = _explicit_row(
            y[cols].astype(np.float64), b_i[cols], r, data.global_mean, 0.3, lam_b,
            variant["biases"], variant["weighted_reg"],
        )  # fmt: skip
        np.testing.assert_allclose(x[u].numpy(), want_x, rtol=2e-3, atol=2e-4)
        assert bias[u] == pytest.approx(want_b if variant["biases"] else b_u[u], abs=2e-4)


@pytest.mark.parametrize("backend", ["torch", "cholesky", "numba", "implicit"])
def test_implicit_half_step_solves_each_rows_equations(backend: str) -> None:
    data = _tiny(3, scale=None)
    solver = "cholesky" if backend == "cholesky" else "cg"
    model = ALS(alpha=0.7, reg=0.4, cg_steps=40, n_factors=3, solver=solver)
    csr = data.csr("rating")
    conf = model._confidence(csr.data)
    side = als_mod._make_side(csr, conf - 1.0, conf, native=True)
    if backend == "numba":
        model._backend, model._native = "numba", als_mod._numba_cg()
    elif backend == "implicit":
        model._backend, model._native = "implicit", als_mod._native_cg()
    if backend in ("numba", "implicit") and model._native is None:
        pytest.skip(f"{backend} is not installed")
    rng = np.random.default_rng(4)
    x0 = rng.normal(0, 0.3, (12, 3)).astype(np.float32)
    y = rng.normal(0, 0.5, (9, 3)).astype(np.float32)
    x = model._implicit_half(side, torch.from_numpy(x0.copy()), torch.from_numpy(y)).numpy()
    y64 = y.astype(np.float64)
    for u in range(12):
        cols = csr.indices[csr.indptr[u] : csr.indptr[u + 1]]
        c = 1.0 + 0.7 * csr.data[csr.indptr[u] : csr.indptr[u + 1]].astype(np.float64)
        a = y64.T @ y64 + (y64[cols] * (c - 1.0)[:, None]).T @ y64[cols] + 0.4 * np.eye(3)
        np.testing.assert_allclose(x[u], np.linalg.solve(a, y64[cols].T @ c), rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize(
    "cfg",
    [
        {"objective": "implicit", "alpha": 0.5, "reg": 0.7},
        {"objective": "implicit", "alpha": 0.5, "reg": 0.7, "confidence": "log"},
        *({"objective": "explicit", "reg": 0.2, **v} for v in EXPLICIT_VARIANTS),
    ],
)
def test_tracked_loss_is_the_objective_by_hand(cfg: dict) -> None:
    explicit = cfg["objective"] == "explicit"
    data = _tiny(5, scale=(1.0, 5.0) if explicit else None)
    model = ALS(solver="cholesky", n_factors=3, iterations=2, track_loss=True, **cfg).fit(data)
    r = data.csr("rating").toarray().astype(np.float64)
    obs = r > 0
    x, y = model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
    s = x @ y.T
    n = obs.sum()
    last = model.history_.iloc[-1]
    if explicit:
        pred = model.global_mean_ + model.user_bias_[:, None] + model.item_bias_[None, :] + s
        fit = ((r - pred) ** 2)[obs].sum()
        w_u = obs.sum(1) if cfg["weighted_reg"] else np.ones(len(x))
        w_i = obs.sum(0) if cfg["weighted_reg"] else np.ones(len(y))
        penalty = 0.2 * (w_u @ (x**2).sum(1) + w_i @ (y**2).sum(1))
        if cfg["biases"]:
            lam_b = cfg.get("bias_reg", 0.2)
            penalty += lam_b * (w_u @ model.user_bias_**2 + w_i @ model.item_bias_**2)
        else:
            assert not model.user_bias_.any() and not model.item_bias_.any()
        assert last["train_rmse"] == pytest.approx(np.sqrt(fit / n), rel=1e-5)
    else:
        c = 1.0 + (0.5 * np.log1p(r) if cfg.get("confidence") == "log" else 0.5 * r)
        fit = (c * (obs - s) ** 2).sum()
        penalty = 0.7 * ((x**2).sum() + (y**2).sum())
        assert "train_rmse" not in model.history_.columns
    assert last["train_loss"] == pytest.approx((fit + penalty) / n, rel=1e-5)
    assert model.history_["epoch"].tolist() == [1, 2]
    assert model.history_["epoch"].dtype == np.int64
    assert (model.history_["seconds"] >= 0).all()


@pytest.mark.parametrize("objective", ["implicit", "explicit"])
def test_first_sweep_starts_from_the_seeded_gaussian(objective: str) -> None:
    # One CG sweep from the documented start (seeded N(0, init_std²) factors, users then items).
    data = _tiny(6, scale=(1.0, 5.0) if objective == "explicit" else None)
    cfg = {"objective": objective, "n_factors": 4, "init_std": 0.3, "seed": 11, "cg_steps": 1}
    fitted = ALS(iterations=1, backend="torch", **cfg).fit(data)
    model = ALS(backend="torch", **cfg)
    model.global_mean_ = data.global_mean
    rng = np.random.default_rng(11)
    x = torch.from_numpy(rng.normal(0.0, 0.3, (12, 4)).astype(np.float32))
    y = torch.from_numpy(rng.normal(0.0, 0.3, (9, 4)).astype(np.float32))
    by_user = data.csr("rating")
    by_item = by_user.T.tocsr()
    by_item.sort_indices()
    if objective == "explicit":
        sides = [
            als_mod._make_side(m, np.ones(m.nnz, np.float32), m.data) for m in (by_user, by_item)
        ]
        b_u, b_i = np.zeros(12, np.float32), np.zeros(9, np.float32)
        x, b_u = model._explicit_half(sides[0], x, y, b_u, b_i)
        y, b_i = model._explicit_half(sides[1], y, x, b_i, b_u)
        np.testing.assert_allclose(fitted.user_bias_, b_u, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fitted.item_bias_, b_i, rtol=1e-5, atol=1e-6)
    else:
        conf = [model._confidence(m.data) for m in (by_user, by_item)]
        sides = [
            als_mod._make_side(m, c - 1.0, c) for m, c in zip((by_user, by_item), conf, strict=True)
        ]
        x = model._implicit_half(sides[0], x, y)
        y = model._implicit_half(sides[1], y, x)
    np.testing.assert_allclose(fitted.user_factors_, x.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fitted.item_factors_, y.numpy(), rtol=1e-5, atol=1e-6)
    assert fitted.user_factors_.dtype == np.float32 and fitted.user_factors_.flags.c_contiguous
    assert fitted.backend_ == "torch" and fitted._bounds == {} and fitted._item_gram is None


def test_non_finite_factors_stop_the_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    def nan_half(
        self: ALS, side: object, current: torch.Tensor, other: torch.Tensor
    ) -> torch.Tensor:
        return torch.full_like(current, float("nan"))

    monkeypatch.setattr(ALS, "_implicit_half", nan_half)
    model = ALS(backend="torch", iterations=3)
    with pytest.raises(
        ModelFitError,
        match=r"^als: factors became non-finite in sweep 1; increase reg or lower alpha$",
    ):
        model.fit(_tiny(scale=None))
    assert not model.is_fitted


def test_a_singular_normal_equation_is_a_fit_error() -> None:
    csr = sp.csr_matrix(np.array([[1.0, 1.0]], np.float32))
    side = als_mod._make_side(csr, np.ones(2, np.float32), csr.data)
    other = torch.tensor([[1.0], [-1.0]])
    with pytest.raises(
        ModelFitError,
        match=r"^als: a normal-equation matrix is not positive definite; increase reg$",
    ):
        als_mod._solve_side(
            side, other, torch.zeros(1, 1), gram=None, reg_diag=torch.tensor([-5.0]),
            row_scale=torch.ones(1), offsets=None, solver="cholesky", cg_steps=1,
        )  # fmt: skip


@pytest.mark.parametrize("objective", ["implicit", "explicit"])
def test_predict_idx_is_the_score_of_each_pair(objective: str) -> None:
    data = _tiny(7, scale=(1.0, 5.0) if objective == "explicit" else None)
    model = ALS(objective=objective, n_factors=3, iterations=3).fit(data)
    if objective == "explicit":
        assert model.user_bias_.any() and model.item_bias_.any()
    scores = model.score_items(np.arange(12))
    x, y = model.user_factors_, model.item_factors_
    want = x @ y.T
    if objective == "explicit":
        want = want + model.global_mean_ + model.user_bias_[:, None] + model.item_bias_[None, :]
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)
    assert scores.dtype == np.float32
    u, i = np.repeat(np.arange(12), 9), np.tile(np.arange(9), 12)
    got = model.predict_idx(u, i)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, scores[u, i], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", EXPLICIT_VARIANTS)
def test_explicit_fold_in_solves_the_user_equations(variant: dict) -> None:
    data = _tiny(8)
    model = ALS(objective="explicit", n_factors=3, iterations=4, reg=0.3, **variant).fit(data)
    for idx, ratings in [
        (np.array([1, 4, 7]), np.array([5.0, 2.0, 4.0], np.float32)),
        (np.array([5]), np.array([1.0], np.float32)),  # one rating: n = 1 in ALS-WR's scale
    ]:
        _check_explicit_fold_in(model, variant, idx, ratings)


def _check_explicit_fold_in(
    model: ALS, variant: dict, idx: np.ndarray, ratings: np.ndarray
) -> None:
    y = model.item_factors_.astype(np.float64)
    want_x, want_b = _explicit_row(
        y[idx], model.item_bias_[idx].astype(np.float64), ratings.astype(np.float64),
        model.global_mean_, 0.3, variant.get("bias_reg", 0.3), variant["biases"],
        variant["weighted_reg"],
    )  # fmt: skip
    vec, bias = model.fold_in_vector(idx, ratings)
    np.testing.assert_allclose(vec, want_x, rtol=1e-6, atol=1e-8)
    assert bias == pytest.approx(want_b, abs=1e-8)
    scores = model.fold_in_scores(idx, ratings)
    assert scores.dtype == np.float32
    want = y @ want_x + model.global_mean_ + want_b + model.item_bias_
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "cfg",
    [
        {"objective": "implicit"},
        {"objective": "implicit", "weighting": "binary", "alpha": 2.0},
        *({"objective": "explicit", **v} for v in EXPLICIT_VARIANTS),
    ],
)
def test_exact_explanations_add_up_to_the_fold_in_score(cfg: dict) -> None:
    data = _tiny(9, scale=(1.0, 5.0) if cfg["objective"] == "explicit" else None)
    model = ALS(n_factors=3, iterations=4, reg=0.3, **cfg).fit(data)
    hist = [
        (np.array([1, 4, 7]), np.array([5.0, 2.0, 4.0])),
        (np.array([0, 2]), np.array([3.0, 1.0])),
        (np.array([6]), np.array([2.0])),  # one item: ALS-WR's scale is n = 1
    ]
    vals = np.concatenate([v for _, v in hist]).astype(np.float32)
    rows = sp.csr_matrix((vals, np.concatenate([i for i, _ in hist]), [0, 3, 5, 6]), shape=(3, 9))
    row_of, targets = np.array([1, 0, 0, 1, 2]), np.array([3, 3, 8, 5, 4])
    att = model.explain_rows(rows, row_of, targets)
    assert att.method == "exact"
    y = model.item_factors_.astype(np.float64)
    for p, (r, t) in enumerate(zip(row_of.tolist(), targets.tolist(), strict=True)):
        idx, vals = hist[r]
        scores = model.fold_in_scores(idx, vals.astype(np.float32))
        assert att.score[p] == pytest.approx(scores[t], rel=1e-4, abs=1e-4)
        assert len(att.weights[p]) == len(idx)
        if cfg["objective"] == "implicit":
            assert att.weights[p].sum() == pytest.approx(att.score[p], rel=1e-9, abs=1e-12)
            c = model._confidence(vals.astype(np.float32)).astype(np.float64)
            a = y.T @ y + (y[idx] * (c - 1.0)[:, None]).T @ y[idx] + 0.3 * np.eye(3)
            want = (y[t] @ np.linalg.solve(a, y[idx].T)) * c
            np.testing.assert_allclose(att.weights[p], want, rtol=1e-6, atol=1e-10)
        else:
            residual = model.global_mean_ + float(model.item_bias_[t])
            assert att.weights[p].sum() + residual == pytest.approx(att.score[p], rel=1e-9)


def test_state_round_trip_names_each_misshapen_array() -> None:
    model = ALS(objective="explicit", n_factors=3, iterations=2).fit(_tiny(10))
    state = model.get_state()
    assert set(state) == {"user_factors", "item_factors", "user_bias", "item_bias"}
    for key, shape in [
        ("user_factors", (12, 3)),
        ("item_factors", (9, 3)),
        ("user_bias", (12,)),
        ("item_bias", (9,)),
    ]:
        bad = dict(state)
        bad[key] = np.zeros((2, 2), np.float32)
        with pytest.raises(ValueError) as err:
            model.set_state(bad)
        assert str(err.value) == f"state {key!r} has shape (2, 2), expected {shape}"
    other = ALS(objective="explicit", n_factors=3)
    other.users_, other.items_ = model.users_, model.items_
    other.set_state({k: v.astype(np.float64) * 2 for k, v in state.items()})
    for key, arr in state.items():
        got = getattr(other, f"{key}_")
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, arr * 2)


def test_set_state_forgets_the_cached_item_gram() -> None:
    model = ALS(n_factors=3, iterations=2).fit(_tiny(11, scale=None))
    before = model.fold_in_scores(np.array([1, 2]), np.array([1.0, 1.0], np.float32))
    assert model._item_gram is not None
    state = model.get_state()
    model.set_state({**state, "item_factors": state["item_factors"] * 3})
    assert model._item_gram is None
    after = model.fold_in_scores(np.array([1, 2]), np.array([1.0, 1.0], np.float32))
    fresh = ALS(n_factors=3)
    fresh.users_, fresh.items_ = model.users_, model.items_
    fresh.set_state(model.get_state())
    np.testing.assert_allclose(
        after, fresh.fold_in_scores(np.array([1, 2]), np.array([1.0, 1.0], np.float32))
    )
    assert not np.allclose(before, after)


def test_embeddings_are_the_factors_and_reg_defaults_follow_the_objective() -> None:
    model = ALS(n_factors=3, iterations=2).fit(_tiny(12, scale=None))
    assert model.item_vectors() is model.item_factors_
    assert model.item_embeddings() is model.item_factors_
    assert model.user_embeddings() is model.user_factors_
    assert ALS().reg == 20.0 and ALS(objective="explicit").reg == 0.15
    assert ALS(reg=3.0).reg == 3.0
    assert ALS(reg=3.0)._bias_reg == 3.0 and ALS(reg=3.0, bias_reg=0.5)._bias_reg == 0.5
    assert ALS(bias_reg=0.0)._bias_reg == 0.0


def test_make_side_keeps_counts_order_and_the_native_csr() -> None:
    csr = sp.csr_matrix(np.array([[0, 2, 0], [0, 0, 0], [1, 0, 3], [0, 4, 0]], np.float32))
    side = als_mod._make_side(csr, np.full(4, 0.5), np.array([9.0, 8.0, 7.0, 6.0]), native=True)
    assert side.counts.tolist() == [1, 0, 2, 1] and side.counts.dtype == np.int64
    assert side.order.tolist() == [1, 0, 3, 2]  # stable: users 0 and 3 keep their order
    assert side.n_cols == 3 and side.indices.dtype == np.int64 and side.indptr.dtype == np.int64
    assert side.weights.dtype == np.float32 and side.targets.tolist() == [9.0, 8.0, 7.0, 6.0]
    assert side.native is not None and side.native.shape == (4, 3)
    np.testing.assert_array_equal(
        side.native.toarray(), [[0, 9, 0], [0, 0, 0], [8, 0, 7], [0, 6, 0]]
    )
    assert side.native.dtype == np.float32
    assert als_mod._make_side(csr, np.ones(4), np.ones(4)).native is None
    dense = side.csr(torch.arange(4, dtype=torch.float32)).to_dense().numpy()
    np.testing.assert_array_equal(dense, [[0, 0, 0], [0, 0, 0], [1, 0, 2], [0, 3, 0]])


def test_compiled_backends_hold_blas_to_one_thread() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def openmp() -> list[int]:
        # An OpenMP-threaded BLAS (faiss-cpu bundles one beside its own libgomp) counts its
        # threads with that runtime, so limiting the BLAS limits that runtime too: compare only
        # the runtimes that no BLAS is built on (torch's, implicit's).
        info = threadpoolctl.threadpool_info()
        blas_dirs = {
            os.path.dirname(p["filepath"])
            for p in info
            if p["user_api"] == "blas" and p.get("threading_layer") == "openmp"
        }
        return [
            p["num_threads"]
            for p in info
            if p["user_api"] == "openmp" and os.path.dirname(p["filepath"]) not in blas_dirs
        ]

    # (the test session runs torch with one OpenMP thread: give OpenMP two for this check)
    with threadpoolctl.threadpool_limits(2, user_api="openmp"):
        before = openmp()
        with als_mod._single_threaded_blas():
            blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
            assert blas and all(p["num_threads"] == 1 for p in blas)
            # Only BLAS: the compiled kernels' own OpenMP threads (implicit's CG) keep theirs.
            assert openmp() == before


@pytest.mark.parametrize("ones", [0, 3])
@pytest.mark.parametrize("cells", [als_mod.CHUNK_CELLS, 1000, 100, 40])
def test_chunks_bound_padding_and_both_cell_budgets(
    cells: int, ones: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Event counts 0 (rows without events), 1 (or none, so that zero rows sit next to 2s in
    # the order), 2, 3, a bucket of twelve 12s and one 17, and a few long rows.
    counts = np.array(
        [0] * 4 + [1] * ones + [2] * 5 + [3] * 3 + [12] * 12 + [17] + [40, 41], np.int64
    )
    rng = np.random.default_rng(0)
    dense = np.zeros((len(counts), 50), np.float32)
    for r, c in enumerate(counts[rng.permutation(len(counts))]):
        dense[r, rng.choice(50, c, replace=False)] = 1.0
    side = als_mod._make_side(sp.csr_matrix(dense), np.ones(int(counts.sum()), np.float32),
                              np.ones(int(counts.sum()), np.float32))  # fmt: skip
    monkeypatch.setattr(als_mod, "CHUNK_CELLS", cells)
    width = 6
    chunks = list(als_mod._chunks(side, width))
    assert sorted(np.concatenate(chunks).tolist()) == list(range(len(counts)))
    for chunk in chunks:
        c = side.counts[chunk]
        # A row is padded to less than 1.5 times its own length; rows without events alone.
        assert c.max() < 1.5 * c.min() or c.max() == 0
        if len(chunk) > 1:  # both the padded block and the Gram batch fit the budget
            assert len(chunk) * c.max() * width <= cells
            assert len(chunk) * width * width <= cells


def test_explicit_objective_honours_the_cg_solver() -> None:
    # One CG step is not the exact solve: the explicit half-steps must use the solver asked for.
    data = _tiny(13)
    cfg = {"objective": "explicit", "n_factors": 3, "iterations": 1, "cg_steps": 1}
    cg = ALS(solver="cg", **cfg).fit(data)
    exact = ALS(solver="cholesky", **cfg).fit(data)
    assert not np.allclose(cg.user_factors_, exact.user_factors_, atol=1e-3)


@pytest.mark.parametrize("objective", ["implicit", "explicit"])
def test_loss_of_a_single_event(objective: str) -> None:
    frame = pd.DataFrame({"user_id": [1], "item_id": [2], "rating": [4.0]})
    scale = (1.0, 5.0) if objective == "explicit" else None
    data = Interactions.from_frame(frame, rating_scale=scale, source="one")
    model = ALS(objective=objective, n_factors=1, iterations=1, reg=0.5, alpha=1.0,
                solver="cholesky", track_loss=True).fit(data)  # fmt: skip
    x, y = float(model.user_factors_[0, 0]), float(model.item_factors_[0, 0])
    s = x * y
    if objective == "explicit":
        pred = model.global_mean_ + float(model.user_bias_[0]) + float(model.item_bias_[0]) + s
        fit = (4.0 - pred) ** 2
        penalty = 0.5 * (x**2 + y**2 + float(model.user_bias_[0]) ** 2
                         + float(model.item_bias_[0]) ** 2)  # fmt: skip
    else:
        fit = 5.0 * (1.0 - s) ** 2  # c = 1 + 1·4, the only pair
        penalty = 0.5 * (x**2 + y**2)
    assert model.history_["train_loss"].iloc[-1] == pytest.approx(fit + penalty, rel=1e-5)


def test_numba_backend_is_available_whenever_numba_is_installed() -> None:
    import importlib.util

    if importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed")
    kernels = als_mod._numba_cg()
    assert kernels is not None and kernels.__name__ == "recforge.models._als_kernels"


def test_tiny_half_steps_run_on_one_thread_and_larger_ones_are_offered_more() -> None:
    # thread_picker with the CG cost model (~k² + 2k·nnz per row and CG step): a region too
    # small to pay for a probe keeps to one thread; from ML-100k's size on, the picker measures.
    import scipy.sparse as sp

    from recforge.threads import thread_picker

    def pattern(rows: int, cols: int, per_row: int) -> sp.csr_matrix:
        indices = np.tile(np.arange(per_row), rows)
        indptr = np.arange(rows + 1) * per_row
        return sp.csr_matrix((np.ones(rows * per_row), indices, indptr), shape=(rows, cols))

    tiny = pattern(30, 40, 5)
    small = pattern(943, 1682, 85)  # ML-100k's shape: ~5 ms a half-step
    large = pattern(100_000, 20_000, 20)  # issue 16's 2M-event log
    assert thread_picker("test.als", als_mod._cg_half_ms(tiny, 8, 3), 2).engines == (1,)
    assert thread_picker("test.als", als_mod._cg_half_ms(small, 64, 3), 2).engines == (2, 1)
    assert thread_picker("test.als", als_mod._cg_half_ms(large, 64, 3), 2).engines == (2, 1)
    assert thread_picker("test.als", als_mod._cg_half_ms(small, 64, 3), 1).engines == (1,)


# ------------------------------------- found by mutation testing (models/als.py, the fit loop)
@pytest.mark.parametrize("backend", ["torch", "numba", "implicit"])
def test_blas_is_held_to_one_thread_only_around_the_compiled_backends(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    if backend == "numba" and als_mod._numba_cg() is None:
        pytest.skip("numba is not installed")
    if backend == "implicit" and als_mod._native_cg() is None:
        pytest.skip("implicit is not installed")
    entered: list[str] = []

    @contextlib.contextmanager
    def recording() -> Any:
        entered.append("blas")
        yield

    monkeypatch.setattr(als_mod, "_single_threaded_blas", recording)
    model = ALS(backend=backend, **SMALL).fit(planted_implicit(0).train)
    assert model.backend_ == backend
    # The torch kernels keep their BLAS threads; the compiled ones get one, entered once a fit.
    assert entered == ([] if backend == "torch" else ["blas"])


def test_implicit_fit_with_validation_data_reports_no_valid_rmse() -> None:
    # Implicit scores are not ratings: validation data turns loss tracking on, not an RMSE.
    data = planted_implicit(0)
    model = ALS(**SMALL).fit(data.train, valid=data.test)
    assert list(model.history_.columns) == ["epoch", "seconds", "train_loss"]


def test_history_seconds_are_the_sweeps_own_durations() -> None:
    import time

    start = time.perf_counter()
    model = ALS(**SMALL).fit(planted_implicit(0).train)
    elapsed = time.perf_counter() - start
    seconds = model.history_["seconds"]
    assert (seconds >= 0).all() and seconds.sum() <= elapsed


def test_unfitted_model_reports_the_torch_backend_and_its_objectives_kind() -> None:
    # backend_ names the kernels of the last fit; before any fit (or for a loaded run, which
    # scores with numpy) no compiled kernel is held, so it is the plain "torch".
    assert ALS().backend_ == "torch" and ALS(backend="numba").backend_ == "torch"
    assert ALS(objective="explicit").predicts_ratings is True
    assert ALS().predicts_ratings is False


def test_make_side_keeps_empty_trailing_columns_a_stable_order_and_float32_targets() -> None:
    # 40 rows with 0, 1, 2, 0, 1, 2, ... events in columns 0 and 1 of 5: the native CSR keeps
    # all 5 columns (the item factors it is multiplied with have 5 rows), equal counts keep
    # their row order (an unstable sort reorders them at this length), and float64 targets
    # are stored as float32.
    counts = np.arange(40) % 3
    rows = np.repeat(np.arange(40), counts)
    cols = np.concatenate([np.arange(c) for c in counts])
    csr = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(40, 5))
    targets = np.linspace(1.0, 2.0, len(rows))
    side = als_mod._make_side(csr, np.ones(len(rows)), targets, native=True)
    assert side.native is not None and side.native.shape == (40, 5) and side.n_cols == 5
    assert side.order.tolist() == [r for c in range(3) for r in range(40) if r % 3 == c]
    assert side.targets.dtype == np.float32 and side.weights.dtype == np.float32
    np.testing.assert_array_equal(side.targets, targets.astype(np.float32))


@pytest.mark.parametrize(
    "cfg", [{"weighting": "rating"}, {"weighting": "binary"}, {"confidence": "log"}]
)
def test_confidences_are_float32_whatever_the_ratings_dtype(cfg: dict[str, Any]) -> None:
    # The CSR weights, the implicit backend's matrix and the fold-in all expect float32.
    r = np.array([1.0, 4.0], dtype=np.float64)
    conf = ALS(alpha=0.5, **cfg)._confidence(r)
    assert conf.dtype == np.float32
    np.testing.assert_allclose(conf, ALS(alpha=0.5, **cfg)._confidence(r.astype(np.float32)))


# ----------------------------------------- found by mutation testing (models/als.py, fourth step)
def test_cost_models_by_hand() -> None:
    """A CG half-step: steps × (rows·k² + 2k·nnz) multiply-adds; a torch sparse op 2·nnz·k; both
    at 8e6 multiply-adds a millisecond."""
    mat = sp.random(10, 7, density=30 / 70, format="csr", random_state=0)
    assert mat.nnz == 30
    assert als_mod._cg_half_ms(mat, 4, 3) == pytest.approx(3 * (10 * 16 + 2 * 4 * 30) / 8e6)
    assert als_mod._torch_region_ms(1000, 8) == pytest.approx(2 * 1000 * 8 / 8e6)


class _Recorder:
    """A kernel module whose calls are recorded and passed on to the real one."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.real, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return target(*args, **kwargs)

        return call


@pytest.mark.parametrize("backend", ["numba", "implicit"])
def test_each_compiled_backend_runs_its_own_kernel(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chosen backend's kernel does the half-steps (a fall-through to the torch solver would
    fit nearly the same model); implicit's is given the thread count and the CG steps."""
    finder = "_numba_cg" if backend == "numba" else "_native_cg"
    real = getattr(als_mod, finder)()
    if real is None:
        pytest.skip(f"{backend} is not installed")
    recorder = _Recorder(real)
    monkeypatch.setattr(als_mod, finder, lambda: recorder)
    data = planted_implicit(0).train
    model = ALS(backend=backend, n_factors=4, iterations=2, cg_steps=2).fit(data)
    assert model.backend_ == backend
    kernel = "cg_half" if backend == "numba" else "least_squares_cg"
    solves = [kw for name, kw in recorder.calls if name == kernel]
    assert len(solves) >= 4  # 2 sweeps x 2 sides
    if backend == "implicit":  # this problem is below what earns a second thread
        assert all(kw == {"num_threads": 1, "cg_steps": 2} for kw in solves)


def test_torch_backend_takes_cg_steps_not_an_exact_solve() -> None:
    """backend='torch' with solver='cg' runs the configured CG steps: one step from the same
    start gives the numba kernel's factors, not the exact solve's."""
    if als_mod._numba_cg() is None:
        pytest.skip("numba is not installed")
    data = planted_implicit(0).train
    kw = {"n_factors": 4, "iterations": 1, "cg_steps": 1, "seed": 3}
    torch_cg = ALS(backend="torch", **kw).fit(data)
    numba_cg = ALS(backend="numba", **kw).fit(data)
    exact = ALS(solver="cholesky", **kw).fit(data)
    scale = np.abs(exact.user_factors_).max()
    to_numba = np.abs(torch_cg.user_factors_ - numba_cg.user_factors_).max() / scale
    to_exact = np.abs(torch_cg.user_factors_ - exact.user_factors_).max() / scale
    assert to_numba < 1e-5 and to_exact > 1e-4, (to_numba, to_exact)


def test_torch_backend_keeps_items_without_events() -> None:
    """An item of the vocabulary with no training event (the last one here) still has a factor
    row: the sparse tensors take their shape from the data, not from the stored indices."""
    data = planted_implicit(0).train
    last = data.n_items - 1
    part = data.subset(data.item_idx != last)
    model = ALS(backend="torch", n_factors=4, iterations=2).fit(part)
    assert model.item_factors_.shape == (data.n_items, 4)
    assert model.score_items(np.array([0, 1])).shape == (2, data.n_items)


def test_explanations_follow_a_refit() -> None:
    """The float64 copy of the item factors that explanations use is refreshed by a refit of the
    same model object."""
    first, second = planted_implicit(0).train, planted_implicit(1).train
    model = ALS(n_factors=4, iterations=3).fit(first)
    items, ratings, targets = np.array([0, 3, 5]), np.ones(3, np.float32), np.array([1, 2])
    model.explain_history(items, ratings, targets)
    model.fit(second)
    fresh = ALS(n_factors=4, iterations=3).fit(second)
    got, want = (
        model.explain_history(items, ratings, targets),
        fresh.explain_history(items, ratings, targets),
    )
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-9)


def test_missing_backend_messages_are_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(als_mod, "_native_cg", lambda: None)
    monkeypatch.setattr(als_mod, "_numba_cg", lambda: None)
    data = planted_implicit(0).train
    with pytest.raises(ConfigError) as numba_error:
        ALS(backend="numba", **SMALL).fit(data)
    assert str(numba_error.value) == (
        "als: backend 'numba' needs numba: pip install numba (or set backend = 'torch')"
    )
    with pytest.raises(ConfigError) as implicit_error:
        ALS(backend="implicit", **SMALL).fit(data)
    assert str(implicit_error.value) == (
        "als: backend 'implicit' needs the implicit package: pip install implicit "
        "(or set backend = 'torch')"
    )


@pytest.mark.parametrize(
    ("backend", "solver"), [("torch", "cg"), ("torch", "cholesky"), ("numba", "cg")]
)
def test_only_the_torch_backend_caps_torch_threads(
    backend: str, solver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The torch backend's fit runs inside one thread cap: one torch thread for the CG (its
    threads are its own row blocks), sized for a sparse op (2·nnz·k) for the Cholesky solver;
    the compiled backends schedule their own threads and ask for none."""

    if backend == "numba" and als_mod._numba_cg() is None:
        pytest.skip("numba is not installed")

    asked = record_thread_caps(monkeypatch, als_mod, "capped")
    data = planted_implicit(0).train
    ALS(backend=backend, solver=solver, n_factors=4, iterations=1).fit(data)
    sparse_op = [pytest.approx(als_mod._torch_region_ms(data.csr("rating").nnz, 4))]
    want = {"torch": [0.0] if solver == "cg" else sparse_op, "numba": []}[backend]
    assert asked == want


def test_torch_cg_blocks_run_by_the_caller_leave_its_torch_thread_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each block runs on one torch thread in whichever thread takes it, the calling one
    # included (recforge.threads.map_in_threads): the caller's count must be given back.
    import torch

    monkeypatch.setattr(als_mod, "_BLOCK_MS", 1e-3)  # blocks even for this small problem
    force_picked_threads(monkeypatch, als_mod, "one")  # every block on the calling thread
    record_thread_caps(monkeypatch, als_mod, "capped")  # the fit's two torch threads stay
    in_block: list[int] = []
    at_call: list[int] = []
    real_cg, forced_map = als_mod._cg_solve_side, als_mod.picked_map

    def cg(*args: Any, **kwargs: Any) -> Any:
        in_block.append(torch.get_num_threads())
        return real_cg(*args, **kwargs)

    def spy_map(*args: Any, **kwargs: Any) -> Any:
        at_call.append(torch.get_num_threads())  # the caller's count at each half-step
        return forced_map(*args, **kwargs)

    monkeypatch.setattr(als_mod, "_cg_solve_side", cg)
    monkeypatch.setattr(als_mod, "picked_map", spy_map)
    before = torch.get_num_threads()
    try:
        als_mod.ALS(backend="torch", solver="cg", num_threads=2, **SMALL).fit(
            planted_implicit(1).train
        )
    finally:
        torch.set_num_threads(before)
    assert in_block and set(in_block) == {1}
    assert len(at_call) > 1 and set(at_call) == {2}


@pytest.mark.parametrize("objective", ["implicit", "explicit"])
def test_torch_cg_fit_is_identical_for_any_thread_count_and_any_picker_choice(
    objective: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The torch CG runs fixed row blocks (their number set by the work, never by the thread
    # count) on one or more threads: every choice must give the one-thread fit to the last bit.
    monkeypatch.setattr(als_mod, "_BLOCK_MS", 1e-3)  # blocks even for this small problem
    data = (planted_explicit(1) if objective == "explicit" else planted_implicit(1)).train
    cfg = {**SMALL, "backend": "torch", "solver": "cg", "objective": objective}
    one = ALS(num_threads=1, **cfg).fit(data)
    split: list[int] = []
    real_blocks = als_mod._row_blocks

    def blocks(*args: Any) -> Any:
        out = real_blocks(*args)
        split.append(len(out))
        return out

    monkeypatch.setattr(als_mod, "_row_blocks", blocks)
    for mode in ("all", "alternate", "one"):
        given = force_picked_threads(monkeypatch, als_mod, mode)
        two = ALS(num_threads=2, **cfg).fit(data)
        assert (2 in given) == (mode != "one") and (1 in given) == (mode != "all"), mode
        np.testing.assert_array_equal(one.user_factors_, two.user_factors_, err_msg=mode)
        np.testing.assert_array_equal(one.item_factors_, two.item_factors_, err_msg=mode)
        np.testing.assert_array_equal(one.user_bias_, two.user_bias_, err_msg=mode)
    assert split and min(split) > 1  # the fits really ran in blocks


def test_row_blocks_cover_the_side_and_their_number_depends_on_the_work_only() -> None:
    data = planted_implicit(0).train
    mat = data.csr("rating")
    side = als_mod._make_side(mat, np.ones(mat.nnz, np.float32), np.asarray(mat.data, np.float32))
    assert len(als_mod._row_blocks(side, 8, 4.9)) == 1
    blocks = als_mod._row_blocks(side, 8, 5.0)
    assert len(blocks) == 2
    assert len(als_mod._row_blocks(side, 8, 1e9)) == 32
    assert blocks[0][0] == 0 and blocks[-1][1] == mat.shape[0] and blocks[0][1] == blocks[1][0]
    for lo, hi, sub in blocks:
        rows = mat[lo:hi]
        assert np.array_equal(sub.indptr, rows.indptr) and np.array_equal(sub.indices, rows.indices)
        assert np.array_equal(sub.targets, np.asarray(rows.data, np.float32))


def test_threads_from_config_and_forced_threads_cap_the_picked_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # num_threads / --threads bound what the picker may choose: at 1, every half-step runs on
    # one thread even where two are offered at 2 (64 factors: ~1.2 ms a half-step here).
    if als_mod._numba_cg() is None:
        pytest.skip("numba is not installed")
    import recforge.threads as threads_mod
    from recforge.threads import forced_threads, thread_picker

    counts: list[int] = []
    real_map = threads_mod.map_in_threads

    def spy(fn: Any, items: Any, n_threads: int) -> Any:
        counts.append(n_threads)
        return real_map(fn, items, n_threads)

    monkeypatch.setattr(threads_mod, "map_in_threads", spy)
    data = planted_implicit(0).train
    cfg = {"backend": "numba", "n_factors": 64, "iterations": 2}
    work = als_mod._cg_half_ms(data.csr("rating"), 64, 3)
    assert thread_picker("als.cg", work, 2).engines == (2, 1)  # two are offered at 2
    assert thread_picker("als.cg", work, 1).engines == (1,)
    # Whatever the picker would choose (here: always the most it may), the fit's count caps it.
    force_picked_threads(monkeypatch, als_mod, "all")
    ALS(num_threads=2, **cfg).fit(data)
    assert counts and set(counts) == {2}
    counts.clear()
    ALS(num_threads=1, **cfg).fit(data)
    with forced_threads(1):
        ALS(num_threads=2, **cfg).fit(data)
    assert counts and set(counts) == {1}
