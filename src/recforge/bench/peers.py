"""Peer rows for benchmarks: scikit-surprise and implicit models behind recforge's interface.

Each peer is a :class:`~recforge.models.base.Recommender`, so recforge's evaluation code scores it
exactly like our own models, on the same split objects in the same run. The peers are fitted on
precisely the :class:`~recforge.data.interactions.Interactions` they are given; their learned arrays
are then read out and scored with numpy, so ranking (every item for every user) is one matrix
product per user chunk rather than millions of calls into the peer library.

Peers (``peer_names()``):

=======================  ========  ==============================================================
name                     task      scoring from the learned arrays
=======================  ========  ==============================================================
surprise-baselineonly    rating    ``μ + b_u + b_i``
surprise-svd             rating    ``μ + b_u + b_i + q_i·p_u`` (``q_i·p_u`` when unbiased)
surprise-svdpp           rating    ``μ + b_u + b_i + q_i·(p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j)``
surprise-knnbaseline     rating    ``b_ui + Σ_k sim·(r − b) / Σ_k sim`` over the k nearest raters
implicit-als             ranking   ``x_u·y_i`` (Hu et al. 2008, conjugate gradient)
implicit-bpr             ranking   ``x_u·y_i + b_i`` (Rendle et al. 2009)
=======================  ========  ==============================================================

Conventions checked against the installed versions (scikit-surprise 1.1.5, implicit 0.7.3):

- Surprise: the ``Trainset`` is built directly so that surprise's inner ids *are* recforge's
  indices (raw id = inner id = index), hence ``bu[u]``, ``qi[i]`` line up with our vocabularies.
  As in surprise, a user or item without training ratings is "unknown": only the terms surprise
  would add for it are added (its random factors are ignored).
- KNNBaseline's rating predictions call surprise's own ``estimate`` per (user, item) pair (exact,
  and affordable for a test set). Ranking needs every item for every user, so
  :meth:`SurpriseKNNBaseline.score_items` re-implements the same formula with numpy from the
  learned similarity matrix and baselines, one user at a time with work proportional to the
  neighbours' ratings (user-based) or to items × the user's ratings (item-based). Neighbours are
  ranked with stable sorts, so ties go to the lower index exactly as in surprise's
  ``heapq.nlargest`` over its index-ordered lists: scores equal ``estimate``'s (ML-100k u1: all
  943 users ranked in ~4 s on a loaded 2-core machine; 0.0 max difference on sampled pairs).
- implicit >= 0.5 takes a *user × item* matrix in ``fit`` (older versions took item × user);
  :func:`_implicit_version_ok` refuses older versions rather than silently transposing. The CPU
  classes are used directly (never the GPU factory), with ``num_threads`` from the config (1 by
  default, like recforge) and BLAS limited to one thread while fitting, which is what implicit
  asks for (its warning about a multi-threaded BLAS is therefore never triggered, not hidden).

The peer libraries are the ``peers`` optional extra (``pip install 'recforge[peers]'``); they are
imported lazily, and :func:`peer_status` reports why a peer cannot run instead of failing.
Peers are not in the model registry and have no save/load: they exist to be measured.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError
from recforge.models.base import FloatArray, Recommender

__all__ = [
    "ImplicitALS",
    "ImplicitBPR",
    "SurpriseBaselineOnly",
    "SurpriseKNNBaseline",
    "SurpriseSVD",
    "SurpriseSVDpp",
    "create_peer",
    "peer_class",
    "peer_names",
    "peer_status",
    "peer_task",
]

F64Array = npt.NDArray[np.float64]
PeerTask = Literal["rating", "ranking"]

_INSTALL_HINT = "install the peers extra: pip install 'recforge[peers]'"


def _require(module: str, peer: str) -> Any:
    """Import ``module`` or raise ConfigError naming the peer and the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"peer {peer}: cannot import {module} ({exc}); {_INSTALL_HINT}") from None


