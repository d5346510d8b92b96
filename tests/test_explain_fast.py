"""Closed-form occlusion paths equal the reference drop-one fold-ins, and are deterministic.

The reference is :func:`recforge.explain.occlusion`: ``|H| + 1`` fold-ins through
``fold_in_scores_batch``. The fast paths (Mult-VAE/DAE's rank-one first layer, I-AutoRec's
leave-one-out ridge, U-AutoRec's rank-one first layer) must give the same scores and weights up
to float32 rounding of the network's outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.explain import drop_one_products, drop_one_rows, occlusion
from recforge.models.base import Recommender
from recforge.models.registry import create
from recforge.testing import planted_explicit, planted_implicit

#: (registry name, config, explicit data): every family with its own occlusion path, and the
#: configurations that send it down each branch (threshold, recency, output activation).
CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("mult_vae", {"epochs": 3}, False),
    ("mult_dae", {"epochs": 3}, False),
    ("mult_vae", {"epochs": 3, "positive_threshold": 4.0}, True),
    ("mult_dae", {"epochs": 3, "recency_tau": 5.0}, True),
    ("autorec", {"epochs": 3}, True),
    ("autorec", {"epochs": 3, "output_activation": "relu"}, True),
    ("autorec", {"epochs": 3, "variant": "user"}, True),
]

_FITTED: dict[str, Recommender] = {}


def _model(name: str, config: dict[str, Any], explicit: bool) -> Recommender:
    key = f"{name}{sorted(config.items())}{explicit}"
    if key not in _FITTED:
        data = planted_explicit(0) if explicit else planted_implicit(0)
        _FITTED[key] = create(name, config).fit(data.train)
    return _FITTED[key]


def _rows(model: Recommender, histories: list[tuple[np.ndarray, np.ndarray]]) -> sp.csr_matrix:
    ind = np.concatenate([h[0] for h in histories]).astype(np.int32)
    dat = np.concatenate([h[1] for h in histories]).astype(np.float32)
    ptr = np.concatenate([[0], np.cumsum([len(h[0]) for h in histories])])
    return sp.csr_matrix((dat, ind, ptr), shape=(len(histories), model.n_items))


def _histories(model: Recommender, explicit: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Three new users (timeline order as drawn), one of them with a single rating."""
    rng = np.random.default_rng(1)
    out = []
    for size in (12, 30, 1):
        idx = rng.choice(model.n_items, size=size, replace=False).astype(np.int64)
        vals = rng.integers(1, 6, size=size) if explicit else np.ones(size)
        out.append((idx, vals.astype(np.float32)))
    return out


