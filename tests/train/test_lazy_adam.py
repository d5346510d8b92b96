"""Lazy Adam(W) in the fused MF epoch (``lazy_adam``): only the rows a batch touches are stepped,
the others caught up in closed form when next touched and at the epoch's end.

Claims tested: with every row touched by every batch it is the dense epoch bit for bit; with
rows skipped it is dense Adam(W) up to ε (momentum, decoupled decay and moments of the skipped
steps all applied), on the serial and the threaded kernel alike (the same bits for any thread
count and any split of the batches into calls); a lazy BPR fit still finds planted structure,
is deterministic for a seed, and gives the same fit at 1 and 2 threads.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from recforge.models import create
from recforge.models.neural import NeuralRecommender
from recforge.testing import hit_rate, planted_implicit
from recforge.train.fused_mf import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba is not installed")

B1, B2 = 0.9, 0.999


def _tables(n_users: int, n_items: int, f: int, has_bias: bool) -> list[list[np.ndarray]]:
    """``[p, m, v, g]`` lists of P, Q, BU, BI (1×1 placeholders without biases)."""
    r = np.random.default_rng(1)
    p = [
        (r.standard_normal((n_users, f)) * 0.3).astype(np.float32),
        (r.standard_normal((n_items, f)) * 0.3).astype(np.float32),
    ]
    if has_bias:
        p += [(r.standard_normal((n, 1)) * 0.3).astype(np.float32) for n in (n_users, n_items)]
    else:
        p += [np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32)]
    return [p, [np.zeros_like(t) for t in p], [np.zeros_like(t) for t in p],
            [np.zeros_like(t) for t in p]]  # fmt: skip


def _run(
    data: dict[str, Any], *, lazy: int, has_bias: bool = False, kind: int = 2,
    eps: float = 1e-8, wd: float = 0.05, n_par: int = 0, cuts: list[int] | None = None,
) -> tuple[float, list[np.ndarray]]:  # fmt: skip
    """Three epochs of the serial kernel (``n_par`` 0) or the threaded one: ``(loss, p+m+v)``;
    ``lazy``: the kernels' mask (1 users, 2 items, 3 both)."""
    from recforge.train import _mf_kernels as kernels

    users, items, negs, perm, bs = (data[k] for k in ("users", "items", "negs", "perm", "bs"))
    n_users, n_items, f = data["shape"]
    p, m, v, g = _tables(n_users, n_items, f, has_bias)
    n_batches = -(-len(perm) // bs)
    lrs = np.linspace(0.02, 0.002, n_batches)
    side = [bool(lazy & 1), bool(lazy & 2)] * 2
    last = [np.zeros(n if side[k] else 1, np.int64) for k, n in enumerate((n_users, n_items))]
    dirs = tuple(np.zeros(t.shape if side[k] else (1, 1), np.float32) for k, t in enumerate(p))
    total = 0.0
    for epoch in range(3):
        step0 = epoch * n_batches
        coefs = kernels.lazy_coefs(lrs, step0, B1, B2, wd, True)
        for k in [k for k in range(4 if has_bias else 2) if side[k]]:
            kernels.lazy_directions(m[k].reshape(-1), v[k].reshape(-1), dirs[k].reshape(-1),
                                    step0, B2, eps)  # fmt: skip
        tail = (lazy, coefs, last[0], last[1], dirs)
        state = (*p, has_bias, m[0], v[0], m[1], v[1], m[2], v[2], m[3], v[3], *g)
        if n_par == 0:
            total = kernels.mf_epoch(
                *state, users, items, np.zeros(1), negs, perm, bs, lrs, step0, kind, 0.1,
                0.0, 1.0, False, 0.0, B1, B2, eps, wd, True, 0, n_batches, total, *tail,
            )  # fmt: skip
            continue
        for lo, hi in itertools.pairwise(cuts or [0, n_batches]):
            total = kernels.sampled_epoch_threaded(
                *state, users, items, negs, perm, bs, lrs, step0, kind, 0.1, B1, B2, eps,
                wd, True, lo, hi, total, n_par, *tail,
            )  # fmt: skip
    return total, p + m + v


def _sparse_data() -> dict[str, Any]:
    """3,000 rows over 70 users × 400 items, 2 negatives (some -1), batches of 64: each batch
    touches a minority of the items, so most rows are skipped most steps."""
    r = np.random.default_rng(3)
    n = 3000
    return {
        "users": r.integers(0, 70, n), "items": r.integers(0, 400, n),
        "negs": r.integers(-1, 400, (n, 2)), "perm": r.permutation(n), "bs": 64,
        "shape": (70, 400, 8),
    }  # fmt: skip


def _dense_data() -> dict[str, Any]:
    """Every batch of 12 rows holds all 4 users and all 6 items (as positives): nothing is ever
    skipped."""
    r = np.random.default_rng(4)
    n_batches = 9
    users = np.tile(np.arange(4).repeat(3), n_batches)
    items = np.concatenate([r.permutation(np.tile(np.arange(6), 2)) for _ in range(n_batches)])
    return {
        "users": users, "items": items, "negs": r.integers(0, 6, (len(users), 2)),
        "perm": np.arange(len(users)), "bs": 12, "shape": (4, 6, 8),
    }  # fmt: skip


@pytest.mark.parametrize("has_bias", [False, True])
@pytest.mark.parametrize("kind", [1, 2])  # sampled BCE, BPR
def test_lazy_equals_dense_bit_for_bit_when_every_row_is_touched(kind: int, has_bias: bool) -> None:
    data = _dense_data()
    want_total, want = _run(data, lazy=0, kind=kind, has_bias=has_bias)
    for n_par, mask in itertools.product((0, 2), (1, 2, 3)):
        total, got = _run(data, lazy=mask, kind=kind, has_bias=has_bias, n_par=n_par)
        assert total == want_total
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("has_bias", [False, True])
def test_lazy_catch_up_is_dense_adamw_up_to_eps(has_bias: bool) -> None:
    # With ε → 0 the closed form is exact: skipped rows' momentum, decoupled decay and moment
    # decay all equal the dense steps' (float rounding aside). With torch's ε = 1e-8 the rows
    # still agree closely (ε's weight against √v is the only approximation).
    # Biases under sampled BCE: under BPR a user's bias cancels in s⁺ − s⁻, its gradient is
    # summation noise that Adam scales to full steps (test_fused_mf.py), in either update.
    data, kind = _sparse_data(), 1 if has_bias else 2
    names = ["P", "Q", "BU", "BI", "mP", "mQ", "mBU", "mBI", "vP", "vQ", "vBU", "vBI"]
    for eps, rtol in ((1e-30, 1e-4), (1e-8, 2e-2)):
        dense_total, dense = _run(data, lazy=0, eps=eps, has_bias=has_bias, kind=kind)
        lazy_total, lazy = _run(data, lazy=3, eps=eps, has_bias=has_bias, kind=kind)
        assert lazy_total == pytest.approx(dense_total, rel=rtol / 10)
        for name, a, b in zip(names, lazy, dense, strict=True):
            scale = float(np.abs(b).max()) + 1e-30
            assert float(np.abs(a - b).max()) <= rtol * scale, (eps, name)
    # The dense fit moved the rows a batch did not touch (momentum and decay): the lazy one
    # had to catch them up, so this compared something (not rows that never moved).
    start = _tables(70, 400, 8, has_bias)[0][1]
    assert float(np.abs(dense[1] - start).min(axis=1).max()) > 1e-3


def test_catch_up_closed_form_equals_the_step_by_step_sum_over_long_gaps() -> None:
    # The O(1) catch-up (lazy_coefs' H) against the sum it replaces, step by step in Python:
    # α = Π_{s<j≤T} dⱼ, β = Σ_{s<j≤T} aⱼ·rʲ⁻ˢ·Π_{j<l≤T} dₗ, over gaps from 1 step to the whole
    # epoch (a user of a large log is touched every few hundred batches), mid-epoch and at its
    # end, with a warm-up + decay schedule and a step count past the bias correction's start.
    from recforge.train import _mf_kernels as kernels

    n, wd = 700, 0.1
    lrs = np.concatenate([np.linspace(1e-4, 5e-3, 200), np.linspace(5e-3, 1e-5, n - 200)])
    coefs = kernels.lazy_coefs(lrs, 3 * n, B1, B2, wd, True)
    r = B1 / np.sqrt(B2)
    rng = np.random.default_rng(7)
    pairs = [(0, 1), (0, n), (5, 6), (10, 450), (123, n), (599, n), (40, 690)]
    last = np.array([s for s, _ in pairs], dtype=np.int64)
    p = rng.standard_normal((len(pairs), 4)).astype(np.float32)
    u = rng.standard_normal((len(pairs), 4)).astype(np.float32)
    want = p.astype(np.float64).copy()
    for row, (s, t) in enumerate(pairs):
        alpha, beta = 1.0, 0.0
        for j in range(s + 1, t + 1):
            alpha *= coefs[1, j]
            beta = beta * coefs[1, j] + coefs[0, j] * r ** (j - s)
        want[row] = alpha * p[row] - beta * u[row]
        got, clock = p.copy(), last.copy()
        rows = np.array([row], dtype=np.int64)  # only this row is caught up, to its own T
        kernels._lazy_catch_up(got, u, rows, clock, t, coefs)
        np.testing.assert_allclose(got[row], want[row], rtol=2e-6, atol=1e-7)
        assert np.array_equal(np.delete(got, row, 0), np.delete(p, row, 0))
    # The catch-up did something: the long gaps moved their rows (decay and momentum).
    assert float(np.abs(want - p).max()) > 1e-3


@pytest.mark.parametrize("has_bias", [False, True])
def test_lazy_threaded_kernel_is_the_lazy_serial_kernel_bit_for_bit(has_bias: bool) -> None:
    # Lazy on one side only, the other swept densely, or on both: any thread count and any
    # split of the batches into calls give the serial kernel's bits.
    data = _sparse_data()
    n_batches = -(-len(data["perm"]) // data["bs"])
    for mask in (1, 2, 3):  # users only, items only (the other side dense), both
        want_total, want = _run(data, lazy=mask, has_bias=has_bias)
        for n_par, cuts in ((1, [0, n_batches]), (2, [0, 5, n_batches]), (3, [0, 1, 9, n_batches])):
            total, got = _run(data, lazy=mask, has_bias=has_bias, n_par=n_par, cuts=cuts)
            assert total == want_total, (mask, n_par)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"mask {mask}, {n_par} threads")


def _planted_fit(threads: int, lazy: bool, seed: int = 5) -> tuple[NeuralRecommender, Any]:
    # 600 users × 400 items at density 0.03: a batch of 256 with 4 negatives touches about
    # a third of the items, so rows are skipped.
    split = planted_implicit(2, n_users=600, n_items=400, density=0.03)
    model = create(
        "mf",
        {"loss": "bpr", "epochs": 15, "batch_size": 256, "n_factors": 16, "lr": 0.01,
         "verbose": False, "seed": seed, "num_threads": threads, "backend": "numba",
         "lazy_adam": lazy},
    )  # fmt: skip
    assert isinstance(model, NeuralRecommender)
    return model.fit(split.train), split


def test_lazy_bpr_fit_finds_planted_structure_like_the_dense_fit() -> None:
    lazy, split = _planted_fit(1, True)
    dense, _ = _planted_fit(1, False)
    chance = 10 / 400
    lazy_hits, dense_hits = hit_rate(lazy, split), hit_rate(dense, split)
    assert lazy_hits > 4 * chance
    assert abs(lazy_hits - dense_hits) < 0.05
    # Not the dense fit in disguise: the weights differ (ε), slightly.
    a = lazy.get_state()["module.inner.item_emb.weight"]
    b = dense.get_state()["module.inner.item_emb.weight"]
    assert not np.array_equal(a, b)
    np.testing.assert_allclose(a, b, atol=0.05 * float(np.abs(b).max()))


def test_lazy_bpr_fit_is_deterministic_and_the_same_at_two_threads() -> None:
    one, _ = _planted_fit(1, True)
    again, _ = _planted_fit(1, True)
    two, _ = _planted_fit(2, True)
    for key, value in one.get_state().items():
        np.testing.assert_array_equal(value, again.get_state()[key], err_msg=key)
        np.testing.assert_array_equal(value, two.get_state()[key], err_msg=key)


def test_auto_makes_lazy_only_the_sides_a_batch_touches_little_of() -> None:
    from recforge.train.fused_mf import LAZY_SHARE, lazy_sides

    # ml-latest-small under BPR (batches of 1024, 4 negatives): 610 users, 8,230 items, both
    # mostly touched by every batch: dense, as before the option existed.
    assert lazy_sides("auto", 610, 8230, 1024, 4) == 0
    # 100k users × 20k items: ~1% of the users a batch, ~23% of the items: users lazy only.
    assert lazy_sides("auto", 100_000, 20_000, 1024, 4) == 1
    # Both large: both lazy; the threshold is the expected touched share.
    assert lazy_sides("auto", 1_000_000, 1_000_000, 1024, 4) == 3
    edge = int(-1024 / np.log(1 - LAZY_SHARE))  # 1 − exp(−1024/rows) = LAZY_SHARE
    assert lazy_sides("auto", edge - 50, 10, 1024, 0) == 0
    assert lazy_sides("auto", edge + 50, 10, 1024, 0) == 1
    assert lazy_sides(True, 10, 10, 1024, 4) == 3
    assert lazy_sides(False, 10**7, 10**7, 1024, 4) == 0


def test_mf_and_biased_mf_default_to_auto_lazy_on_the_wide_side_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # mf's and biased_mf's default lazy_adam="auto": 600 users, batches of 32 (~5% of the users
    # a batch): the user side is lazy; 400 items with 4 negatives a row (~33% a batch): swept
    # densely. On the small planted data of the other tests nothing is lazy (their fits are the
    # dense ones).
    from recforge.train import fused_mf

    masks: list[int] = []
    real = fused_mf.FusedMFEpoch.run

    def spy(self: fused_mf.FusedMFEpoch, *args: Any) -> float:
        masks.append(self.lazy)
        return real(self, *args)

    monkeypatch.setattr(fused_mf.FusedMFEpoch, "run", spy)
    split = planted_implicit(2, n_users=600, n_items=400, density=0.03)
    base = {"loss": "bpr", "epochs": 1, "n_factors": 8, "verbose": False, "num_threads": 1}
    create("mf", {**base, "batch_size": 32}).fit(split.train)
    create("mf", {**base, "batch_size": 1024}).fit(split.train)
    create("biased_mf", {**base, "batch_size": 32}).fit(split.train)  # "auto" too (session 15)
    create("biased_mf", {**base, "batch_size": 32, "lazy_adam": False}).fit(split.train)
    assert masks == [1, 0, 1, 0]
