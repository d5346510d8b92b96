"""select_top (torch.topk + exact fallback) picks exactly the documented top-k set."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.models._topk import _exact, select_top
from recforge.models.base import topk_rows


def _reference(scores: np.ndarray, k: int) -> list[set[int]]:
    # Stable sort by descending score: equal scores keep index order, so lower indices win.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [set(row.tolist()) for row in order]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("k", [1, 5, 37])
def test_select_top_matches_a_stable_sort_with_many_ties(dtype: type, k: int) -> None:
    rng = np.random.default_rng(k)
    # Integer-valued scores: ties everywhere, including at the cut in most rows.
    scores = rng.integers(0, 6, (200, 80)).astype(dtype)
    scores[::7, :50] = -np.inf  # excluded items straddling the cut in some rows
    got = select_top(scores, k)
    assert got.dtype == np.int64 and got.shape == (200, k)
    assert [set(r.tolist()) for r in got] == _reference(scores.astype(np.float64), k)


def test_select_top_without_ties_equals_argpartition_sets() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(64, 500)).astype(np.float32)
    got = [set(r.tolist()) for r in select_top(scores, 20)]
    assert got == [set(r.tolist()) for r in _exact(scores, 20)]


def test_select_top_reads_a_read_only_block_without_copying_it_back() -> None:
    scores = np.arange(30, dtype=np.float32).reshape(3, 10)[:, ::-1].copy()
    scores.flags.writeable = False
    np.testing.assert_array_equal(np.sort(select_top(scores, 2), axis=1), [[0, 1]] * 3)


def test_topk_rows_orders_ties_by_index() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0, 0.0]], dtype=np.float32)
    idx, val = topk_rows(scores, 3)
    assert idx.tolist() == [[1, 2, 4]] and val.tolist() == [[3.0, 3.0, 3.0]]
    idx, _ = topk_rows(scores, 4)
    assert idx.tolist() == [[1, 2, 4, 3]]


def _torch_path(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """topk_rows' torch path: select_top, then order by value, ties by index."""
    part = select_top(scores, k)
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 7, 60])
def test_compiled_topk_equals_the_torch_path_with_ties_and_exclusions(dtype: type, k: int) -> None:
    from recforge.models._topk_kernels import topk_block

    rng = np.random.default_rng(k)
    scores = rng.integers(0, 6, (150, 90)).astype(dtype)
    scores[::5, :70] = -np.inf  # fewer allowed items than k in some rows: -inf ties at the cut
    rows = len(scores)
    idx = np.empty((rows, k), np.int64)
    val = np.empty((rows, k), np.float32)
    nan = np.zeros(rows, bool)
    # Two row ranges (as two threads run them) give the one-range result.
    topk_block(scores, k, 0, 61, idx, val, nan)
    topk_block(scores, k, 61, rows, idx, val, nan)
    want_idx, want_val = _torch_path(scores, k)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(val, want_val.astype(np.float32))
    assert not nan.any()
    ref = np.argsort(-scores.astype(np.float64), axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(idx, ref)


def test_topk_rows_sends_nan_rows_to_the_torch_path_and_splits_rows_over_threads() -> None:
    import torch

    from recforge.threads import threads

    rng = np.random.default_rng(3)
    scores = rng.normal(size=(2000, 1500)).astype(np.float32)
    scores[5, 10] = np.nan
    with threads(1):
        one = topk_rows(scores, 40)
    with threads(2):
        assert torch.get_num_threads() == 2
        two = topk_rows(scores, 40)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    want_idx, want_val = _torch_path(scores, 40)
    np.testing.assert_array_equal(one[0], want_idx)
    np.testing.assert_array_equal(one[1], want_val)
