"""Alternating least squares for implicit feedback (Hu et al. 2008) and explicit ratings (ALS-WR).

Both objectives share one solver: each half-step fixes one side's factors and solves, for every
row ``u`` of the other side at once, the regularised normal equations::

    (G + Σ_{i∈I_u} w_ui y_i y_iᵀ + s_u·diag(d)) x_u = Σ_{i∈I_u} t_ui y_i

- implicit (Hu, Koren & Volinsky): ``G = YᵀY``, ``w = c − 1``, ``t = c`` (preference 1 on observed
  pairs), ``s_u = 1``, ``d = λ``. Adding ``G`` once is the YᵀY + Yᵀ(C_u − I)Y trick that makes the
  cost linear in the number of observed events instead of users × items.
- explicit (Zhou et al.'s ALS-WR): ``G = 0``, ``w = 1``, ``t = r − μ − b_other``,
  ``s_u = n_u`` (weighted-λ regularisation; 1 when ``weighted_reg`` is off); optional biases ride
  along as one extra coordinate whose partner column is all ones.

How it is vectorised. ``solver='cg'`` (the default) runs a few conjugate-gradient steps
warm-started from the current factors (Takács et al. 2011, as the ``implicit`` library does) for
*all* rows at once, without padding: the only per-event work of a CG matrix-vector product
``A_u p_u`` is ``Σ_i w_ui (y_iᵀ p_u) y_i``, which is a sampled dense-dense product (``y_iᵀ p_u``
on the observed pairs only, ``torch.sparse.sampled_addmm``) followed by a sparse-dense product
(CSR values ``w·proj`` times ``Y``). Both are compiled, row-parallel torch kernels, so a half-step
costs ``O(nnz·k + n·k²)`` per CG step with a handful of Python calls. ``solver='cholesky'``
(exact) groups rows by event count (geometric buckets, so a row is padded to less than 1.5 times
its own length), cuts them into chunks whose padded blocks ``(rows, max events, k)`` fit in
:data:`CHUNK_CELLS` cells and solves each chunk with a batched Cholesky. Python loops run over
CG steps or chunks, never over users.

Backends of the implicit CG half-step (``backend``): ``numba`` (the default when numba is
installed) runs the same CG per row in a compiled kernel (:mod:`recforge.models._als_kernels`)
over equal-cost row ranges on a thread pool, bit-identical for any thread count; ``implicit``
calls the ``implicit`` package's compiled CG; ``torch`` is the whole-matrix form above. The
per-sweep training loss is computed only when asked for (``track_loss``).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
import torch
from pydantic import Field

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, ModelFitError
from recforge.eval.metrics import rmse
from recforge.explain import Attribution, HistoryTerms
from recforge.models.base import FloatArray, IndexArray, Recommender
from recforge.threads import (
    capped,
    equal_cost_ranges,
    offered_threads,
    picked_map,
    picked_threads,
    thread_ranges,
)

__all__ = ["ALS", "CHUNK_CELLS", "ALSConfig"]

#: Upper bound on the cells of one padded block (rows × max events × k) and of one batch of
#: Gram matrices (rows × k × k): 2²² float32 cells = 16 MiB each.
CHUNK_CELLS = 1 << 22

#: Rows whose event counts differ by less than this factor share a padded block.
_BUCKET_RATIO = 1.5

#: λ when ``reg`` is None, tuned on a validation carve of ML-100k (see docs/benchmarks).
_DEFAULT_REG = {"implicit": 20.0, "explicit": 0.15}

F64Array = npt.NDArray[np.float64]


class ALSConfig(ModelConfig):
    """Hyper-parameters of :class:`ALS` (defaults tuned on ML-100k; see docs/benchmarks)."""

    objective: Literal["implicit", "explicit"] = Field(
        "implicit",
        description="'implicit': Hu et al. confidence-weighted ALS (ranking); "
        "'explicit': ALS-WR on ratings (predicts ratings).",
    )
    n_factors: int = Field(64, ge=1, le=4096, description="k, the latent dimension.")
    iterations: int = Field(
        15, ge=1, le=1000, description="Alternating sweeps (users, then items)."
    )
    reg: float | None = Field(
        None,
        gt=0,
        le=1e6,
        description="λ on factors; None: 20 for implicit, 0.15 for explicit (where weighted_reg "
        "multiplies it by each row's rating count).",
    )
    alpha: float = Field(0.3, gt=0, le=1e6, description="implicit: confidence scale α.")
    confidence: Literal["linear", "log"] = Field(
        "linear", description="implicit: c = 1 + α·r ('linear') or c = 1 + α·log(1 + r/ε) ('log')."
    )
    log_eps: float = Field(1.0, gt=0, description="implicit: ε of the 'log' confidence.")
    weighting: Literal["binary", "rating"] = Field(
        "rating", description="implicit: r is the event's value ('rating') or 1 ('binary')."
    )
    solver: Literal["cg", "cholesky"] = Field(
        "cg", description="Batched conjugate gradient (warm-started) or exact batched Cholesky."
    )
    cg_steps: int = Field(3, ge=1, le=100, description="cg: steps per half-sweep.")
    backend: Literal["auto", "numba", "torch", "implicit"] = Field(
        "auto",
        description="implicit objective with solver 'cg': run each half-sweep with recforge's "
        "compiled per-row CG ('numba'), its torch kernels ('torch') or the compiled CG of the "
        "`implicit` package, which solves the same equations ('implicit'); 'auto' uses numba "
        "when it is installed, else implicit's when installed, else torch.",
    )
    biases: bool = Field(True, description="explicit: learn user and item biases.")
    bias_reg: float | None = Field(
        None, ge=0, le=1e6, description="explicit: λ on biases (None: same as reg)."
    )
    weighted_reg: bool = Field(
        True, description="explicit: scale λ by each user's/item's rating count (ALS-WR)."
    )
    init_std: float = Field(0.01, gt=0, le=10, description="Std of the Gaussian initial factors.")
    track_loss: bool | None = Field(
        None,
        description="Compute the training loss (explicit: and RMSE) after every sweep into "
        "history_. It costs about a third of a sweep with the implicit backend, so None computes "
        "it only when asked for: when fit gets validation data or runs under `recforge train` "
        "(a training context); history_ always has epoch and seconds.",
    )
    num_threads: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="CPU threads (None: the CPUs available, see recforge.threads).",
    )


@dataclass(frozen=True)
class _Side:
    """One side's CSR view (rows of the side being solved) with per-event weights and targets."""

    indptr: npt.NDArray[np.int64]
    indices: npt.NDArray[np.int64]
    weights: FloatArray  # w_ui per event
    targets: FloatArray  # t_ui per event (explicit: before subtracting the other side's bias)
    counts: npt.NDArray[np.int64]
    order: npt.NDArray[np.int64]  # rows sorted by count (stable)
    n_cols: int  # number of partners (columns of the CSR)
    #: The same CSR with the targets as values (int32 indices): the ``implicit`` backend's input.
    native: sp.csr_matrix | None = None

    def csr(self, values: torch.Tensor) -> torch.Tensor:
        """This side's sparsity pattern as a torch CSR tensor holding ``values`` (one per event)."""
        return _csr_tensor(self.indptr, self.indices, values, (len(self.counts), self.n_cols))


