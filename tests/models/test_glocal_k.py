"""GLocal-K: the local kernel, the global convolution and the two-stage fit (hand-computed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.glocal_k import GLocalK, KernelLinear, convolve_rows, local_kernel
from recforge.models.registry import create
from recforge.train.rows import CSRRows


def test_local_kernel_values() -> None:
    u = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    v = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 2.0]])
    # 1 - squared distance, floored at 0: u0-v0 = 0 -> 1; u0-v1 = .25 -> .75; u1-v2 = 5 -> 0.
    want = torch.tensor([[1.0, 0.75, 0.0], [0.0, 0.75, 0.0]])
    torch.testing.assert_close(local_kernel(u, v), want)


def test_kernel_linear_gates_weights() -> None:
    layer = KernelLinear(2, 3, 2)
    with torch.no_grad():
        layer.u.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
        layer.v.copy_(torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 2.0]]))
        layer.W.fill_(2.0)
        layer.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    x = torch.tensor([[1.0, 1.0]])
    # W ⊙ K = [[2, 1.5, 0], [0, 1.5, 0]] -> x·(W⊙K) + b = [2, 4, -1].
    torch.testing.assert_close(layer(x), torch.tensor([[2.0, 4.0, -1.0]]))
    torch.testing.assert_close(layer.weight, (layer.W * layer.kernel()).T)


def test_convolve_rows_matches_a_dense_same_convolution() -> None:
    rng = np.random.default_rng(0)
    dense = rng.integers(0, 6, size=(6, 5)).astype(np.float32) * (rng.random((6, 5)) < 0.6)
    kernel = torch.tensor([[0.1, -0.2, 0.3], [0.5, 1.0, -0.4], [0.0, 0.2, 0.1]])
    rows = CSRRows(sp.csr_matrix(dense))
    got, centre, mask = convolve_rows(rows, torch.tensor([0, 3, 5]), kernel)
    # Reference: zero-padded cross-correlation of the whole matrix, then relu.
    pad = np.pad(dense, 1)
    ref = np.zeros_like(dense)
    for i in range(6):
        for j in range(5):
            ref[i, j] = float((pad[i : i + 3, j : j + 3] * kernel.numpy()).sum())
    np.testing.assert_allclose(got.numpy(), np.maximum(ref, 0)[[0, 3, 5]], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(centre.numpy(), dense[[0, 3, 5]])
    np.testing.assert_array_equal(mask.numpy(), dense[[0, 3, 5]] != 0)


def _ratings(seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, 40, 600), rng.integers(0, 30, 600)
    r = np.clip(np.round(3 + (u % 3) - (i % 2) + rng.normal(0, 0.3, 600)), 1, 5)
    frame = pd.DataFrame({"user_id": u, "item_id": i, "rating": r}).drop_duplicates(
        ["user_id", "item_id"]
    )
    return Interactions.from_frame(frame, rating_scale=(1.0, 5.0), source="synthetic")


def test_fine_tuning_fixes_the_global_kernel_and_changes_the_input_rows() -> None:
    data = _ratings()
    cfg = {"hidden": [16], "epochs": 3, "fine_epochs": 2, "batch_size": 8, "verbose": False}
    model = create("glocal_k", cfg).fit(data)
    assert isinstance(model, GLocalK)
    gk = model._glk().global_kernel
    assert gk.shape == (3, 3) and float(gk.abs().sum()) > 0
    assert list(model.history_["stage"]) == ["pre"] * 3 + ["fine"] * 2
    # Scoring reads relu(conv2d(R, G)), not R.
    assert not np.allclose(model._row_matrix().toarray(), model.ratings_.T.toarray())
    pre_only = create("glocal_k", {**cfg, "fine_epochs": 0}).fit(data)
    assert float(pre_only._glk().global_kernel.abs().sum()) == 0.0
    np.testing.assert_array_equal(pre_only._row_matrix().toarray(), pre_only.ratings_.T.toarray())


def test_even_global_kernel_is_refused() -> None:
    with pytest.raises(ConfigError, match="gk_size"):
        create("glocal_k", {"gk_size": 4})


def test_autorec_presets_do_not_leak_into_glocal_k() -> None:
    cfg = create("glocal_k").config
    assert tuple(cfg.hidden) == (500, 500) and cfg.reg == 70.0  # type: ignore[attr-defined]
