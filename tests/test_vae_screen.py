"""Mult-VAE/DAE's served `because` in numpy (recforge.models._vae_screen) against the torch path.

The numpy screen must compute what the torch network computes: the same first-layer rows (bit
for bit), the same hidden layers and vector-Jacobian products (float32 rounding), weights equal
to the full occlusion's where it occludes, and a second screen that only drops rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import recforge.models.vae as vae
from recforge.models import _vae_screen
from recforge.models.registry import create
from recforge.testing import planted_explicit, planted_implicit

_FITTED: dict[str, Any] = {}


def _model(name: str, config: dict[str, Any], explicit: bool = False) -> Any:
    key = f"{name}{sorted(config.items())}{explicit}"
    if key not in _FITTED:
        data = planted_explicit(0) if explicit else planted_implicit(0)
        _FITTED[key] = create(name, config).fit(data.train)
    return _FITTED[key]


@pytest.mark.parametrize("variational", [True, False])
@pytest.mark.parametrize("hidden", [(16, 12), (), (10,)])
def test_numpy_layers_and_vjp_are_the_networks(variational: bool, hidden: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = vae.MultVAENet(40, hidden, 6, variational=variational).eval()
    lay = _vae_screen.numpy_net(net)
    width = hidden[0] if hidden else (12 if variational else 6)
    pre = torch.randn(4, width)
    with torch.no_grad():
        want = net.decode_hidden(net.encode_from_first(pre)[0]).numpy()
    # The reference vector-Jacobian product: autograd through the torch layers.
    cot = torch.randn(5, want.shape[1])
    x = pre[:1].expand(5, -1).clone().requires_grad_(True)
    (grad_t,) = torch.autograd.grad(net.decode_hidden(net.encode_from_first(x)[0]), x, cot)
    grad_t = grad_t.numpy()
    got = _vae_screen.forward(lay.steps, pre.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    h_n, vjp_n = _vae_screen.forward_and_vjp(lay.steps, pre[:1].numpy())
    np.testing.assert_allclose(h_n, want[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vjp_n(cot.numpy()), grad_t, rtol=1e-4, atol=1e-6)
    assert float(np.abs(grad_t).max()) > 1e-3
    # The weight and bias of the last layer and the item-major first layer, as the module's.
    np.testing.assert_array_equal(lay.w1_items, net.encoder[0].weight.detach().numpy().T)
    np.testing.assert_array_equal(lay.w_last, net.decoder[-1].weight.detach().numpy())
    np.testing.assert_array_equal(lay.w_last_t, lay.w_last.T)
    assert lay.w_last_t.flags.c_contiguous
    for kind, a, _ in lay.steps:
        if kind == "linear":
            np.testing.assert_array_equal(a[1], a[0].T)
            assert a[1].flags.c_contiguous


@pytest.mark.parametrize(
    ("config", "explicit", "stars"),
    [
        ({"epochs": 2}, False, None),
        ({"epochs": 2, "positive_threshold": 4.0}, True, [5, 2, 4, 1, 5, 3, 4, 5, 2, 4]),
    ],
)
def test_first_layer_rows_are_the_torch_rows_bit_for_bit(
    config: dict[str, Any], explicit: bool, stars: list[int] | None
) -> None:
    model = _model("mult_vae", config, explicit)
    idx = np.array([7, 3, 11, 0, 25, 9, 14, 2, 30, 5], dtype=np.int64)
    vals = np.ones(len(idx), np.float32) if stars is None else np.asarray(stars, np.float32)
    kept = model._first_layer_kept(idx, vals)
    assert kept is not None
    assert kept.all() == (stars is None)
    parts = _vae_screen.first_layer(model._numpy_net(), idx, None if kept.all() else kept)
    got = parts.rows(np.arange(len(idx) + 1))
    with torch.no_grad():
        want = model._drop_one_pre(idx, vals).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    # The screen's products without the rows equal the products of the rows (float32).
    g = np.random.default_rng(0).normal(size=(3, got.shape[1])).astype(np.float32)
    np.testing.assert_allclose(parts.screen(g), (want[1:] - want[:1]) @ g.T, rtol=0, atol=2e-5)


def test_numpy_layers_follow_weight_changes() -> None:
    model = _model("mult_dae", {"epochs": 2})
    first = model._numpy_net()
    assert model._numpy_net() is first  # cached while the weights stay
    last = model._net().decoder[-1]
    with torch.no_grad():
        last.bias.add_(1.0)  # an in-place change bumps the tensor's version
    try:
        again = model._numpy_net()
        assert again is not first
        np.testing.assert_allclose(again.b_last, first.b_last + 1.0, rtol=0, atol=1e-6)
    finally:
        with torch.no_grad():
            last.bias.sub_(1.0)


@pytest.mark.parametrize("name", ["mult_vae", "mult_dae"])
def test_second_screen_only_drops_rows(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second screen occludes fewer rows than the first keeps, with the same weights where
    both occlude, the full occlusion's weights, and the full path's `because` lists."""
    model = _model(name, {"epochs": 3})
    rng = np.random.default_rng(3)
    cut = 0
    for size in (30, 40):
        idx = rng.choice(model.n_items, size=size, replace=False).astype(np.int64)
        vals = np.ones(size, np.float32)
        targets = rng.choice(model.n_items, size=10, replace=False).astype(np.int64)
        default = model.explain_history_top(idx, vals, targets, 3)
        monkeypatch.setattr(vae, "_refine_rows", lambda n: 10_000)
        wide = model.explain_history_top(idx, vals, targets, 3)
        monkeypatch.undo()
        full = model.explain_history(idx, vals, targets)[1]
        shown = np.isfinite(default)
        assert (shown <= np.isfinite(wide)).all()
        cut += int(np.isfinite(wide).sum() - shown.sum())
        np.testing.assert_allclose(default[shown], wide[shown], rtol=0, atol=1e-7)
        np.testing.assert_allclose(default[shown], full[shown], rtol=0, atol=1e-6)
        for row_d, row_f in zip(default, full, strict=True):
            top_d = np.argsort(-np.where(row_d > 0, row_d, -np.inf), kind="stable")[:3]
            top_f = np.argsort(-np.where(row_f > 0, row_f, -np.inf), kind="stable")[:3]
            assert top_d[row_d[top_d] > 0].tolist() == top_f[row_f[top_f] > 0].tolist()
    assert cut > 0  # the second screen left rows out


