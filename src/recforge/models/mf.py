"""Matrix factorisation trained by gradient descent: ``mf`` (dot product) and ``biased_mf``.

``mf`` — the Keras tutorial model of our reference material: user and item embeddings and their
dot product,

    s(u, i) = p_u · q_i,

trained with MSE on explicit ratings (optionally through the scaled sigmoid ``y_range``) or, for
implicit feedback, with BCE over sampled negatives or BPR (``loss``). The tutorial's own setting
is ``n_factors=5, y_range="none", loss="mse"``. Reference: Koren, Bell and Volinsky, "Matrix
Factorization Techniques for Recommender Systems", IEEE Computer 2009.

``biased_mf`` — global mean plus user and item biases plus the dot product (Funk SVD / Koren's
biased MF; fastai's ``EmbeddingDotBias``),

    ŷ = μ + b_u + b_i + p_u · q_i                       (y_range = "none")
    ŷ = lo + (hi − lo) · σ(b_u + b_i + p_u · q_i)       (y_range = (lo, hi) or "auto")

(the second is fastai's ``EmbeddingDotBias``; "auto" is (0.5, 5.5) for 1-5 stars). Loss:
``mean((ŷ − r)²) + reg · mean_batch(‖p_u‖² + ‖q_i‖² + b_u² + b_i²)`` (``reg`` defaults to 0.05
with MSE, 0 with BCE/BPR) with decoupled weight decay from AdamW on top. Fold-in of a new user
is the closed-form ridge regression ``min_w Σ_rated (x_i·w − t_i)² + λ‖w − w₀‖²`` over
``w = [p; b]``, ``x_i = [q_i; 1]``, ``t_i = r_i − μ − b_i`` (with a y_range the targets are first
mapped through the inverse sigmoid, ``t_i = logit((r_i − lo)/(hi − lo)) − b_i``: exact for the
linear model, a linearisation with the sigmoid), ``λ = fold_in_reg`` and ``w₀`` the average
trained user. ``mf`` folds in the same way over ``w = p``, ``x_i = q_i`` (no bias column).
The closed form is also what explanations decompose (:mod:`recforge.explain`).
References: Funk, "Netflix Update: Try This at Home" (2006); Koren 2009 (above);
Howard and Gugger, "Deep Learning for Coders with fastai and PyTorch" (2020), ch. 8.

Defaults (both models): AdamW (betas 0.9/0.99 for biased_mf), weight decay 0.1, one-cycle
schedule peaking at lr 5e-3, batches of 1024, y_range "auto"; mf uses 32 factors and 20 epochs,
biased_mf 50 factors and 10 epochs. Measured in docs/benchmarks/ml100k_folds.md (ML-100k u1..u5
mean RMSE: biased_mf 0.907, mf 0.924; Surprise's BaselineOnly 0.946, tuned SVD 0.912). The
tutorial's 5-factor linear mf measures 0.966.

Training engine (``backend``): on CPU with adam/adamw, fp32 and no grad_clip, ``"auto"`` runs
each epoch as one compiled numba call (:mod:`recforge.train.fused_mf`): the same algorithm as the
Trainer's torch steps, equal up to float rounding, 5-10x faster than them (ML-1M random-80-20,
seed 0, load ~20: 101 s -> 20 s, RMSE 0.8458 both), and 0.57-0.90x the time of Surprise's SVD /
implicit's BPR on ML-100k and ml-latest-small at one thread, 1.07x Surprise on ML-1M
(docs/benchmarks/speed-sgd/speed.md). ``"torch"`` forces the torch loop (e.g. to debug a custom
change of the network). ``lazy_adam`` (numba engine, AdamW or no weight decay) steps only the
rows each batch touches and catches the others up in closed form: dense AdamW up to ε (forced on
both sides, NDCG@10 0.1161 vs 0.1162 on ml-latest-small, 0.1871 both on ML-100k). It pays when a
batch touches few of a table's rows (100k users: half the CPU time of a BPR epoch) and not when
it touches many (a BPR batch touches ~45% of ml-latest-small's items: 1.4x slower), so both
models default to ``"auto"``, lazy on a side only when a batch is expected to touch < 10% of its
rows (not on the MovieLens training splits, whose fits are unchanged to the last bit;
docs/benchmarks/speed_bpr16.md). For ``biased_mf`` on a 10M-rating log with 138k users it
cuts a fit from 546 s to 215 s at the same RMSE, 0.6455, to 101 s since its rows are stepped
from a list, and to 73-85 s since they are prefetched (docs/benchmarks/speed_biased_mf_10m_s15,
speed_biased_mf_10m_s15_lazy, speed_biased_mf_10m_s16, speed_biased_mf_10m_s18 and
speed_biased_mf_10m_s18b, the speed suite's command in each).

``funk_svd`` is ``biased_mf`` trained as Surprise's ``SVD`` trains it: plain SGD, one rating a
step, a constant rate, the per-rating L2 ``reg`` and no weight decay, linear output, 100 factors
and 20 epochs (:class:`FunkSVD`). The compiled SGD epoch reads and writes only each rating's two
rows and two biases, where AdamW keeps four more tables a row, so it is the fast choice on large
logs at a higher RMSE than ``biased_mf``'s at equal epochs
(docs/benchmarks/speed_funk_svd_10m.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn

from recforge.config import ModelConfig, OptimizerName, ScheduleName
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.explain import Attribution, rows_by_history
from recforge.models.base import FloatArray, IndexArray
from recforge.models.neural import NeuralRecommender, OutputHead, PairConfig, YRange
from recforge.train.trainer import FusedEpoch, FusedFactory


# ====================================================================== networks
class DotModule(nn.Module):
    """``s(u, i) = p_u · q_i``.

    Args:
        n_users, n_items: vocabulary sizes.
        n_factors: embedding width ``d``.
        init_std: std of the normal initialisation of both tables.

    Shapes:
        ``forward(user_idx (B,), item_idx (B,)) -> (B,)``;
        ``score_all(user_idx (B,)) -> (B, n_items)``.
    """

    user_param_names: ClassVar[tuple[str, ...]] = ("user_emb.weight",)
    item_param_names: ClassVar[tuple[str, ...]] = ("item_emb.weight",)

    def __init__(
        self, n_users: int, n_items: int, n_factors: int, *, init_std: float = 0.01
    ) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(n_users, n_factors)
        self.item_emb = nn.Embedding(n_items, n_factors)
        nn.init.normal_(self.user_emb.weight, 0.0, init_std)
        nn.init.normal_(self.item_emb.weight, 0.0, init_std)

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs: ``(B,)``."""
        out: torch.Tensor = (self.user_emb(user_idx) * self.item_emb(item_idx)).sum(-1)
        return out

    def score_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user: ``(B, n_items)`` (one matmul)."""
        out: torch.Tensor = self.user_emb(user_idx) @ self.item_emb.weight.T
        return out


class BiasedDotModule(nn.Module):
    """``s(u, i) = b_u + b_i + p_u · q_i`` (the global offset is added by the output head).

    Args:
        n_users, n_items: vocabulary sizes.
        n_factors: embedding width ``d``.
        init_std: std of the normal initialisation of the factor tables; biases start at 0.

    Shapes:
        ``forward(user_idx (B,), item_idx (B,)) -> (B,)``;
        ``score_all(user_idx (B,)) -> (B, n_items)``.
    """

    user_param_names: ClassVar[tuple[str, ...]] = ("user_emb.weight", "user_bias.weight")
    item_param_names: ClassVar[tuple[str, ...]] = ("item_emb.weight", "item_bias.weight")

    def __init__(
        self, n_users: int, n_items: int, n_factors: int, *, init_std: float = 0.01
    ) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(n_users, n_factors)
        self.item_emb = nn.Embedding(n_items, n_factors)
        # Biases as 1-wide embeddings so sparse optimizers and row-wise L2 treat them alike.
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.normal_(self.user_emb.weight, 0.0, init_std)
        nn.init.normal_(self.item_emb.weight, 0.0, init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs: ``(B,)``."""
        dot = (self.user_emb(user_idx) * self.item_emb(item_idx)).sum(-1)
        out: torch.Tensor = (
            dot + self.user_bias(user_idx).squeeze(-1) + self.item_bias(item_idx).squeeze(-1)
        )
        return out

    def score_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user: ``(B, n_items)`` (one matmul)."""
        out: torch.Tensor = (
            self.user_emb(user_idx) @ self.item_emb.weight.T
            + self.user_bias(user_idx)
            + self.item_bias.weight.T
        )
        return out


# ====================================================================== configs
Backend = Literal["auto", "numba", "torch"]
_BACKEND_HELP = (
    'Training engine. "numba": the fused compiled epoch (recforge.train.fused_mf; same algorithm, '
    'equal up to float rounding, 5-20x faster on CPU); "torch": the Trainer\'s per-batch torch '
    'steps; "auto": numba where the setup allows it (CPU, adam/adamw, fp32, no grad_clip).'
)


_LAZY_HELP = (
    "numba backend: Adam(W) steps only the rows a batch touches and brings the others up to "
    "date in closed form when next touched (dense Adam up to epsilon, fewer cells a batch): "
    "True on users and items, 'auto' on the side(s) a batch touches < 10% of (many users), "
    "False: every row every batch, as torch's optimizer"
)


class MFConfig(PairConfig):
    """Hyper-parameters of ``mf`` (see the module docstring; defaults measured on ML-100k)."""

    n_factors: int = Field(32, ge=1, le=4096, description="Embedding width (the tutorial used 5).")
    y_range: YRange = "auto"
    # None: one thread for small embedding tables (SERIAL_CELLS), else the CPUs this process may
    # use (recforge.threads). Two spin-waiting OpenMP threads once made a biased_mf epoch 7-10x
    # slower on a busy 2-core machine; recforge now also makes idle workers sleep
    # (OMP_WAIT_POLICY=PASSIVE).
    num_threads: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Torch CPU threads (None: the CPUs available, recforge.threads).",
    )
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(1024, ge=1, le=10_000_000)
    lr: float = Field(5e-3, gt=0, le=10)
    optimizer: OptimizerName = "adamw"
    weight_decay: float = Field(0.1, ge=0)
    schedule: ScheduleName = "one_cycle"
    backend: Backend = Field("auto", description=_BACKEND_HELP)
    lazy_adam: bool | Literal["auto"] = Field("auto", description=_LAZY_HELP)


class BiasedMFConfig(PairConfig):
    """Hyper-parameters of ``biased_mf``; the defaults reach ≤ 0.915 mean RMSE on ML-100k u1..u5."""

    n_factors: int = Field(50, ge=1, le=4096, description="Embedding width.")
    y_range: YRange = "auto"
    num_threads: int | None = Field(None, ge=1, le=4096, description="See MFConfig.num_threads.")
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(1024, ge=1, le=10_000_000)
    lr: float = Field(5e-3, gt=0, le=10)
    optimizer: OptimizerName = "adamw"
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = Field(0.1, ge=0)
    schedule: ScheduleName = "one_cycle"
    backend: Backend = Field("auto", description=_BACKEND_HELP)
    # "auto" since session 15: on a 138k-user log the dense sweep of every user row each batch
    # made a fit 8.6x Surprise's time (docs/benchmarks/speed_biased_mf_10m_s15); MovieLens fits
    # stay dense, to the last bit.
    lazy_adam: bool | Literal["auto"] = Field("auto", description=_LAZY_HELP)


class FunkSVDConfig(BiasedMFConfig):
    """Hyper-parameters of ``funk_svd``: Surprise ``SVD``'s defaults in recforge's units.

    recforge's loss is ``(ŷ − r)² + reg·(‖p_u‖² + ‖q_i‖² + b_u² + b_i²)``, whose gradient is
    twice Surprise's update direction, so ``lr = 0.0025`` with ``reg = 0.02`` is Surprise's
    ``lr_all = 0.005``, ``reg_all = 0.02``: the same update, rating by rating.
    """

    loss: Literal["auto", "mse"] = Field("auto", description="Always MSE on explicit ratings.")
    n_factors: int = Field(100, ge=1, le=4096, description="Embedding width (Surprise: 100).")
    y_range: YRange = "none"
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(
        1, ge=1, le=10_000_000, description="Ratings per SGD step (1: Funk's per-rating update)."
    )
    lr: float = Field(2.5e-3, gt=0, le=10, description="Step size (Surprise's lr_all / 2).")
    optimizer: OptimizerName = "sgd"
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum (0: Funk's SGD).")
    weight_decay: float = Field(0.0, ge=0)
    schedule: ScheduleName = "constant"
    init_std: float = Field(0.1, gt=0, description="Std of the normal factor initialisation.")
    reg: float | None = Field(
        0.02, ge=0, description="L2 on each rating's rows and biases (Surprise's reg_all)."
    )


# ====================================================================== closed-form fold-in
@dataclass(frozen=True)
class _Ridge:
    """A new user's ridge system ``A w = Xᵀt + λw₀`` (see the module docstring).

    ``x`` are the rated items' rows ``[q_j; 1]`` (``q_j`` alone for ``mf``), ``t`` the targets,
    ``item_rows`` every item's row, ``item_bias`` every item's ``b_i`` and ``c`` the offset.
    """

    a: npt.NDArray[np.float64]
    x: npt.NDArray[np.float64]
    t: npt.NDArray[np.float64]
    prior: npt.NDArray[np.float64]  # λ w₀
    item_rows: npt.NDArray[np.float64]
    item_bias: npt.NDArray[np.float64]
    c: float
    y_range: tuple[float, float] | None

    def raw_scores(self) -> npt.NDArray[np.float64]:
        w = np.linalg.solve(self.a, self.x.T @ self.t + self.prior)
        out: npt.NDArray[np.float64] = self.item_rows @ w + (self.item_bias + self.c)
        return out


_RidgeConstants = tuple[
    npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], float
]


def _ridge_constants(model: NeuralRecommender) -> _RidgeConstants:
    """``(item rows [q_i; 1], b_i, w₀, c)`` shared by every new user, cached per weights.

    The cache key holds the tensors' identities and in-place versions, so training steps and
    loaded weights invalidate it.
    """
    head = model._module()
    assert isinstance(head, OutputHead)
    net = head.inner
    assert isinstance(net, (DotModule, BiasedDotModule))
    # The parameters the constants read, named directly: a named_parameters() walk of the
    # module tree cost ~40 µs of every fold-in and explanation on the service's hot path.
    params = [net.item_emb.weight, net.user_emb.weight]
    if isinstance(net, BiasedDotModule):
        params += [net.item_bias.weight, net.user_bias.weight]
    key = (*(id(p) for p in params), *(p._version for p in params), float(head.offset))
    cached = model.__dict__.get("_ridge_cache")
    if cached is not None and cached[0] == key:
        out: _RidgeConstants = cached[1]
        return out
    q = net.item_emb.weight.detach().double().cpu().numpy()
    p0 = net.user_emb.weight.detach().double().mean(0).cpu().numpy()
    if isinstance(net, BiasedDotModule):
        b_i = net.item_bias.weight.detach().double().cpu().numpy()[:, 0]
        w0 = np.concatenate([p0, net.user_bias.weight.detach().double().mean(0).cpu().numpy()])
        rows = np.hstack([q, np.ones((len(q), 1))])
    else:
        b_i = np.zeros(len(q))
        w0, rows = p0, q
    out = (rows, b_i, w0, float(head.offset))
    model.__dict__["_ridge_cache"] = (key, out)
    return out


def _ridge_system(model: NeuralRecommender, item_idx: IndexArray, ratings: FloatArray) -> _Ridge:
    """The closed-form fold-in of ``mf`` / ``biased_mf`` for one new user (MSE loss only)."""
    head = model._module()
    assert isinstance(head, OutputHead)
    rows, b_i, w0, c = _ridge_constants(model)
    r = np.asarray(ratings, dtype=np.float64)
    if head.y_range is not None:
        lo, hi = head.y_range
        frac = np.clip((r - lo) / (hi - lo), 1e-3, 1 - 1e-3)
        r = np.log(frac / (1.0 - frac))
    idx = np.asarray(item_idx, dtype=np.int64)
    x = rows[idx]
    lam = model.fold_in_reg()
    a = x.T @ x + lam * np.eye(x.shape[1])
    y_range = None if head.y_range is None else (float(head.y_range[0]), float(head.y_range[1]))
    return _Ridge(a, x, r - c - b_i[idx], lam * w0, rows, b_i, c, y_range)


def _ridge_scores(
    model: NeuralRecommender, item_idx: IndexArray, ratings: FloatArray
) -> FloatArray:
    """Fold-in scores of every item from the closed form (through the y_range sigmoid)."""
    system = _ridge_system(model, item_idx, ratings)
    out: FloatArray = _served(system, system.raw_scores()).astype(np.float32)
    return out


def _served(system: _Ridge, raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Raw (logit) scores through the output's scaled sigmoid, when it has one."""
    if system.y_range is None:
        return raw
    lo, hi = system.y_range
    out: npt.NDArray[np.float64] = lo + (hi - lo) / (1.0 + np.exp(-raw))
    return out


