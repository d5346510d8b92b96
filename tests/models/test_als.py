"""ALS: the batched solvers against per-row numpy solves, planted known answers, fold-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import recforge.models.als as als_mod
from recforge.artifacts import load_run
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.als import ALS
from recforge.models.registry import create
from recforge.testing import hit_rate, planted_explicit, planted_implicit, rating_rmse

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


def test_numba_fit_is_identical_for_any_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    if als_mod._numba_cg() is None:
        pytest.skip("numba is not installed")
    # This problem is far below the work that earns a second thread (threads_for): force it.
    monkeypatch.setattr(als_mod, "threads_for", lambda work_ms, requested=None: requested or 1)
    data = planted_implicit(1).train
    one = ALS(backend="numba", num_threads=1, **SMALL).fit(data)
    two = ALS(backend="numba", num_threads=2, **SMALL).fit(data)
    np.testing.assert_array_equal(one.user_factors_, two.user_factors_)
    np.testing.assert_array_equal(one.item_factors_, two.item_factors_)
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


def test_small_half_steps_run_on_one_thread_and_large_ones_on_more() -> None:
    # threads_for with the CG cost model: ~k² + 2k·nnz per row and CG step.
    import scipy.sparse as sp

    from recforge.threads import threads_for

    def pattern(rows: int, cols: int, per_row: int) -> sp.csr_matrix:
        indices = np.tile(np.arange(per_row), rows)
        indptr = np.arange(rows + 1) * per_row
        return sp.csr_matrix((np.ones(rows * per_row), indices, indptr), shape=(rows, cols))

    small = pattern(943, 1682, 85)  # ML-100k's shape: ~5 ms a half-step
    large = pattern(100_000, 20_000, 20)  # issue 16's 2M-event log
    assert threads_for(als_mod._cg_half_ms(small, 64, 3), 2) == 1
    assert threads_for(als_mod._cg_half_ms(large, 64, 3), 2) == 2
