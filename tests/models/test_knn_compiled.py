"""The compiled cosine top-k of item/user-kNN gives the dense-block path's matrix exactly."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import recforge.models.knn as knn
from recforge.models import create
from recforge.testing import planted_implicit

from ._caps import force_picked_threads

pytestmark = pytest.mark.skipif(not knn._numba_available(), reason="numba is not installed")


def _matrix(seed: int, binary: bool) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    # Few columns: many equal co-counts, so ties at the k-th similarity are common.
    dense = (rng.random((70, 12)) < 0.35) * (1.0 if binary else rng.integers(1, 6, (70, 12)))
    dense[5] = 0.0  # an empty row: no neighbours
    return sp.csr_matrix(dense)


def _dense_block_path(
    values: sp.csr_matrix, monkeypatch: pytest.MonkeyPatch, **kw: Any
) -> sp.csr_matrix:
    with monkeypatch.context() as m:
        m.setattr(knn, "_numba_available", lambda: False)
        pattern = values.copy()
        pattern.data[:] = 1.0
        return knn.neighbour_similarities(values, pattern, restricted=False, chunk_size=16, **kw)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize(
    "options",
    [
        {"k": 5},
        {"k": 3, "shrinkage": 4.0, "min_support": 2, "min_similarity": 0.1},
        {"k": 200},  # more neighbours than rows
    ],
)
def test_compiled_cosine_equals_the_dense_block_path(
    binary: bool, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    values = _matrix(3, binary)
    pattern = values.copy()
    pattern.data[:] = 1.0
    got = knn.neighbour_similarities(values, pattern, restricted=False, **options)
    want = _dense_block_path(values, monkeypatch, **options)
    assert got.shape == want.shape
    assert np.array_equal(got.indptr, want.indptr)
    assert np.array_equal(got.indices, want.indices)
    assert np.array_equal(got.data, want.data)
    assert got.data.dtype == np.float32
    assert np.diff(got.indptr).max() <= options["k"]
    assert got.nnz > 0 and got.diagonal().sum() == 0  # self excluded


def _skewed_matrix(seed: int, kind: str) -> sp.csr_matrix:
    """300 rows over 60 columns of very unequal popularity: some rows meet fewer products than
    there are rows (the kernel's append path), others more (its count-then-scan path)."""
    rng = np.random.default_rng(seed)
    popularity = np.geomspace(0.6, 0.004, 60)
    mask = rng.random((300, 60)) < popularity
    if kind == "binary":
        dense = mask * 1.0
    elif kind == "signed":  # centred values: negative similarities, exact zeros
        dense = mask * (rng.integers(1, 6, (300, 60)) - 3.0)
    else:
        dense = mask * rng.integers(1, 6, (300, 60)) * 1.0
    return sp.csr_matrix(dense)


@pytest.mark.parametrize("kind", ["binary", "signed", "ratings"])
@pytest.mark.parametrize(
    "options",
    [
        {"k": 7},
        {"k": 25, "shrinkage": 10.0, "min_support": 2},
        {"k": 40, "min_similarity": 0.05},  # (the config keeps min_similarity >= 0)
    ],
)
def test_histogram_selection_on_both_accumulation_paths_equals_the_dense_block_path(
    kind: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The top k of each row is selected from the highest similarity-histogram buckets holding
    # k candidates: ties, bucket edges and both ways of collecting the touched rows must give
    # the dense-block path's matrix.
    values = _skewed_matrix(11, kind)
    products = values @ np.diff(values.T.tocsr().indptr)
    n = values.shape[0]
    assert (products <= n).any() and (products > n).any()
    pattern = values.copy()
    pattern.data[:] = 1.0
    got = knn.neighbour_similarities(values, pattern, restricted=False, **options)
    want = _dense_block_path(values, monkeypatch, **options)
    assert np.array_equal(got.indptr, want.indptr)
    assert np.array_equal(got.indices, want.indices)
    assert np.array_equal(got.data, want.data)
    assert np.diff(got.indptr).max() == options["k"]  # the cut really selected


def test_hand_computed_cosine_and_tie_rule() -> None:
    # Rows 1 and 2 both share one column with row 0 (cosine 1/sqrt(2)); k=1 keeps the lower.
    values = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float))
    sims = knn.neighbour_similarities(values, values, k=1, restricted=False)
    assert sims[0].indices.tolist() == [1]
    assert sims[0].data.tolist() == [pytest.approx(1 / np.sqrt(2))]
    assert sims[3].nnz == 0


def test_implicit_item_knn_skips_the_unused_bias_fit() -> None:
    split = planted_implicit(0, n_users=60, n_items=40, density=0.3)
    model = create("item_knn", {"feedback": "implicit", "k_neighbors": 10}).fit(split.train)
    assert not model.user_bias_.any() and not model.item_bias_.any()
    scores = model.score_items(np.arange(3))
    x = split.train.csr("binary")[:3]
    assert np.allclose(scores, (x @ model.similarity_).toarray(), atol=1e-6)