def _ridge_explain(
    model: NeuralRecommender, rows: sp.csr_matrix, row_of: IndexArray, targets: IndexArray
) -> Attribution:
    """Exact terms of the closed-form fold-in: the logit ``x_iᵀw`` is linear in the targets, so
    ``w_j = (x_iᵀ A⁻¹ x_j) t_j`` and the residual is ``x_iᵀ A⁻¹ λw₀ + b_i + c``."""
    score, weights = rows_by_history(
        rows, row_of, targets, lambda idx, vals, tgt: _ridge_explain_one(model, idx, vals, tgt)
    )
    head = model._module()
    assert isinstance(head, OutputHead)
    y_range = None if head.y_range is None else (float(head.y_range[0]), float(head.y_range[1]))
    return Attribution(score, weights, "exact", y_range)


def _ridge_explain_one(
    model: NeuralRecommender, idx: IndexArray, vals: FloatArray, tgt: IndexArray
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """:func:`_ridge_explain` of one history: ``(score, weights)`` (targets as rows).

    The served explanation's hot path (~1,000 calls a second): one solve with the targets'
    rows and the prior as right-hand sides, and only the targets' offsets.
    """
    return _ridge_terms(_ridge_system(model, idx, vals), tgt)


def _ridge_terms(
    system: _Ridge, tgt: IndexArray
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(score, weights)`` of targets ``tgt`` in a ridge system (:func:`_ridge_explain_one`)."""
    x_t = system.item_rows[tgt]
    rhs = np.vstack([x_t, system.prior[None, :]]).T
    solved = np.linalg.solve(system.a, rhs).T  # rows: A⁻¹ x_t, then A⁻¹ λw₀
    contrib: npt.NDArray[np.float64] = (solved[:-1] @ system.x.T) * system.t[None, :]
    base = x_t @ solved[-1] + system.item_bias[tgt] + system.c
    score: npt.NDArray[np.float64] = base + contrib.sum(axis=1)  # one reduction per history
    return score, contrib


# ====================================================================== recommenders
#: Below this many embedding cells ((users + items) × factors) every op of an mf epoch (batch
#: lookups, the optimizer step over the tables) is too small to share: each parallel region
#: costs a thread wake-up, and under load a wait for a second core. Measured on a 2-core machine
#: at load average ~12 (benchmark --suite speed, ML-100k): biased_mf took 2.4x as long with 2
#: threads as with 1, mf loss=bpr 1.2x. Such models default to one thread; larger ones to the
#: machine's (recforge.threads). An explicit num_threads or --threads always wins.
SERIAL_CELLS = 1 << 22


def _mf_threads(model: NeuralRecommender) -> int | None:
    cfg = model.config
    n: int | None = getattr(cfg, "num_threads", None)
    if n is not None:
        return n
    cells = (len(model.users_) + len(model.items_)) * int(getattr(cfg, "n_factors", 1))
    return 1 if cells < SERIAL_CELLS else None


class _RidgeFoldIn(NeuralRecommender):
    """MF and biased MF: exact new-user fold-in and explanations for the MSE loss."""

    def fused_epoch(self) -> FusedFactory | None:
        """The numba epoch (:mod:`recforge.train.fused_mf`) unless ``backend='torch'``."""
        from recforge.train.fused_mf import fused_mf_epoch, numba_available

        backend = getattr(self.config, "backend", "auto")
        lazy: bool | str = getattr(self.config, "lazy_adam", False)
        if backend == "torch":
            return None
        if backend == "numba":
            if not numba_available():
                raise ConfigError(
                    f"model {self.name}: backend 'numba' needs numba (pip install numba), "
                    "or set backend = 'torch'"
                )

            def required(*args: Any, lazy: bool | str) -> FusedEpoch:
                fused = fused_mf_epoch(*args, lazy=lazy)
                if fused is None:
                    raise ConfigError(
                        f"model {self.name}: backend 'numba' runs on CPU with optimizer adam, "
                        "adamw, or sgd (mse, no momentum or weight decay), fp32 and no "
                        "grad_clip; use backend = 'auto' or 'torch'"
                    )
                return fused

            return functools.partial(required, lazy=lazy)
        return functools.partial(fused_mf_epoch, lazy=lazy)

    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """Closed-form ridge fold-in of ``p`` (``[p; b]`` for biased MF; module docstring).

        Implicit-loss models fall back to the generic gradient fold-in.
        """
        if self.loss_kind() != "mse":
            return super().fold_in_scores(item_idx, ratings)
        return _ridge_scores(self, item_idx, ratings)

    def explain_rows(
        self, rows: sp.csr_matrix, row_of: IndexArray, targets: IndexArray
    ) -> Attribution:
        """Exact for the MSE closed form (:func:`_ridge_explain`), occlusion otherwise."""
        if self.loss_kind() != "mse":
            return super().explain_rows(rows, row_of, targets)
        return _ridge_explain(self, rows, row_of, targets)

    def rank_history_top(
        self,
        items: IndexArray,
        ratings: FloatArray,
        k: int,
        exclude: IndexArray,
        n: int,
        *,
        new_user: bool = False,
    ) -> tuple[IndexArray, FloatArray, npt.NDArray[np.float64]] | None:
        """A new user's top-``k`` (as :meth:`recommend_for_ratings` ranks it) and its exact
        explanation weights ``(k, |H|)`` from one ridge system, not a fold-in and then a second
        one for the explanation (the service's explained POST).

        None for known users, whom the service ranks by their trained factors, and for the
        losses without the closed form.
        """
        del n  # every history item's weight is exact; the caller picks the largest
        if not new_user or self.loss_kind() != "mse":
            return None
        from recforge.models.base import rank_one_row

        idx = np.asarray(items, dtype=np.int64)
        system = _ridge_system(self, idx, np.asarray(ratings, dtype=np.float32))
        scores = _served(system, system.raw_scores()).astype(np.float32)
        top, val, targets = rank_one_row(scores, k, exclude)
        return top, val, _ridge_terms(system, targets)[1]

    def explain_history(
        self, items: IndexArray, ratings: FloatArray, targets: IndexArray
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """:meth:`explain_rows` of one history; the MSE closed form without a CSR row."""
        if self.loss_kind() != "mse":
            return super().explain_history(items, ratings, targets)
        return _ridge_explain_one(
            self,
            np.asarray(items, dtype=np.int64),
            np.asarray(ratings, dtype=np.float32),
            np.asarray(targets, dtype=np.int64),
        )


class MF(_RidgeFoldIn):
    """Dot-product matrix factorisation ``s(u, i) = p_u · q_i`` (module docstring for details).

    Loss: MSE (explicit, optional scaled-sigmoid y_range), BCE with sampled negatives or BPR
    (implicit), per ``config.loss``. Citation: Koren, Bell and Volinsky 2009.
    """

    name: ClassVar[str] = "mf"
    Config: ClassVar[type[ModelConfig]] = MFConfig
    explicit_reg: ClassVar[float] = 0.05

    def _threads_wanted(self) -> int | None:
        """One thread for small tables (see :data:`SERIAL_CELLS`), else the config's/default."""
        return _mf_threads(self)

    def build_network(self) -> nn.Module:
        cfg = self.config
        assert isinstance(cfg, MFConfig)
        return DotModule(self.n_users, self.n_items, cfg.n_factors, init_std=cfg.init_std)

    def item_vectors(self) -> FloatArray | None:
        """Item embeddings ``q_i``: ``(n_items, n_factors)``."""
        head = self._module()
        assert isinstance(head, OutputHead) and isinstance(head.inner, DotModule)
        out: FloatArray = head.inner.item_emb.weight.detach().float().cpu().numpy()
        return out

    def item_embeddings(self) -> FloatArray | None:
        """Item factors ``q_i``: ``(n_items, n_factors)``."""
        return self.item_vectors()

    def user_embeddings(self) -> FloatArray | None:
        """User factors ``p_u``: ``(n_users, n_factors)``."""
        head = self._module()
        assert isinstance(head, OutputHead) and isinstance(head.inner, DotModule)
        out: FloatArray = head.inner.user_emb.weight.detach().float().cpu().numpy()
        return out


class BiasedMF(_RidgeFoldIn):
    """Biased MF ``ŷ = μ + b_u + b_i + p_u · q_i``, optionally via a scaled sigmoid (module doc).

    Loss: MSE + optional batch L2 ``reg`` + optimizer weight decay (implicit losses also work).
    Citations: Funk 2006; Koren, Bell and Volinsky 2009; fastai ``EmbeddingDotBias``.
    """

    name: ClassVar[str] = "biased_mf"
    Config: ClassVar[type[ModelConfig]] = BiasedMFConfig
    center_output: ClassVar[bool] = True
    explicit_reg: ClassVar[float] = 0.05

    def _threads_wanted(self) -> int | None:
        """One thread for small tables (see :data:`SERIAL_CELLS`), else the config's/default."""
        return _mf_threads(self)

    def build_network(self) -> nn.Module:
        cfg = self.config
        assert isinstance(cfg, BiasedMFConfig)
        return BiasedDotModule(self.n_users, self.n_items, cfg.n_factors, init_std=cfg.init_std)

    def _network(self) -> tuple[OutputHead, BiasedDotModule]:
        head = self._module()
        assert isinstance(head, OutputHead) and isinstance(head.inner, BiasedDotModule)
        return head, head.inner

    def item_vectors(self) -> FloatArray | None:
        """Item embeddings ``q_i``: ``(n_items, n_factors)``."""
        out: FloatArray = self._network()[1].item_emb.weight.detach().float().cpu().numpy()
        return out

    def item_embeddings(self) -> FloatArray | None:
        """Item factors ``q_i`` without the biases: ``(n_items, n_factors)``."""
        return self.item_vectors()

    def user_embeddings(self) -> FloatArray | None:
        """User factors ``p_u`` without the biases: ``(n_users, n_factors)``."""
        out: FloatArray = self._network()[1].user_emb.weight.detach().float().cpu().numpy()
        return out


class FunkSVD(BiasedMF):
    """Funk SVD: ``ŷ = μ + b_u + b_i + p_u · q_i`` by per-rating SGD (Surprise's ``SVD``).

    For each training rating in a shuffled order, with ``e = ŷ − r`` from the current weights:
    ``b_u ← b_u − η(2e + 2λb_u)``, ``b_i ← b_i − η(2e + 2λb_i)``, ``p_u ← p_u − η(2e·q_i + 2λp_u)``,
    ``q_i ← q_i − η(2e·p_u + 2λq_i)``: SGD on ``(ŷ − r)² + λ(‖p_u‖² + ‖q_i‖² + b_u² + b_i²)`` with a
    constant step ``η``. The defaults are Surprise's (100 factors, 20 epochs, ``η = 0.0025`` and
    ``λ = 0.02``, i.e. its ``lr_all = 0.005``, ``reg_all = 0.02``; factors drawn from N(0, 0.1²)),
    so the two fit the same model by the same algorithm (Surprise walks the ratings in a fixed
    order, recforge reshuffles them every epoch). The compiled epoch
    (:func:`recforge.train._mf_kernels.mse_sgd_epoch`) touches only each rating's two rows and two
    biases, which is what makes it the fast choice on large logs; ``biased_mf``'s AdamW reads and
    writes five tables a row and reaches a lower RMSE at the same epochs
    (docs/benchmarks/speed_biased_mf_10m.md). Fold-in, explanations and save/load are
    ``biased_mf``'s. Explicit ratings only.

    References: Funk, "Netflix Update: Try This at Home" (2006); Koren, Bell and Volinsky,
    "Matrix Factorization Techniques for Recommender Systems", IEEE Computer 2009; Hug,
    "Surprise: A Python library for recommender systems", JOSS 2020.
    """

    name: ClassVar[str] = "funk_svd"
    Config: ClassVar[type[ModelConfig]] = FunkSVDConfig
    explicit_reg: ClassVar[float] = 0.02

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if self.rating_scale_ is None:
            raise ConfigError(
                f"{train.source}: funk_svd fits explicit ratings but the data is implicit (no "
                "rating column); use biased_mf with loss = 'bpr', als or ease for clicks"
            )
        super()._fit(train, valid)
