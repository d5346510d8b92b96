"""Shared base of torch-backed recommenders: :class:`NeuralRecommender`.

Three roles stay apart (DESIGN.md §3):

* the **network** — an ``nn.Module`` mapping index tensors to raw scores. Id-pair networks
  implement ``forward(user_idx (B,), item_idx (B,)) -> (B,)`` and, for fast ranking,
  ``score_all(user_idx (B,)) -> (B, n_items)``. They declare ``user_param_names`` /
  ``item_param_names``: names of parameters whose first axis is the user / item index (used by
  the batch L2 penalty ``reg`` and by the generic new-user fold-in);
* the **trainer** — :class:`recforge.train.Trainer` (optimizer, schedule, epochs, history);
* the **recommender** — this class: raw ids, vocabularies, device, data → tensors, objective and
  validator choice, scoring in batches, persistence and fold-in.

For id-pair networks the recommender wraps the family's network in :class:`OutputHead`, which adds
a fixed offset and, for explicit ratings, the optional fastai-style scaled sigmoid ``y_range``::

    ŷ = lo + (hi − lo) · σ(s(u, i) + c)      (y_range = (lo, hi))
    ŷ = s(u, i) + c                          (no y_range)

``c`` is the global mean ``μ`` for linear outputs of families that ask for it
(``center_output``, e.g. biased MF) and 0 otherwise; with a y_range it is 0, so the untrained
model predicts the middle of the range, as fastai does.

A family subclass sets ``name``, ``Config`` and implements :meth:`NeuralRecommender.build_network`.
Non-pair families (autoencoders over user rows, in-batch softmax towers) override
:meth:`wrap_network`, :meth:`training_setup`, :meth:`make_validator` and, where needed,
:meth:`score_items` / :meth:`fold_in_scores`; the fitting, device and persistence code is shared.

Generic fold-in (new user, no retraining): a fresh row for every user parameter is initialised at
the mean of the trained users' rows ("the average user") and fitted on that user's ratings with
everything else frozen (``torch.func.functional_call``), by Gauss-Newton for the squared error
(``fold_in_optimizer="auto"``: Levenberg-Marquardt on the least squares, at most ``fold_in_steps``
iterations, :mod:`recforge.train.gauss_newton`), by L-BFGS (the implicit losses' ``auto``, or
``"lbfgs"``; 5-10x faster than 100 Adam steps for the same objective value on planted data) or
by ``fold_in_steps`` Adam steps,
minimising ``Σ_rated (ŷ − r)² + fold_in_reg · ‖w − w₀‖²`` (``w₀``: the starting rows) for
explicit models, or for implicit ones the balanced log loss
``Σ_rated softplus(−s) + (n_rated / n_other) Σ_other softplus(s) + fold_in_reg · ‖w − w₀‖²``.
Families with a closed form (biased MF) override :meth:`NeuralRecommender.fold_in_scores`.

Batched fold-in: users are independent rows of one optimisation (:mod:`recforge.train.rowwise`:
per-row L-BFGS with its own line search and stopping tests), so :meth:`fold_in_scores_batch`
folds in ``R`` users (or an occlusion explanation's ``|H| + 1`` histories) at the cost of a few
dozen batched evaluations rather than ``R`` separate fits, and each row ends where it would
alone; :meth:`fold_in_scores` is the batch of one.

Explanations (:meth:`NeuralRecommender.explain_rows`): under the squared error the fold-in is
least squares (:meth:`NeuralRecommender.least_squares_rows`), and each rating's weight is its
leave-one-out effect on the target's score computed from the one solved fold-in
(:func:`recforge.train.gauss_newton.leave_one_out`: exact for a user model linear in its
parameters, the one-Newton-step influence otherwise) instead of ``|H|`` refits; on ML-100k it
kept the faithfulness win rate at 1.000 for NCF, the embedding net and the two-tower
(docs/benchmarks/explain.md) at a fraction of occlusion's cost. The implicit losses explain by
occlusion through :meth:`fold_in_scores_batch`.
"""

from __future__ import annotations

import copy
import math
import threading
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
import torch
from pydantic import Field, model_validator
from scipy.special import expit
from torch import nn
from torch.nn import functional as F

from recforge.config import ModelConfig, TrainConfig
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError
from recforge.explain import Attribution
from recforge.models._row_jacobian import F64, IntArray, RowJacobian, dense
from recforge.models.base import DEFAULT_SCORE_CHUNK, FloatArray, IndexArray, Recommender
from recforge.train.gauss_newton import (
    LeastSquaresRows,
    autograd_jacobian,
    gauss_newton_rows,
    leave_one_out,
)
from recforge.train.losses import (
    BPR,
    Objective,
    RatingMSE,
    SampledBCE,
    fixed_negatives,
    scaled_sigmoid,
)
from recforge.train.rowwise import adam_rows, lbfgs_rows
from recforge.train.sampling import NegativeSampler
from recforge.train.trainer import (
    FusedFactory,
    Trainer,
    TrainResult,
    Validator,
    predict_pairs,
    rating_validator,
    resolve_device,
    seeded,
    threads,
)

LossName = Literal["auto", "mse", "bce", "bpr"]
YRange = Literal["auto", "none"] | tuple[float, float]

#: (user, item) pairs scored per forward pass by the generic (no ``score_all``) ranking path.
_PAIR_SCORE_BUDGET = 1 << 20