def _pairs(model: Recommender, rows: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    row_of = np.repeat(np.arange(rows.shape[0]), 4)
    targets = rng.choice(model.n_items, size=len(row_of), replace=True).astype(np.int64)
    return row_of, targets


@pytest.mark.parametrize(("name", "config", "explicit"), CASES)
def test_fast_occlusion_equals_the_drop_one_fold_ins(
    name: str, config: dict[str, Any], explicit: bool
) -> None:
    model = _model(name, config, explicit)
    assert type(model).explain_rows is not Recommender.explain_rows
    rows = _rows(model, _histories(model, explicit))
    row_of, targets = _pairs(model, rows)
    fast = model.explain_rows(rows, row_of, targets)
    ref = occlusion(model, rows, row_of, targets)
    assert fast.method == ref.method == "occlusion"
    scale = max(1.0, float(np.abs(ref.score).max()))
    np.testing.assert_allclose(fast.score, ref.score, rtol=0, atol=2e-6 * scale)
    for w_fast, w_ref in zip(fast.weights, ref.weights, strict=True):
        assert w_fast.shape == w_ref.shape
        np.testing.assert_allclose(w_fast, w_ref, rtol=0, atol=4e-6 * scale)
    # Not vacuous: the history moves these scores.
    assert max(float(np.abs(w).max()) for w in ref.weights) > 1e-4


@pytest.mark.parametrize(("name", "config", "explicit"), CASES[:1] + CASES[4:5] + CASES[6:])
def test_fast_occlusion_is_deterministic(name: str, config: dict[str, Any], explicit: bool) -> None:
    model = _model(name, config, explicit)
    rows = _rows(model, _histories(model, explicit))
    row_of, targets = _pairs(model, rows)
    first = model.explain_rows(rows, row_of, targets)
    again = model.explain_rows(rows, row_of, targets)
    assert np.array_equal(first.score, again.score)
    assert all(np.array_equal(a, b) for a, b in zip(first.weights, again.weights, strict=True))


def test_known_user_explanation_matches_the_reference() -> None:
    model = _model("mult_vae", {"epochs": 3}, False)
    uid = model.users_.ids[3]
    item = model.recommend(uid, k=1)[0].item_ids[0]
    exp = model.explain(uid, item, k=50)
    u = int(model.users_.index_one(uid))
    lo, hi = int(model.seen_.indptr[u]), int(model.seen_.indptr[u + 1])
    order = np.argsort(model.seen_order_[lo:hi], kind="stable")
    idx = model.seen_.indices[lo:hi][order].astype(np.int64)
    t = int(model.items_.index_one(item))
    full = float(model.fold_in_scores(idx, np.ones(len(idx), np.float32))[t])
    assert exp.raw_score == pytest.approx(full, abs=1e-5)
    for c in exp.contributions:
        keep = idx != model.items_.index_one(c.item_id)
        drop = full - float(
            model.fold_in_scores(idx[keep], np.ones(int(keep.sum()), np.float32))[t]
        )
        assert c.weight == pytest.approx(drop, abs=1e-5)


def test_drop_one_products_equal_the_dense_products() -> None:
    rng = np.random.default_rng(0)
    import torch

    weight = torch.as_tensor(rng.normal(size=(7, 20)), dtype=torch.float32)
    idx = np.array([4, 9, 1, 17, 3], np.int64)
    vals = np.array([1.0, 0.5, 2.0, 1.5, 0.25], np.float32)
    block = drop_one_rows(idx, vals, 20)
    assert block.shape == (6, 20)
    dense = block.toarray().astype(np.float64)
    assert np.array_equal(dense[0, idx], vals.astype(np.float64))
    for m in range(5):
        assert dense[1 + m, idx[m]] == 0 and np.count_nonzero(dense[1 + m]) == 4
    # Rows that differ from row 0 in more than one entry (recency weights) are exact too.
    block = sp.csr_matrix(block)
    block.data = block.data * rng.uniform(0.5, 1.5, size=block.nnz).astype(np.float32)
    expect = block.toarray().astype(np.float64) @ weight.double().numpy().T
    got = drop_one_products(block, weight).numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-12)


#: Blend's batched fold-in: every member's batch, blended (the occlusion reference's one call).
BATCHED: list[tuple[str, dict[str, Any], bool]] = [
    (
        "blend",
        {
            "members": [
                {"model": "biases"},
                {"model": "user_knn", "config": {"similarity": "pearson_baseline"}},
                {"model": "autorec", "config": {"epochs": 2}},
            ]
        },
        True,
    ),
]


