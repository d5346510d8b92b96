"""Neighbourhood models: item-based and user-based k-nearest-neighbour collaborative filtering.

Both models keep a **sparse top-k similarity matrix** ``S`` (CSR): row ``a`` holds the
``k_neighbors`` most similar rows ``b`` (items for item-kNN, users for user-kNN) with positive
similarity. It is computed in row blocks: each block's similarities to all rows come from sparse
products (``V_c Vᵀ``), are truncated to the top ``k`` per row and stored, so memory is bounded by
``chunk_size × n_rows`` dense floats, never ``n_rows²``. With numba installed, ``cosine`` takes a
compiled sparse accumulator instead (:mod:`recforge.models._knn_kernels`): the same matrix, with
work proportional to the co-occurrences rather than ``n_rows²``.

Similarities (``V`` holds one row per item for item-kNN, one per user for user-kNN; ``C(a, b)`` is
the set of co-raters, i.e. the users who rated both items, or the items both users rated):

``cosine`` (Sarwar et al. 2001, §3.1.1): vector-space cosine of the raw rows (missing = 0; binary
rows on implicit feedback), with full row norms::

    s(a, b) = v_a·v_b / (‖v_a‖ ‖v_b‖)

(Surprise's ``cosine`` sums over co-raters only; on binary rows that is 1 for any overlap, so
recforge keeps the vector-space form, as LensKit and implicit do.)

``adjusted_cosine`` (Sarwar et al. 2001, §3.1.3): Pearson-like correlation over the co-raters of
*centred* ratings. Item-kNN centres each rating by its **user's** mean (Sarwar's definition);
user-kNN centres by the **item's** mean (the transposed analogue, which removes item popularity
from user–user comparisons)::

    s(a, b) = Σ_{c∈C} e_ac e_bc / sqrt(Σ_{c∈C} e_ac² · Σ_{c∈C} e_bc²)

``pearson_baseline`` (Koren 2010, §3; Surprise's ``pearson_baseline``): the same formula over
baseline residuals ``e_ui = r_ui − (μ + b_u + b_i)``, with biases fitted exactly like Surprise's
``BaselineOnly`` (:class:`recforge.models.baselines.Biases`).

Every similarity is then shrunk towards zero by its support ``n = |C(a, b)|``::

    s ← s · (n − 1) / (n − 1 + λ)          (λ = ``shrinkage``; skipped when λ = 0)

and zeroed when ``n < min_support``. ``shrinkage=None`` means 100 for the two co-rater measures
(whose value on one or two co-raters is otherwise ±1 noise) and 0 for ``cosine``. Only similarities
``> min_similarity`` (≥ 0) are kept, so every stored weight is positive and ``Σ|s| = Σ s``.

Scoring. ``feedback`` picks one of two documented scoring rules; ``"auto"`` uses the rating rule
on explicit data (a training set with a rating scale) and the top-N rule on implicit data. The
model then scores with that one rule everywhere (``score_items``, ``predict``, new users), so
ranking and pointwise scores always agree:

* ``explicit`` — rating prediction, baseline-adjusted (Koren 2010, eq. 3; Surprise
  ``KNNBaseline``). With ``N_k(i)`` the stored neighbours of item ``i``::

      r̂_ui = b_ui + Σ_{j∈N_k(i)∩I_u} s_ij (r_uj − b_uj) / Σ_{j∈N_k(i)∩I_u} |s_ij|

  where ``b_ui = μ + b_u + b_i``; it falls back to ``b_ui`` when fewer than ``min_k`` of the
  user's rated items are neighbours of ``i`` (user-kNN: swap the roles, ``N_k(u)`` are the users
  most similar to ``u`` who rated ``i``). Like Sarwar's "model size" experiments, the neighbours
  are the global top-``k`` of ``i`` intersected with what the user rated (not the ``k`` most
  similar among the user's items, as Surprise does); that keeps scoring a pair of sparse
  products, and the model stores no more than ``k`` weights per row. Because the intersection
  must be non-empty, this rule needs a larger ``k``: ``k_neighbors=None`` means 300 here (ML-100k
  u1..u5 mean RMSE, item-kNN pearson_baseline: 0.953 at k = 40, 0.923 at 300, 0.923 at 2000;
  Surprise's KNNBaseline ≈ 0.93). ``predicts_ratings`` is True. Ranking by predicted rating is
  what this rule gives, and it ranks poorly (ML-100k temporal 80/20 NDCG@10 0.031 vs 0.189 for
  the implicit rule): for top-N lists use ``feedback="implicit"``, also on explicit data.
* ``implicit`` — top-N scoring (Deshpande & Karypis 2004) on the binarised interactions ``X``:
  item-kNN ``score_u = x_u · S``, i.e. ``Σ_{j∈I_u} s_ji`` over the rated items ``j`` that have
  ``i`` among their neighbours; user-kNN ``score_u = s_u · X``, i.e. ``Σ_{v∈N_k(u)} s_uv x_vi``.
  ``normalize=True`` scales each stored neighbour row to sum 1 first (Deshpande & Karypis'
  normalisation). Scores are not ratings (``predicts_ratings`` is False). ``k_neighbors=None``
  means 40 here (NDCG@10 on the split above: 0.192 at k = 20, 0.189 at 40, 0.185 at 100).

New users (:meth:`fold_in_scores`) are scored natively, without refitting: item-kNN applies the
same formulas to the new user's row (for explicit feedback its user bias is the closed-form
``b_u = Σ (r − μ − b_i) / (λ_u + n)``, exactly what the last ``BaselineOnly`` sweep computes);
user-kNN computes the new user's similarities to every training user with the same sparse block
code, keeps the top ``k`` and scores with them.

Citations:
    B. Sarwar, G. Karypis, J. Konstan, J. Riedl, "Item-based collaborative filtering
    recommendation algorithms", WWW 2001.
    J. Herlocker, J. Konstan, A. Borchers, J. Riedl, "An algorithmic framework for performing
    collaborative filtering", SIGIR 1999.
    M. Deshpande, G. Karypis, "Item-based top-N recommendation algorithms", ACM TOIS 22(1), 2004.
    Y. Koren, "Factor in the neighbors: scalable and accurate collaborative filtering",
    ACM TKDD 4(1), 2010.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.explain import Attribution, HistoryTerms
from recforge.models.base import FloatArray, IndexArray, RecList, Recommender, topk_rows
from recforge.models.recency import recency_matrix, sequence_weights
from recforge.threads import picked_map, thread_ranges

F64Array = npt.NDArray[np.float64]
Similarity = Literal["cosine", "adjusted_cosine", "pearson_baseline"]
Feedback = Literal["auto", "explicit", "implicit"]

#: Default shrinkage λ per similarity when ``shrinkage`` is None (see module docstring).
DEFAULT_SHRINKAGE: dict[str, float] = {
    "cosine": 0.0,
    "adjusted_cosine": 100.0,
    "pearson_baseline": 100.0,
}
#: Default ``k_neighbors`` per scoring rule when it is None (see module docstring).
DEFAULT_K: dict[str, int] = {"explicit": 300, "implicit": 40}
#: Dense float64 arrays alive per similarity block (products, co-rater sums, support, result).
_BLOCK_ARRAYS = 6
#: (user, item) pairs scored per chunk by the pairwise paths.
_PAIR_CHUNK = 32_768


class KNNConfig(ModelConfig):
    """Hyper-parameters of :class:`ItemKNN` and :class:`UserKNN` (defaults follow Surprise)."""

    k_neighbors: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Neighbours kept per row; None: 300 explicit, 40 implicit.",
    )
    similarity: Similarity = Field(
        "cosine", description="cosine | adjusted_cosine | pearson_baseline."
    )
    shrinkage: float | None = Field(
        None,
        ge=0,
        description="λ of s·(n−1)/(n−1+λ); None: 100 for co-rater measures, 0 for cosine.",
    )
    min_support: int = Field(1, ge=1, description="Fewer co-raters than this: similarity 0.")
    num_threads: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="CPU threads (None: the CPUs available, see recforge.threads).",
    )
    min_k: int = Field(1, ge=1, description="Rating rule: fewer usable neighbours: baseline only.")
    min_similarity: float = Field(0.0, ge=0, lt=1, description="Keep only similarities above this.")
    feedback: Feedback = Field(
        "auto", description="Scoring rule: explicit ratings or implicit top-N."
    )
    normalize: bool = Field(False, description="Implicit rule: each neighbour row sums to 1.")
    reg_u: float = Field(15.0, ge=0, le=1e6, description="Baseline λ_u (Surprise BaselineOnly).")
    reg_i: float = Field(10.0, ge=0, le=1e6, description="Baseline λ_i (Surprise BaselineOnly).")
    bias_epochs: int = Field(10, ge=1, le=1000, description="Baseline ALS sweeps.")
    chunk_size: int | None = Field(
        None, ge=1, description="Rows per similarity block; None: derived from memory_budget_mb."
    )
    memory_budget_mb: float = Field(256.0, gt=0, description="Dense memory per similarity block.")
    recency_tau: float | None = Field(
        None,
        gt=0,
        description=(
            "item_knn, implicit rule only: weight each history entry by "
            "exp(-position_from_end / tau) when scoring (0 = the user's latest training event, "
            "ties by item id; fold-in: the order given). None: no recency weighting."
        ),
    )

    def resolved_k(self, feedback: Literal["explicit", "implicit"]) -> int:
        """Neighbours kept per row (``k_neighbors`` or the per-rule default)."""
        if self.k_neighbors is not None:
            return self.k_neighbors
        return DEFAULT_K[feedback]

    @property
    def resolved_shrinkage(self) -> float:
        """λ actually used (``shrinkage`` or the per-similarity default)."""
        return DEFAULT_SHRINKAGE[self.similarity] if self.shrinkage is None else self.shrinkage


# ---------------------------------------------------------------------- similarity (pure functions)
@dataclass(frozen=True)
class _SimContext:
    """What a similarity block needs about *all* rows (precomputed once per fit)."""

    values_t: sp.csr_matrix  # (m, n): Vᵀ
    pattern_t: sp.csr_matrix  # (m, n): Bᵀ, binary
    squares_t: sp.csr_matrix | None  # (m, n): (V∘V)ᵀ, co-rater measures only
    norms: F64Array | None  # (n,): ‖v_b‖, cosine only
    restricted: bool
    shrinkage: float
    min_support: int


def _make_context(
    values: sp.csr_matrix,
    pattern: sp.csr_matrix,
    *,
    restricted: bool,
    shrinkage: float,
    min_support: int,
) -> _SimContext:
    values = sp.csr_matrix(values, dtype=np.float64)
    squares = values.multiply(values).tocsr()
    return _SimContext(
        values_t=values.T.tocsr(),
        pattern_t=sp.csr_matrix(pattern, dtype=np.float64).T.tocsr(),
        squares_t=squares.T.tocsr() if restricted else None,
        norms=None if restricted else np.sqrt(np.asarray(squares.sum(axis=1)).ravel()),
        restricted=restricted,
        shrinkage=shrinkage,
        min_support=min_support,
    )


def _similarity_block(
    values_c: sp.csr_matrix, pattern_c: sp.csr_matrix, ctx: _SimContext
) -> F64Array:
    """Dense similarities ``(c, n)`` of the block rows ``values_c`` to every row of the context.

    ``values_c``/``pattern_c`` may be rows of the training matrix or a new row (fold-in).
    """
    values_c = sp.csr_matrix(values_c, dtype=np.float64)
    pattern_c = sp.csr_matrix(pattern_c, dtype=np.float64)
    num = (values_c @ ctx.values_t).toarray()
    if ctx.restricted:
        assert ctx.squares_t is not None
        # Σ over co-raters of each side's squares: the block's squares against the other's
        # pattern, and the block's pattern against the other's squares.
        left = (values_c.multiply(values_c).tocsr() @ ctx.pattern_t).toarray()
        right = (pattern_c @ ctx.squares_t).toarray()
        den = np.sqrt(left * right)
    else:
        assert ctx.norms is not None
        norms_c = np.sqrt(np.asarray(values_c.multiply(values_c).sum(axis=1)).ravel())
        den = norms_c[:, None] * ctx.norms[None, :]
    sims = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    if ctx.shrinkage > 0 or ctx.min_support > 1:
        support = (pattern_c @ ctx.pattern_t).toarray()
        if ctx.shrinkage > 0:
            shrunk = np.maximum(support - 1.0, 0.0)
            sims *= shrunk / (shrunk + ctx.shrinkage)
        if ctx.min_support > 1:
            sims[support < ctx.min_support] = 0.0
    out: F64Array = sims
    return out


def _top_k_block(
    sims: F64Array, k: int, min_similarity: float, self_idx: IndexArray | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Per row: the ``k`` largest similarities ``> min_similarity`` (self excluded).

    Returns ``(counts, indices, values)`` ready to be concatenated into CSR arrays; within a
    row, indices are ascending.
    """
    sims = sims.copy()
    if self_idx is not None:
        sims[np.arange(len(self_idx)), self_idx] = -np.inf
    sims[sims <= min_similarity] = -np.inf
    idx, val = topk_rows(sims, k)
    keep = np.isfinite(val)
    counts = keep.sum(axis=1).astype(np.int64)
    # Sort kept entries of each row by column so the CSR has canonical (sorted) indices.
    rows = np.repeat(np.arange(len(idx)), idx.shape[1])
    order = np.lexsort((idx.ravel(), rows))
    flat_keep = keep.ravel()[order]
    return counts, idx.ravel()[order][flat_keep], val.ravel()[order][flat_keep]