@pytest.mark.parametrize(
    ("name", "config", "explicit"),
    [
        ("mult_vae", {"epochs": 2}, False),
        ("mult_dae", {"epochs": 2}, False),
        ("mult_vae", {"epochs": 2, "positive_threshold": 4.0}, True),
        ("mult_dae", {"epochs": 2, "recency_tau": 5.0}, True),
    ],
)
def test_one_user_fold_in_is_the_batch_path_bit_for_bit(
    name: str, config: dict[str, Any], explicit: bool
) -> None:
    """fold_in_scores' direct binary row gives fold_in_scores_batch's scores exactly: every
    item kept, a threshold with and without positives, repeats and recency (the batch path)."""
    import scipy.sparse as sp

    model = _model(name, config, explicit)
    histories = [
        ([4, 9, 17, 2], [5.0, 1.0, 4.0, 2.0]),
        ([4, 9, 17], [1.0, 2.0, 3.0]),  # no rating reaches a threshold: all count
        ([4, 9, 4, 30], [2.0, 2.0, 3.0, 5.0]),  # a repeated item
        ([], []),
        ([11], [5.0]),
    ]
    for items, stars in histories:
        idx = np.asarray(items, dtype=np.int64)
        vals = np.asarray(stars, dtype=np.float32)
        row = sp.csr_matrix((vals, idx, np.array([0, len(idx)])), shape=(1, model.n_items))
        want = model.fold_in_scores_batch(row)[0]
        got = model.fold_in_scores(idx, vals)
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_screened_because_from_several_threads_is_the_sequential_one() -> None:
    """The service explains from worker threads at once: the cached numpy layers are shared
    read-only, so concurrent calls give each history its sequential answer."""
    from concurrent.futures import ThreadPoolExecutor

    model = _model("mult_vae", {"epochs": 2})
    model.__dict__.pop("_numpy_layers", None)  # every thread may race to build the cache
    rng = np.random.default_rng(7)
    jobs = []
    for _ in range(12):
        size = int(rng.integers(12, 40))
        idx = rng.choice(model.n_items, size=size, replace=False).astype(np.int64)
        targets = rng.choice(model.n_items, size=10, replace=False).astype(np.int64)
        jobs.append((idx, np.ones(size, np.float32), targets))
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda j: model.explain_history_top(*j, 3), jobs * 3))
    for job, got in zip(jobs * 3, together, strict=True):
        alone = model.explain_history_top(*job, 3)
        # (BLAS may split a product differently when called from several threads: rounding.)
        assert (np.isfinite(got) == np.isfinite(alone)).all()
        np.testing.assert_allclose(got[np.isfinite(got)], alone[np.isfinite(alone)], atol=1e-6)