def _csr_tensor(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int64],
    values: torch.Tensor,
    shape: tuple[int, int],
) -> torch.Tensor:
    with warnings.catch_warnings():
        # torch flags CSR support as "beta"; the two kernels used here are stable since 2.0.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(indptr),
            torch.from_numpy(indices),
            values,
            size=shape,
            check_invariants=False,  # built from a canonical scipy CSR, so valid by construction
        )


#: One-thread milliseconds of a torch CG half-step per row block (:func:`_row_blocks`): a block
#: adds ~40 op dispatches (~0.6 ms a half-step measured on ML-100k under load), so blocks much
#: smaller than this would cost more than the second thread saves; on larger sides, blocks of
#: this size keep the CG's (rows x k) arrays in a core's L2 cache (ml-latest-small's torch fit
#: 0.69x of the unblocked one at one thread, docs/benchmarks/speed_picker.md).
_BLOCK_MS = 2.5


def _row_blocks(side: _Side, k: int, work_ms: float) -> list[tuple[int, int, _Side]]:
    """The torch CG's row blocks of ``side``: ``(lo, hi, the rows lo..hi-1 as a _Side)``.

    Their number is a power of two set by the work alone (``work_ms`` / :data:`_BLOCK_MS`, at
    most 32), never by the thread count, and their cost (``k² + 2k·n_u`` a row) about equal: each
    block runs the same single-threaded torch ops whichever thread runs it, so the fit is the
    same to the last bit for any thread count (torch's own intra-op threads split a GEMM as they
    like; these do not get the chance, see ``_solve_side``).
    """
    n = len(side.counts)
    parts = 1
    while parts < 32 and 2 * parts * _BLOCK_MS <= work_ms:
        parts *= 2
    bounds = equal_cost_ranges(k * k + 2 * k * side.counts, parts) if parts > 1 else [(0, n)]
    out = []
    for lo, hi in bounds or [(0, n)]:
        a, b = int(side.indptr[lo]), int(side.indptr[hi])
        sub = _Side(
            side.indptr[lo : hi + 1] - a,
            side.indices[a:b],
            side.weights[a:b],
            side.targets[a:b],
            side.counts[lo:hi],
            np.argsort(side.counts[lo:hi], kind="stable").astype(np.int64),
            side.n_cols,
        )
        out.append((lo, hi, sub))
    return out


def _native_cg() -> Any | None:
    """The compiled CG kernel of the ``implicit`` package (None when it is not installed).

    ``least_squares_cg(C, X, Y, λ, num_threads, cg_steps)`` updates ``X`` in place with
    ``cg_steps`` warm-started CG steps on ``(YᵀY + Yᵀ(C_u − I)Y + λI) x_u = Yᵀ C_u 1`` for every
    row ``u`` of the CSR ``C`` of confidences: exactly :func:`_cg_solve_side`'s implicit system
    with ``C = c``, computed per row in C with OpenMP threads instead of whole-matrix passes.
    """
    try:
        from implicit.cpu import _als  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return _als


def _numba_cg() -> Any | None:
    """recforge's compiled CG kernel module (None when numba is not installed)."""
    try:
        return importlib.import_module("recforge.models._als_kernels")
    except ImportError:
        return None


#: One-thread multiply-adds per millisecond of the compiled CG and of torch's sparse kernels on
#: this kind of CPU (ML-100k: a 15-sweep numba fit of 64 factors, ~84M multiply-adds a half-step,
#: took ~0.15 s on one core): the cost models behind the thread counts (threads_for).
_MADDS_PER_MS = 8e6


def _cg_half_ms(mat: sp.csr_matrix, k: int, steps: int) -> float:
    """One-thread milliseconds of a CG half-step: per row and step, ``k²`` for ``(YᵀY + λI)p``
    and ``2k`` per stored entry for ``Y_Iᵀ(C_I − I)Y_I p``."""
    return float(steps * (mat.shape[0] * k * k + 2 * k * mat.nnz) / _MADDS_PER_MS)


def _torch_region_ms(nnz: int, k: int) -> float:
    """One-thread milliseconds of one of the torch backend's sparse ops (~``2·nnz·k``)."""
    return 2.0 * nnz * k / _MADDS_PER_MS


def _single_threaded_blas() -> contextlib.AbstractContextManager[Any]:
    """BLAS limited to one thread for the block (threadpoolctl ships with ``implicit``)."""
    try:
        threadpoolctl = importlib.import_module("threadpoolctl")
    except ImportError:
        return contextlib.nullcontext()
    limits: contextlib.AbstractContextManager[Any] = threadpoolctl.threadpool_limits(1, "blas")
    return limits


def _make_side(
    mat: sp.csr_matrix, weights: FloatArray, targets: FloatArray, *, native: bool = False
) -> _Side:
    indptr = mat.indptr.astype(np.int64)
    counts = np.diff(indptr)
    return _Side(
        indptr,
        mat.indices.astype(np.int64),
        np.ascontiguousarray(weights, dtype=np.float32),
        np.ascontiguousarray(targets, dtype=np.float32),
        counts,
        np.argsort(counts, kind="stable").astype(np.int64),
        int(mat.shape[1]),
        sp.csr_matrix(
            (np.asarray(targets, dtype=np.float32), mat.indices, mat.indptr), shape=mat.shape
        )
        if native
        else None,
    )


