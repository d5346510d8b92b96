"""recforge.index: exact search against brute force, ANN recall, seen-item filtering."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.errors import ConfigError
from recforge.index import ItemIndex, recall_at_k


def _catalogue(n: int = 3000, d: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, d))
    return (centres[rng.integers(0, 30, n)] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)


def test_exact_matches_brute_force_order_and_scores() -> None:
    vecs = _catalogue(500, 8)
    q = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    idx, val = ItemIndex(vecs, mode="exact").search(q, 7)
    full = q @ vecs.T
    expect = np.argsort(-full, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(idx, expect)
    np.testing.assert_allclose(val, np.take_along_axis(full, expect, 1), rtol=1e-6)


def test_hand_computed_tiny_index() -> None:
    vecs = np.array([[1, 0], [0, 1], [2, 0], [-1, 0]], dtype=np.float32)
    idx, val = ItemIndex(vecs, mode="exact").search(np.array([1.0, 0.1]), 3)
    assert idx.tolist() == [[2, 0, 1]]
    np.testing.assert_allclose(val, [[2.0, 1.0, 0.1]], rtol=1e-6)


def test_exact_ties_across_the_cut_go_to_the_lower_index() -> None:
    # 40 items share the top score: the first k by index must be returned, as Recommender's
    # ranking does (argpartition alone picks an arbitrary subset of a tie straddling the cut).
    vecs = np.zeros((200, 2), np.float32)
    vecs[:, 0] = 1.0
    vecs[::5, 0] = 0.5
    tied = np.flatnonzero(vecs[:, 0] == 1.0)
    idx, val = ItemIndex(vecs, mode="exact").search(np.array([1.0, 0.0]), 7)
    assert idx.tolist() == [tied[:7].tolist()]
    np.testing.assert_allclose(val, 1.0)


@pytest.mark.parametrize("mode", ["exact", "hnsw", "ivf"])
def test_excluded_items_filtered_and_k_still_returned(mode: str) -> None:
    vecs = _catalogue()
    q = np.random.default_rng(2).normal(size=(4, 16)).astype(np.float32)
    index = ItemIndex(vecs, mode=mode)  # type: ignore[arg-type]
    top, _ = ItemIndex(vecs, mode="exact").search(q, 50)
    exclude = [top[r, :40] for r in range(4)]  # hide most of each true top list
    idx, val = index.search(q, 10, exclude=exclude)
    assert idx.shape == (4, 10)
    assert (idx >= 0).all() and np.isfinite(val).all()
    for r in range(4):
        assert not set(idx[r].tolist()) & set(exclude[r].tolist())
    if mode == "exact":
        np.testing.assert_array_equal(idx, top[:, 40:50])


def test_one_query_takes_the_same_answer_as_a_batch() -> None:
    """A served request searches one query through a shortcut; the answer must not change."""
    vecs = _catalogue(400, 8)
    index = ItemIndex(vecs, mode="exact")
    rng = np.random.default_rng(4)
    q = rng.normal(size=(6, 8)).astype(np.float32)
    exclude = [rng.choice(400, size=int(rng.integers(0, 60)), replace=False) for _ in range(6)]
    b_idx, b_val = index.search(q, 12, exclude=exclude)  # the batched path
    for r in range(6):
        one_idx, one_val = index.search(q[r], 12, exclude=[exclude[r]])
        np.testing.assert_array_equal(one_idx[0], b_idx[r])
        # the scores: one BLAS gemv against a gemm's rows, equal to the last bit or so
        np.testing.assert_allclose(one_val[0], b_val[r], rtol=1e-6)
    # more asked than left after the exclusions: the same padding
    many = np.arange(395)
    idx, val = index.search(q[0], 8, exclude=[many])
    assert idx[0, :5].tolist() == sorted(
        set(range(400)) - set(many.tolist()), key=lambda i: -(q[0] @ vecs[i])
    )
    assert idx[0, 5:].tolist() == [-1, -1, -1] and np.isneginf(val[0, 5:]).all()


def test_everything_excluded_pads_with_minus_one() -> None:
    vecs = np.eye(3, dtype=np.float32)
    idx, val = ItemIndex(vecs, mode="exact").search(np.ones(3), 5, exclude=[np.array([0, 2])])
    assert idx.tolist() == [[1, -1, -1]]
    assert np.isneginf(val[0, 1:]).all()


def test_hnsw_recall_and_auto_mode() -> None:
    vecs = _catalogue(5000, 16)
    q = np.random.default_rng(3).normal(size=(200, 16)).astype(np.float32)
    exact, _ = ItemIndex(vecs, mode="exact").search(q, 10)
    ann = ItemIndex(vecs, mode="auto", ann_threshold=1000)
    assert ann.mode == "hnsw"
    approx, scores = ann.search(q, 10)
    assert recall_at_k(approx, exact) >= 0.95
    # Scores are exact inner products of the returned items, best first.
    np.testing.assert_allclose(
        scores, np.einsum("bd,bkd->bk", q, vecs[approx]), rtol=1e-5, atol=1e-5
    )
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    assert ItemIndex(vecs, mode="auto").mode == "exact"


def test_recall_at_k_hand_computed() -> None:
    assert recall_at_k(np.array([[1, 2, 3], [4, 5, 6]]), np.array([[1, 2, 9], [7, 8, 9]])) == (
        pytest.approx(1 / 3)
    )


@pytest.mark.parametrize(
    ("vectors", "kwargs"),
    [
        (np.zeros((0, 3)), {}),
        (np.array([[np.nan, 1.0]]), {}),
        (np.ones((3, 2)), {"mode": "lsh"}),
    ],
)
def test_bad_inputs_raise_config_error(vectors: np.ndarray, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ItemIndex(vectors, **kwargs)  # type: ignore[arg-type]


def test_bad_query_dimension_and_k() -> None:
    index = ItemIndex(np.ones((3, 2)), mode="exact")
    with pytest.raises(ConfigError, match="dimension"):
        index.search(np.ones(3), 2)
    with pytest.raises(ConfigError, match="k must be"):
        index.search(np.ones(2), 0)