@pytest.mark.parametrize(("name", "config", "explicit"), BATCHED)
def test_batched_fold_in_equals_one_user_at_a_time(
    name: str, config: dict[str, Any], explicit: bool
) -> None:
    model = _model(name, config, explicit)
    histories = _histories(model, explicit)[:2]
    # Repeated items and the drop-one rows of an explanation, as the occlusion reference sends.
    idx, vals = histories[0]
    histories.append((np.concatenate([idx, idx[:2]]), np.concatenate([vals, vals[:2]])))
    rows = sp.vstack([_rows(model, histories), drop_one_rows(idx, vals, model.n_items)]).tocsr()
    batch = model.fold_in_scores_batch(rows)
    for r in range(rows.shape[0]):
        lo, hi = rows.indptr[r], rows.indptr[r + 1]
        alone = model.fold_in_scores(rows.indices[lo:hi].astype(np.int64), rows.data[lo:hi])
        np.testing.assert_allclose(batch[r], alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "config", "explicit"),
    [*CASES[:4], ("mult_vae", {"epochs": 3, "hidden": [32, 16], "latent": 8}, False)],
)
def test_screened_because_is_the_full_explanations_because(
    name: str, config: dict[str, Any], explicit: bool
) -> None:
    """Mult-VAE/DAE's served `because` occludes only the history rows its first-order screen
    keeps; the lists must be the full path's, with its weights, for every user (30-40 item
    histories: past the screen's 8 rows per target) and n."""
    from recforge.explain import because_idx, explain_items
    from recforge.models.vae import _screen_rows

    model = _model(name, config, explicit)
    rng = np.random.default_rng(5)
    items = model.items_.ids
    screened = 0
    for size in (30, 40, 35):
        pick = rng.choice(len(items), size=size, replace=False)
        stars = rng.integers(1, 6, size=size) if explicit else np.full(size, 5)
        user = {items[j]: float(s) for j, s in zip(pick.tolist(), stars.tolist(), strict=True)}
        targets = rng.choice(len(items), size=10, replace=False).astype(np.int64)
        exps = explain_items(model, user, items[targets].tolist(), k=len(items))
        for n in (1, 3):
            got = because_idx(model, user, targets, n)
            for exp, listed in zip(exps, got, strict=True):
                want = exp.because(n)
                assert [int(model.items_.index_one(c.item_id)) for c in want] == [
                    j for j, _ in listed
                ]
                np.testing.assert_allclose(
                    [w for _, w in listed], [c.weight for c in want], rtol=0, atol=1e-6
                )
        hist_len = len(model._fold_in_inputs(user)[0])
        top = model.explain_history_top(  # type: ignore[attr-defined]
            *model._fold_in_inputs(user), targets, 3
        )
        screened += hist_len > _screen_rows(3) and bool(np.isinf(top).any())
    assert screened  # the screen ran (some rows were left out), not only the full path


def test_screened_because_of_a_short_history_is_the_full_path() -> None:
    model = _model("mult_vae", {"epochs": 3}, False)
    idx = np.arange(6, dtype=np.int64)
    vals = np.ones(6, np.float32)
    targets = np.arange(10, 20, dtype=np.int64)
    top = model.explain_history_top(idx, vals, targets, 3)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(top, model.explain_history(idx, vals, targets)[1])


# ------------------------------------------ found by mutation testing (models/base.py, fourth step)
@pytest.mark.parametrize(("name", "config", "explicit"), [CASES[0], CASES[4]])
def test_default_explain_history_is_explain_rows_of_its_history(
    name: str, config: dict[str, Any], explicit: bool
) -> None:
    """The base class's one-history form gives explain_rows' answer for that history as a
    catalogue-wide row, as float64; no targets give empty weights of the history's width."""
    model = _model(name, config, explicit)
    idx = np.array([3, 0, 17], dtype=np.int64)
    vals = np.array([5.0, 2.0, 4.0] if explicit else [1.0, 1.0, 1.0], dtype=np.float32)
    targets = np.array([1, 40, 7], dtype=np.int64)
    score, weights = model.explain_history(idx, vals, targets)
    attr = model.explain_rows(_rows(model, [(idx, vals)]), np.zeros(3, np.int64), targets)
    np.testing.assert_array_equal(score, attr.score)
    np.testing.assert_array_equal(weights, np.stack(attr.weights))
    assert weights.dtype == np.float64 and weights.shape == (3, 3)
    none_score, none_weights = model.explain_history(idx, vals, np.array([], dtype=np.int64))
    assert none_score.shape == (0,) and none_weights.shape == (0, 3)
    assert none_weights.dtype == np.float64