def _cg_solve_side(
    side: _Side,
    other: torch.Tensor,
    current: torch.Tensor,
    *,
    shared: torch.Tensor | None,
    row_reg: torch.Tensor | None,
    offsets: FloatArray | None,
    cg_steps: int,
) -> torch.Tensor:
    """``cg_steps`` warm-started CG steps on every row's normal equations at once, unpadded.

    ``A_u p = S p + Σ_{i∈I_u} w_ui (y_iᵀ p) y_i + reg_u ∘ p`` with ``S`` the ``k × k`` term shared
    by every row (implicit: ``YᵀY + λI``) and ``reg_u`` a per-row penalty (explicit ALS-WR), either
    of which may be None. The event sum is a sampled
    dense-dense product on the CSR pattern (``y_iᵀ p_u`` per event) scaled by ``w`` and multiplied
    back by ``Y`` as a CSR × dense product. The initial residual ``b − A x`` is fused into one such
    pass (values ``t − w·y_iᵀ x_u``). Each row's CG is independent (per-row step sizes).
    """
    w = torch.from_numpy(side.weights)
    targets = side.targets
    if offsets is not None:
        targets = targets - offsets[side.indices]
    t = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
    # A transposed view: sampled_addmm takes it as is (0.46 vs 0.49 ms a call for ML-100k's
    # users, the same values); a contiguous transpose cost one more copy a call.
    other_t = other.T
    pattern = side.csr(torch.ones_like(w))

    def events(p: torch.Tensor, scale: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        # Σ_i (base_ui + scale_ui · y_iᵀ p_u) y_i for every row u.
        proj = torch.sparse.sampled_addmm(pattern, p, other_t, beta=0.0).values()
        vals = scale * proj if base is None else base + scale * proj
        return side.csr(vals) @ other

    def add_dense(out: torch.Tensor, p: torch.Tensor, sign: float) -> torch.Tensor:
        # out + sign · (S p + reg ∘ p), in place (these (n, k) passes dominate small data).
        if shared is not None:
            out.addmm_(p, shared, alpha=sign)
        if row_reg is not None:
            out.addcmul_(row_reg, p, value=sign)
        return out

    x = current.clone()
    # A row without events has a zero right-hand side, so its exact solution is 0 (and the
    # implicit backend sets exactly that); start there, its residual and steps are then 0.
    x[torch.from_numpy(side.counts == 0)] = 0.0
    r = add_dense(events(x, -w, t), x, -1.0)
    p = r.clone()
    rs_old = (r * r).sum(1)
    for _ in range(cg_steps):
        ap = add_dense(events(p, w, None), p, 1.0)
        denom = (p * ap).sum(1)
        # A converged row has r = p = 0; its step must be 0, not 0/0.
        step = torch.where(denom > 0, rs_old / torch.where(denom > 0, denom, 1.0), 0.0)[:, None]
        x.addcmul_(step, p)
        r.addcmul_(step, ap, value=-1.0)
        rs_new = (r * r).sum(1)
        beta = torch.where(rs_old > 0, rs_new / torch.where(rs_old > 0, rs_old, 1.0), 0.0)
        p = torch.addcmul(r, beta[:, None], p)
        rs_old = rs_new
    return x


def _chunks(side: _Side, width: int) -> Iterator[npt.NDArray[np.int64]]:
    """Row groups whose padded block and Gram batch each fit in :data:`CHUNK_CELLS` cells.

    Rows are bucketed by event count in geometric steps of :data:`_BUCKET_RATIO`, so a row is
    padded to at most that ratio times its own length (power-law data would otherwise pad most
    rows to the length of the heaviest row in its chunk).
    """
    counts = side.counts[side.order]
    safe = np.maximum(counts, 1).astype(np.float64)
    bucket = np.where(counts > 0, np.floor(np.log(safe) / np.log(_BUCKET_RATIO)) + 1, 0)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(counts)]
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        longest = max(int(counts[hi - 1]), 1)
        step = max(1, CHUNK_CELLS // max(longest * width, width * width))
        for start in range(lo, hi, step):
            yield side.order[start : min(start + step, hi)]


def _padded(
    side: _Side, rows: npt.NDArray[np.int64], other: torch.Tensor, offsets: FloatArray | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded ``(B, L, k)`` partner vectors, ``(B, L)`` weights and ``(B, L)`` targets of ``rows``.

    Padding cells are zero, so they add nothing to the Gram matrices or right-hand sides.
    """
    counts = side.counts[rows]
    width = int(counts.max()) if len(counts) else 0
    total = int(counts.sum())
    row_of = np.repeat(np.arange(len(rows)), counts)
    first = np.cumsum(counts) - counts
    pos = np.arange(total) - np.repeat(first, counts)
    src = np.repeat(side.indptr[rows], counts) + pos
    k = other.shape[1]
    vecs = torch.zeros((len(rows), width, k), dtype=other.dtype)
    weights = torch.zeros((len(rows), width), dtype=other.dtype)
    targets = torch.zeros((len(rows), width), dtype=other.dtype)
    ri = torch.from_numpy(row_of)
    pi = torch.from_numpy(pos)
    partner = torch.from_numpy(side.indices[src])
    vecs[ri, pi] = other[partner]
    weights[ri, pi] = torch.from_numpy(side.weights[src])
    tgt = side.targets[src]
    if offsets is not None:
        tgt = tgt - offsets[side.indices[src]]
    targets[ri, pi] = torch.from_numpy(np.ascontiguousarray(tgt, dtype=np.float32))
    return vecs, weights, targets


def _solve_side(
    side: _Side,
    other: torch.Tensor,
    current: torch.Tensor,
    *,
    gram: torch.Tensor | None,
    reg_diag: torch.Tensor,
    row_scale: torch.Tensor,
    offsets: FloatArray | None,
    solver: str,
    cg_steps: int,
    blocks: list[tuple[int, int, _Side]] | None = None,
    work_ms: float = 0.0,
    threads: int = 1,
) -> torch.Tensor:
    """New factors for every row of ``side`` given the partner factors ``other``.

    Args:
        side: CSR of the rows being solved, with per-event weights ``w`` and targets ``t``.
        other: ``(n_partners, k)`` fixed partner factors (augmented with a ones column for biases).
        current: ``(n_rows, k)`` current factors (the CG warm start).
        gram: shared ``k × k`` term ``G`` added to every row's matrix (None for zero).
        reg_diag: ``(k,)`` per-coordinate penalty ``d``.
        row_scale: ``(n_rows,)`` per-row penalty multiplier ``s_u``.
        offsets: per-partner values subtracted from the targets (explicit: μ + partner bias).
        blocks: the CG's row blocks (:func:`_row_blocks`), run on one or more threads (None:
            one block, the whole side).
        work_ms: the half-step's one-thread milliseconds (for the thread count's picker).
        threads: the most threads the blocks may run on (the fit's count).
    """
    if solver == "cg":
        shared: torch.Tensor | None
        row_reg: torch.Tensor | None
        if bool((row_scale == 1.0).all()):
            # One penalty for every row: fold it into the shared k × k term.
            shared = torch.diag(reg_diag) if gram is None else gram + torch.diag(reg_diag)
            row_reg = None
        else:
            shared, row_reg = gram, row_scale[:, None] * reg_diag[None, :]
        if blocks is None or len(blocks) < 2:
            return _cg_solve_side(
                side,
                other,
                current,
                shared=shared,
                row_reg=row_reg,
                offsets=offsets,
                cg_steps=cg_steps,
            )
        out = torch.empty_like(current)

        def run(block: tuple[int, int, _Side]) -> None:
            lo, hi, sub = block
            # Each block's ops on one torch thread, in whichever thread runs it: a pool worker
            # keeps the torch thread count it first saw (ATen initialises it once a thread).
            if torch.get_num_threads() != 1:
                torch.set_num_threads(1)
            out[lo:hi] = _cg_solve_side(
                sub,
                other,
                current[lo:hi],
                shared=shared,
                row_reg=None if row_reg is None else row_reg[lo:hi],
                offsets=offsets,
                cg_steps=cg_steps,
            )

        # Rows are independent and each block's ops are the same on any thread: the count
        # changes the time only, so it is measured (picked_map).
        # A block's one-thread cost: k² a row (its system) + 2k an event (its products).
        k = other.shape[1]
        costs = [float((hi - lo) * k * k + 2 * k * len(sub.indices)) for lo, hi, sub in blocks]
        with _own_torch_threads():  # the calling thread runs blocks too
            picked_map("als.torch_cg", run, blocks, costs, work_ms, threads)
        return out
    return _cholesky_solve_side(side, other, current, gram, reg_diag, row_scale, offsets)


@contextlib.contextmanager
def _own_torch_threads() -> Iterator[None]:
    """Gives the calling thread its torch thread count back after the block (a CG block sets
    the count of whichever thread runs it to one)."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _cholesky_solve_side(
    side: _Side,
    other: torch.Tensor,
    current: torch.Tensor,
    gram: torch.Tensor | None,
    reg_diag: torch.Tensor,
    row_scale: torch.Tensor,
    offsets: FloatArray | None,
) -> torch.Tensor:
    """:func:`_solve_side`'s exact solver: each row's normal equations by batched Cholesky."""
    out = current.clone()
    k = other.shape[1]
    for rows in _chunks(side, k):
        vecs, weights, targets = _padded(side, rows, other, offsets)
        reg = row_scale[torch.from_numpy(rows)][:, None] * reg_diag[None, :]  # (B, k)
        rhs = torch.bmm(targets[:, None, :], vecs).squeeze(1)  # Σ t y   (B, k)
        a = torch.bmm(vecs.transpose(1, 2), weights[:, :, None] * vecs)
        a = a + torch.diag_embed(reg)
        if gram is not None:
            a = a + gram
        chol, info = torch.linalg.cholesky_ex(a)
        if bool((info != 0).any()):
            raise ModelFitError(
                "als: a normal-equation matrix is not positive definite; increase reg"
            )
        out[rows] = torch.cholesky_solve(rhs[:, :, None], chol).squeeze(-1)
    return out