def neighbour_similarities(
    values: sp.csr_matrix,
    pattern: sp.csr_matrix,
    *,
    k: int,
    restricted: bool,
    shrinkage: float = 0.0,
    min_support: int = 1,
    min_similarity: float = 0.0,
    chunk_size: int | None = None,
    memory_budget_mb: float = 256.0,
    values_t: sp.csr_matrix | None = None,
) -> sp.csr_matrix:
    """Sparse top-``k`` similarity matrix between the rows of ``values``.

    Args:
        values: ``(n, m)`` CSR, one row per entity (already centred for co-rater measures).
        pattern: ``(n, m)`` binary CSR marking which entries of ``values`` are observed (an
            observed residual may be exactly zero, so the pattern is passed separately).
        k: neighbours kept per row.
        restricted: co-rater measure (norms over co-raters only) instead of full-vector cosine.
        shrinkage: λ of ``s·(n−1)/(n−1+λ)``; 0 disables it.
        min_support: similarities with fewer co-raters are zeroed.
        min_similarity: keep only similarities strictly above this.
        chunk_size: rows per block; None derives it from ``memory_budget_mb``.
        memory_budget_mb: bound on the dense arrays of one block.
        values_t: ``values.T.tocsr()`` when the caller has it (float64, canonical: sorted
            indices, no duplicates), saving the compiled cosine path a transpose.

    Returns:
        ``(n, n)`` float32 CSR with at most ``k`` entries per row, no diagonal, sorted indices.
    """
    n = values.shape[0]
    if not restricted and _numba_available():
        return _cosine_topk_compiled(
            values, k, shrinkage, min_support, min_similarity, values_t=values_t
        )
    if chunk_size is None:
        chunk_size = max(1, int(memory_budget_mb * 2**20 // (_BLOCK_ARRAYS * 8 * max(n, 1))))
    ctx = _make_context(
        values, pattern, restricted=restricted, shrinkage=shrinkage, min_support=min_support
    )
    values = sp.csr_matrix(values, dtype=np.float64)
    pattern = sp.csr_matrix(pattern, dtype=np.float64)
    counts: list[npt.NDArray[np.int64]] = []
    indices: list[npt.NDArray[np.int64]] = []
    data: list[npt.NDArray[np.float32]] = []
    for start in range(0, n, chunk_size):
        rows = np.arange(start, min(start + chunk_size, n), dtype=np.int64)
        sims = _similarity_block(values[rows], pattern[rows], ctx)
        c, i, v = _top_k_block(sims, k, min_similarity, rows)
        counts.append(c)
        indices.append(i)
        data.append(v)
    indptr = np.zeros(n + 1, dtype=np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=indptr[1:])
    return sp.csr_matrix(
        (
            np.concatenate(data) if data else np.zeros(0, np.float32),
            np.concatenate(indices) if indices else np.zeros(0, np.int64),
            indptr,
        ),
        shape=(n, n),
    )


def _numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


#: One-thread milliseconds per accumulated product of the compiled cosine kernel (~1 ns).
_KNN_MS_PER_PRODUCT = 1e-6
#: A touched row's and a row's own cost in the kernel, in accumulated products (row_cost).
_KNN_TOUCHED_COST = 6.0
_KNN_ROW_COST = 5000.0


def _kernel_row_costs(values: sp.csr_matrix, col_len: F64Array) -> F64Array:
    """Each row's cost in the compiled cosine kernel, in accumulated products (to split the rows
    across threads): its products (the summed lengths ``col_len`` of its columns in the
    transpose), plus a share for each row it touches (at most ``min(products, n)``) and a
    constant. Fits over 40 row ranges of ML-100k and ml-latest-small put those two at ~3-18 and
    ~2,600-19,000 products (benchmarks/knn_kernel_costs.py). Balanced on products alone, the
    rare items' ranges ran longest: 2 threads took 0.54 of one thread's time on
    ml-latest-small, against 0.50 with this cost."""
    n = values.shape[0]
    row_of = np.repeat(np.arange(n), np.diff(values.indptr))
    products = np.bincount(row_of, weights=col_len[values.indices], minlength=n)
    cost = products + _KNN_TOUCHED_COST * np.minimum(products, n) + _KNN_ROW_COST
    return np.asarray(cost, dtype=np.float64)


def _cosine_topk_compiled(
    values: sp.csr_matrix,
    k: int,
    shrinkage: float,
    min_support: int,
    min_similarity: float,
    *,
    values_t: sp.csr_matrix | None = None,
) -> sp.csr_matrix:
    """The cosine branch of :func:`neighbour_similarities` by a sparse accumulator (numba).

    The same matrix as the dense-block path (:mod:`recforge.models._knn_kernels`), without the
    ``n × n`` dense blocks: 3-8x faster on MovieLens (docs/benchmarks/speed.md).
    """
    import torch

    from recforge.models._knn_kernels import cosine_topk

    values = sp.csr_matrix(values, dtype=np.float64)
    values.sort_indices()
    n = values.shape[0]
    binary = bool(values.nnz == 0 or np.all(values.data == 1.0))
    # Binary rows: ‖v‖² is the row's entry count (exact integer sums either way).
    norms = (
        np.sqrt(np.diff(values.indptr).astype(np.float64))
        if binary
        else np.sqrt(np.asarray(values.multiply(values).sum(axis=1)).ravel())
    )
    # The transpose, or the caller's copy of it: a canonical float64 CSR of the transposed shape
    # is the same arrays (an item-kNN fit transposed the user × item matrix to get ``values``).
    t = (
        values_t
        if values_t is not None
        and values_t.shape == values.shape[::-1]
        and values_t.dtype == np.float64
        and values_t.has_canonical_format
        else values.T.tocsr()
    )
    # int32 column indices (when they fit): half the memory traffic of the inner loop.
    idx_type = np.int32 if n < 2**31 and values.shape[1] < 2**31 else np.int64
    args = (
        values.indptr.astype(np.int64), values.indices.astype(idx_type), values.data,
        t.indptr.astype(np.int64), t.indices.astype(idx_type), t.data,
        norms, int(k), float(shrinkage), int(min_support), float(min_similarity), binary,
    )  # fmt: skip
    support_dtype = np.int16 if values.shape[1] < 2**15 else np.int64  # co-counts <= m

    def rows(bound: tuple[int, int]) -> tuple[Any, Any, Any]:
        return cast(
            tuple[Any, Any, Any],
            cosine_topk(*args, np.zeros(n, dtype=support_dtype), bound[0], bound[1]),
        )

    # Row a's products are the summed lengths of its columns in t; rows are independent and the
    # kernel releases the GIL, so ranges run in parallel and their concatenation is the serial
    # result. The work estimate Σ_a (products of row a) + n = Σ_j (length of column j)² + n,
    # exact in float64, needs no per-row costs (only a split across threads does).
    col_len = np.diff(t.indptr).astype(np.float64)
    work_ms = (float(col_len @ col_len) + n) * _KNN_MS_PER_PRODUCT
    # The fit's thread count or one, whichever this process measured faster for accumulations
    # of this size (recforge.threads.picked_map): the split never changes the matrix.
    requested = torch.get_num_threads()

    # The per-row costs are only computed when the rows are split across threads.
    bounds, costs = thread_ranges(
        n, functools.partial(_kernel_row_costs, values, col_len), work_ms, requested
    )
    parts = picked_map("knn.cosine", rows, bounds, costs, work_ms, requested)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.concatenate([p[0] for p in parts]), out=indptr[1:])
    indices = np.concatenate([p[1] for p in parts])
    data = np.concatenate([p[2] for p in parts])
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


def _row_means(values: sp.csr_matrix) -> F64Array:
    """Mean of the stored entries of each row (0 for empty rows)."""
    counts = np.diff(values.indptr).astype(np.float64)
    sums = np.asarray(values.sum(axis=1), dtype=np.float64).ravel()
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)