@pytest.mark.parametrize("name", ["mult_vae", "mult_dae"])
def test_ranking_from_the_screens_pass_is_the_models_ranking(name: str) -> None:
    """`rank_history_top` (the served ranking read off the explanation's own forward pass):
    the same top-k as `recommend_idx`, scores equal to float32 rounding, and the weights that
    `explain_history_top` gives for that list, bit for bit."""
    from recforge.explain import history_of

    model = _model(name, {"epochs": 3})
    checked = 0
    for u in range(model.n_users):
        items, ratings = history_of(model, u)
        seen = model.seen_.indices[model.seen_.indptr[u] : model.seen_.indptr[u + 1]]
        got = model.rank_history_top(items, ratings, 10, seen, 3)
        if len(items) <= vae._screen_rows(3):
            continue  # explained in full, no screen (test_short_histories_rank_and_explain_in_full)
        assert got is not None
        top, scores, weights = got
        want_idx, want_val = model.recommend_idx(np.asarray([u]), 10, exclude_seen=True)
        np.testing.assert_array_equal(top, want_idx[0])
        np.testing.assert_allclose(scores, want_val[0], rtol=0, atol=1e-5)
        alone = model.explain_history_top(items, ratings, top[top >= 0], 3)
        np.testing.assert_array_equal(weights, alone)
        # Not excluding: the history's items may rank, and still only unseen ones are shown
        # by the default path when asked to exclude.
        top_all, _, _ = model.rank_history_top(items, ratings, 10, np.zeros(0, np.int64), 3)
        np.testing.assert_array_equal(
            top_all, model.recommend_idx(np.asarray([u]), 10, exclude_seen=False)[0][0]
        )
        checked += 1
        if checked == 25:
            break
    assert checked == 25


@pytest.mark.parametrize("name", ["mult_vae", "mult_dae"])
def test_short_histories_rank_and_explain_in_full(name: str) -> None:
    """A history too short to screen (a new user's few likes): one pass gives the fold-in's
    ranking (scores to float32 rounding) and the full drop-one weights of its items."""
    from recforge.explain import history_of

    model = _model(name, {"epochs": 3})
    for u in range(10):
        items, ratings = history_of(model, u)
        items, ratings = items[:6], ratings[:6]
        got = model.rank_history_top(items, ratings, 10, items, 3, new_user=True)
        assert got is not None
        top, scores, weights = got
        want = model.fold_in_scores(items, ratings).astype(np.float64)
        want[items] = -np.inf
        order = np.argsort(-want, kind="stable")[:10]
        np.testing.assert_array_equal(top, order)
        np.testing.assert_allclose(scores, want[order], rtol=0, atol=1e-5)
        np.testing.assert_allclose(
            weights, model.explain_history(items, ratings, top)[1], atol=1e-9
        )


def test_ranking_from_the_screens_pass_declines_other_input_rows() -> None:
    """With a threshold the encoder's input is not the binary history: the fused path says
    None and the service ranks and explains separately."""
    model = _model("mult_dae", {"epochs": 2, "positive_threshold": 4.0}, explicit=True)
    from recforge.explain import history_of

    u = int(np.argmax(np.diff(model.seen_.indptr)))
    items, ratings = history_of(model, u)
    assert model.rank_history_top(items, ratings, 10, items, 3) is None