@pytest.mark.parametrize("n_threads", [2, 3])
def test_threaded_row_ranges_give_the_serial_matrix(
    n_threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rows are cut into 4 x threads ranges of equal cost, each computed in its own thread:
    # the concatenation must be the one-thread matrix, bit for bit.
    import torch

    from recforge.threads import threads

    n_ranges: list[int] = []

    # These matrices are far below the work that earns a second thread: force it (whichever
    # count the picker takes, the matrix must be the same; "alternate" also takes the
    # one-thread probe that runs a quarter of the ranges alone).
    import recforge.threads as threads_mod

    monkeypatch.setattr(threads_mod, "offered_threads", lambda work_ms, requested=None: requested)
    force_picked_threads(monkeypatch, knn, "alternate" if n_threads == 3 else "all")
    forced = knn.picked_map

    def spy(kernel: str, fn: Any, items: Any, *args: Any, **kwargs: Any) -> Any:
        n_ranges.append(len(items))
        return forced(kernel, fn, items, *args, **kwargs)

    monkeypatch.setattr(knn, "picked_map", spy)
    for binary in (True, False):
        values = _matrix(7, binary)
        with threads(1):
            serial = knn.neighbour_similarities(values, values, k=4, restricted=False)
        with threads(n_threads):
            assert torch.get_num_threads() == n_threads
            parallel = knn.neighbour_similarities(values, values, k=4, restricted=False)
        assert n_ranges[-2] == 1 and n_ranges[-1] > 1  # the threaded call really split the rows
        assert np.array_equal(parallel.indptr, serial.indptr)
        assert np.array_equal(parallel.indices, serial.indices)
        assert np.array_equal(parallel.data, serial.data)


def test_equal_cost_ranges_cover_every_row_once() -> None:
    from recforge.threads import equal_cost_ranges

    cost = np.random.default_rng(1).integers(1, 50, 70)
    bounds = equal_cost_ranges(cost, 8)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(cost)
    assert all(hi > lo for lo, hi in bounds)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert equal_cost_ranges(cost, 1) == [(0, len(cost))]
    assert equal_cost_ranges([], 4) == []


def test_a_small_matrix_runs_on_one_thread_whatever_the_thread_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # thread_picker: a few thousand products are far below PICK_MIN_MS_PER_THREAD per thread.
    import recforge.threads as threads_mod
    from recforge.threads import map_in_threads, threads

    workers: list[int] = []

    def spy(fn: Any, items: Any, n: int) -> Any:
        workers.append(n)
        return map_in_threads(fn, items, n)

    monkeypatch.setattr(threads_mod, "map_in_threads", spy)
    with threads(2):
        knn.neighbour_similarities(_matrix(7, True), _matrix(7, True), k=4, restricted=False)
    assert workers == [1]


@pytest.mark.parametrize("binary", [True, False])
def test_a_given_transpose_gives_the_same_matrix_and_a_wrong_one_is_not_used(
    binary: bool,
) -> None:
    values = _matrix(7, binary)
    want = knn.neighbour_similarities(values, values, k=4, restricted=False)
    t = values.T.tocsr()
    assert t.has_canonical_format
    got = knn.neighbour_similarities(values, values, k=4, restricted=False, values_t=t)
    for a, b in ((got.indptr, want.indptr), (got.indices, want.indices), (got.data, want.data)):
        assert np.array_equal(a, b)
    # Not usable (float32, or the wrong shape): ignored, the kernel transposes itself.
    for bad in (t.astype(np.float32), values):
        got = knn.neighbour_similarities(values, values, k=4, restricted=False, values_t=bad)
        assert np.array_equal(got.data, want.data) and np.array_equal(got.indices, want.indices)


def test_implicit_item_knn_fit_is_unchanged_by_the_shared_transposes() -> None:
    """The fit hands the user × item matrix to the kernel as the transpose: the similarity is
    the one computed from the item × user matrix alone."""
    data = planted_implicit(seed=2).train
    model = create("item_knn", k_neighbors=5, feedback="implicit").fit(data)
    values = data.csr("binary").astype(np.float64).T.tocsr()
    want = knn.neighbour_similarities(values, values, k=5, restricted=False)
    assert np.array_equal(model.similarity_.indices, want.indices)
    assert np.array_equal(model.similarity_.data, want.data)
    assert model._data_t is model._pattern_t  # implicit: one transpose serves both
    want_bin_t = model._sim_bin.T.tocsr()  # built from _sim_t's pattern instead
    for name in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(model._sim_bin_t, name), getattr(want_bin_t, name))
    assert model._sim_bin_t.data.dtype == want_bin_t.data.dtype


def test_the_work_estimate_is_the_summed_row_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    # Σ_j (column length)² + n, computed without the per-row costs, is their sum: the picker
    # keys its size classes on it, so the classes are those of the per-row formula.
    seen: list[float] = []

    def record(kernel: str, fn: Any, items: Any, costs: Any, work_ms: float, *_: Any) -> Any:
        seen.append(work_ms)
        return [fn(x) for x in items]

    monkeypatch.setattr(knn, "picked_map", record)
    values = _matrix(4, True)
    knn.neighbour_similarities(values, values, k=4, restricted=False)
    t = values.T.tocsr()
    row_of = np.repeat(np.arange(values.shape[0]), np.diff(values.indptr))
    cost = np.bincount(row_of, weights=np.diff(t.indptr)[values.indices], minlength=70) + 1.0
    assert seen == [float(cost.sum()) * knn._KNN_MS_PER_PRODUCT]