def _column_means(values: sp.csr_matrix) -> F64Array:
    """Mean of the stored entries of each column (0 for empty columns), without a transpose:
    ``bincount`` adds each column's entries in row order, as the transposed matrix's row sums
    do, so the values are :func:`_row_means` of the transpose's, bit for bit."""
    counts = np.bincount(values.indices, minlength=values.shape[1]).astype(np.float64)
    sums = np.bincount(values.indices, weights=values.data, minlength=values.shape[1])
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)


def _with_data(pattern: sp.csr_matrix, data: F64Array) -> sp.csr_matrix:
    """A CSR with ``pattern``'s structure and new (possibly zero) stored values."""
    return sp.csr_matrix((data, pattern.indices.copy(), pattern.indptr.copy()), shape=pattern.shape)


def _row_sums_of_product(a: sp.csr_matrix, b: sp.csr_matrix) -> F64Array:
    """``Σ_j a[p, j] · b[p, j]`` for every row ``p`` (same shapes)."""
    return np.asarray(a.multiply(b).sum(axis=1), dtype=np.float64).ravel()


def _gather_rows(b: sp.csr_matrix, rows: IndexArray) -> tuple[IndexArray, IndexArray]:
    """Positions in ``b.data``/``b.indices`` of the entries of ``rows``, row after row, and how
    many each row has."""
    starts = b.indptr[rows].astype(np.int64)
    counts = b.indptr[rows + 1].astype(np.int64) - starts
    first = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return first + np.arange(int(counts.sum())), counts