def _pairs(
    user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(user, item) index arrays as int64."""
    return np.asarray(user_idx, dtype=np.int64), np.asarray(item_idx, dtype=np.int64)


def _implicit_version_ok(version: str) -> bool:
    """True for implicit >= 0.5, whose ``fit`` takes a user × item matrix."""
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return False
    return (major, minor) >= (0, 5)


# ====================================================================== surprise
def _surprise_trainset(train: Interactions) -> Any:
    """A surprise ``Trainset`` whose inner ids are recforge's indices.

    Surprise stores ratings as per-user and per-item lists of ``(inner id, rating)`` tuples; they
    are built once per fit from the CSR views (one list per user/item, not per rating), which is
    the format surprise's own fitting loops read anyway.
    """
    surprise = _require("surprise", "surprise")
    csr = train.csr("rating").tocsr()
    csc = csr.tocsc()
    ur: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
    ir: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
    for u in np.flatnonzero(np.diff(csr.indptr)).tolist():
        lo, hi = csr.indptr[u], csr.indptr[u + 1]
        ur[u] = list(zip(csr.indices[lo:hi].tolist(), csr.data[lo:hi].tolist(), strict=True))
    for i in np.flatnonzero(np.diff(csc.indptr)).tolist():
        lo, hi = csc.indptr[i], csc.indptr[i + 1]
        ir[i] = list(zip(csc.indices[lo:hi].tolist(), csc.data[lo:hi].tolist(), strict=True))
    scale = train.rating_scale
    if scale is None:
        scale = (float(train.rating.min()), float(train.rating.max()))
    ident_u = {u: u for u in range(train.n_users)}
    ident_i = {i: i for i in range(train.n_items)}
    return surprise.Trainset(
        ur, ir, train.n_users, train.n_items, len(train), scale, ident_u, ident_i
    )


class _SurprisePeer(Recommender):
    """Shared plumbing of the surprise peers: trainset, seeding, known-user/item masks."""

    predicts_ratings: ClassVar[bool] = True
    task: ClassVar[PeerTask] = "rating"

    algo_: Any
    known_users_: npt.NDArray[np.bool_]
    known_items_: npt.NDArray[np.bool_]

    def _make_algo(self) -> Any:
        raise NotImplementedError

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        trainset = _surprise_trainset(train)
        # Surprise's SGD algorithms draw from numpy's legacy global RNG only through
        # random_state; passing the seed makes every fit reproducible without global state.
        self.algo_ = self._make_algo()
        self.algo_.fit(trainset)
        self.known_users_ = np.diff(train.csr("binary").indptr) > 0
        self.known_items_ = np.bincount(train.item_idx, minlength=train.n_items) > 0
        self._read_arrays(train)

    def _read_arrays(self, train: Interactions) -> None:
        """Copy the learned arrays out of ``algo_`` (families override)."""

    def _bias_terms(self, u: npt.NDArray[np.int64]) -> tuple[F64Array, F64Array]:
        """``(μ + b_u)`` per user and ``b_i`` per item; 0 for what surprise does not know."""
        bu = np.where(self.known_users_, self.bu_, 0.0)
        bi = np.where(self.known_items_, self.bi_, 0.0)
        return self.global_mean_ + bu[u], bi

    bu_: F64Array
    bi_: F64Array


class SurpriseBaselineOnlyConfig(ModelConfig):
    """Hyper-parameters of surprise's ``BaselineOnly`` (its ``bsl_options``; surprise defaults)."""

    method: Literal["als", "sgd"] = Field("als", description="Bias estimation method.")
    reg_u: float = Field(15.0, ge=0, le=1e6, description="als: λ on user biases.")
    reg_i: float = Field(10.0, ge=0, le=1e6, description="als: λ on item biases.")
    n_epochs: int = Field(10, ge=1, le=1000, description="Sweeps (als) or epochs (sgd).")
    reg: float = Field(0.02, ge=0, le=100, description="sgd: λ on both biases.")
    learning_rate: float = Field(0.005, gt=0, le=1, description="sgd: step size.")


class SurpriseBaselineOnly(_SurprisePeer):
    """Surprise ``BaselineOnly``: ``r̂_ui = μ + b_u + b_i`` (Koren 2010), scored from its biases."""

    name: ClassVar[str] = "surprise-baselineonly"
    Config: ClassVar[type[ModelConfig]] = SurpriseBaselineOnlyConfig
    config: SurpriseBaselineOnlyConfig

    def _make_algo(self) -> Any:
        surprise = _require("surprise", self.name)
        c = self.config
        opts: dict[str, Any] = {"method": c.method, "n_epochs": c.n_epochs}
        if c.method == "als":
            opts |= {"reg_u": c.reg_u, "reg_i": c.reg_i}
        else:
            opts |= {"reg": c.reg, "learning_rate": c.learning_rate}
        return surprise.BaselineOnly(bsl_options=opts, verbose=False)

    def _read_arrays(self, train: Interactions) -> None:
        self.bu_ = np.asarray(self.algo_.bu, dtype=np.float64)
        self.bi_ = np.asarray(self.algo_.bi, dtype=np.float64)

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """``μ + b_u + b_i`` for every item: ``(len(user_idx), n_items)``."""
        self.check_fitted()
        base_u, bi = self._bias_terms(np.asarray(user_idx, dtype=np.int64))
        return (base_u[:, None] + bi[None, :]).astype(np.float32)

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """``μ + b_u + b_i`` per pair."""
        self.check_fitted()
        u, i = _pairs(user_idx, item_idx)
        base_u, bi = self._bias_terms(u)
        return (base_u + bi[i]).astype(np.float32)


class SurpriseSVDConfig(ModelConfig):
    """Hyper-parameters of surprise's ``SVD`` (Funk SVD by SGD; surprise defaults).

    The per-parameter rates and penalties default to ``lr_all`` / ``reg_all`` when None.
    """

    n_factors: int = Field(100, ge=1, le=4096)
    n_epochs: int = Field(20, ge=1, le=1000)
    biased: bool = Field(True, description="Learn μ + b_u + b_i (False: r̂ = q_i·p_u).")
    init_mean: float = Field(0.0, ge=-10, le=10)
    init_std_dev: float = Field(0.1, ge=0, le=10)
    lr_all: float = Field(0.005, gt=0, le=1)
    reg_all: float = Field(0.02, ge=0, le=100)
    lr_bu: float | None = Field(None, gt=0, le=1)
    lr_bi: float | None = Field(None, gt=0, le=1)
    lr_pu: float | None = Field(None, gt=0, le=1)
    lr_qi: float | None = Field(None, gt=0, le=1)
    reg_bu: float | None = Field(None, ge=0, le=100)
    reg_bi: float | None = Field(None, ge=0, le=100)
    reg_pu: float | None = Field(None, ge=0, le=100)
    reg_qi: float | None = Field(None, ge=0, le=100)


class SurpriseSVD(_SurprisePeer):
    """Surprise ``SVD``: ``r̂_ui = μ + b_u + b_i + q_i·p_u`` by SGD (Funk 2006; Koren et al. 2009).

    Scored from ``bu, bi, pu, qi``: one ``(users × k) @ (k × items)`` product per chunk.
    """

    name: ClassVar[str] = "surprise-svd"
    Config: ClassVar[type[ModelConfig]] = SurpriseSVDConfig
    config: SurpriseSVDConfig

    pu_: F64Array
    qi_: F64Array

    def _make_algo(self) -> Any:
        surprise = _require("surprise", self.name)
        return surprise.SVD(
            **self.config.model_dump(exclude={"seed"}), random_state=self.config.seed
        )

    def _read_arrays(self, train: Interactions) -> None:
        self.bu_ = np.asarray(self.algo_.bu, dtype=np.float64)
        self.bi_ = np.asarray(self.algo_.bi, dtype=np.float64)
        # Surprise adds the dot product only when both sides are known; zeroing the unknown
        # rows gives the same numbers for every pair.
        self.pu_ = np.where(self.known_users_[:, None], self.algo_.pu, 0.0)
        self.qi_ = np.where(self.known_items_[:, None], self.algo_.qi, 0.0)

    def _user_vectors(self, u: npt.NDArray[np.int64]) -> F64Array:
        return self.pu_[u]

    def _base(self, u: npt.NDArray[np.int64]) -> tuple[F64Array, F64Array]:
        if getattr(self.config, "biased", True):
            return self._bias_terms(u)
        return np.zeros(len(u)), np.zeros(self.n_items)

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """Predicted rating of every item: ``(len(user_idx), n_items)`` (unclipped)."""
        self.check_fitted()
        u = np.asarray(user_idx, dtype=np.int64)
        base_u, bi = self._base(u)
        scores = self._user_vectors(u) @ self.qi_.T
        scores += base_u[:, None]
        scores += bi[None, :]
        return scores.astype(np.float32)

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """Predicted rating per pair (unclipped), without the full score matrix."""
        self.check_fitted()
        u, i = _pairs(user_idx, item_idx)
        base_u, bi = self._base(u)
        dot: F64Array = np.einsum("nk,nk->n", self._user_vectors(u), self.qi_[i])
        return (base_u + bi[i] + dot).astype(np.float32)

    def item_vectors(self) -> FloatArray | None:
        """``q_i`` (n_items, k)."""
        self.check_fitted()
        return self.qi_.astype(np.float32)


class SurpriseSVDppConfig(ModelConfig):
    """Hyper-parameters of surprise's ``SVDpp`` (surprise defaults; None rates use ``*_all``)."""

    n_factors: int = Field(20, ge=1, le=4096)
    n_epochs: int = Field(20, ge=1, le=1000)
    init_mean: float = Field(0.0, ge=-10, le=10)
    init_std_dev: float = Field(0.1, ge=0, le=10)
    lr_all: float = Field(0.007, gt=0, le=1)
    reg_all: float = Field(0.02, ge=0, le=100)
    lr_bu: float | None = Field(None, gt=0, le=1)
    lr_bi: float | None = Field(None, gt=0, le=1)
    lr_pu: float | None = Field(None, gt=0, le=1)
    lr_qi: float | None = Field(None, gt=0, le=1)
    lr_yj: float | None = Field(None, gt=0, le=1)
    reg_bu: float | None = Field(None, ge=0, le=100)
    reg_bi: float | None = Field(None, ge=0, le=100)
    reg_pu: float | None = Field(None, ge=0, le=100)
    reg_qi: float | None = Field(None, ge=0, le=100)
    reg_yj: float | None = Field(None, ge=0, le=100)
    cache_ratings: bool = Field(False, description="Surprise's speed option (same results).")


class SurpriseSVDpp(SurpriseSVD):
    """Surprise ``SVDpp``: ``r̂_ui = μ + b_u + b_i + q_i·(p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j)``.

    Koren 2008. The implicit-feedback term is one sparse product ``N̂ @ Y`` (``N̂``: the user ×
    item training indicator with rows scaled by ``|N(u)|^-½``), computed once after fitting.
    """

    name: ClassVar[str] = "surprise-svdpp"
    Config: ClassVar[type[ModelConfig]] = SurpriseSVDppConfig
    config: SurpriseSVDppConfig  # type: ignore[assignment]

    yj_: F64Array
    user_vec_: F64Array

    def _make_algo(self) -> Any:
        surprise = _require("surprise", self.name)
        params = self.config.model_dump(exclude={"seed"})
        return surprise.SVDpp(**params, random_state=self.config.seed)

    def _read_arrays(self, train: Interactions) -> None:
        super()._read_arrays(train)
        self.yj_ = np.asarray(self.algo_.yj, dtype=np.float64)
        seen = self.seen_.astype(np.float64)
        n_u = np.asarray(seen.sum(axis=1)).ravel()
        scale = np.divide(1.0, np.sqrt(n_u), out=np.zeros_like(n_u), where=n_u > 0)
        implicit_term = sp.diags(scale) @ seen @ self.yj_
        self.user_vec_ = self.pu_ + np.asarray(implicit_term)

    def _user_vectors(self, u: npt.NDArray[np.int64]) -> F64Array:
        return self.user_vec_[u]


class SurpriseKNNBaselineConfig(ModelConfig):
    """Hyper-parameters of surprise's ``KNNBaseline`` (surprise defaults: user-based MSD)."""

    k: int = Field(40, ge=1, le=10_000, description="Maximum number of neighbours.")
    min_k: int = Field(1, ge=1, le=10_000, description="Fewer neighbours: baseline only.")
    sim_name: Literal["msd", "cosine", "pearson", "pearson_baseline"] = "msd"
    user_based: bool = Field(True, description="Similarities between users (False: items).")
    min_support: int = Field(1, ge=0, description="Common ratings needed for a non-zero sim.")
    shrinkage: float = Field(100.0, ge=0, description="pearson_baseline shrinkage.")
    bsl_method: Literal["als", "sgd"] = "als"
    bsl_reg_u: float = Field(15.0, ge=0, le=1e6)
    bsl_reg_i: float = Field(10.0, ge=0, le=1e6)
    bsl_n_epochs: int = Field(10, ge=1, le=1000)


class SurpriseKNNBaseline(_SurprisePeer):
    """Surprise ``KNNBaseline`` (Koren 2010, eq. 3)::

        r̂_ui = b_ui + Σ_{v∈N^k_i(u), sim>0} sim(u,v)·(r_vi − b_vi) / Σ_{v∈N^k_i(u), sim>0} sim(u,v)

    with ``b_ui = μ + b_u + b_i`` (user-based; the item-based form swaps the roles). Rating
    predictions use surprise's ``estimate`` per pair; ranking uses the vectorised re-implementation
    in :meth:`score_items` (see the module docstring).
    """

    name: ClassVar[str] = "surprise-knnbaseline"
    Config: ClassVar[type[ModelConfig]] = SurpriseKNNBaselineConfig
    config: SurpriseKNNBaselineConfig

    sim_: F64Array
    resid_: sp.csr_matrix

    def _make_algo(self) -> Any:
        surprise = _require("surprise", self.name)
        c = self.config
        sim = {
            "name": c.sim_name,
            "user_based": c.user_based,
            "min_support": c.min_support,
            "shrinkage": c.shrinkage,
        }
        bsl: dict[str, Any] = {"method": c.bsl_method, "n_epochs": c.bsl_n_epochs}
        if c.bsl_method == "als":
            bsl |= {"reg_u": c.bsl_reg_u, "reg_i": c.bsl_reg_i}
        return surprise.KNNBaseline(
            k=c.k, min_k=c.min_k, sim_options=sim, bsl_options=bsl, verbose=False
        )

    def _read_arrays(self, train: Interactions) -> None:
        self.bu_ = np.asarray(self.algo_.bu, dtype=np.float64)
        self.bi_ = np.asarray(self.algo_.bi, dtype=np.float64)
        self.sim_ = np.asarray(self.algo_.sim, dtype=np.float64)
        # Residuals r − (μ + b_u + b_i) at the training pairs (user × item CSR).
        ratings = train.csr("rating").tocsr().astype(np.float64)
        ratings.sort_indices()
        rows = np.repeat(np.arange(ratings.shape[0]), np.diff(ratings.indptr))
        resid = ratings.data - self.global_mean_ - self.bu_[rows] - self.bi_[ratings.indices]
        self.resid_ = sp.csr_matrix(
            (resid, ratings.indices.copy(), ratings.indptr.copy()), shape=ratings.shape
        )

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """Surprise's own ``estimate`` per pair (exact; a Python call per pair, fine for tests)."""
        self.check_fitted()
        estimate = self.algo_.estimate
        out = np.empty(len(user_idx), dtype=np.float32)
        u, i = _pairs(user_idx, item_idx)
        pairs = zip(u.tolist(), i.tolist(), strict=True)
        for n, (user, item) in enumerate(pairs):
            est = estimate(user, item)
            out[n] = est[0] if isinstance(est, tuple) else est
        return out

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """KNNBaseline's prediction for every item, vectorised: ``(len(user_idx), n_items)``."""
        self.check_fitted()
        u = np.asarray(user_idx, dtype=np.int64)
        base_u, bi = self._bias_terms(u)
        out = base_u[:, None] + bi[None, :]
        if self.config.user_based:
            out += self._user_based_offsets(u)
        else:
            out += self._item_based_offsets(u)
        return out.astype(np.float32)

    def _weighted(self, w: F64Array, d: F64Array, axis: int) -> F64Array:
        """Surprise's weighted mean of residuals over positive similarities (0 below min_k)."""
        pos = w > 0
        wp = np.where(pos, w, 0.0)  # drops the -inf of non-raters before multiplying
        num = (wp * d).sum(axis=axis)
        den = wp.sum(axis=axis)
        ok = (pos.sum(axis=axis) >= self.config.min_k) & (den > 0)
        out: F64Array = np.divide(num, den, out=np.zeros_like(num), where=ok)
        return out

    def _user_based_offsets(self, u: npt.NDArray[np.int64]) -> F64Array:
        """Neighbours of user ``u`` for item ``i``: the k most similar users who rated ``i``.

        Only positively similar users can contribute, and they rank before all others. Per user:
        order the positive neighbours by similarity (stable, so ties go to the lower index as in
        surprise's ``heapq.nlargest`` over its rater lists), gather their residual rows, and turn
        them column-major: within each item's column the raters then appear nearest first, and
        the first k of them are the neighbours. Everything is O(ratings of those neighbours).
        """
        n_items = self.n_items
        out = np.zeros((len(u), n_items))
        k, min_k = self.config.k, self.config.min_k
        for r, user in enumerate(u.tolist()):
            sims = self.sim_[user]
            pos = np.flatnonzero(sims > 0)
            order = pos[np.argsort(-sims[pos], kind="stable")]
            if not len(order):
                continue
            # Fancy indexing and tocsc keep explicit zeros (a residual of exactly 0 still counts).
            block = self.resid_[order].tocsc()
            starts = np.repeat(block.indptr[:-1], np.diff(block.indptr))
            near = (np.arange(block.nnz) - starts) < k
            cols = np.repeat(np.arange(n_items), np.diff(block.indptr))[near]
            w = sims[order][block.indices[near]]
            num = np.bincount(cols, weights=w * block.data[near], minlength=n_items)
            den = np.bincount(cols, weights=w, minlength=n_items)
            ok = (np.bincount(cols, minlength=n_items) >= min_k) & (den > 0)
            out[r] = np.divide(num, den, out=np.zeros(n_items), where=ok)
        return out

    def _item_based_offsets(self, u: npt.NDArray[np.int64]) -> F64Array:
        """Neighbours of item ``i`` for user ``u``: the k items rated by ``u`` nearest to ``i``."""
        out = np.zeros((len(u), self.n_items))
        resid = self.resid_
        for r, user in enumerate(u.tolist()):  # one user at a time: the block is items × |I_u|
            lo, hi = resid.indptr[user], resid.indptr[user + 1]
            if hi == lo:
                continue
            items, d = resid.indices[lo:hi], resid.data[lo:hi]
            w = self.sim_[:, items]  # (n_items, n_u)
            k = min(self.config.k, len(items))
            if k < len(items):
                top = np.argsort(-w, axis=1, kind="stable")[:, :k]  # ties: lower index
                w, d_top = np.take_along_axis(w, top, axis=1), d[top]
            else:
                d_top = np.broadcast_to(d[None, :], w.shape)
            out[r] = self._weighted(w, d_top, axis=1)
        return out


# ====================================================================== implicit
class _ImplicitConfig(ModelConfig):
    """Options shared by the implicit peers."""

    weighting: Literal["binary", "rating"] = Field(
        "binary", description="Matrix values: 1 per event ('binary') or the event's rating."
    )
    num_threads: int = Field(1, ge=1, le=256, description="implicit's worker threads.")


class ImplicitALSConfig(_ImplicitConfig):
    """Hyper-parameters of implicit's ``AlternatingLeastSquares`` (implicit 0.7 defaults)."""

    factors: int = Field(100, ge=1, le=4096)
    regularization: float = Field(0.01, ge=0, le=1e6)
    alpha: float = Field(1.0, gt=0, le=1e6, description="Confidence c = α·value on observed pairs.")
    iterations: int = Field(15, ge=1, le=1000)
    use_cg: bool = Field(True, description="Conjugate-gradient solver (False: Cholesky).")


class ImplicitBPRConfig(_ImplicitConfig):
    """Hyper-parameters of implicit's ``BayesianPersonalizedRanking`` (implicit 0.7 defaults)."""

    factors: int = Field(100, ge=1, le=4096)
    learning_rate: float = Field(0.01, gt=0, le=10)
    regularization: float = Field(0.01, ge=0, le=100)
    iterations: int = Field(100, ge=1, le=10_000)
    verify_negative_samples: bool = True


class _ImplicitPeer(Recommender):
    """Shared plumbing of the implicit peers: user × item matrix, threads, factor read-out."""

    predicts_ratings: ClassVar[bool] = False
    task: ClassVar[PeerTask] = "ranking"
    config: _ImplicitConfig

    #: ``"module:Class"`` of the CPU implementation (never implicit's GPU-switching factory).
    _algo: ClassVar[str]

    user_factors_: FloatArray
    item_factors_: FloatArray

    def _make_algo(self) -> Any:
        module, _, cls = self._algo.partition(":")
        # Config fields are named exactly like implicit's keyword arguments.
        kwargs = self.config.model_dump(exclude={"seed", "weighting"})
        return getattr(importlib.import_module(module), cls)(
            **kwargs, random_state=self.config.seed
        )

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        implicit = _require("implicit", self.name)
        if not _implicit_version_ok(getattr(implicit, "__version__", "0")):
            raise ConfigError(
                f"peer {self.name}: implicit {implicit.__version__} takes item × user matrices; "
                "upgrade to implicit >= 0.5: pip install -U 'recforge[peers]'"
            )
        threadpoolctl = _require("threadpoolctl", self.name)
        user_items = train.csr(self.config.weighting).tocsr().astype(np.float32)
        if user_items.nnz and user_items.data.min() <= 0:
            raise DataError(
                f"{train.source}: {self.name} needs positive values; ratings <= 0 found "
                "(set weighting = 'binary')"
            )
        # implicit recommends a single-threaded BLAS (its own threads do the parallel work); the
        # limit is scoped to this fit, so the caller's BLAS settings are untouched afterwards.
        with threadpoolctl.threadpool_limits(1, "blas"):
            algo = self._make_algo()
            algo.fit(user_items, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(algo.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(algo.item_factors, dtype=np.float32)

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """``x_u · y_i`` for every item: ``(len(user_idx), n_items)``."""
        self.check_fitted()
        u = np.asarray(user_idx, dtype=np.int64)
        out: FloatArray = self.user_factors_[u] @ self.item_factors_.T
        return out

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """``x_u · y_i`` per pair."""
        self.check_fitted()
        u, i = _pairs(user_idx, item_idx)
        out: FloatArray = np.einsum("nk,nk->n", self.user_factors_[u], self.item_factors_[i])
        return out

    def item_vectors(self) -> FloatArray | None:
        """The item factors (n_items, k)."""
        self.check_fitted()
        return self.item_factors_


class ImplicitALS(_ImplicitPeer):
    """implicit's ``AlternatingLeastSquares`` (Hu, Koren & Volinsky 2008; CG of Takács et al. 2011).

    Loss: ``Σ_{u,i} c_ui (p_ui − x_u·y_i)² + λ(Σ‖x_u‖² + Σ‖y_i‖²)`` with ``c_ui = α·v_ui`` on
    observed pairs and 1 elsewhere.
    """

    name: ClassVar[str] = "implicit-als"
    Config: ClassVar[type[ModelConfig]] = ImplicitALSConfig
    config: ImplicitALSConfig

    _algo: ClassVar[str] = "implicit.cpu.als:AlternatingLeastSquares"


class ImplicitBPR(_ImplicitPeer):
    """implicit's ``BayesianPersonalizedRanking`` (Rendle et al. 2009), SGD on sampled triples.

    implicit appends an item-bias column to the item factors and a constant-1 column to the user
    factors, so ``x_u·y_i`` already includes ``b_i``.
    """

    name: ClassVar[str] = "implicit-bpr"
    Config: ClassVar[type[ModelConfig]] = ImplicitBPRConfig
    config: ImplicitBPRConfig

    _algo: ClassVar[str] = "implicit.cpu.bpr:BayesianPersonalizedRanking"


# ====================================================================== registry
_PEERS: dict[str, tuple[type[Recommender], str]] = {
    SurpriseBaselineOnly.name: (SurpriseBaselineOnly, "surprise"),
    SurpriseSVD.name: (SurpriseSVD, "surprise"),
    SurpriseSVDpp.name: (SurpriseSVDpp, "surprise"),
    SurpriseKNNBaseline.name: (SurpriseKNNBaseline, "surprise"),
    ImplicitALS.name: (ImplicitALS, "implicit"),
    ImplicitBPR.name: (ImplicitBPR, "implicit"),
}


def peer_names() -> list[str]:
    """Every peer's name, surprise rows first (the order benchmark tables use)."""
    return list(_PEERS)


def peer_class(name: str) -> type[Recommender]:
    """The adapter class of peer ``name``; ConfigError listing the peers otherwise."""
    try:
        return _PEERS[name][0]
    except KeyError:
        raise ConfigError(f"unknown peer {name!r}; peers: {', '.join(_PEERS)}") from None


def peer_task(name: str) -> PeerTask:
    """``"rating"`` for the surprise peers, ``"ranking"`` for the implicit ones."""
    cls = peer_class(name)
    task: PeerTask = getattr(cls, "task", "rating")
    return task


def _probe(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # any import failure (missing, broken build) is reported, not raised
        return f"cannot import {module}: {type(exc).__name__}: {exc}; {_INSTALL_HINT}"
    if module == "implicit" and not _implicit_version_ok(getattr(mod, "__version__", "0")):
        return f"implicit {mod.__version__} is older than 0.5 (item × user API); upgrade it"
    return "ok"


def peer_status() -> dict[str, str]:
    """``{peer name: "ok" or the reason it cannot run here}`` (never raises)."""
    probes: dict[str, str] = {}
    out: dict[str, str] = {}
    for name, (_, module) in _PEERS.items():
        if module not in probes:
            probes[module] = _probe(module)
        out[name] = probes[module]
    return out


def create_peer(
    name: str, config: ModelConfig | Mapping[str, Any] | None = None, **overrides: Any
) -> Recommender:
    """Instantiate peer ``name`` with ``config`` (validated by the peer's config class).

    Raises:
        ConfigError: unknown peer, invalid config, or the peer library is not installed.
    """
    cls = peer_class(name)
    status = peer_status()[name]
    if status != "ok":
        raise ConfigError(f"peer {name}: {status}")
    return cls(config, **overrides)