class NeuralConfig(TrainConfig):
    """Options of every neural recommender, on top of the training loop's :class:`TrainConfig`."""

    y_range: YRange = Field(
        "auto",
        description=(
            'Explicit models: squash outputs into (lo, hi) with a scaled sigmoid. "auto" widens '
            'the rating scale by 1/8 of its span each side (1-5 stars -> (0.5, 5.5)); "none": '
            "linear."
        ),
    )
    init_std: float = Field(0.01, gt=0, description="Std of the normal embedding initialisation.")
    # auto: Gauss-Newton (Levenberg-Marquardt) for the squared error's least squares. On 40
    # ML-100k users it solves in 1.2-2.5 ms (numpy, closed-form Jacobians) against L-BFGS's
    # 17.7-44.0 ms for NCF / embedding net / two-tower, at a loss 0.01-0.09% of it above the
    # optimum's (docs/benchmarks/fold_in_solvers.md); the implicit losses keep L-BFGS.
    fold_in_optimizer: Literal["auto", "lbfgs", "adam", "gauss_newton"] = Field(
        "auto",
        description="Optimizer of the generic new-user fold-in. auto: gauss_newton for the "
        "squared error, lbfgs for the implicit losses (gauss_newton: squared error only).",
    )
    # L-BFGS converges in few iterations: on planted held-out users NeuMF's and the two-tower's
    # fold-in NDCG@10 is the same at 8, 15, 30 and 100 iterations, at 7-13 vs 21-64 ms a user.
    fold_in_steps: int | None = Field(
        None,
        ge=1,
        description="Fold-in iterations (None: at most 20 for L-BFGS and for Gauss-Newton, "
        "exactly 100 for Adam).",
    )
    fold_in_lr: float = Field(0.05, gt=0, description="Fold-in learning rate (Adam only).")
    # None resolves by objective (NeuralRecommender.fold_in_reg). MSE: 10, measured best on ML-100k
    # u1 for mf, biased_mf and embedding_net (fold-in RMSE of u1.test users from their u1.base
    # ratings: 1 -> 0.959/0.938/0.972, 30 -> 0.967/0.952/0.977). Implicit: 0.3 — the log loss over
    # every item is summed, so 10 pins the user to the average (planted held-out-user NDCG@10 of
    # NeuMF: reg 10 -> 0.30, 1 -> 0.52, 0.1 -> 0.55; trained with the users: 0.55).
    fold_in_reg: float | None = Field(
        None,
        ge=0,
        description="L2 pull of a folded-in user towards the average user (None: 10 for "
        "rating objectives, 0.3 for implicit ones).",
    )

    @model_validator(mode="after")
    def _check_y_range(self) -> NeuralConfig:
        if isinstance(self.y_range, tuple) and not self.y_range[0] < self.y_range[1]:
            raise ValueError(f"y_range must be (low, high) with low < high, got {self.y_range}")
        return self


class PairConfig(NeuralConfig):
    """Options of id-pair models (``network(user_idx, item_idx) -> score``)."""

    loss: LossName = Field(
        "auto",
        description='"mse" (explicit), "bce" (sampled negatives), "bpr"; "auto": mse if rated.',
    )
    n_negatives: int = Field(
        4, ge=1, le=1000, description="Sampled negatives per positive (bce/bpr)."
    )
    negative_sampler: Literal["uniform", "popularity"] = "uniform"
    sampler_alpha: float = Field(
        0.75, ge=0, le=2, description="Popularity sampler: p(i) ∝ count^alpha."
    )
    positive_threshold: float | None = Field(
        None, description="bce/bpr on rated data: only ratings >= this count as positives."
    )
    reg: float | None = Field(
        None,
        ge=0,
        description=(
            "L2 on the embedding rows used in each batch. None: the family's default for mse "
            "(explicit_reg) and 0 for bce/bpr, whose logits need large embeddings."
        ),
    )