def _cells(
    m: sp.csr_matrix, rows: IndexArray, cols: IndexArray
) -> tuple[F64Array, npt.NDArray[np.int64]]:
    """``(m[rows].toarray()[:, cols], stored)``: the cells of a few rows at the columns ``cols``
    (float64, rows × cols, C order) and per row how many of them are stored entries.

    One pass over the rows' entries (compiled with numba when installed), instead of the
    ``rows × n_cols`` dense rows the slices are cut from: a served explanation's gather of its
    targets' neighbour rows at the user's history. The values are the dense rows' own, so
    everything computed from them is unchanged, bit for bit.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if _numba_available():
        from recforge.models._knn_kernels import gather_block

        vals = np.empty((len(rows), len(cols)), dtype=np.float64)
        stored = np.empty(len(rows), dtype=np.int64)
        scratch = np.zeros((m.shape[1], 2), dtype=np.float64)
        gather_block(m.indptr, m.indices, m.data, rows, cols, scratch, vals, stored)
        return vals, stored
    pos, counts = _gather_rows(m, rows)
    dense = np.zeros((len(rows), m.shape[1]), dtype=np.float64)
    marks = np.zeros((len(rows), m.shape[1]), dtype=bool)
    at = (np.repeat(np.arange(len(rows)), counts), m.indices[pos])
    dense[at] = m.data[pos]
    marks[at] = True
    return dense[:, cols], marks[:, cols].sum(axis=1).astype(np.int64)


def _history_sums(
    nbrs: sp.csr_matrix, hist: npt.NDArray[np.integer[Any]], vals: npt.NDArray[Any], n: int
) -> tuple[F64Array, F64Array, F64Array]:
    """``(Σ_j x_j s_ji, Σ_j s_ji, #j)`` over the rows ``hist`` of ``nbrs`` (weights ``vals``)."""
    if _numba_available():
        from recforge.models._knn_kernels import history_sums

        acc = np.zeros((n, 3))
        history_sums(nbrs.indptr, nbrs.indices, nbrs.data, hist, vals, acc)
        sums = acc.T.copy()  # three contiguous rows for the callers' array arithmetic
        return sums[0], sums[1], sums[2]
    pos, counts = _gather_rows(nbrs, np.asarray(hist, dtype=np.int64))
    cols, sims = nbrs.indices[pos], nbrs.data[pos]
    num = np.asarray(np.bincount(cols, np.repeat(vals, counts) * sims, n), dtype=np.float64)
    den = np.asarray(np.bincount(cols, sims, n), dtype=np.float64)
    return num, den, np.bincount(cols, minlength=n).astype(np.float64)


def _state_array(state: Mapping[str, npt.NDArray[Any]], key: str) -> npt.NDArray[Any]:
    if key not in state:
        raise KeyError(f"state lacks {key!r}")
    return np.asarray(state[key])


def _csr_state(prefix: str, mat: sp.csr_matrix) -> dict[str, npt.NDArray[Any]]:
    return {
        f"{prefix}_indptr": mat.indptr.astype(np.int64),
        f"{prefix}_indices": mat.indices.astype(np.int64),
        f"{prefix}_data": np.asarray(mat.data, dtype=np.float32),
    }


def _csr_from_state(
    state: Mapping[str, npt.NDArray[Any]], prefix: str, shape: tuple[int, int]
) -> sp.csr_matrix:
    indptr = _state_array(state, f"{prefix}_indptr").astype(np.int64)
    indices = _state_array(state, f"{prefix}_indices").astype(np.int64)
    data = _state_array(state, f"{prefix}_data").astype(np.float32)
    if len(indptr) != shape[0] + 1 or len(indices) != len(data) or indptr[-1] != len(data):
        raise ValueError(f"state {prefix!r} does not describe a {shape[0]}-row sparse matrix")
    if len(indices) and (indices.min() < 0 or indices.max() >= shape[1]):
        raise ValueError(f"state {prefix!r} has column indices outside 0..{shape[1] - 1}")
    return sp.csr_matrix((data, indices, indptr), shape=shape)


# ---------------------------------------------------------------------- models
class _NeighbourhoodModel(Recommender):
    """Shared machinery of item- and user-kNN (see the module docstring for the formulas)."""

    Config: ClassVar[type[ModelConfig]] = KNNConfig
    config: KNNConfig
    #: True: neighbours are items (rows of S index items); False: users.
    item_based: ClassVar[bool] = True

    feedback_: Literal["explicit", "implicit"]
    ratings_: sp.csr_matrix
    similarity_: sp.csr_matrix
    user_bias_: F64Array
    item_bias_: F64Array

    # derived (rebuilt by _prepare after fit and load)
    _data: sp.csr_matrix  # users × items: residuals (explicit) or binary X (implicit)
    _data_t: sp.csr_matrix  # items × users
    _pattern: sp.csr_matrix  # users × items, binary
    _pattern_t: sp.csr_matrix
    _item_means: F64Array  # per item, for user-kNN adjusted_cosine fold-in
    _sim: sp.csr_matrix  # float64 scoring weights (normalised rows when asked)
    _sim_t: sp.csr_matrix
    _sim_bin: sp.csr_matrix  # 1 where a neighbour is stored
    _sim_bin_t: sp.csr_matrix
    _fold_ctx: _SimContext | None  # user-kNN: similarity context of the training users
    #: users × items recency weights of the training events (``recency_tau``), else None.
    recency_: sp.csr_matrix | None = None

    @property
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        """True when scores are predicted ratings (the explicit rule), False for top-N scores."""
        if hasattr(self, "feedback_"):
            return self.feedback_ == "explicit"
        return self.config.feedback != "implicit"

    # ------------------------------------------------------------------ fitting
    def _resolve_feedback(self) -> Literal["explicit", "implicit"]:
        fb = self.config.feedback
        if fb == "auto":
            return "explicit" if self.rating_scale_ is not None else "implicit"
        return fb

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        from recforge.models.baselines import Biases

        cfg = self.config
        self.feedback_ = self._resolve_feedback()
        if self.feedback_ == "implicit" and cfg.similarity != "cosine":
            raise ConfigError(
                f"{self.name}: similarity={cfg.similarity!r} needs explicit ratings; "
                "use similarity='cosine' with feedback='implicit'"
            )
        self.ratings_ = train.csr("rating").astype(np.float32)
        self.recency_ = None
        if cfg.recency_tau is not None:
            if not (self.item_based and self.feedback_ == "implicit"):
                raise ConfigError(
                    f"{self.name}: recency_tau applies to item_knn with feedback='implicit' only; "
                    "remove recency_tau or use item_knn with feedback='implicit'"
                )
            self.recency_ = recency_matrix(train, cfg.recency_tau)
        # Surprise's BaselineOnly (ALS) supplies b_u, b_i for pearson_baseline and the rating rule;
        # the implicit rule never reads them (scores, fold-in and explanations use x_u·S only), so
        # they stay zero there: the bias fit was ~40% of an implicit item_knn fit.
        if self.feedback_ == "explicit" or cfg.similarity == "pearson_baseline":
            biases = Biases(reg_u=cfg.reg_u, reg_i=cfg.reg_i, epochs=cfg.bias_epochs).fit(train)
            self.user_bias_ = biases.user_bias_
            self.item_bias_ = biases.item_bias_
        else:
            self.user_bias_ = np.zeros(self.n_users, dtype=np.float64)
            self.item_bias_ = np.zeros(self.n_items, dtype=np.float64)
        values = self._similarity_values(self.ratings_)
        # Implicit feedback: the values are the binary pattern itself (one transpose, not two).
        pattern = values if self.feedback_ == "implicit" else self._binary(self.ratings_)
        values_t = None
        if self.item_based:
            values_t = values
            values = values.T.tocsr()
            pattern = values if pattern is values_t else pattern.T.tocsr()
        self.similarity_ = neighbour_similarities(
            values,
            pattern,
            k=cfg.resolved_k(self.feedback_),
            restricted=cfg.similarity != "cosine",
            shrinkage=cfg.resolved_shrinkage,
            min_support=cfg.min_support,
            min_similarity=cfg.min_similarity,
            chunk_size=cfg.chunk_size,
            memory_budget_mb=cfg.memory_budget_mb,
            values_t=values_t,
        )
        # An item-based fit has already transposed the pattern: _prepare reuses it.
        self._prepare(pattern_t=pattern if self.item_based else None)

    @staticmethod
    def _binary(mat: sp.csr_matrix) -> sp.csr_matrix:
        return _with_data(mat, np.ones(mat.nnz, dtype=np.float64))

    def _similarity_values(self, ratings: sp.csr_matrix) -> sp.csr_matrix:
        """users × items matrix the similarity is computed on (before any transpose)."""
        sim = self.config.similarity
        r = sp.csr_matrix(ratings, dtype=np.float64)
        if self.feedback_ == "implicit":
            return self._binary(r)
        if sim == "cosine":
            return r
        if sim == "adjusted_cosine":
            if self.item_based:  # Sarwar: centre by the user's mean
                means = _row_means(r)
                return _with_data(r, r.data - np.repeat(means, np.diff(r.indptr)))
            item_means = _column_means(r)  # user-kNN: centre by the item's mean
            return _with_data(r, r.data - item_means[r.indices])
        return _with_data(r, self._residual_data(r))

    def _residual_data(self, r: sp.csr_matrix) -> F64Array:
        """``r_ui − (μ + b_u + b_i)`` for the stored entries of the users × items matrix ``r``."""
        users = np.repeat(np.arange(r.shape[0]), np.diff(r.indptr))
        base = self.global_mean_ + self.user_bias_[users] + self.item_bias_[r.indices]
        out: F64Array = np.asarray(r.data, dtype=np.float64) - base
        return out

    def _prepare(self, pattern_t: sp.csr_matrix | None = None) -> None:
        """Derived matrices used for scoring (rebuilt identically after loading).

        ``pattern_t``: the items × users binary pattern of ``ratings_``, when the caller has it
        (the same arrays as transposing it here)."""
        r = sp.csr_matrix(self.ratings_, dtype=np.float64)
        self._pattern = self._binary(r)
        self._pattern_t = self._pattern.T.tocsr() if pattern_t is None else pattern_t
        self._item_means = _column_means(r)
        if self.feedback_ == "explicit":
            self._data = _with_data(r, self._residual_data(r))
        elif self.recency_ is not None:
            # Recency-weighted history rows x_u (same sparsity as the binary pattern).
            self._data = sp.csr_matrix(self._pattern.multiply(self.recency_), dtype=np.float64)
        else:
            self._data = self._pattern
        self._data_t = self._pattern_t if self._data is self._pattern else self._data.T.tocsr()
        sim = sp.csr_matrix(self.similarity_, dtype=np.float64)
        if self.feedback_ == "implicit" and self.config.normalize:
            sums = np.asarray(sim.sum(axis=1)).ravel()
            scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
            sim = sp.csr_matrix(sp.diags(scale) @ sim)
        self._sim = sim
        self._sim_t = sim.T.tocsr()
        self._sim_bin = self._binary(sim)
        # The transpose's pattern is _sim_t's (the same sorted entries): no second transpose.
        self._sim_bin_t = self._binary(self._sim_t)
        self._fold_ctx = None  # built on the first new user (user-kNN only)

    # ------------------------------------------------------------------ scoring
    def _baseline(self, user_idx: IndexArray) -> F64Array:
        """``μ + b_u + b_i`` rows for the given users: ``(len(user_idx), n_items)``."""
        out: F64Array = (self.global_mean_ + self.user_bias_[user_idx])[:, None] + self.item_bias_[
            None, :
        ]
        return out

    def _combine(self, base: F64Array, num: F64Array, den: F64Array, cnt: F64Array) -> F64Array:
        """The rating rule: baseline plus the weighted mean residual where enough neighbours."""
        ok = (cnt >= self.config.min_k) & (den > 0)
        adj = np.divide(num, den, out=np.zeros_like(num), where=ok)
        return base + adj

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """Scores of every item for the users: predicted ratings (explicit) or top-N sums."""
        self._check_fitted()
        u = np.asarray(user_idx, dtype=np.int64)
        if self.item_based and len(u) == 1:
            return self._item_scores_one(int(u[0]))
        if self.item_based:
            data_u = self._data[u]
            if self.feedback_ == "implicit":
                return np.asarray((data_u @ self._sim).toarray(), dtype=np.float32)
            num = (data_u @ self._sim_t).toarray()
            den = (self._pattern[u] @ self._sim_t).toarray()
            cnt = (self._pattern[u] @ self._sim_bin_t).toarray()
        else:
            sim_u = self._sim[u]
            if self.feedback_ == "implicit":
                return np.asarray((sim_u @ self._data).toarray(), dtype=np.float32)
            num = (sim_u @ self._data).toarray()
            den = (sim_u @ self._pattern).toarray()
            cnt = (self._sim_bin[u] @ self._pattern).toarray()
        return self._combine(self._baseline(u), num, den, cnt).astype(np.float32)

    def _item_scores_one(self, u: int) -> FloatArray:
        """One user's item-based scores (a served request): the sums over the history's
        neighbour rows, without scipy's sparse products (three of them, ~0.7 ms a request on
        ML-100k with every similarity kept). Compiled with numba when installed
        (:func:`recforge.models._knn_kernels.history_sums`), else ``bincount``.

        Bit-identical to :meth:`score_items`' batched path: ``csr_matmat`` also adds the
        float64 products ``x_uj · s_ji`` into each column in history order, entry by entry.
        """
        lo, hi = int(self._data.indptr[u]), int(self._data.indptr[u + 1])
        hist, vals = self._data.indices[lo:hi], self._data.data[lo:hi]
        nbrs = self._sim if self.feedback_ == "implicit" else self._sim_t
        num, den, cnt = _history_sums(nbrs, hist, vals, self.n_items)
        if self.feedback_ == "implicit":
            return num[None, :].astype(np.float32)
        one = np.asarray([u])
        combined = self._combine(self._baseline(one), num[None, :], den[None, :], cnt[None, :])
        return combined.astype(np.float32)

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """Scores of (user, item) pairs without building full score rows (vectorised per chunk)."""
        self._check_fitted()
        u_all = np.asarray(user_idx, dtype=np.int64)
        i_all = np.asarray(item_idx, dtype=np.int64)
        out = np.empty(len(u_all), dtype=np.float32)
        for start in range(0, len(u_all), _PAIR_CHUNK):
            u = u_all[start : start + _PAIR_CHUNK]
            i = i_all[start : start + _PAIR_CHUNK]
            out[start : start + len(u)] = self._predict_pairs(u, i)
        return out

    def _predict_pairs(self, u: IndexArray, i: IndexArray) -> FloatArray:
        # Row p of each operand lines up the neighbour weights with the data they weight.
        if self.item_based:
            if self.feedback_ == "implicit":  # Σ_j x_uj s_ji
                return _row_sums_of_product(self._data[u], self._sim_t[i]).astype(np.float32)
            nbrs, nbr_bin, data, pattern = (
                self._sim[i],
                self._sim_bin[i],
                self._data[u],
                self._pattern[u],
            )
        else:
            if self.feedback_ == "implicit":  # Σ_v s_uv x_vi
                return _row_sums_of_product(self._sim[u], self._data_t[i]).astype(np.float32)
            nbrs, nbr_bin, data, pattern = (
                self._sim[u],
                self._sim_bin[u],
                self._data_t[i],
                self._pattern_t[i],
            )
        num = _row_sums_of_product(nbrs, data)
        den = _row_sums_of_product(nbrs, pattern)
        cnt = _row_sums_of_product(nbr_bin, pattern)
        base = self.global_mean_ + self.user_bias_[u] + self.item_bias_[i]
        return self._combine(base, num, den, cnt).astype(np.float32)

    # ------------------------------------------------------------------ new users
    def _fold_in_user_bias(self, item_idx: IndexArray, ratings: F64Array) -> float:
        """Closed-form ``b_u`` given the item biases (the last BaselineOnly half-sweep)."""
        dev = ratings - self.global_mean_ - self.item_bias_[item_idx]
        den = self.config.reg_u + len(item_idx)
        return float(dev.sum() / den) if den > 0 else 0.0

    def _fold_in_row(
        self, item_idx: IndexArray, ratings: FloatArray
    ) -> tuple[sp.csr_matrix, sp.csr_matrix, float]:
        """The new user's ``(data row, pattern row, b_u)`` as ``1 × n_items`` CSR rows."""
        idx, data_vals, b_u = self._fold_in_entries(item_idx, ratings)
        ptr = np.array([0, len(idx)], dtype=np.int64)
        pattern = sp.csr_matrix((np.ones(len(idx)), idx, ptr), shape=(1, self.n_items))
        data = sp.csr_matrix((data_vals, idx.copy(), ptr.copy()), shape=(1, self.n_items))
        return data, pattern, b_u

    def _fold_in_entries(
        self, item_idx: IndexArray, ratings: FloatArray
    ) -> tuple[npt.NDArray[np.int64], F64Array, float]:
        """The entries of :meth:`_fold_in_row`'s data row (item indices sorted, stably, and
        their values) and ``b_u``, without building the CSR rows (two sparse constructors were
        ~10% of a served new-user request)."""
        idx = np.asarray(item_idx, dtype=np.int64)
        # Recency of a new user's entries is their order as given (last = latest).
        weights = sequence_weights(len(idx), self.config.recency_tau)
        order = np.argsort(idx, kind="stable")
        idx = idx[order]
        vals = np.asarray(ratings, dtype=np.float64)[order]
        b_u = self._fold_in_user_bias(idx, vals) if self.feedback_ == "explicit" else 0.0
        if self.feedback_ == "explicit":
            data_vals = vals - self.global_mean_ - b_u - self.item_bias_[idx]
        else:
            data_vals = weights[order].astype(np.float64)
        return idx, data_vals, b_u


class ItemKNN(HistoryTerms, _NeighbourhoodModel):
    """Item-based k-nearest-neighbour collaborative filtering (Sarwar et al. 2001).

    Stores the sparse top-``k`` item–item similarity matrix ``S``. Scoring (see the module
    docstring for the similarity formulas and the choice of rule):

    * explicit feedback (rating prediction, Koren 2010 / Surprise ``KNNBaseline``)::

          r̂_ui = b_ui + Σ_{j∈N_k(i)∩I_u} s_ij (r_uj − b_uj) / Σ_{j∈N_k(i)∩I_u} |s_ij|

      with ``b_ui = μ + b_u + b_i``.

    * implicit feedback (top-N, Deshpande & Karypis 2004): ``score_u = x_u · S`` on binary ``x_u``
      (with ``recency_tau = τ``, ``x_u``'s entry at position ``p`` from the end of the user's
      training timeline is ``exp(−p / τ)`` instead of 1; :mod:`recforge.models.recency`).

    No loss is optimised: similarities are closed-form statistics; the biases minimise the
    regularised squared error of :class:`~recforge.models.baselines.Biases`. A new user is
    scored with the same formulas on their row (``x_new · S``), no retraining.
    :meth:`similar_items` returns the stored neighbours of an item.

    Attributes:
        similarity_: ``(n_items, n_items)`` float32 CSR, row ``i`` = top-``k`` neighbours of ``i``.
        ratings_: training user × item ratings (CSR).
        user_bias_, item_bias_: baseline biases (float64).
        feedback_: the scoring rule in use, ``"explicit"`` or ``"implicit"``.
    """

    name: ClassVar[str] = "item_knn"
    item_based: ClassVar[bool] = True

    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """Scores for a new user: the same formulas applied to their row, with ``S`` fixed."""
        self._check_fitted()
        hist, vals, b_u = self._fold_in_entries(item_idx, ratings)
        # The row's entries (sorted by item) through the one-user sums of a known user: the
        # same float64 terms, in the order the sparse products data @ S and pattern @ S add them.
        nbrs = self._sim if self.feedback_ == "implicit" else self._sim_t
        num, den, cnt = _history_sums(nbrs, hist, vals, self.n_items)
        if self.feedback_ == "implicit":
            return num.astype(np.float32)
        base = (self.global_mean_ + b_u + self.item_bias_)[None, :]
        combined = self._combine(base, num[None, :], den[None, :], cnt[None, :])
        return np.asarray(combined[0], dtype=np.float32)

    def explain_rows(
        self, rows: sp.csr_matrix, row_of: IndexArray, targets: IndexArray
    ) -> Attribution:
        """Exact: each history item's term of the item-kNN score (similarity × rating).

        implicit: ``w_j = x_j s_ji`` (``x_j`` 1 or its recency weight; residual 0). explicit:
        ``w_j = s_ij (r_j − b_uj) / Σ_{j'} s_ij'`` over the stored neighbours among the history
        (0 when fewer than ``min_k``); the baseline ``μ + b_u + b_i`` is the residual.
        """
        return self._history_terms(rows, row_of, targets)

    def _explain_one(
        self, idx: IndexArray, vals: FloatArray, tgt: IndexArray
    ) -> tuple[F64Array, F64Array]:
        if self.feedback_ == "implicit":
            x = sequence_weights(len(idx), self.config.recency_tau).astype(np.float64)
            # s_ji for every history item j (rows) and target i (columns): the targets' rows
            # of Sᵀ at the history's columns (the same values as S's rows at the targets).
            w_all = x[:, None] * _cells(self._sim_t, tgt, idx)[0].T
            base = np.zeros(len(tgt))
        else:
            b_u = self._fold_in_user_bias(idx, vals.astype(np.float64))
            resid = vals.astype(np.float64) - self.global_mean_ - b_u - self.item_bias_[idx]
            # One gather of the targets' neighbour rows at the history: s_ij and how many of the
            # history's items are stored neighbours (what S's binary pattern counts).
            cells, cnt = _cells(self._sim, tgt, idx)
            sims = cells.T  # s_ij: (|H|, n_targets)
            den = sims.sum(axis=0)
            ok = (cnt >= self.config.min_k) & (den > 0)
            scale = np.divide(1.0, den, out=np.zeros_like(den), where=ok)
            w_all = sims * resid[:, None] * scale[None, :]
            base = self.global_mean_ + b_u + self.item_bias_[tgt]
        # Pairs as rows: one (pairwise, as per column before) reduction, not one per pair.
        per_pair = np.ascontiguousarray(w_all.T)
        score: F64Array = base + per_pair.sum(axis=1)
        return score, per_pair

    def similar_items(self, item_id: Any, k: int = 10) -> RecList:
        """The stored nearest neighbours of ``item_id``, most similar first (itself excluded).

        At most ``k_neighbors`` items come back: the model keeps no other similarities.
        """
        self._check_fitted()
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        i = self.items_.index_one(item_id)
        lo, hi = self.similarity_.indptr[i], self.similarity_.indptr[i + 1]
        cols = self.similarity_.indices[lo:hi].astype(np.int64)
        vals = np.asarray(self.similarity_.data[lo:hi], dtype=np.float32)
        order = np.lexsort((cols, -vals))[:k]
        return self._to_reclist(item_id, cols[order], vals[order], query="item")

    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """Similarity and rating matrices (CSR arrays), biases and the scoring rule."""
        return _knn_state(self)

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Restore :meth:`get_state`'s arrays; ValueError when shapes do not match."""
        _set_knn_state(self, state, self.n_items)


class UserKNN(_NeighbourhoodModel):
    """User-based k-nearest-neighbour collaborative filtering (Herlocker et al. 1999).

    Stores the sparse top-``k`` user–user similarity matrix ``S`` (``adjusted_cosine`` centres
    each rating by the item's mean here; see the module docstring). Scoring:

    * explicit feedback (rating prediction, baseline-adjusted as in Surprise ``KNNBaseline``)::

          r̂_ui = b_ui + Σ_{v∈N_k(u)∩U_i} s_uv (r_vi − b_vi) / Σ_{v∈N_k(u)∩U_i} |s_uv|

      with ``b_ui = μ + b_u + b_i``.

    * implicit feedback (top-N): ``score_u = s_u · X``, the similarity-weighted votes of the
      ``k`` nearest users.

    No loss is optimised. A new user's similarities to every training user are computed on the
    fly with the training formulas (sparse products, ``O(nnz)``), truncated to the top ``k`` and
    used as above. No item vectors, hence no :meth:`similar_items`.

    Attributes:
        similarity_: ``(n_users, n_users)`` float32 CSR, row ``u`` = top-``k`` neighbours of ``u``.
        ratings_, user_bias_, item_bias_, feedback_: as for :class:`ItemKNN`.
    """

    name: ClassVar[str] = "user_knn"
    item_based: ClassVar[bool] = False

    def fold_in_similarities(self, item_idx: IndexArray, ratings: FloatArray) -> F64Array:
        """Similarities ``(n_users,)`` of a new user with these ratings to every training user.

        Uses the fitted similarity (centring, shrinkage, support) but no top-``k`` truncation.
        """
        self._check_fitted()
        cfg = self.config
        idx = np.asarray(item_idx, dtype=np.int64)
        vals = np.asarray(ratings, dtype=np.float64)
        order = np.argsort(idx, kind="stable")
        idx, vals = idx[order], vals[order]
        ptr = np.array([0, len(idx)], dtype=np.int64)
        pattern = sp.csr_matrix((np.ones(len(idx)), idx, ptr), shape=(1, self.n_items))
        if self.feedback_ == "implicit":
            new_vals = np.ones(len(idx))
        elif cfg.similarity == "cosine":
            new_vals = vals
        elif cfg.similarity == "adjusted_cosine":
            new_vals = vals - self._item_means[idx]
        else:
            b_u = self._fold_in_user_bias(idx, vals)
            new_vals = vals - self.global_mean_ - b_u - self.item_bias_[idx]
        new_row = sp.csr_matrix((new_vals, idx.copy(), ptr.copy()), shape=(1, self.n_items))
        if self._fold_ctx is None:
            # Built once: the transposed training matrices every new user is compared with.
            self._fold_ctx = _make_context(
                self._similarity_values(self.ratings_),
                self._pattern,
                restricted=cfg.similarity != "cosine",
                shrinkage=cfg.resolved_shrinkage,
                min_support=cfg.min_support,
            )
        ctx = self._fold_ctx
        out: F64Array = _similarity_block(new_row, pattern, ctx)[0]
        return out

    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """Scores for a new user from their top-``k`` most similar training users."""
        self._check_fitted()
        cfg = self.config
        sims = self.fold_in_similarities(item_idx, ratings)
        counts, cols, vals = _top_k_block(
            sims[None, :], cfg.resolved_k(self.feedback_), cfg.min_similarity, None
        )
        ptr = np.array([0, int(counts[0])], dtype=np.int64)
        weights = np.asarray(vals, dtype=np.float64)
        if self.feedback_ == "implicit" and cfg.normalize and weights.sum() > 0:
            weights = weights / weights.sum()
        s = sp.csr_matrix((weights, cols, ptr), shape=(1, self.n_users))
        if self.feedback_ == "implicit":
            return np.asarray((s @ self._data).toarray()[0], dtype=np.float32)
        _, _, b_u = self._fold_in_row(item_idx, ratings)
        num = (s @ self._data).toarray()
        den = (s @ self._pattern).toarray()
        cnt = (self._binary(s) @ self._pattern).toarray()
        base = (self.global_mean_ + b_u + self.item_bias_)[None, :]
        return np.asarray(self._combine(base, num, den, cnt)[0], dtype=np.float32)

    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """Similarity and rating matrices (CSR arrays), biases and the scoring rule."""
        return _knn_state(self)

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Restore :meth:`get_state`'s arrays; ValueError when shapes do not match."""
        _set_knn_state(self, state, self.n_users)


def _knn_state(model: _NeighbourhoodModel) -> dict[str, npt.NDArray[Any]]:
    return {
        **_csr_state("similarity", model.similarity_),
        **_csr_state("ratings", model.ratings_),
        "user_bias": np.asarray(model.user_bias_, dtype=np.float64),
        "item_bias": np.asarray(model.item_bias_, dtype=np.float64),
        "explicit": np.asarray([1 if model.feedback_ == "explicit" else 0], dtype=np.int8),
        **({} if model.recency_ is None else _csr_state("recency", model.recency_)),
    }


def _set_knn_state(
    model: _NeighbourhoodModel, state: Mapping[str, npt.NDArray[Any]], n_rows: int
) -> None:
    n_users, n_items = len(model.users_), len(model.items_)
    model.similarity_ = _csr_from_state(state, "similarity", (n_rows, n_rows))
    model.ratings_ = _csr_from_state(state, "ratings", (n_users, n_items))
    model.user_bias_ = _state_array(state, "user_bias").astype(np.float64)
    model.item_bias_ = _state_array(state, "item_bias").astype(np.float64)
    if model.user_bias_.shape != (n_users,) or model.item_bias_.shape != (n_items,):
        raise ValueError("state biases do not match the vocabularies")
    model.feedback_ = "explicit" if int(_state_array(state, "explicit")[0]) == 1 else "implicit"
    model.recency_ = (
        _csr_from_state(state, "recency", (n_users, n_items)) if "recency_indptr" in state else None
    )
    model._prepare()
