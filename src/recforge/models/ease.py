"""EASE: the embarrassingly shallow linear item-item autoencoder (Steck 2019), in closed form.

The whole model is one dense ``n_items × n_items`` weight matrix, so its cost is set by the
catalogue, not by the number of users or events: ``O(n_items²)`` memory and ``O(n_items³)`` time
for one matrix inverse. :class:`EASE` therefore estimates its peak memory before doing any work and
refuses with a :class:`~recforge.errors.ConfigError` (stating the estimate) when it exceeds the
``memory_budget`` (by default, 'auto', the memory available to this process: the OS's, capped
by its container's cgroup limit, :func:`recforge.memory.available_memory_bytes`); a catalogue
of 20 000 items needs about 4.8 GB in float32 and 8 GB in float64.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
import torch
from pydantic import Field, field_validator

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, ModelFitError
from recforge.explain import Attribution, HistoryTerms
from recforge.memory import available_memory_bytes
from recforge.models.base import FloatArray, IndexArray, RecList, Recommender, rank_scores
from recforge.models.recency import recency_matrix, sequence_weights
from recforge.threads import capped

__all__ = [
    "EASE",
    "F32_MAX_CONDITION",
    "EASEConfig",
    "ease_memory_bytes",
    "format_bytes",
    "parse_bytes",
    "spd_inverse",
]

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")

#: Users per chunk when densifying score rows (chunk × n_items float32 stays small).
_SCORE_CHUNK = 1024


def parse_bytes(value: str | int | float) -> int:
    """Parse a memory size such as ``"4GB"``, ``"512MB"``, ``"1.5 GiB"`` or ``1000000`` (bytes).

    KB/MB/GB/TB are decimal (powers of 1000); KiB/MiB/GiB/TiB are binary (powers of 1024).

    Raises:
        ValueError: the text is not a non-negative size with a known unit.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a memory size: {value!r}")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"memory size must be a finite number >= 0, got {value!r}")
        return int(value)
    match = _SIZE_RE.match(value)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"not a memory size: {value!r}; write e.g. '4GB', '512MB' or '2GiB'")
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(n: float) -> str:
    """Human-readable decimal size, e.g. ``8.0 GB``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def ease_memory_bytes(n_items: int, dtype: str = "float64") -> int:
    """Peak memory of fitting EASE on ``n_items`` items.

    Three ``n_items²`` matrices can be alive at once: the Gram matrix ``XᵀX + λI`` (then its
    Cholesky factor) and the inverse ``P`` (both in ``dtype``; 'auto' counts float32, a float64
    redo is checked again when it happens), then the float32 weight matrix ``B``.
    """
    itemsize = np.dtype("float32" if dtype == "auto" else dtype).itemsize
    return int(n_items) ** 2 * (2 * itemsize + 4)


class EASEConfig(ModelConfig):
    """Hyper-parameters of :class:`EASE`."""

    reg: float = Field(
        300.0,
        gt=0,
        le=1e9,
        description="λ, the L2 penalty added to the Gram diagonal (ML-100k validation: 300).",
    )
    weighting: Literal["auto", "binary", "rating"] = Field(
        "auto",
        description="Input matrix X: 'binary' (1 per interaction), 'rating' (the rating value), "
        "or 'auto': the repeat counts of implicit data (confidence weights; 1s when nothing "
        "repeats) and binary on explicit ratings.",
    )
    recency_tau: float | None = Field(
        None,
        gt=0,
        description=(
            "Weight each user's history entry by exp(-position_from_end / tau) when scoring "
            "(0 = latest training event; ties by item id). None: no recency weighting."
        ),
    )
    dtype: Literal["auto", "float32", "float64"] = Field(
        "auto",
        description="Precision of the Gram matrix and its Cholesky-based inverse (B is kept in "
        "float32). 'auto': float32, redone in float64 when the system is too ill-conditioned "
        "for float32 (condition bound λ_max/λ over 1e4) or its Cholesky fails.",
    )
    num_threads: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="CPU threads (None: the CPUs available, see recforge.threads).",
    )
    memory_budget: str = Field(
        "auto",
        description="Refuse to fit when the estimated peak memory exceeds this ('4GB', '512MB'); "
        "'auto': the memory available when the fit starts (the machine's, capped by the "
        "container's cgroup limit).",
    )

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _check_budget(cls, value: Any) -> str:
        # Validate now so a typo is a ConfigError at construction, not halfway through a fit.
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if parse_bytes(value) <= 0:
            raise ValueError(f"memory_budget must be positive, got {value!r}")
        return str(value)

    @property
    def memory_budget_bytes(self) -> int | None:
        """``memory_budget`` in bytes; None for 'auto' (only the available memory bounds a fit)."""
        return None if self.memory_budget == "auto" else parse_bytes(self.memory_budget)


#: 'auto' keeps float32 while λ_max(G)/λ, an upper bound of the condition number of G = XᵀX + λI
#: (its smallest eigenvalue is at least λ), is below this: float32's relative error of the
#: inverse is then at most ~1e4 × 6e-8 ≈ 6e-4 of its largest entries.
F32_MAX_CONDITION = 1e4

#: Power-iteration steps for λ_max (each one n_items² multiply-adds, against n_items³ for the
#: factorisation); the estimate is scaled up by 1.1 for the steps not taken.
_POWER_STEPS = 12


def _largest_eigenvalue(gram: torch.Tensor) -> float:
    """An estimate of the largest eigenvalue of the symmetric PSD ``gram`` (power iteration)."""
    gen = torch.Generator().manual_seed(0)
    v = torch.rand(gram.shape[0], generator=gen, dtype=gram.dtype) + 0.5
    value = 0.0
    for _ in range(_POWER_STEPS):
        w = gram @ v
        value = float(torch.linalg.vector_norm(w) / torch.linalg.vector_norm(v))
        v = w / max(float(torch.linalg.vector_norm(w)), 1e-30)
    return 1.1 * value


#: One-thread float32 multiply-adds per millisecond of LAPACK's blocked Cholesky and inverse
#: (n = 1,682: ~170-250 ms for the ~n³ of both on one core of the 2-core machine).
_LAPACK_F32_PER_MS = 2e7


def lapack_region_ms(n: int, dtype: Any = np.float32) -> float:
    """One-thread milliseconds of each parallel region of an ``n × n`` Cholesky + inverse.

    Both work panel by panel, several parallel regions (small GEMM/TRSM calls) a panel: about
    ``n/16`` regions in all, so a region holds ``16n²`` of the ~``n³`` multiply-adds; float64
    runs at half the float32 rate. Calibrated on the 2-core machine under load
    (docs/benchmarks/speed_threads.md): two threads were slower than one up to n = 2,500 and
    about even at 3,500, so the second thread starts near n ≈ 3,900 (ml-latest-small's 8,230
    items: 2 threads, 0.56x the one-thread time in docs/benchmarks/speed.md).
    """
    rate = _LAPACK_F32_PER_MS / (2.0 if np.dtype(dtype) == np.float64 else 1.0)
    return float(n) ** 2 * 16.0 / rate


def spd_inverse(gram: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.floating[Any]] | None:
    """``gram⁻¹`` through its Cholesky factor (``torch.linalg.cholesky`` + ``cholesky_inverse``),
    in ``gram``'s dtype; None when ``gram`` is not numerically positive definite.

    Both LAPACK calls use the torch threads, as many as :func:`lapack_region_ms` gives work for
    (:func:`recforge.threads.threads_for`). ``gram`` is consumed (its memory may be reused).
    """
    with capped(lapack_region_ms(gram.shape[0], gram.dtype)):
        t = torch.from_numpy(gram)
        chol, info = torch.linalg.cholesky_ex(t)
        del t
        if int(info) != 0:
            return None
        inv = torch.cholesky_inverse(chol)
        del chol
    out: npt.NDArray[np.floating[Any]] = inv.numpy()
    return out if bool(np.isfinite(out).all()) else None


def _gram(x: sp.csr_matrix, dtype: str) -> npt.NDArray[np.floating[Any]]:
    """Dense ``XᵀX`` in ``dtype``, accumulated over user chunks.

    The sparse product ``X.T @ X`` would store a nearly dense item × item matrix as a sparse one
    (≥ 12 bytes per entry); multiplying sparse user blocks by their dense copy keeps one dense
    ``n_items²`` accumulator plus a bounded temporary.
    """
    n_users, n_items = x.shape
    gram = np.zeros((n_items, n_items), dtype=dtype)
    # Dense user blocks of about n_items² / 4 cells (at least 1024 users) bound the temporaries;
    # the block product itself is one more n_items² temporary, counted by ease_memory_bytes.
    step = max(1024, n_items // 4)
    for start in range(0, n_users, step):
        rows = sp.csr_matrix(x[start : start + step], dtype=np.dtype(dtype))
        gram += rows.T @ rows.toarray()
    return gram


class EASE(HistoryTerms, Recommender):
    """Embarrassingly Shallow AutoEncoder: item-item linear regression with a zero diagonal.

    Scoring: ``s_u = x_u B`` where ``x_u`` is user ``u``'s row of the training matrix ``X``
    (binary, rating- or count-weighted, ``weighting``). ``B`` minimises

        ‖X − X B‖²_F + λ ‖B‖²_F   subject to   diag(B) = 0,

    whose closed form (Lagrange multipliers for the constraint) is::

        P = (XᵀX + λI)⁻¹,     B = I − P · diagMat(1 / diag(P))      (so B_ij = −P_ij / P_jj, i≠j)

    With ``recency_tau = τ`` the scoring row ``x_u`` is recency-weighted: the entry of the item
    at position ``p`` from the end of the user's training timeline (timestamp order, ties by item
    id; ``p = 0`` is the latest) is multiplied by ``exp(−p / τ)`` (:mod:`recforge.models.recency`).
    ``B`` itself is still fitted on the unweighted ``X`` (it models item-item co-occurrence). A new
    user's ratings are weighted in the order given, the last being the most recent.

    There is no iterative training (no ``history_``). A new user is folded in natively: their
    rating row ``x`` gives ``x B``. Similar items of ``i`` are ranked by ``B[i, :]``, i.e. the
    scores of a user who interacted with ``i`` alone (there are no item vectors). Scores are not
    ratings (``predicts_ratings = False``).

    Memory: see :func:`ease_memory_bytes`; fitting refuses (ConfigError) above ``memory_budget``.

    Citation: H. Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.

    Attributes:
        weights_: ``B``, float32 ``(n_items, n_items)``, zero diagonal.
        user_matrix_: ``X`` (CSR float32, users × items) used for scoring training users.
        precision_: "float32" or "float64", the precision ``P`` was computed in (``dtype``
            'auto' is float32 unless the condition bound or the factorisation asks for float64).
    """

    name: ClassVar[str] = "ease"
    Config: ClassVar[type[ModelConfig]] = EASEConfig
    predicts_ratings: ClassVar[bool] = False
    config: EASEConfig

    weights_: FloatArray
    #: The precision the inverse was computed in ("float32" or "float64"; see ``dtype``).
    precision_: str
    user_matrix_: sp.csr_matrix

    # ------------------------------------------------------------------ fitting
    def _weighted(self) -> bool:
        """Whether X holds event values (ratings or repeat counts) rather than 1s."""
        weighting = self.config.weighting
        return weighting == "rating" or (weighting == "auto" and self.rating_scale_ is None)

    def _input_matrix(self, train: Interactions) -> sp.csr_matrix:
        return train.csr("rating" if self._weighted() else "binary")

    def fit(
        self,
        train: Interactions | pd.DataFrame,
        valid: Interactions | pd.DataFrame | None = None,
        *,
        columns: Mapping[str, str | int] | None = None,
        **read: Any,
    ) -> Self:
        """Fit ``B`` in closed form; ConfigError first if it would exceed ``memory_budget``.

        Accepts what :meth:`Recommender.fit` accepts (Interactions or a DataFrame).
        """
        from recforge.data.frames import as_training_data

        train, valid = as_training_data(train, valid, columns=columns, **read)
        self.check_memory(train.n_items)
        return super().fit(train, valid)

    def check_memory(self, n_items: int, dtype: str | None = None) -> int:
        """Estimated peak bytes of a fit on ``n_items`` items (in ``dtype``, default the
        config's); ConfigError over the budget."""
        cfg = self.config
        need = ease_memory_bytes(n_items, dtype or cfg.dtype)
        # float32 halves the need; once it is float32 (or a float64 redo), raise reg instead.
        f32 = (
            "use dtype='float32', "
            if (dtype or cfg.dtype) == "float64" and dtype is None
            else "raise reg (a float64 redo means an ill-conditioned system), "
            if dtype == "float64"
            else ""
        )
        budget = cfg.memory_budget_bytes
        if budget is not None and need > budget:
            raise ConfigError(
                f"ease: {n_items} items need about {format_bytes(need)} (3 dense "
                f"{n_items}x{n_items} matrices), over memory_budget={cfg.memory_budget!r}; raise "
                f"memory_budget, {f32}or filter rare items"
            )
        # The budget is a user's promise; the machine may still have less free right now, and an
        # n_items² allocation that does not fit ends in the OOM killer, not in an error message.
        available = available_memory_bytes()
        if available is not None and need > available:
            raise ConfigError(
                f"ease: {n_items} items need about {format_bytes(need)} (3 dense "
                f"{n_items}x{n_items} matrices) but only {format_bytes(available)} of memory is "
                f"available; {f32}filter rare items, or use a bigger machine"
            )
        return need

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        n = train.n_items
        x = self._input_matrix(train)
        p = self._inverse(x, n)
        # B = I − P diagMat(1/diag P): column j is −P[:, j] / P_jj, then the diagonal is zeroed.
        p /= -np.diag(p).copy()[None, :]
        p[np.diag_indices(n)] = 0.0
        self.weights_ = np.ascontiguousarray(p, dtype=np.float32)
        if cfg.recency_tau is None:
            self.user_matrix_ = x.astype(np.float32)
        else:
            values = train.rating if self._weighted() else None
            self.user_matrix_ = recency_matrix(train, cfg.recency_tau, values)

    def _inverse(self, x: sp.csr_matrix, n: int) -> npt.NDArray[np.floating[Any]]:
        """``P = (XᵀX + λI)⁻¹`` by Cholesky in the configured precision (see ``dtype``)."""
        cfg = self.config
        dtype = "float32" if cfg.dtype == "auto" else cfg.dtype
        gram = _gram(x, dtype)
        gram[np.diag_indices(n)] += cfg.reg
        if cfg.dtype == "auto":
            # Matrix-vector products: n² multiply-adds a region, one thread unless n is large.
            with capped(float(n) * n / _LAPACK_F32_PER_MS):
                condition = _largest_eigenvalue(torch.from_numpy(gram)) / cfg.reg
            if condition > F32_MAX_CONDITION:
                dtype = "float64"
        p = spd_inverse(gram) if dtype == "float32" else None
        if p is None and dtype == "float32" and cfg.dtype == "float32":
            raise ModelFitError(
                f"ease: the float32 Gram matrix is not positive definite at reg={cfg.reg}; "
                "increase reg or use dtype='float64'"
            )
        if p is None:
            if cfg.dtype == "auto":
                self.check_memory(n, "float64")  # the redo needs twice the float32 memory
            dtype = "float64"
            del gram
            gram64 = _gram(x, "float64")
            gram64[np.diag_indices(n)] += cfg.reg
            p = spd_inverse(gram64)
            if p is None:  # positive definite in exact arithmetic (λ > 0); LAPACK's general inverse
                gram64 = _gram(x, "float64")
                gram64[np.diag_indices(n)] += cfg.reg
                p = np.linalg.inv(gram64)
        self.precision_ = dtype
        return p

    # ------------------------------------------------------------------ scoring
    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """``X[u] B`` for each user index: shape ``(len(user_idx), n_items)``."""
        self._check_fitted()
        u = np.asarray(user_idx, dtype=np.int64)
        out = np.empty((len(u), self.n_items), dtype=np.float32)
        if len(u) == 1:
            # One user (a served request): the row's entries straight from the CSR arrays.
            # scipy's row indexing and product build two matrices (~150 µs); this sums the
            # same products in the same order (entry by entry, in the row's dtype), so the
            # scores are the batched path's, bit for bit.
            m = self.user_matrix_
            lo, hi = int(m.indptr[u[0]]), int(m.indptr[u[0] + 1])
            vals = np.asarray(m.data[lo:hi])
            picked = self.weights_[m.indices[lo:hi]]
            # All-ones rows (binary weighting, most users under 'auto'): 1·b is b exactly.
            out[0] = (picked if (vals == 1).all() else vals[:, None] * picked).sum(axis=0)
            return out
        for start in range(0, len(u), _SCORE_CHUNK):
            rows = self.user_matrix_[u[start : start + _SCORE_CHUNK]]
            out[start : start + rows.shape[0]] = rows @ self.weights_
        return out

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """``(X[u] B)[i]`` per pair, via ``Σ_j X[u, j] B[j, i]`` without full score rows."""
        self._check_fitted()
        u = np.asarray(user_idx, dtype=np.int64)
        i = np.asarray(item_idx, dtype=np.int64)
        rows = self.user_matrix_[u]
        counts = np.diff(rows.indptr)
        pair = np.repeat(np.arange(len(u)), counts)
        contrib = rows.data * self.weights_[rows.indices, i[pair]]
        out = np.bincount(pair, weights=contrib, minlength=len(u))
        return out.astype(np.float32)

    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """``x B`` for the new user's row ``x`` (1s, or the values given, if ``'rating'``).

        With ``recency_tau`` the entries are weighted by their order (the last given is the latest).
        """
        self._check_fitted()
        idx = np.asarray(item_idx, dtype=np.int64)
        # 'auto' weights training rows by repeat counts, but a new user's values are whatever a
        # caller sends (often ratings), so fold-in treats them as 1s unless 'rating' was chosen.
        if self.config.weighting != "rating":
            vals = np.ones(len(idx), dtype=np.float32)
        else:
            vals = np.asarray(ratings, dtype=np.float32)
        vals = vals * sequence_weights(len(idx), self.config.recency_tau)
        out: FloatArray = (vals @ self.weights_[idx]).astype(np.float32)
        return out

    # ------------------------------------------------------------------ explanations
    def explain_rows(
        self, rows: sp.csr_matrix, row_of: IndexArray, targets: IndexArray
    ) -> Attribution:
        """Exact: the score ``Σ_j x_uj B_ji`` is a sum over the history; ``w_j = x_uj B_ji``.

        ``x_uj`` is the fold-in entry (1, or the rating with ``weighting='rating'``, times the
        recency weight of its position when ``recency_tau`` is set); nothing is left over (a zero
        residual for new users; for a known user whose training row holds repeat counts, the
        residual is the difference to the counted row).
        """
        return self._history_terms(rows, row_of, targets)

    def _explain_one(
        self, idx: IndexArray, vals: FloatArray, targets: IndexArray
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        # The fold-in's rule: the given values count only with weighting='rating'.
        rated = self.config.weighting == "rating"
        x = vals.astype(np.float64) if rated else np.ones(len(idx))
        x = x * sequence_weights(len(idx), self.config.recency_tau)
        # One gather for every target of this history: (|H|, n_targets).
        w_all = x[:, None] * self.weights_[np.ix_(idx, targets)].astype(np.float64)
        # Pairs as rows: one (pairwise, as per column before) reduction, not one per pair.
        per_pair = np.ascontiguousarray(w_all.T)
        return per_pair.sum(axis=1), per_pair

    # ------------------------------------------------------------------ items
    def item_vectors(self) -> FloatArray | None:
        """None: EASE has no low-dimensional item embedding to index for retrieval.

        Scores are ``x_u B``, not an inner product of a user and an item vector, so the rows of
        ``B`` (``n_items``-dimensional) would mislead ANN retrieval; :meth:`similar_items` uses
        ``B`` directly instead.
        """
        self._check_fitted()
        return None

    def similar_items(self, item_id: Any, k: int = 10) -> RecList:
        """The ``k`` items with the largest weight ``B[i, j]`` from ``item_id`` (itself excluded).

        These are the items recommended to a user whose only interaction is ``item_id``.
        """
        self._check_fitted()
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        i = self.items_.index_one(item_id)
        itself = np.arange(self.n_items) == i
        idx, val = rank_scores(self.weights_[i][None, :], k, exclude_items=itself)
        return self._to_reclist(item_id, idx[0], val[0], query="item")

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """``B`` and the CSR arrays of ``X``."""
        x = self.user_matrix_
        return {
            "weights": self.weights_,
            "x_indptr": x.indptr.astype(np.int64),
            "x_indices": x.indices.astype(np.int32),
            "x_data": x.data.astype(np.float32),
        }

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Restore ``B`` and ``X``; ValueError when their shapes do not match the vocabularies."""
        n_u, n_i = len(self.users_), len(self.items_)
        weights = np.ascontiguousarray(state["weights"], dtype=np.float32)
        if weights.shape != (n_i, n_i):
            raise ValueError(f"state 'weights' has shape {weights.shape}, expected {(n_i, n_i)}")
        indptr = np.asarray(state["x_indptr"], dtype=np.int64)
        indices = np.asarray(state["x_indices"], dtype=np.int32)
        data = np.asarray(state["x_data"], dtype=np.float32)
        if len(indptr) != n_u + 1 or len(indices) != len(data) or indptr[-1] != len(indices):
            raise ValueError("state 'x_*' arrays do not form a users x items CSR matrix")
        self.weights_ = weights
        self.user_matrix_ = sp.csr_matrix((data, indices, indptr), shape=(n_u, n_i))