class OutputHead(nn.Module):
    """Adds the output offset and optional scaled sigmoid to an id-pair network.

    ``forward(user_idx (B,), item_idx (B,)) -> (B,)``: ``lo + (hi − lo)·σ(s + c)`` with a y_range,
    ``s + c`` without. ``score_all(user_idx (B,)) -> (B, n_items)`` uses the network's
    ``score_all`` when it has one, else scores the user × item grid pair by pair.
    """

    offset: torch.Tensor

    def __init__(
        self, inner: nn.Module, n_items: int, *, y_range: tuple[float, float] | None, offset: float
    ) -> None:
        super().__init__()
        self.inner = inner
        self.n_items = n_items
        self.y_range = y_range
        self.register_buffer("offset", torch.tensor(float(offset)))
        self.user_param_names = tuple(f"inner.{n}" for n in getattr(inner, "user_param_names", ()))
        self.item_param_names = tuple(f"inner.{n}" for n in getattr(inner, "item_param_names", ()))

    def activate(self, raw: torch.Tensor) -> torch.Tensor:
        """Apply offset and y_range to raw network scores of any shape."""
        x = raw + self.offset
        if self.y_range is None:
            return x
        return scaled_sigmoid(x, self.y_range[0], self.y_range[1])

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Outputs of (user, item) pairs: ``(B,)``."""
        return self.activate(self.inner(user_idx, item_idx))

    def row_jacobian(self, item_idx: IntArray, row: IntArray) -> RowJacobian | None:
        """Outputs and gradients of fixed pairs in the user rows (:mod:`recforge.models.
        _row_jacobian`), when the network states them in closed form; None otherwise."""
        make = getattr(self.inner, "row_jacobian", None)
        if make is None:
            return None
        raw_at: RowJacobian = make(item_idx, row)
        y_range = self.y_range
        offset = float(self.offset)

        def at(theta: F64) -> tuple[F64, F64]:
            raw, jac = raw_at(theta)
            x = raw + offset
            if y_range is None:
                return x, jac
            lo, hi = y_range
            s = expit(x)
            return lo + (hi - lo) * s, jac * ((hi - lo) * s * (1.0 - s))[:, None]

        return at

    def score_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Outputs of every item for each user: ``(B, n_items)`` (the network's own
        ``score_all`` when it has one, else pair by pair)."""
        inner_score_all = getattr(self.inner, "score_all", None)
        if inner_score_all is not None:
            raw: torch.Tensor = inner_score_all(user_idx)
            return self.activate(raw)
        items = torch.arange(self.n_items, device=user_idx.device)
        chunk = max(1, _PAIR_SCORE_BUDGET // max(1, self.n_items))
        out = []
        for s in range(0, len(user_idx), chunk):
            u = user_idx[s : s + chunk]
            pairs_u = u.repeat_interleave(self.n_items)
            pairs_i = items.repeat(len(u))
            out.append(self.forward(pairs_u, pairs_i).reshape(len(u), self.n_items))
        return torch.cat(out) if out else torch.zeros(0, self.n_items, device=user_idx.device)


class NeuralRecommender(Recommender):
    """Base of recommenders whose scores come from a torch network trained by the Trainer.

    Subclass hooks (see the module docstring): :meth:`build_network` (required),
    :meth:`wrap_network`, :meth:`training_setup`, :meth:`make_validator`.

    Fitted attributes (besides the base ones):
        module_: the full network (``OutputHead`` around the family network for pair models).
        device_: the torch device it lives on.
        history_: per-epoch training history (see :class:`recforge.train.TrainResult`).
        train_result_: the full :class:`~recforge.train.TrainResult` (not saved).
    """

    Config: ClassVar[type[ModelConfig]] = PairConfig
    #: Start explicit outputs at the global mean (biased models) instead of at the scale's midpoint.
    center_output: ClassVar[bool] = False
    #: Batch L2 ``reg`` used with the mse loss when the config leaves ``reg`` unset (None).
    explicit_reg: ClassVar[float] = 0.0

    module_: nn.Module
    device_: torch.device
    history_: pd.DataFrame
    train_result_: TrainResult

    # ------------------------------------------------------------------ family hooks
    @abstractmethod
    def build_network(self) -> nn.Module:
        """The untrained family network for ``self.n_users × self.n_items`` (uses ``self.config``).

        May read fitted base attributes (``global_mean_``, ``rating_scale_``, ``item_meta_``),
        which are restored before weights when a run is loaded.
        """

    def wrap_network(self, network: nn.Module) -> nn.Module:
        """The module that is trained and scored; pair models get an :class:`OutputHead`."""
        return OutputHead(
            network, self.n_items, y_range=self.resolved_y_range(), offset=self._offset()
        )

    def training_setup(self, train: Interactions) -> tuple[dict[str, torch.Tensor], Objective]:
        """Training tensors and objective. Pair default: MSE on ratings, or BCE/BPR on positives."""
        cfg = self._pair_config()
        kind = self.loss_kind()
        if kind == "mse":
            data = {
                "user": torch.from_numpy(train.user_idx.astype(np.int64)),
                "item": torch.from_numpy(train.item_idx.astype(np.int64)),
                "rating": torch.from_numpy(train.rating.astype(np.float32)),
            }
            return data, RatingMSE(reg=self.resolved_reg())
        u, i = self._positives(train, weighted=True)
        sampler = self._sampler(u, i)
        reg = self.resolved_reg()
        objective: Objective = (
            SampledBCE(sampler, cfg.n_negatives, reg)
            if kind == "bce"
            else BPR(sampler, cfg.n_negatives, reg)
        )
        return {"user": torch.from_numpy(u), "item": torch.from_numpy(i)}, objective

    def make_validator(self, train: Interactions, valid: Interactions) -> Validator | None:
        """Validation metrics. Pair default: rating RMSE/MAE, or sampled log loss and AUC."""
        if len(valid) == 0:
            return None
        cfg = self._pair_config()
        kind = self.loss_kind()
        if kind == "mse":
            return rating_validator(
                torch.from_numpy(valid.user_idx.astype(np.int64)),
                torch.from_numpy(valid.item_idx.astype(np.int64)),
                torch.from_numpy(valid.rating.astype(np.float32)),
                clip=self.rating_scale_,
                batch_size=cfg.eval_batch_size,
            )
        vu, vi = self._positives(valid)
        if len(vu) == 0:
            return None
        tu, ti = self._positives(train)
        sampler = self._sampler(tu, ti)
        # Fixed negatives (own seed) so valid_loss is comparable from epoch to epoch.
        neg = fixed_negatives(sampler, vu, cfg.n_negatives, seed=cfg.seed + 1)
        return implicit_validator(
            torch.from_numpy(vu), torch.from_numpy(vi), neg, kind, batch_size=cfg.eval_batch_size
        )

    # ------------------------------------------------------------------ resolved options
    def _pair_config(self) -> PairConfig:
        cfg = self.config
        if not isinstance(cfg, PairConfig):
            raise ConfigError(f"model {self.name}: the pair-model defaults need a PairConfig")
        return cfg

    def loss_kind(self) -> Literal["mse", "bce", "bpr"]:
        """The objective actually used: ``config.loss`` with ``"auto"`` resolved from the data."""
        loss = getattr(self.config, "loss", "mse")
        if loss == "auto":
            return "mse" if self.rating_scale_ is not None else "bce"
        if loss not in ("mse", "bce", "bpr"):
            raise ConfigError(f"model {self.name}: loss {loss!r} is not one of mse, bce, bpr")
        return "bpr" if loss == "bpr" else ("bce" if loss == "bce" else "mse")

    def fold_in_steps(self) -> int:
        """Fold-in iterations in use: ``config.fold_in_steps`` or its per-optimizer default."""
        steps = getattr(self.config, "fold_in_steps", None)
        if steps is not None:
            return int(steps)
        return {"lbfgs": 20, "gauss_newton": GAUSS_NEWTON_STEPS}.get(self.fold_in_optimizer(), 100)

    def fold_in_optimizer(self) -> Literal["lbfgs", "adam", "gauss_newton"]:
        """The fold-in optimizer in use: ``config.fold_in_optimizer``, ``auto`` resolved by the
        loss (Gauss-Newton for the squared error, L-BFGS otherwise) and checked against it."""
        chosen = getattr(self.config, "fold_in_optimizer", "lbfgs")
        if chosen == "auto":
            return "gauss_newton" if self.supports_least_squares() else "lbfgs"
        if chosen == "gauss_newton" and self.loss_kind() != "mse":
            raise ConfigError(
                f"model {self.name}: fold_in_optimizer 'gauss_newton' solves the squared error's "
                f"least squares; loss {self.loss_kind()!r} needs 'lbfgs', 'adam' or 'auto'"
            )
        if chosen == "adam":
            return "adam"
        return "gauss_newton" if chosen == "gauss_newton" else "lbfgs"

    def fold_in_reg(self) -> float:
        """The fold-in L2 pull in use: ``config.fold_in_reg`` or its per-objective default."""
        reg = getattr(self.config, "fold_in_reg", None)
        if reg is not None:
            return float(reg)
        return 10.0 if self.loss_kind() == "mse" else 0.3

    # The base declares a ClassVar; for neural models it depends on the configured loss.
    @property
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        """True when outputs are ratings (MSE objective); predictions are then clipped."""
        if not self.is_fitted:
            return getattr(self.config, "loss", "mse") in ("auto", "mse")
        return self.loss_kind() == "mse"

    def _clip(self, values: FloatArray) -> FloatArray:
        if self.predicts_ratings:
            return super()._clip(values)
        return values.astype(np.float32, copy=False)

    def resolved_reg(self) -> float:
        """``config.reg``, or when unset ``explicit_reg`` for mse and 0 for implicit losses."""
        reg = getattr(self.config, "reg", None)
        if reg is not None:
            return float(reg)
        return self.explicit_reg if self.loss_kind() == "mse" else 0.0

    def resolved_y_range(self) -> tuple[float, float] | None:
        """The output range of explicit models, or None (linear output / implicit losses)."""
        if self.loss_kind() != "mse":
            return None
        yr = getattr(self.config, "y_range", "none")
        if yr == "none":
            return None
        if yr == "auto":
            if self.rating_scale_ is None:
                return None
            lo, hi = self.rating_scale_
            pad = (hi - lo) / 8.0
            return (lo - pad, hi + pad)
        lo, hi = float(yr[0]), float(yr[1])
        if not lo < hi:
            raise ConfigError(f"model {self.name}: y_range must be (low, high) with low < high")
        return (lo, hi)

    def _offset(self) -> float:
        # With a y_range the sigmoid starts at the middle of the range, as in fastai: centring it on
        # the global mean measured worse on ML-100k (u1/u2 RMSE 0.919 vs 0.911 for biased_mf).
        if not self.center_output or self.loss_kind() != "mse" or self.resolved_y_range():
            return 0.0
        return float(self.global_mean_)

    def _positives(
        self, data: Interactions, *, weighted: bool = False
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Positive (user, item) pairs; ``weighted``: repeat counts of implicit data as weights.

        On implicit data whose events carry repeat counts ``c`` (``duplicates="count"``), a pair
        appears ``1 + floor(log2 c)`` times per epoch when ``weighted`` (training): a confidence
        weight that grows with the log of the count, as ALS' log confidence does, so one item
        clicked 1,000 times cannot fill the epoch. Explicit data and counts of 1 are unchanged.
        """
        thr = getattr(self.config, "positive_threshold", None)
        keep = np.ones(len(data), dtype=bool) if thr is None else data.rating >= thr
        u, i = data.user_idx[keep].astype(np.int64), data.item_idx[keep].astype(np.int64)
        if weighted and data.rating_scale is None:
            counts = np.asarray(data.rating[keep], dtype=np.float64)
            if len(counts) and counts.max() > 1.0:
                reps = 1 + np.floor(np.log2(np.maximum(counts, 1.0))).astype(np.int64)
                u, i = np.repeat(u, reps), np.repeat(i, reps)
        return u, i

    def _sampler(self, u: npt.NDArray[np.int64], i: npt.NDArray[np.int64]) -> NegativeSampler:
        cfg = self._pair_config()
        return NegativeSampler(
            u,
            i,
            self.n_users,
            self.n_items,
            kind=cfg.negative_sampler,
            alpha=cfg.sampler_alpha,
            seed=cfg.seed,
        )

    # ------------------------------------------------------------------ fitting
    def _new_module(self) -> nn.Module:
        cfg = self.config
        assert isinstance(cfg, TrainConfig)
        with seeded(cfg.seed):
            return self.wrap_network(self.build_network())

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        assert isinstance(cfg, TrainConfig)
        if self.loss_kind() == "mse" and self.rating_scale_ is None:
            raise ConfigError(
                f"model {self.name}: loss 'mse' needs explicit ratings (a rating scale); "
                "use loss = 'bce' or 'bpr' for implicit data"
            )
        data, objective = self.training_setup(train)
        if next(iter(data.values())).shape[0] == 0:
            raise DataError(
                f"{train.source}: no training rows left for {self.name} (check positive_threshold)"
            )
        validator = self.make_validator(train, valid) if valid is not None else None
        trainer = Trainer(cfg)
        self.device_ = trainer.device
        self.module_ = self._new_module()
        result = trainer.fit(
            self.module_,
            data,
            objective,
            validate=validator,
            description=self.name,
            fused=self.fused_epoch(),
        )
        self.module_.eval()
        self.train_result_ = result
        self.history_ = result.history

    def fused_epoch(self) -> FusedFactory | None:
        """A compiled replacement of the Trainer's batch loop for this family, or None (torch)."""
        return None

    def _device(self) -> torch.device:
        if not hasattr(self, "device_"):
            cfg = self.config
            self.device_ = resolve_device(cfg.device if isinstance(cfg, TrainConfig) else "auto")
        return self.device_

    def _module(self) -> nn.Module:
        self._check_fitted()
        return self.module_

    # ------------------------------------------------------------------ scoring
    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """Scores of every item for each user index: ``(len(user_idx), n_items)`` float32."""
        module = self._module()
        module.eval()
        device = self._device()
        users = torch.as_tensor(np.asarray(user_idx, dtype=np.int64), device=device)
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        score_all = getattr(module, "score_all", None)
        if score_all is None:
            raise ConfigError(f"model {self.name}: its network cannot score all items")
        with torch.no_grad():
            for s in range(0, len(users), DEFAULT_SCORE_CHUNK):
                chunk = users[s : s + DEFAULT_SCORE_CHUNK]
                out[s : s + len(chunk)] = score_all(chunk).float().cpu().numpy()
        return out

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """Outputs of (user, item) index pairs, batched forward passes under ``no_grad``."""
        module = self._module()
        module.eval()
        cfg = self.config
        bs = cfg.eval_batch_size if isinstance(cfg, TrainConfig) else 65_536
        pred = predict_pairs(
            module,
            torch.as_tensor(np.asarray(user_idx, dtype=np.int64)),
            torch.as_tensor(np.asarray(item_idx, dtype=np.int64)),
            batch_size=bs,
        )
        out: FloatArray = pred.cpu().numpy().astype(np.float32)
        return out

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """``module_.state_dict()`` as numpy arrays (floats as float32), keys ``module.*``."""
        out: dict[str, npt.NDArray[Any]] = {}
        for k, v in self._module().state_dict().items():
            arr = v.detach().cpu().numpy()
            out[f"module.{k}"] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr.copy()
        return out

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Rebuild the network from config + vocab sizes and load :meth:`get_state`'s arrays."""
        module = self._new_module()
        own = module.state_dict()
        tensors: dict[str, torch.Tensor] = {}
        for k, v in state.items():
            if not k.startswith("module."):
                continue
            name = k[len("module.") :]
            ref = own.get(name)
            t = torch.from_numpy(np.array(v, copy=True))
            tensors[name] = t.to(ref.dtype) if ref is not None else t
        module.load_state_dict(tensors, strict=True)
        self.device_ = self._device()
        self.module_ = module.to(self.device_).eval()

    # ------------------------------------------------------------------ new users
    def minimise_fold_in_rows(
        self, params: list[torch.Tensor], objective: Callable[[], torch.Tensor]
    ) -> None:
        """Minimise per-row fold-in losses ``objective() -> (R,)`` over row-stacked ``params``.

        Row-separable (:mod:`recforge.train.rowwise`): each row ends where it would alone.
        L-BFGS (at most :meth:`fold_in_steps` iterations per row) or :meth:`fold_in_steps` Adam
        steps at ``fold_in_lr``. Single-threaded unless ``num_threads`` is set: these are many
        small ops, and a second OpenMP thread on a busy machine made one evaluation 15x slower
        (8 ms vs 126 ms at load 22 on 2 cores).
        """
        cfg = self.config
        assert isinstance(cfg, NeuralConfig)
        with threads(cfg.num_threads or 1):
            if self.fold_in_optimizer() == "adam":
                adam_rows(params, objective, steps=self.fold_in_steps(), lr=cfg.fold_in_lr)
            else:  # L-BFGS; a least-squares fold-in never gets here (see fold_in_least_squares)
                lbfgs_rows(params, objective, max_iter=self.fold_in_steps())

    def _user_param_names(self) -> tuple[str, ...]:
        return tuple(getattr(self._module(), "user_param_names", ()))

    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """Generic gradient fold-in (module docstring): scores of every item for a new user."""
        if not self._user_param_names():
            return super().fold_in_scores(item_idx, ratings)
        idx = np.asarray(item_idx, dtype=np.int64)
        row = sp.csr_matrix(
            (np.asarray(ratings, dtype=np.float32), idx, np.array([0, len(idx)])),
            shape=(1, self.n_items),
        )
        out: FloatArray = self.gradient_fold_in(row)[0]
        return out

    def fold_in_scores_batch(self, rows: sp.csr_matrix) -> FloatArray:
        """Gradient fold-ins of several new users (one CSR row each) as one row-wise batch.

        Each row's result is the one :meth:`fold_in_scores` gives it alone (the optimiser is
        row-separable). Families with their own :meth:`fold_in_scores` (closed forms) keep it.
        """
        own = type(self).fold_in_scores is not NeuralRecommender.fold_in_scores
        if own or not self._user_param_names():
            return super().fold_in_scores_batch(rows)
        return self.gradient_fold_in(rows)

    def gradient_fold_in(self, rows: sp.csr_matrix) -> FloatArray:
        """Scores ``(R, n_items)`` of the gradient fold-in of every CSR row, in row chunks.

        Chunks bound the ``rows × (history or n_items)`` cells held with their autograd graph;
        rows are independent, so chunking changes no result.
        """
        rows = sp.csr_matrix(rows)
        n_rows = rows.shape[0]
        lengths = np.diff(rows.indptr)
        width = self.n_items if self.loss_kind() != "mse" else max(1, int(lengths.max(initial=1)))
        step = max(1, FOLD_IN_CELLS // width)
        out = np.empty((n_rows, self.n_items), dtype=np.float32)
        device = self._device()
        for a in range(0, n_rows, step):
            b = min(n_rows, a + step)
            items, target, mask = _padded(rows[a:b], device)
            out[a:b] = self._gradient_fold_in_block(items, target, mask).float().cpu().numpy()
        return out

    def _gradient_fold_in_block(
        self, items: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Fold in ``R`` histories (``(R, L)`` item indices, ratings, validity mask); ``(R, n)``.

        Every user parameter row starts at the trained users' mean; the objective of each row is
        the module docstring's (squared error, or the balanced log loss over all items).
        """
        if self.loss_kind() == "mse":
            return self._least_squares_fold_in(items, target, mask)
        names = self._user_param_names()
        n_rows = items.shape[0]
        # A private float64 copy of the network: functional_call swaps parameters on the module
        # object it is given, and a service folds in from several worker threads at once (on the
        # shared module one thread's rows replaced the user table another was scoring with).
        # Float64: float32 rounding differs between a batch and one row, tipped stopping
        # decisions and moved scores by up to 1e-3; float64 rows match their lone runs.
        f64 = torch.float64
        module = copy.deepcopy(self._module()).to(f64).eval().requires_grad_(False)
        own = dict(module.named_parameters())
        start = {n: own[n].detach().mean(0, keepdim=True) for n in names}
        new = {
            n: v.expand(n_rows, *v.shape[1:]).clone().requires_grad_(True) for n, v in start.items()
        }
        scorer = _ScoreAll(module)
        rows = torch.arange(n_rows, device=items.device)
        reg = self.fold_in_reg()
        pr, pl = mask.nonzero(as_tuple=True)
        pair_items = items[pr, pl]

        def pull() -> torch.Tensor:
            parts = [(new[n] - start[n]).pow(2).reshape(n_rows, -1).sum(1) for n in names]
            return torch.stack(parts).sum(0)

        # The implicit losses: the balanced log loss over every item.
        labels = torch.zeros(n_rows, self.n_items, dtype=torch.bool, device=items.device)
        labels[pr, pair_items] = True
        n_pos = labels.sum(1).to(f64)
        n_neg = self.n_items - n_pos
        w_neg = torch.where(n_neg > 0, n_pos / n_neg.clamp_min(1.0), 0.0)

        def objective() -> torch.Tensor:
            s = torch.func.functional_call(scorer, _prefixed(new), (rows,))
            pos = (F.softplus(-s) * labels).sum(1)
            neg = (F.softplus(s) * ~labels).sum(1)
            return pos + w_neg * neg + reg * pull()

        self.minimise_fold_in_rows(list(new.values()), objective)
        with torch.no_grad():
            scores: torch.Tensor = torch.func.functional_call(scorer, _prefixed(new), (rows,))
        return scores

    # ------------------------------------------------------------------ least-squares fold-in
    def supports_least_squares(self) -> bool:
        """Whether the fold-in is a least-squares problem :meth:`least_squares_rows` states
        (the squared error with user parameter rows)."""
        return self.loss_kind() == "mse" and bool(self._user_param_names())

    def least_squares_rows(
        self, items: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> LeastSquaresFoldIn:
        """The squared-error fold-in of ``R`` padded histories as least squares in float64.

        ``θ`` is the concatenation of a row of every user parameter (``user_param_names``),
        started, and pulled towards, the trained users' mean; pair outputs run the network on
        one user row per pair (:class:`_UserRows`: a private float64 copy, which threads folding
        in at once do not share).
        """
        rows = self._user_rows()

        def pair_scores(theta: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
            rows.set(theta)
            users = torch.arange(len(theta), device=theta.device)
            out: torch.Tensor = rows.module(users, item_idx)
            return out

        def all_scores(theta: torch.Tensor) -> torch.Tensor:
            rows.set(theta)
            users = torch.arange(len(theta), device=theta.device)
            score_all: Callable[[torch.Tensor], torch.Tensor] = getattr(  # noqa: B009
                rows.module, "score_all"
            )
            return score_all(users)

        def pair_jacobian(item_idx: IntArray, row: IntArray) -> RowJacobian:
            make = getattr(rows.module, "row_jacobian", None)
            closed: RowJacobian | None = None if make is None else make(item_idx, row)
            if closed is not None:
                return closed
            item_t = torch.as_tensor(item_idx, device=rows.start.device)
            return autograd_jacobian(
                lambda copies: pair_scores(copies, item_t), row, rows.start.device
            )

        start = dense(rows.start)
        return _least_squares(
            items, target, mask, start, self.fold_in_reg(), pair_scores, all_scores, pair_jacobian
        )

    def _user_rows(self) -> _UserRows:
        """This thread's :class:`_UserRows` of the current weights (a deep copy of the network
        cost ~3 ms of a ~6 ms two-tower fold-in; each thread keeps its own, as the copy is
        mutated per evaluation)."""
        module = self._module()
        key = self._weights_key()
        cache: dict[int, tuple[Any, _UserRows]] = self.__dict__.setdefault("_user_rows_cache", {})
        thread = threading.get_ident()
        found = cache.get(thread)
        if found is not None and found[0] == key:
            return found[1]
        if len(cache) >= USER_ROWS_THREADS:
            cache.clear()  # threads come and go (pools): start over rather than grow
        rows = _UserRows(module, self._user_param_names())
        cache[thread] = (key, rows)
        return rows

    def _weights_key(self) -> tuple[Any, ...]:
        """The network's weights as the fold-in caches see them: each parameter's identity and
        in-place version (a training step or loaded weights change it)."""
        module = self._module()
        # The parameter list is remembered per module object: a served fold-in asks for this
        # key three times, and each walk of the module tree visits every submodule.
        found = self.__dict__.get("_weights_of")
        if found is None or found[0] is not module:
            found = (module, tuple(module.parameters()))
            self.__dict__["_weights_of"] = found
        return (id(module), *((id(p), p._version) for p in found[1]))

    def _least_squares_fold_in(
        self, items: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Scores ``(R, n_items)`` of the Gauss-Newton fold-in (recforge.train.gauss_newton)."""
        ls, theta = self.solved_least_squares(items, target, mask)
        with torch.no_grad():
            return ls.all_scores(torch.from_numpy(theta).to(items.device))

    def solved_least_squares(
        self, items: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> tuple[LeastSquaresFoldIn, F64]:
        """The least-squares fold-in of padded histories and its solution ``θ`` ``(R, d)``.

        Fold-ins and explanations both solve through here, so an explanation's score is its
        fold-in's. One-user problems are remembered (:data:`SOLVE_CACHE_SIZE`, per thread, as a
        problem scores through its thread's network copy): a service's new-user request ranks
        and explains the same ratings with one problem and one solve.
        """
        key = self._solve_key(items, target, mask)
        cache: dict[tuple[Any, ...], tuple[LeastSquaresFoldIn, F64]] = self.__dict__.setdefault(
            "_solve_cache", {}
        )
        found = cache.get(key) if key is not None else None
        if found is not None:
            return found[0], found[1].copy()
        ls = self.least_squares_rows(items, target, mask)
        theta = self.solve_least_squares(ls)
        if key is not None:
            while len(cache) >= SOLVE_CACHE_SIZE:
                cache.pop(next(iter(cache)), None)  # the oldest first
            cache[key] = (ls, theta.copy())
        return ls, theta

    def solve_least_squares(self, ls: LeastSquaresFoldIn) -> F64:
        """The fitted rows ``θ`` ``(R, d)`` of a least-squares fold-in, by the configured
        optimizer (Gauss-Newton, or L-BFGS / Adam on the same loss)."""
        if self.fold_in_optimizer() == "gauss_newton":
            return gauss_newton_rows(ls.problem, ls.start, self.fold_in_steps())
        return self._minimise_least_squares(ls)

    def _minimise_least_squares(self, ls: LeastSquaresFoldIn) -> F64:
        """The least-squares fold-in by the gradient optimizers (:meth:`minimise_fold_in_rows`),
        through autograd on the network's pair scores."""
        problem, device = ls.problem, self._device()
        row = torch.from_numpy(problem.row).to(device)
        items = torch.from_numpy(ls.pair_items).to(device)
        target = torch.from_numpy(problem.target).to(device)
        prior = torch.from_numpy(problem.prior).to(device)
        theta = prior.clone().requires_grad_(True)

        def objective() -> torch.Tensor:
            err = (ls.pair_scores(theta[row], items) - target) ** 2
            pull = ((theta - prior) ** 2).sum(1)
            return theta.new_zeros(len(theta)).index_add(0, row, err) + problem.lam * pull

        self.minimise_fold_in_rows([theta], objective)
        out: F64 = theta.detach().cpu().numpy()
        return out

    def _solve_key(
        self, items: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> tuple[Any, ...] | None:
        """What a one-user solve depends on (None for batches, which are not cached): the
        history, the fold-in settings, the weights (identities and in-place versions) and the
        thread."""
        if items.shape[0] != 1:
            return None
        weights = self._weights_key()
        settings = (self.fold_in_optimizer(), self.fold_in_steps(), self.fold_in_reg())
        keep = mask[0].cpu().numpy()
        history = (
            items[0].cpu().numpy()[keep].tobytes(),
            target[0].cpu().numpy()[keep].astype(np.float64).tobytes(),
        )
        return (*settings, *history, weights, threading.get_ident())

    def explain_rows(
        self, rows: sp.csr_matrix, row_of: IndexArray, targets: IndexArray
    ) -> Attribution:
        """Leave-one-out of the least-squares fold-in (:func:`~recforge.train.gauss_newton.
        leave_one_out`: exact for a model linear in the user's parameters, the one-Newton-step
        influence of each rating otherwise), computed from one fold-in; occlusion through
        :meth:`fold_in_scores_batch` for the implicit losses."""
        if not self.supports_least_squares():
            return super().explain_rows(rows, row_of, targets)
        rows = sp.csr_matrix(rows)
        row_of = np.asarray(row_of, dtype=np.int64)
        items, target, mask = _padded(rows, self._device())
        ls, theta = self.solved_least_squares(items, target.to(torch.float64), mask)
        k, lev_e = leave_one_out(ls.problem, theta)
        score, grad = ls.pair_jacobian(np.asarray(targets, dtype=np.int64), row_of)(theta)
        w = -(grad[:, None, :] @ k[row_of])[:, 0, :] * lev_e[row_of]
        lengths = np.diff(rows.indptr)
        weights = [w[p, : lengths[r]] for p, r in enumerate(row_of.tolist())]
        return Attribution(score, weights, "leave_one_out")


@dataclass(frozen=True)
class LeastSquaresFoldIn:
    """A squared-error fold-in as least squares: the problem, its start rows ``(R, d)``, the
    pairs' items, and scorers of parameter rows ``θ``: ``pair_scores(θ (P, d), items (P,)) ->
    (P,)`` (torch, one row per pair), ``all_scores(θ (R, d)) -> (R, n_items)`` (torch) and
    ``pair_jacobian(items (P,), rows (P,))``, the :data:`~recforge.train.gauss_newton.
    RowJacobian` of those pairs (closed form where the network states it, else autograd)."""

    problem: LeastSquaresRows
    start: F64
    pair_scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    all_scores: Callable[[torch.Tensor], torch.Tensor]
    pair_items: IntArray
    pair_jacobian: Callable[[IntArray, IntArray], RowJacobian]


def _least_squares(
    items: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    start: F64,
    reg: float,
    pair_scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    all_scores: Callable[[torch.Tensor], torch.Tensor],
    pair_jacobian: Callable[[IntArray, IntArray], RowJacobian],
) -> LeastSquaresFoldIn:
    """:class:`LeastSquaresFoldIn` of padded histories with start (and prior) row ``start``."""
    pr, pl = (t.cpu().numpy() for t in mask.nonzero(as_tuple=True))
    pair_items = items.cpu().numpy()[pr, pl]
    prior = np.repeat(start, items.shape[0], axis=0)
    problem = LeastSquaresRows(
        jacobian=pair_jacobian(pair_items, pr),
        row=pr,
        col=pl,
        width=items.shape[1],
        target=target.cpu().numpy()[pr, pl].astype(np.float64),
        prior=prior,
        lam=reg,
    )
    return LeastSquaresFoldIn(
        problem, prior.copy(), pair_scores, all_scores, pair_items, pair_jacobian
    )


#: Threads whose private float64 network copy a model keeps (:meth:`NeuralRecommender._user_rows`).
USER_ROWS_THREADS = 8

#: One-user least-squares solves remembered per model: a service's new-user request folds in
#: (the ranking) and explains (``because``) the same ratings, one solve for both.
SOLVE_CACHE_SIZE = 32

#: At most this many Gauss-Newton iterations in a fold-in (unless ``fold_in_steps`` says).
GAUSS_NEWTON_STEPS = 20

#: ``rows × (history length, or n_items for implicit losses)`` cells per fold-in chunk.
FOLD_IN_CELLS = 1 << 18


class _UserRows:
    """A private float64 copy of a network whose user parameters are plain tensors, set per call.

    ``functional_call`` swaps parameters in and out on every evaluation (a walk of the module
    tree: ~0.5 ms of a ~1.4 ms Gauss-Newton iteration of NCF); the copy is private, so the user
    rows are assigned once per evaluation instead. ``start`` is the trained users' mean row
    (the parameters concatenated in ``names`` order).
    """

    def __init__(self, module: nn.Module, names: tuple[str, ...]) -> None:
        self.module = copy.deepcopy(module).to(torch.float64).eval().requires_grad_(False)
        own = dict(self.module.named_parameters())
        self.shapes = [tuple(own[n].shape[1:]) for n in names]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        self.start = torch.cat([own[n].detach().mean(0).reshape(1, -1) for n in names], 1)
        # A network that can precompute its item side (the two-tower's item tower) does so.
        freeze = getattr(getattr(self.module, "inner", self.module), "freeze_item_side", None)
        if callable(freeze):
            freeze()
        self.slots: list[tuple[nn.Module, str]] = []
        for n in names:
            path, _, attr = n.rpartition(".")
            owner = self.module.get_submodule(path)
            delattr(owner, attr)  # a plain attribute from now on (set() assigns it)
            self.slots.append((owner, attr))

    def set(self, theta: torch.Tensor) -> None:
        """Make rows ``theta`` ``(R, d)`` the network's user parameters (user ``r`` = row ``r``)."""
        parts = torch.split(theta, self.sizes, dim=1)
        for (owner, attr), part, shape in zip(self.slots, parts, self.shapes, strict=True):
            setattr(owner, attr, part.reshape(len(theta), *shape))


class _ScoreAll(nn.Module):
    """``forward(user_idx) = m.score_all(user_idx)``, so ``functional_call`` can rank all items."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, user_idx: torch.Tensor) -> torch.Tensor:
        score_all: Callable[[torch.Tensor], torch.Tensor] = getattr(self.m, "score_all")  # noqa: B009
        return score_all(user_idx)


def _prefixed(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"m.{n}": v for n, v in params.items()}


def _padded(
    rows: sp.csr_matrix, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR rows as ``(R, L)`` item indices, values and a validity mask (padding: item 0)."""
    lengths = np.diff(rows.indptr).astype(np.int64)
    width = max(1, int(lengths.max(initial=0)))
    pos = np.arange(rows.nnz, dtype=np.int64) - np.repeat(rows.indptr[:-1], lengths)
    r = np.repeat(np.arange(rows.shape[0], dtype=np.int64), lengths)
    items = np.zeros((rows.shape[0], width), dtype=np.int64)
    vals = np.zeros((rows.shape[0], width), dtype=np.float32)
    mask = np.zeros((rows.shape[0], width), dtype=bool)
    items[r, pos] = rows.indices
    vals[r, pos] = rows.data
    mask[r, pos] = True
    return (
        torch.as_tensor(items, device=device),
        torch.as_tensor(vals, device=device),
        torch.as_tensor(mask, device=device),
    )


def implicit_validator(
    user_idx: torch.Tensor,
    item_idx: torch.Tensor,
    negatives: torch.Tensor,
    kind: Literal["bce", "bpr"],
    *,
    batch_size: int = 65_536,
) -> Validator:
    """Validator for implicit pair models with fixed negatives ``(N, n)``.

    Reports ``valid_loss`` (the training objective's value: BCE or BPR) and ``valid_auc``, the
    fraction of (positive, sampled negative) pairs ranked correctly (ties count one half).
    """
    n = len(user_idx)
    n_neg = negatives.shape[1]

    def validate(module: nn.Module) -> dict[str, float]:
        device = next(module.parameters()).device
        loss_sum = 0.0
        auc_sum = 0.0
        pairs = 0
        kept = 0
        rows = max(1, batch_size // (n_neg + 1))
        for s in range(0, n, rows):
            u = user_idx[s : s + rows].to(device)
            i = item_idx[s : s + rows].to(device)
            neg = negatives[s : s + rows].to(device)
            mask = neg >= 0
            pos_s = module(u, i)
            neg_s = module(u.repeat_interleave(n_neg), neg.clamp(min=0).reshape(-1)).reshape(
                -1, n_neg
            )
            diff = (pos_s[:, None] - neg_s)[mask]
            auc_sum += float((diff > 0).sum() + 0.5 * (diff == 0).sum())
            pairs += int(mask.sum())
            if kind == "bce":
                loss_sum += float(F.softplus(-pos_s).sum() + F.softplus(neg_s)[mask].sum())
                kept += len(u) + int(mask.sum())
            else:
                loss_sum += float(F.softplus(-diff).sum())
                kept += int(mask.sum())
        return {
            "valid_loss": loss_sum / max(kept, 1),
            "valid_auc": auc_sum / pairs if pairs else math.nan,
        }

    return validate