def _check_finite(x: torch.Tensor, y: torch.Tensor, epoch: int) -> None:
    """Refuse factors that became non-finite in sweep ``epoch``."""
    # A sum is finite only when every entry is: one reduction, no boolean copy. In numpy (one
    # thread, float64 so large finite factors cannot overflow it): a torch sum at the fit's 2
    # threads took 16 ms a sweep on the loaded 2-core machine, 2.4x the fit's time (its second
    # thread waits for a core).
    if not math.isfinite(
        float(x.numpy().sum(dtype=np.float64)) + float(y.numpy().sum(dtype=np.float64))
    ):
        raise ModelFitError(
            f"als: factors became non-finite in sweep {epoch}; increase reg or lower alpha"
        )


class ALS(HistoryTerms, Recommender):
    """Matrix factorisation by alternating least squares, implicit or explicit (``objective``).

    **implicit** (Hu, Koren & Volinsky 2008). Scoring ``s_ui = x_uᵀ y_i``. With preference
    ``p_ui = 1`` for observed pairs (0 otherwise) and confidence ``c_ui = 1 + α·r_ui``
    (or ``1 + α·log(1 + r_ui/ε)``; ``c = 1`` for unobserved pairs), the loss over *all* pairs is::

        Σ_{u,i} c_ui (p_ui − x_uᵀ y_i)² + λ (Σ_u ‖x_u‖² + Σ_i ‖y_i‖²)

    Scores are not ratings (``predicts_ratings`` is False).

    **explicit** (ALS-WR, Zhou et al. 2008). Scoring ``r̂_ui = μ + b_u + b_i + x_uᵀ y_i`` (biases
    optional). Loss over the observed ratings ``R``, with weighted-λ regularisation::

        Σ_{(u,i)∈R} (r_ui − r̂_ui)² + λ (Σ_u n_u ‖x_u‖² + Σ_i n_i ‖y_i‖²)
                                    + λ_b (Σ_u n_u b_u² + Σ_i n_i b_i²)

    ``predicts_ratings`` is True (an instance attribute, since it depends on ``objective``).

    Each half-sweep minimises the loss exactly in one block (``solver='cholesky'``) or decreases
    it with ``cg_steps`` warm-started conjugate-gradient steps (``solver='cg'``), so ``history_``'s
    ``train_loss`` never increases. New users are folded in by solving the same regularised least
    squares for their vector against the trained item factors; ``item_vectors`` are the item
    factors.

    Citations: Y. Hu, Y. Koren, C. Volinsky, "Collaborative Filtering for Implicit Feedback
    Datasets", ICDM 2008. Y. Zhou, D. Wilkinson, R. Schreiber, R. Pan, "Large-scale Parallel
    Collaborative Filtering for the Netflix Prize", AAIM 2008. G. Takács, I. Pilászy, D. Tikk,
    "Applications of the conjugate gradient method for implicit feedback collaborative
    filtering", RecSys 2011.

    Attributes:
        user_factors_, item_factors_: float32 ``(n_users, k)`` and ``(n_items, k)``.
        user_bias_, item_bias_: float32 biases (zeros unless explicit with ``biases``).
        history_: per sweep ``epoch, train_loss`` (loss above / number of events), ``seconds``,
            plus ``train_rmse`` (and ``valid_rmse`` with ``valid``) for explicit.
    """

    name: ClassVar[str] = "als"
    Config: ClassVar[type[ModelConfig]] = ALSConfig
    #: Class default for the default (implicit) objective; each instance sets its own value.
    predicts_ratings: ClassVar[bool] = False
    config: ALSConfig

    user_factors_: FloatArray
    item_factors_: FloatArray
    user_bias_: FloatArray
    item_bias_: FloatArray
    history_: pd.DataFrame

    def __init__(
        self, config: ModelConfig | Mapping[str, Any] | None = None, **overrides: Any
    ) -> None:
        super().__init__(config, **overrides)
        # YᵀY (float64) for implicit fold-in, derived from item_factors_ on first use.
        self._item_gram: F64Array | None = None
        # item_factors_ in float64 for explanations, keyed by the float32 array it copies.
        self._factors64: tuple[FloatArray, F64Array] | None = None
        # The compiled CG kernel module while fitting with it (see _pick_backend).
        self._native: Any | None = None
        self._backend = "torch"
        # Per side: the numba backend's row ranges (see _numba_half).
        self._bounds: dict[tuple[int, int], tuple[list[tuple[int, int]], list[float]]] = {}
        # Per side and width: the torch CG's row blocks and work estimate (see _torch_blocks).
        self._blocks: dict[tuple[int, int], tuple[list[tuple[int, int, _Side]], float]] = {}
        self._fit_threads = 1
        #: Which kernels the last fit used: "numba", "torch" or "implicit".
        self.backend_ = "torch"
        # Whether scores are ratings depends on the objective, so it is per instance. It is set
        # through __dict__ because the base class declares it a ClassVar (fixed per family).
        self.__dict__["predicts_ratings"] = self.config.objective == "explicit"

    @property
    def _explicit(self) -> bool:
        return self.config.objective == "explicit"

    @property
    def reg(self) -> float:
        """The effective λ: ``config.reg``, or the objective's default when it is None."""
        if self.config.reg is not None:
            return self.config.reg
        return _DEFAULT_REG[self.config.objective]

    @property
    def _bias_reg(self) -> float:
        cfg = self.config
        return self.reg if cfg.bias_reg is None else cfg.bias_reg

    # ------------------------------------------------------------------ confidences
    def _confidence(self, r: FloatArray) -> FloatArray:
        """``c = 1 + α·r`` or ``1 + α·log(1 + r/ε)`` (implicit), from ratings or 1s."""
        cfg = self.config
        vals = np.ones_like(r) if cfg.weighting == "binary" else np.asarray(r, dtype=np.float32)
        if cfg.confidence == "log":
            conf = 1.0 + cfg.alpha * np.log1p(vals / cfg.log_eps)
        else:
            conf = 1.0 + cfg.alpha * vals
        return np.asarray(conf, dtype=np.float32)

    # ------------------------------------------------------------------ fitting
    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        k = cfg.n_factors
        by_user = train.csr("rating")
        by_item = by_user.T.tocsr()
        by_item.sort_indices()
        self._bounds = {}
        self._blocks = {}
        sides = self._build_sides(by_user, by_item)
        rng = np.random.default_rng(cfg.seed)
        x = torch.from_numpy(rng.normal(0.0, cfg.init_std, (train.n_users, k)).astype(np.float32))
        y = torch.from_numpy(rng.normal(0.0, cfg.init_std, (train.n_items, k)).astype(np.float32))
        b_u = np.zeros(train.n_users, dtype=np.float32)
        b_i = np.zeros(train.n_items, dtype=np.float32)
        rows: list[dict[str, float]] = []
        track = self._tracks_loss(valid)
        # The compiled kernels call BLAS once per half-step (YᵀY) beside their own threads; BLAS
        # threads would spin-wait against them (and a threaded GEMM need not be reproducible),
        # so BLAS gets one thread (scoped once: threadpoolctl's library scan costs milliseconds).
        compiled = self._backend in ("implicit", "numba")
        blas = _single_threaded_blas() if compiled else contextlib.nullcontext()
        # The torch backend's ops (sampled_addmm, CSR spmm, row-wise sums) are parallel regions of
        # about nnz·k multiply-adds each: one thread when that is too little to share (threads_for).
        # The CG solver runs them on one torch thread: its threads are its own row blocks, which
        # give the same fit for any thread count (_row_blocks).
        torch_ops = None
        self._fit_threads = torch.get_num_threads()  # the fit's count, before any cap
        if not compiled:
            torch_ops = capped(0.0 if cfg.solver == "cg" else _torch_region_ms(by_user.nnz, k))
        with torch.no_grad(), blas, torch_ops or contextlib.nullcontext():
            for epoch in range(1, cfg.iterations + 1):
                t0 = time.perf_counter()
                if self._explicit:
                    x, b_u = self._explicit_half(sides[0], x, y, b_u, b_i)
                    y, b_i = self._explicit_half(sides[1], y, x, b_i, b_u)
                else:
                    x = self._implicit_half(sides[0], x, y)
                    y = self._implicit_half(sides[1], y, x)
                _check_finite(x, y, epoch)
                row = {"epoch": float(epoch), "seconds": time.perf_counter() - t0}
                rows.append(row)
                if not track:
                    continue
                self.user_factors_ = x.numpy()
                self.item_factors_ = y.numpy()
                self.user_bias_, self.item_bias_ = b_u, b_i
                row.update(self._loss(sides[0], sides[0].counts, sides[1].counts))
                if self._explicit and valid is not None and len(valid):
                    pred = self._clip(self.predict_idx(valid.user_idx, valid.item_idx)).astype(
                        np.float64
                    )
                    row["valid_rmse"] = rmse(valid.rating, pred)
        self.user_bias_, self.item_bias_ = b_u, b_i
        self.user_factors_ = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(y.numpy(), dtype=np.float32)
        self._item_gram = None
        self.backend_ = self._backend
        self._bounds = {}
        self._blocks = {}
        self.history_ = pd.DataFrame(rows).astype({"epoch": np.int64})

    def _build_sides(self, by_user: sp.csr_matrix, by_item: sp.csr_matrix) -> list[_Side]:
        """The two half-steps' row sides (users, items); picks the implicit backend."""
        self._native = None
        self._backend = "torch"
        if self._explicit:
            return [_make_side(m, np.ones(m.nnz, np.float32), m.data) for m in (by_user, by_item)]
        self._backend, self._native = self._pick_backend()
        return [
            _make_side(
                m,
                self._confidence(m.data) - 1.0,
                self._confidence(m.data),
                native=self._native is not None,
            )
            for m in (by_user, by_item)
        ]

    def _tracks_loss(self, valid: Interactions | None) -> bool:
        """Whether this fit computes the per-sweep loss (see ``ALSConfig.track_loss``)."""
        if self.config.track_loss is not None:
            return self.config.track_loss
        from recforge.train.checkpoint import current_context

        return valid is not None or current_context() is not None

    def _pick_backend(self) -> tuple[str, Any | None]:
        """``(name, kernel module)`` of the compiled backend to use, or ``("torch", None)``."""
        cfg = self.config
        if cfg.backend == "torch" or cfg.solver != "cg":
            return "torch", None
        if cfg.backend in ("auto", "numba"):
            kernels = _numba_cg()
            if kernels is not None:
                return "numba", kernels
            if cfg.backend == "numba":
                raise ConfigError(
                    "als: backend 'numba' needs numba: pip install numba (or set backend = 'torch')"
                )
        native = _native_cg()
        if native is None and cfg.backend == "implicit":
            raise ConfigError(
                "als: backend 'implicit' needs the implicit package: pip install implicit "
                "(or set backend = 'torch')"
            )
        return ("implicit", native) if native is not None else ("torch", None)

    def _implicit_half(
        self, side: _Side, current: torch.Tensor, other: torch.Tensor
    ) -> torch.Tensor:
        cfg = self.config
        k = other.shape[1]
        if self._backend == "numba" and side.native is not None:
            return self._numba_half(side.native, current, other)
        if self._backend == "implicit" and side.native is not None:
            # In place: the caller replaces ``current`` by the result, so no copy is needed
            # (implicit's own fit updates its factors in place too).
            out = current.numpy()
            # Same equations, compiled per-row loop over the torch thread count (BLAS is held
            # to one thread around the whole fit, see _fit).
            native: Any = self._native
            # Rows are solved independently (one OpenMP thread a row): the thread count changes
            # the time, not the result, so it is measured (picked_threads).
            with picked_threads(
                "als.implicit_cg", _cg_half_ms(side.native, k, cfg.cg_steps)
            ) as n_threads:
                native.least_squares_cg(
                    side.native,
                    out,
                    other.numpy(),
                    self.reg,
                    num_threads=n_threads,
                    cg_steps=cfg.cg_steps,
                )
            return torch.from_numpy(out)
        return _solve_side(
            side,
            other,
            current,
            gram=other.T @ other,
            reg_diag=torch.full((k,), self.reg, dtype=torch.float32),
            row_scale=torch.ones(len(side.counts), dtype=torch.float32),
            offsets=None,
            solver=cfg.solver,
            cg_steps=cfg.cg_steps,
            **self._torch_blocks(side, k),
        )

    def _torch_blocks(self, side: _Side, width: int) -> dict[str, Any]:
        """``blocks`` and ``work_ms`` of ``side`` for :func:`_solve_side`'s CG (once per fit)."""
        if self.config.solver != "cg":
            return {}
        key = (id(side), width)
        if key not in self._blocks:
            steps = self.config.cg_steps + 1  # + the initial residual
            n, nnz = len(side.counts), len(side.indices)
            work_ms = steps * (n * width * width + 2 * width * nnz) / _MADDS_PER_MS
            self._blocks[key] = (_row_blocks(side, width, work_ms), work_ms)
        blocks, work_ms = self._blocks[key]
        return {"blocks": blocks, "work_ms": work_ms, "threads": self._fit_threads}

    def _numba_half(
        self, mat: sp.csr_matrix, current: torch.Tensor, other: torch.Tensor
    ) -> torch.Tensor:
        """One half-step with :func:`recforge.models._als_kernels.cg_half`, in place.

        The rows are cut into contiguous ranges of equal cost (more ranges than threads, so a
        thread that the scheduler parks does not hold the others up); each range runs with the
        GIL released. Rows are independent, so the result does not depend on the split.
        """
        kernels: Any = self._native
        k = other.shape[1]
        x, y = current.numpy(), other.numpy()
        # numpy's BLAS, held to one thread for the fit (see _fit): a multi-threaded GEMM may
        # split the n-long reduction differently from run to run, and YᵀY must be reproducible.
        s = y.T @ y
        s[np.diag_indices(k)] += np.float32(self.reg)
        steps = self.config.cg_steps
        # One thread or the fit's count, whichever this process measured faster for half-steps
        # of this size: a static threshold cannot be right both on a busy machine (where a
        # second thread waits for a core) and on a quiet one (docs/benchmarks/speed.md).
        # (recforge.threads.picked_map: its one-thread probes run a quarter of the ranges alone.)
        work_ms = _cg_half_ms(mat, k, steps)
        key = (id(mat), offered_threads(work_ms))
        if key not in self._bounds:  # once per side and fit: the split only needs indptr
            # A row's cost: k² (its system) + 2k a rated item (its products).
            rows = np.diff(np.asarray(mat.indptr, dtype=np.int64))
            self._bounds[key] = thread_ranges(len(rows), lambda: k * k + 2 * k * rows, work_ms)
        bounds, costs = self._bounds[key]
        scratch = np.zeros((len(bounds), 3, k), dtype=np.float32)

        def run(part: int) -> None:
            lo, hi = bounds[part]
            kernels.cg_half(
                mat.indptr, mat.indices, mat.data, x, y, s, steps, lo, hi, scratch[part]
            )

        picked_map("als.cg", run, range(len(bounds)), costs, work_ms)
        return current

    def _explicit_half(
        self,
        side: _Side,
        current: torch.Tensor,
        other: torch.Tensor,
        own_bias: FloatArray,
        other_bias: FloatArray,
    ) -> tuple[torch.Tensor, FloatArray]:
        """Solve one side's factors (and biases) against the other side, explicit objective."""
        cfg = self.config
        k = other.shape[1]
        offsets = (self.global_mean_ + other_bias).astype(np.float32)
        scale = side.counts.astype(np.float32) if cfg.weighted_reg else np.ones(len(side.counts))
        # Rows without ratings get s = 1, so their (zero right-hand side) system stays regular.
        row_scale = torch.from_numpy(np.maximum(scale, 1.0).astype(np.float32))
        reg_diag = torch.full((k,), self.reg, dtype=torch.float32)
        if cfg.biases:
            # Unknown [x, b] against partner [y, 1]: the bias is one more coordinate.
            ones = torch.ones((other.shape[0], 1), dtype=other.dtype)
            aug_other = torch.cat([other, ones], dim=1)
            aug_cur = torch.cat([current, torch.from_numpy(own_bias)[:, None]], dim=1)
            reg_diag = torch.cat([reg_diag, torch.tensor([self._bias_reg], dtype=torch.float32)])
        else:
            aug_other, aug_cur = other, current
        solved = _solve_side(
            side,
            aug_other,
            aug_cur,
            gram=None,
            reg_diag=reg_diag,
            row_scale=row_scale,
            offsets=offsets,
            solver=cfg.solver,
            cg_steps=cfg.cg_steps,
            **self._torch_blocks(side, aug_other.shape[1]),
        )
        if cfg.biases:
            return solved[:, :k].contiguous(), solved[:, k].numpy().astype(np.float32)
        return solved, own_bias

    def _loss(
        self,
        side: _Side,
        user_counts: npt.NDArray[np.int64],
        item_counts: npt.NDArray[np.int64],
    ) -> dict[str, float]:
        """Training loss (see the class docstring) divided by the number of events.

        ``side`` is the user side (CSR by user; targets are ratings (explicit) or confidences).
        The per-event scores ``x_uᵀ y_i`` are one sampled dense-dense product on the CSR pattern,
        so the loss costs ``O(nnz·k)`` with no ``(nnz, k)`` gathers.
        """
        cfg = self.config
        n = max(len(side.indices), 1)
        pattern = side.csr(torch.ones(len(side.indices), dtype=torch.float32))
        # float32 scores (as the factors), accumulated in float64 below.
        s = (
            torch.sparse.sampled_addmm(
                pattern,
                torch.from_numpy(self.user_factors_),
                torch.from_numpy(self.item_factors_).T.contiguous(),
                beta=0.0,
            )
            .values()
            .numpy()
            .astype(np.float64)
        )
        x = self.user_factors_.astype(np.float64)
        y = self.item_factors_.astype(np.float64)
        t = side.targets.astype(np.float64)
        if self._explicit:
            u = np.repeat(np.arange(len(side.counts)), side.counts)
            i = side.indices
            pred = self.global_mean_ + self.user_bias_[u] + self.item_bias_[i] + s
            fit = float(((t - pred) ** 2).sum())
        else:
            # Observed pairs: replace the c = 1, p = 0 term (counted below) by c (1 − s)².
            fit = float((t * (1.0 - s) ** 2 - s**2).sum())
        if self._explicit:
            sq_x, sq_y = (x**2).sum(1), (y**2).sum(1)
            bu, bi = self.user_bias_.astype(np.float64), self.item_bias_.astype(np.float64)
            wu = user_counts if cfg.weighted_reg else np.ones_like(user_counts)
            wi = item_counts if cfg.weighted_reg else np.ones_like(item_counts)
            penalty = self.reg * float(wu @ sq_x + wi @ sq_y)
            penalty += self._bias_reg * float(wu @ bu**2 + wi @ bi**2) if cfg.biases else 0.0
            return {"train_loss": (fit + penalty) / n, "train_rmse": float(np.sqrt(fit / n))}
        # Σ over all pairs of (x_uᵀ y_i)² = ⟨XᵀX, YᵀY⟩ (the unobserved, c = 1, p = 0 part).
        fit += float(((x.T @ x) * (y.T @ y)).sum())
        penalty = self.reg * float((x**2).sum() + (y**2).sum())
        return {"train_loss": (fit + penalty) / n}

    # ------------------------------------------------------------------ scoring
    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """``x_uᵀ y_i`` (implicit) or ``μ + b_u + b_i + x_uᵀ y_i`` (explicit) for every item."""
        self._check_fitted()
        u = np.asarray(user_idx, dtype=np.int64)
        scores = self.user_factors_[u] @ self.item_factors_.T
        if self._explicit:
            scores += (self.global_mean_ + self.user_bias_[u])[:, None] + self.item_bias_[None, :]
        return scores.astype(np.float32, copy=False)

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """The same score per (user, item) pair, without full score rows."""
        self._check_fitted()
        u = np.asarray(user_idx, dtype=np.int64)
        i = np.asarray(item_idx, dtype=np.int64)
        scores = np.einsum("nk,nk->n", self.user_factors_[u], self.item_factors_[i])
        if self._explicit:
            scores = scores + (self.global_mean_ + self.user_bias_[u] + self.item_bias_[i])
        out: FloatArray = scores.astype(np.float32)
        return out

    # ------------------------------------------------------------------ new users
    def fold_in_vector(self, item_idx: IndexArray, ratings: FloatArray) -> tuple[F64Array, float]:
        """A new user's factors and bias, solving the user half-step against the item factors.

        implicit: ``(YᵀY + Y_Iᵀ (C − I) Y_I + λI) x = Y_Iᵀ c``; explicit: ``([Y_I, 1]ᵀ[Y_I, 1] +
        s·diag(λ…, λ_b)) [x, b] = [Y_I, 1]ᵀ (r − μ − b_I)`` with ``s = n`` under weighted λ.
        """
        self._check_fitted()
        cfg = self.config
        idx = np.asarray(item_idx, dtype=np.int64)
        y_i = self.item_factors_[idx].astype(np.float64)
        k = y_i.shape[1]
        if not self._explicit:
            if self._item_gram is None:
                # Shared by every new user: computing it once keeps one fold-in O(n k + k³).
                y = self.item_factors_.astype(np.float64)
                self._item_gram = y.T @ y
            c = self._confidence(np.asarray(ratings, dtype=np.float32)).astype(np.float64)
            a = self._item_gram + (y_i * (c - 1.0)[:, None]).T @ y_i + self.reg * np.eye(k)
            x: F64Array = np.asarray(np.linalg.solve(a, y_i.T @ c), dtype=np.float64)
            return x, 0.0
        target = np.asarray(ratings, dtype=np.float64) - self.global_mean_ - self.item_bias_[idx]
        scale = float(max(len(idx), 1)) if cfg.weighted_reg else 1.0
        reg = np.full(k, self.reg)
        if cfg.biases:
            y_i = np.hstack([y_i, np.ones((len(idx), 1))])
            reg = np.append(reg, self._bias_reg)
        # A zero bias penalty is fine only with ratings to pin the bias; keep the system regular.
        a = y_i.T @ y_i + scale * np.diag(np.maximum(reg, 1e-12))
        sol: F64Array = np.asarray(np.linalg.solve(a, y_i.T @ target), dtype=np.float64)
        return (sol[:k], float(sol[k])) if cfg.biases else (sol, 0.0)

    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """Scores of every item for a new user (see :meth:`fold_in_vector`)."""
        vec, bias = self.fold_in_vector(item_idx, ratings)
        scores = self.item_factors_ @ vec.astype(np.float32)
        if self._explicit:
            scores = scores + (self.global_mean_ + bias + self.item_bias_)
        out: FloatArray = scores.astype(np.float32)
        return out

    def _item_factors64(self) -> F64Array:
        """``item_factors_`` in float64, copied once per factor array (not per explanation: the
        copy of every item's factors was most of a served explanation's time)."""
        cached = self._factors64
        if cached is None or cached[0] is not self.item_factors_:
            cached = (self.item_factors_, self.item_factors_.astype(np.float64))
            self._factors64 = cached
        return cached[1]

    def explain_rows(
        self, rows: sp.csr_matrix, row_of: IndexArray, targets: IndexArray
    ) -> Attribution:
        """Exact, after Hu, Koren & Volinsky (2008, §5): the folded-in user factor is a weighted
        sum over the user's items, so the score splits into one term per history item.

        implicit: ``x_u = W Y_Iᵀ c`` with ``W = (YᵀY + Y_Iᵀ(C − I)Y_I + λI)⁻¹``, hence
        ``s_ui = Σ_j c_uj · y_iᵀ W y_j`` (residual 0). explicit: ``[x; b] = A⁻¹ Xᵀ t`` with
        ``X = [Y_I, 1]`` and ``t_j = r_j − μ − b_j``, hence ``w_j = (x_iᵀ A⁻¹ x_j) t_j`` and the
        residual ``μ + b_i``.
        """
        return self._history_terms(rows, row_of, targets)

    def rank_history_top(
        self,
        items: IndexArray,
        ratings: FloatArray,
        k: int,
        exclude: IndexArray,
        n: int,
        *,
        new_user: bool = False,
    ) -> tuple[IndexArray, FloatArray, F64Array] | None:
        """A new user's top-``k`` (as :meth:`recommend_for_ratings` ranks it) with its exact
        explanation weights ``(k, |H|)``, in one call: the service's explained POST, without
        the item-id round trip of a ranked list between the fold-in and the explanation.

        None for known users, whom the service ranks by their trained factors.
        """
        del n  # every history item's weight is exact; the caller picks the largest
        if not new_user:
            return None
        from recforge.models.base import rank_one_row

        idx = np.asarray(items, dtype=np.int64)
        vals = np.asarray(ratings, dtype=np.float32)
        top, val, targets = rank_one_row(self.fold_in_scores(idx, vals), k, exclude)
        return top, val, self._explain_one(idx, vals, targets)[1]

    def _explain_one(
        self, idx: IndexArray, vals: FloatArray, tgt: IndexArray
    ) -> tuple[F64Array, F64Array]:
        cfg = self.config
        y = self._item_factors64()
        k = y.shape[1]
        y_i = y[idx]
        if not self._explicit:
            if self._item_gram is None:
                self._item_gram = y.T @ y
            coef = self._confidence(vals).astype(np.float64)
            a = self._item_gram + (y_i * (coef - 1.0)[:, None]).T @ y_i + self.reg * np.eye(k)
            x_hist, x_tgt = y_i, y[tgt]
            base = np.zeros(len(tgt))
        else:
            coef = vals.astype(np.float64) - self.global_mean_ - self.item_bias_[idx]
            scale = float(max(len(idx), 1)) if cfg.weighted_reg else 1.0
            reg = np.full(k, self.reg)
            x_hist, x_tgt = y_i, y[tgt]
            if cfg.biases:
                x_hist = np.hstack([y_i, np.ones((len(idx), 1))])
                x_tgt = np.hstack([x_tgt, np.ones((len(tgt), 1))])
                reg = np.append(reg, self._bias_reg)
            a = x_hist.T @ x_hist + scale * np.diag(np.maximum(reg, 1e-12))
            base = self.global_mean_ + self.item_bias_[tgt].astype(np.float64)
        # (x_tᵀ A⁻¹ x_j) for every target t and history item j, from one solve.
        kernel = np.linalg.solve(a, x_tgt.T).T @ x_hist.T
        contrib: F64Array = kernel * coef[None, :]
        score: F64Array = base + contrib.sum(axis=1)  # one reduction, not one per pair
        return score, contrib

    def item_vectors(self) -> FloatArray | None:
        """The item factors ``(n_items, k)``."""
        self._check_fitted()
        return self.item_factors_

    def item_embeddings(self) -> FloatArray | None:
        """The item factors ``y_i``: ``(n_items, k)`` (biases excluded)."""
        self._check_fitted()
        return self.item_factors_

    def user_embeddings(self) -> FloatArray | None:
        """The user factors ``x_u``: ``(n_users, k)`` (biases excluded)."""
        self._check_fitted()
        return self.user_factors_

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """Factors and biases (float32)."""
        return {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            "user_bias": self.user_bias_,
            "item_bias": self.item_bias_,
        }

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Restore factors and biases; ValueError when shapes do not match vocabularies/config."""
        n_u, n_i, k = len(self.users_), len(self.items_), self.config.n_factors
        expected = {
            "user_factors": (n_u, k),
            "item_factors": (n_i, k),
            "user_bias": (n_u,),
            "item_bias": (n_i,),
        }
        arrays: dict[str, FloatArray] = {}
        for key, shape in expected.items():
            arr = np.ascontiguousarray(state[key], dtype=np.float32)
            if arr.shape != shape:
                raise ValueError(f"state {key!r} has shape {arr.shape}, expected {shape}")
            arrays[key] = arr
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]
        self.user_bias_ = arrays["user_bias"]
        self.item_bias_ = arrays["item_bias"]
        self._item_gram = None
