"""The one scores → ranked lists helper (rank_scores) and the public check_fitted."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.errors import NotFittedError
from recforge.models import create
from recforge.models.base import finite_scores, rank_scores, seen_cells

MAX = np.finfo(np.float32).max


def test_non_finite_scores_rank_last_but_are_kept() -> None:
    scores = np.array([[np.nan, 2.0, np.inf, -np.inf, 1.0]], dtype=np.float32)
    original = scores.copy()
    idx, val = rank_scores(scores, 5)
    # finite first (2.0 at 1, 1.0 at 4), then the three non-finite ones as -max, lower index first
    assert idx.tolist() == [[1, 4, 0, 2, 3]]
    np.testing.assert_array_equal(val, [[2.0, 1.0, -MAX, -MAX, -MAX]])
    np.testing.assert_array_equal(scores, original)  # the input is not modified
    assert finite_scores(scores).tolist() == [[-MAX, 2.0, -MAX, -MAX, 1.0]]


def test_excluded_items_and_cells_are_dropped_and_fill_minus_one() -> None:
    scores = np.array([[5.0, 4.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    not_candidates = np.array([False, True, False, False])
    cells = (np.array([0, 1, 1]), np.array([0, 3, 2]))
    idx, val = rank_scores(scores, 4, exclude_items=not_candidates, exclude=cells)
    assert idx.tolist() == [[2, 3, -1, -1], [0, -1, -1, -1]]
    assert val[0, :2].tolist() == [3.0, 2.0] and np.isneginf(val[0, 2:]).all()
    assert val[1, 0] == 1.0 and np.isneginf(val[1, 1:]).all()


def test_k_is_capped_at_the_catalogue_and_float64_is_kept_on_request() -> None:
    scores = np.array([[0.1, 0.1 + 1e-12, 0.3]])
    idx, _ = rank_scores(scores, 10)
    assert idx.shape == (1, 3)
    assert idx.tolist() == [[2, 0, 1]]  # float32: the two 0.1s tie, lower index first
    idx64, _ = rank_scores(scores, 10, dtype=np.float64)
    assert idx64.tolist() == [[2, 1, 0]]


def test_seen_cells_follow_the_requested_users() -> None:
    seen = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=np.float32))
    rows, cols = seen_cells(seen, np.array([2, 0]))
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 2),
    ]


def test_check_fitted_is_public() -> None:
    model = create("popularity")
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.check_fitted()
