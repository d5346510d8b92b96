"""Mult-VAE and Mult-DAE: autoencoders with a multinomial likelihood for implicit top-N.

Liang, Krishnan, Hoffman and Jebara, "Variational Autoencoders for Collaborative Filtering",
WWW 2018.

A user is the binary row ``x_u ∈ {0, 1}^n`` of the items they interacted with (with
``positive_threshold``, only ratings ≥ it; on implicit data with repeat counts,
``weighting='auto'`` makes ``x_ui`` the count, which a multinomial takes as it is). The encoder
reads the L2-normalised row with dropout
(rate ``dropout``, training only), the decoder gives one logit per item, and the likelihood is a
multinomial over items, ``log p(x_u | z) = Σ_i x_ui · log softmax(f(z))_i``.

``mult_vae`` (:class:`MultVAE`) — encoder ``n → hidden → 2·latent`` (tanh between layers) gives
the mean and log-variance of ``q(z | x) = N(μ, diag σ²)``; ``z = μ + σ ⊙ ε`` while training,
``z = μ`` at inference; decoder ``latent → reversed(hidden) → n`` (tanh between layers). The loss
per batch is the annealed negative ELBO::

    L = −mean_u Σ_i x_ui log softmax(f(z_u))_i  +  β · mean_u KL(q(z|x_u) ‖ N(0, I))  +  reg · Σ‖W‖²
    KL = ½ Σ_d (μ_d² + σ_d² − log σ_d² − 1),    β(step) = min(β_max, step / total_anneal_steps)

with ``step`` the global batch counter (:func:`kl_beta`); the paper anneals to ``β_max = 0.2``.
``total_anneal_steps = None`` takes the number of batches of the whole run, so β grows by
``1 / total`` per batch and stays at β_max from the fraction β_max of the run onwards (the paper's
200 000 steps are never reached on small data).

``mult_dae`` (:class:`MultDAE`) — the same layers with a deterministic tanh code of width
``latent`` and no KL term: ``L = −mean_u Σ_i x_ui log softmax(f(g(x̃_u)))_i + reg·Σ‖W‖²`` (the
paper's Mult-DAE, denoising by input dropout).

Training reads batches of user rows from CSR (:class:`recforge.train.rows.CSRRows`); only the
batch is dense. Scores are the log-probabilities ``log softmax(f(μ(x_u)))`` of every item (higher is
better; ``predicts_ratings`` is False). New users need no retraining: their row is encoded like a
trained user's (:meth:`MultVAE.fold_in_scores`), so a trained user's own row gives exactly their
scores.

Measured (``benchmarks/ml100k_ranking.py``, ML-100k per-user temporal 80/20, full ranking, results
in ``docs/benchmarks/ml100k_ranking_autoencoders.md``): NDCG@10 0.187 (vae) and 0.175 (dae)
against EASE 0.197 and popularity 0.116, about 12 s per fit on one CPU thread, under 2 ms per
new user. On the validation carve the two tie with EASE (0.170 / 0.172 vs 0.172); three seeds of
the VAE spread 0.160-0.170 there, so the configurations tried (dropout 0.7, β_max 0.5, smaller
codes, L2, longer runs) did not differ measurably from the paper's network used here.

Validation (``fit(train, valid)``): ``valid_loss`` is the multinomial negative log-likelihood of
the held-out items with each user's training items removed from the softmax, and
``valid_ndcg@{valid_k}`` the full-ranking NDCG of the held-out items (binary gains, training items
excluded). Early stopping on NDCG: ``monitor = "valid_ndcg@100", monitor_mode = "max"``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from recforge.config import ModelConfig, OptimizerName, ScheduleName, TrainConfig
from recforge.data.interactions import Interactions
from recforge.models.base import DEFAULT_SCORE_CHUNK, FloatArray, IndexArray, Recommender
from recforge.models.neural import NeuralRecommender
from recforge.models.recency import recency_matrix, row_sequence_weights
from recforge.train.heldout import HeldOutRanking
from recforge.train.losses import Batch, Objective
from recforge.train.rows import CSRRows, csr_from_state, csr_to_state
from recforge.train.trainer import Validator

if TYPE_CHECKING:
    from recforge.explain import Attribution

#: Dense floats materialised per validation chunk (users × items).
_DENSE_BUDGET = 1 << 23


def _screen_rows(n: int) -> int:
    """History rows per target that :meth:`MultDAE.explain_history_top` occludes exactly to
    find the ``n`` largest weights (a margin over ``n``: the screen is first-order)."""
    return max(2 * n + 2, 8)


def _refine_rows(n: int) -> int:
    """Rows per target, of those :func:`_screen_rows` keeps, that the second screen of
    :meth:`MultDAE.explain_history_top` (the Jensen bound on exact hidden layers) passes on to
    the exact log-softmax."""
    return n + 2


# ====================================================================== pure functions
def kl_beta(step: int, total_anneal_steps: int, beta_max: float) -> float:
    """KL weight of batch ``step`` (0-based): ``min(β_max, step / total_anneal_steps)``.

    ``total_anneal_steps = 0`` means no ramp (``β_max`` from the first step).
    """
    if total_anneal_steps <= 0:
        return float(beta_max)
    return float(min(beta_max, step / total_anneal_steps))


def multinomial_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``−mean_rows Σ_i x_i · log softmax(logits)_i`` (the Mult-VAE/DAE reconstruction term)."""
    return -(F.log_softmax(logits, dim=1) * x).sum(1).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``mean_rows ½ Σ_d (μ² + σ² − log σ² − 1)``: KL(N(μ, σ²) ‖ N(0, I))."""
    return (0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)).sum(1).mean()


def _order_weight_matrix(csr: sp.csr_matrix, tau: float) -> sp.csr_matrix:
    """Recency weights of each row's entries by stored order (last = latest), one per cell.

    A repeated item keeps the weight of its latest occurrence.
    """
    w = row_sequence_weights(csr.indptr, tau)
    row_of = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    key = row_of.astype(np.int64) * csr.shape[1] + csr.indices
    order = np.lexsort((w, key))
    last = np.ones(len(order), dtype=bool)
    last[:-1] = key[order][1:] != key[order][:-1]
    pick = order[last]
    return sp.csr_matrix((w[pick], (row_of[pick], csr.indices[pick])), shape=csr.shape)


# ====================================================================== network
class MultVAENet(nn.Module):
    """Encoder/decoder of Mult-VAE (``variational=True``) or Mult-DAE.

    Args:
        n_items: row width.
        hidden: encoder hidden widths (the decoder mirrors them).
        latent: code width.
        dropout: input dropout rate (training only).
        variational: Gaussian code with mean and log-variance (VAE) or a tanh code (DAE).

    Shapes:
        ``forward(x (B, n_items)) -> logits (B, n_items)``;
        ``parts(x) -> (logits, μ (B, latent), log σ² (B, latent) or None)``.
    """

    def __init__(
        self,
        n_items: int,
        hidden: Sequence[int],
        latent: int,
        *,
        dropout: float = 0.5,
        variational: bool = True,
    ) -> None:
        super().__init__()
        self.variational = variational
        self.latent = latent
        enc = [n_items, *hidden, latent * (2 if variational else 1)]
        dec = [latent, *reversed(hidden), n_items]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(enc))
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dec))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        for layer in [*self.encoder, *self.decoder]:
            # The paper's initialisation: Xavier weights, small normal biases.
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, 0.0, 0.001)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(μ, log σ²)`` for the VAE, ``(code, None)`` for the DAE."""
        return self.encode_from_first(self.encoder[0](self.drop(F.normalize(x, dim=1))))

    def encode_from_first(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`encode` given the first layer's output ``W₁ x̂ + c₁`` (``x̂``: the normalised,
        dropped-out row): the occlusion path computes it by rank-one updates."""
        last = len(self.encoder) - 1
        for k, layer in enumerate(self.encoder):
            if k:
                h = layer(h)
            if k < last or not self.variational:
                h = torch.tanh(h)
        if not self.variational:
            return h, None
        return h[:, : self.latent], h[:, self.latent :]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Item logits ``f(z)``: ``(B, n_items)``."""
        out: torch.Tensor = self.decoder[-1](self.decode_hidden(z))
        return out

    def decode_hidden(self, z: torch.Tensor) -> torch.Tensor:
        """The input of the decoder's last layer (``z`` itself without hidden layers)."""
        for layer in self.decoder[:-1]:
            z = torch.tanh(layer(z))
        return z

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(logits, μ, log σ²)``; samples ``z`` in training mode, uses ``μ`` in eval mode."""
        mu, logvar = self.encode(x)
        z = mu
        if logvar is not None and self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Item logits of rows ``x``: ``(B, n_items)``."""
        return self.parts(x)[0]

    def weight_penalty(self) -> torch.Tensor:
        """``Σ ‖W‖²`` over every weight matrix (biases excluded)."""
        squares = [m.weight.pow(2).sum() for m in self.modules() if isinstance(m, nn.Linear)]
        return torch.stack(squares).sum()


class MultinomialELBO(Objective):
    """Annealed negative ELBO (VAE) or multinomial NLL (DAE) of a batch of user rows.

    Args:
        rows: the binary user × item training rows.
        steps_per_epoch: batches per epoch (to keep the global step for :func:`kl_beta`).
        beta: ``step -> β`` (ignored by the DAE, whose network has no variance).
        reg: L2 on weight matrices.
        targets: rows of the likelihood's counts ``x`` when they differ from the network's input
            rows (recency-weighted inputs, binary targets); None: the input rows.

    Batch key: ``row`` (B,) int64 user indices. ``last_beta`` is the β of the latest batch.
    """

    def __init__(
        self,
        rows: CSRRows,
        steps_per_epoch: int,
        beta: Callable[[int], float],
        reg: float = 0.0,
        targets: CSRRows | None = None,
    ) -> None:
        self.rows = rows
        self.targets = targets
        self.steps_per_epoch = steps_per_epoch
        self.beta = beta
        self.reg = float(reg)
        self.step = 0
        self.last_beta = 0.0

    def to(self, device: torch.device) -> MultinomialELBO:
        self.rows.to(device)
        if self.targets is not None:
            self.targets.to(device)
        return self

    def start_epoch(self, epoch: int) -> None:
        self.step = epoch * self.steps_per_epoch

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        assert isinstance(module, MultVAENet)
        x, _ = self.rows.dense(batch["row"])
        logits, mu, logvar = module.parts(x)
        target = x if self.targets is None else self.targets.dense(batch["row"])[0]
        out = multinomial_nll(logits, target)
        if logvar is not None:
            self.last_beta = self.beta(self.step)
            out = out + self.last_beta * gaussian_kl(mu, logvar)
        if self.reg > 0:
            out = out + self.reg * module.weight_penalty()
        self.step += 1
        return out


# ====================================================================== configs
class MultDAEConfig(TrainConfig):
    """Hyper-parameters of ``mult_dae`` (and the shared part of ``mult_vae``)."""

    implicit_only: ClassVar[bool] = True  # no rating metric exists: monitor="valid_rmse" is refused

    hidden: tuple[int, ...] = Field((600,), description="Encoder hidden widths (decoder mirrors).")
    latent: int = Field(200, ge=1, le=100_000, description="Code width.")
    dropout: float = Field(0.5, ge=0, lt=1, description="Input dropout (training only).")
    reg: float = Field(0.0, ge=0, description="L2 on weight matrices, added to the batch loss.")
    positive_threshold: float | None = Field(
        None, description="Rated data: only ratings >= this are positives (None: every event)."
    )
    weighting: Literal["auto", "binary"] = Field(
        "auto",
        description="Training rows: 'auto' keeps the repeat counts of implicit data (the "
        "multinomial likelihood's counts and the encoder's input; 1s when nothing repeats), "
        "binary on rated data; 'binary': always 1 per interaction. New users fold in as 1s.",
    )
    valid_k: int = Field(100, ge=1, description="Cut-off of the valid_ndcg@k validation metric.")
    recency_tau: float | None = Field(
        None,
        gt=0,
        description=(
            "Input row entries weighted by exp(-position_from_end / tau) (0 = the user's latest "
            "training event, ties by item id), in training, scoring and fold-in. None: binary."
        ),
    )
    # Validation carve of ML-100k (temporal 80/20, tau=10): NDCG@10 0.213 with weighted targets
    # against 0.174 with binary ones (0.170 without recency), docs/benchmarks/tuning_ranking.md.
    recency_target: bool = Field(
        True,
        description="With recency_tau: weight the likelihood's counts too (False: binary targets).",
    )
    # One thread, as for mf: on a busy 2-core machine OpenMP workers spin-wait for cores.
    num_threads: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Torch CPU threads (None: the CPUs available, recforge.threads).",
    )
    # Batches of 100 users for 50 epochs: the paper's 500 suits ML-20M's 116k users; on ML-100k
    # (temporal 80/20, validation carve) 100 x 50 gave NDCG@10 0.170 (vae) / 0.172 (dae) against
    # 0.169 / 0.169 for 500 x 100, in half the time.
    epochs: int = Field(50, ge=1, le=10_000)
    batch_size: int = Field(100, ge=1, le=10_000_000)
    lr: float = Field(1e-3, gt=0, le=10)
    optimizer: OptimizerName = "adam"
    schedule: ScheduleName = "constant"

    @model_validator(mode="after")
    def _check_hidden(self) -> MultDAEConfig:
        if any(w < 1 for w in self.hidden):
            raise ValueError(f"hidden widths must be positive, got {list(self.hidden)}")
        return self


class MultVAEConfig(MultDAEConfig):
    """Hyper-parameters of ``mult_vae``: ``mult_dae``'s plus the KL annealing schedule."""

    beta_max: float = Field(0.2, ge=0, description="Cap of the annealed KL weight β (anneal_cap).")
    total_anneal_steps: int | None = Field(
        None,
        ge=0,
        description="Batches over which β would ramp 0 → 1 (capped at beta_max); None: all.",
    )


# ====================================================================== recommenders
class MultDAE(NeuralRecommender):
    """Mult-DAE: denoising autoencoder with a multinomial likelihood (module docstring).

    Loss: ``−Σ_i x_ui log softmax(f(g(dropout(x̂_u))))_i`` (+ ``reg·Σ‖W‖²``). Citation: Liang et al.,
    "Variational Autoencoders for Collaborative Filtering", WWW 2018.

    Fitted attributes (besides the neural ones):
        inputs_: user × item CSR of training positives (the rows the network reads): binary, or
            recency-weighted with ``recency_tau`` (:mod:`recforge.models.recency`).
    """

    name: ClassVar[str] = "mult_dae"
    Config: ClassVar[type[ModelConfig]] = MultDAEConfig
    variational: ClassVar[bool] = False

    inputs_: sp.csr_matrix
    _rows: CSRRows | None = None
    _targets: sp.csr_matrix | None = None

    def _cfg(self) -> MultDAEConfig:
        cfg = self.config
        assert isinstance(cfg, MultDAEConfig)
        return cfg

    def loss_kind(self) -> Literal["mse", "bce", "bpr"]:
        """``"bce"``: the base class's word for "implicit scores, not ratings".

        The base uses it only to tell rating outputs (clipping, y_range) from implicit scores;
        the actual objective is the multinomial likelihood.
        """
        return "bce"

    # ------------------------------------------------------------------ network and training
    def build_network(self) -> nn.Module:
        cfg = self._cfg()
        return MultVAENet(
            self.n_items,
            cfg.hidden,
            cfg.latent,
            dropout=cfg.dropout,
            variational=self.variational,
        )

    def wrap_network(self, network: nn.Module) -> nn.Module:
        """No output head: scores are the decoder's logits."""
        return network

    def _binary_rows(self, data: Interactions) -> sp.csr_matrix:
        cfg = self._cfg()
        thr = cfg.positive_threshold
        if thr is None:
            # Implicit data holds repeat counts as values (``--duplicates count``): a user who
            # played an item five times says more than one play, and a multinomial takes counts.
            counted = cfg.weighting == "auto" and data.rating_scale is None
            return data.csr("rating" if counted else "binary")
        csr = data.csr("rating").copy()
        csr.data = (csr.data >= thr).astype(np.float32)
        csr.eliminate_zeros()
        return sp.csr_matrix(csr)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        binary = self._binary_rows(train)
        tau = self._cfg().recency_tau
        # Weights from the training timeline only; ``multiply`` keeps binary's positives.
        self.inputs_ = (
            binary if tau is None else sp.csr_matrix(binary.multiply(recency_matrix(train, tau)))
        )
        self._targets = binary if tau is not None and not self._cfg().recency_target else None
        self._rows = None
        super()._fit(train, valid)
        self._targets = None

    def _beta(self, steps_per_epoch: int) -> Callable[[int], float]:
        return lambda step: 0.0

    def training_setup(self, train: Interactions) -> tuple[dict[str, torch.Tensor], Objective]:
        """Rows of users with at least one positive, and :class:`MultinomialELBO`."""
        cfg = self._cfg()
        rows = CSRRows(self.inputs_)
        users = np.flatnonzero(np.diff(self.inputs_.indptr) > 0).astype(np.int64)
        steps = max(1, math.ceil(len(users) / max(1, min(cfg.batch_size, len(users)))))
        targets = None if self._targets is None else CSRRows(self._targets)
        objective = MultinomialELBO(rows, steps, self._beta(steps), cfg.reg, targets)
        return {"row": torch.from_numpy(users)}, objective

    def make_validator(self, train: Interactions, valid: Interactions) -> Validator | None:
        """``valid_loss`` (held-out multinomial NLL) and ``valid_ndcg@k`` (module docstring)."""
        held = self._binary_rows(valid)
        users = np.flatnonzero(np.diff(held.indptr) > 0).astype(np.int64)
        if len(users) == 0:
            return None
        k = min(self._cfg().valid_k, self.n_items)
        held_rows = CSRRows(held)
        seen_rows = CSRRows(self.seen_)
        step = max(1, _DENSE_BUDGET // max(1, self.n_items))

        @torch.no_grad()
        def validate(module: nn.Module) -> dict[str, float]:
            device = next(module.parameters()).device
            src = self._input_rows()
            held_rows.to(device)
            seen_rows.to(device)
            acc = HeldOutRanking(k)
            for s in range(0, len(users), step):
                u = torch.as_tensor(users[s : s + step], device=device)
                x, _ = src.dense(u)
                _, seen = seen_rows.dense(u)
                target, _ = held_rows.dense(u)
                acc.add(module(x), target, seen)
            return acc.result(len(users))

        return validate

    # ------------------------------------------------------------------ scoring
    def _net(self) -> MultVAENet:
        net = self._module()
        assert isinstance(net, MultVAENet)
        return net

    def _input_rows(self) -> CSRRows:
        if self._rows is None or self._rows.device != self._device():
            self._rows = CSRRows(self.inputs_, self._device())
        return self._rows

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """``log softmax(f(μ(x_u)))`` of every item: ``(len(user_idx), n_items)``."""
        net = self._net()
        net.eval()
        users = np.asarray(user_idx, dtype=np.int64)
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        src = self._input_rows()
        with torch.no_grad():
            for s in range(0, len(users), DEFAULT_SCORE_CHUNK):
                x, _ = src.dense(torch.as_tensor(users[s : s + DEFAULT_SCORE_CHUNK]))
                logp = F.log_softmax(net(x), dim=1)
                out[s : s + len(x)] = logp.float().cpu().numpy()
        return out

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """Scores of (user, item) pairs, gathered from :meth:`score_items` per user chunk."""
        return Recommender.predict_idx(self, user_idx, item_idx)

    def item_vectors(self) -> FloatArray | None:
        """Decoder output weights: one row per item, ``(n_items, hidden[0] or latent)``."""
        last = self._net().decoder[-1]
        assert isinstance(last, nn.Linear)
        out: FloatArray = last.weight.detach().float().cpu().numpy()
        return out

    def item_embeddings(self) -> FloatArray | None:
        """Decoder output weights, one row per item (as :meth:`item_vectors`)."""
        return self.item_vectors()

    def user_embeddings(self) -> FloatArray | None:
        """Codes of the training rows: ``μ(x_u)`` (VAE) or the DAE code: ``(n_users, latent)``."""
        net = self._net()
        net.eval()
        src = self._input_rows()
        out = np.empty((self.n_users, net.latent), dtype=np.float32)
        with torch.no_grad():
            for s in range(0, self.n_users, DEFAULT_SCORE_CHUNK):
                rows = torch.arange(s, min(self.n_users, s + DEFAULT_SCORE_CHUNK))
                x, _ = src.dense(rows.to(src.device))
                out[s : s + len(rows)] = net.encode(x)[0].float().cpu().numpy()
        return out

    # ------------------------------------------------------------------ new users
    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """Encode the new user's binary row (no dropout, ``z = μ``); log-probabilities of items.

        With ``positive_threshold`` only ratings ≥ it count (all of them if none does).
        """
        idx = np.asarray(item_idx, dtype=np.int64)
        r = np.asarray(ratings, dtype=np.float32)
        cfg = self._cfg()
        if cfg.recency_tau is None and len(np.unique(idx)) == len(idx):
            # The binary row built directly, as _encoder_inputs builds it (1 per kept item;
            # every item when none reaches the threshold): the network reads the same tensor
            # as through the CSR batch path, without its scipy and CSRRows round trips (0.67
            # vs 0.36 ms per served fold-in on ML-100k; the scores are bit-identical, tested).
            keep = np.ones(len(idx), dtype=bool)
            if cfg.positive_threshold is not None and (r >= cfg.positive_threshold).any():
                keep = r >= cfg.positive_threshold
            net = self._net()
            net.eval()
            dev = self._device()
            x = torch.zeros(1, self.n_items, device=dev)
            x[0, torch.as_tensor(idx[keep], device=dev)] = 1.0
            with torch.no_grad():
                one: FloatArray = F.log_softmax(net(x), dim=1).float().cpu().numpy()[0]
            return one
        rows = sp.csr_matrix((r, idx, np.array([0, len(idx)])), shape=(1, self.n_items))
        out: FloatArray = self.fold_in_scores_batch(rows)[0]
        return out

    def _encoder_inputs(self, rows: sp.csr_matrix) -> sp.csr_matrix:
        """The encoder's input rows of new users' rating rows: binarised (``positive_threshold``)
        and, with ``recency_tau``, weighted by their stored order (see :meth:`fold_in_scores`)."""
        csr = sp.csr_matrix(rows).astype(np.float32)
        tau = self._cfg().recency_tau
        # Recency comes from the order as given: read it before sum_duplicates sorts the rows.
        order_w = None if tau is None else _order_weight_matrix(csr, tau)
        csr.sum_duplicates()
        row_of = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        keep = np.ones(csr.nnz, dtype=bool)
        thr = self._cfg().positive_threshold
        if thr is not None:
            pos = csr.data >= thr
            n_pos = np.bincount(row_of[pos], minlength=csr.shape[0])
            # A user with no rating >= the threshold keeps all of them, as documented.
            keep = pos | (n_pos[row_of] == 0)
        binary = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (row_of[keep], csr.indices[keep])),
            shape=csr.shape,
        )
        if order_w is not None:
            binary = sp.csr_matrix(binary.multiply(order_w))
        return binary

    def fold_in_scores_batch(self, rows: sp.csr_matrix) -> FloatArray:
        """Fold-in for several new users (one CSR row of item ratings each): ``(B, n_items)``.

        Each row is binarised as in training (:meth:`fold_in_scores`) and encoded in chunks. With
        ``recency_tau`` the entries are weighted by their stored order in the row, the last being
        the user's most recent (``recommend_for_ratings`` keeps the order of its mapping).
        """
        net = self._net()
        net.eval()
        binary = self._encoder_inputs(rows)
        new = CSRRows(binary, self._device())
        out = np.empty((new.shape[0], self.n_items), dtype=np.float32)
        step = max(1, _DENSE_BUDGET // max(1, self.n_items))
        with torch.no_grad():
            for s in range(0, new.shape[0], step):
                idx = torch.arange(s, min(new.shape[0], s + step), device=new.device)
                logits = net(new.dense(idx)[0])
                out[s : s + len(idx)] = F.log_softmax(logits, dim=1).float().cpu().numpy()
        return out

    # ------------------------------------------------------------------ explanations
    def explain_rows(
        self, rows: sp.csr_matrix, row_of: IndexArray, targets: IndexArray
    ) -> Attribution:
        """Drop-one occlusion of the log-probabilities, the first layer by rank-one updates.

        The same quantity as the default (:func:`recforge.explain.occlusion`): the served
        score ``log softmax(f(μ(x)))_i`` of the full history minus that of each drop-one
        history, normaliser included (removing an item moves every item's log-probability; an
        explanation of the logit alone would not add up to the served score). Only the first
        layer changes: it is linear in the input row, so the drop-one rows' products
        ``x_v W₁ᵀ`` are the full row's minus the dropped entries' (:func:`recforge.explain.
        drop_one_products`, ``O(|H| · hidden)`` instead of a dense ``(|H| + 1) × n_items`` one),
        divided by each row's own L2 norm (the encoder's normalisation). With ``recency_tau``
        every weight of a drop-one row moves (positions shift), and the update covers all of
        them. The layers after the first and the full-width softmax run as before.
        """
        from recforge.explain import Attribution, row_entries

        net = self._net()
        net.eval()
        rows = sp.csr_matrix(rows)
        row_of = np.asarray(row_of, dtype=np.int64)
        targets = np.asarray(targets, dtype=np.int64)
        score = np.zeros(len(targets), dtype=np.float64)
        weights: list[npt.NDArray[np.float64]] = [np.zeros(0)] * len(targets)
        with torch.no_grad():
            for r in range(rows.shape[0]):
                pairs = np.flatnonzero(row_of == r)
                if not len(pairs):
                    continue
                idx, vals = row_entries(rows, r)
                logits = net.decoder[-1](self._drop_one_hidden(idx, vals))
                cols, col_of = np.unique(targets[pairs], return_inverse=True)
                logp = F.log_softmax(logits, dim=1)[:, torch.as_tensor(cols, device=logits.device)]
                lp = logp.double().cpu().numpy()
                for p, k in zip(pairs.tolist(), col_of.tolist(), strict=True):
                    score[p] = lp[0, k]
                    weights[p] = lp[0, k] - lp[1:, k]
        return Attribution(score, weights, "occlusion")

    def explain_history_top(
        self, items: IndexArray, ratings: FloatArray, targets: IndexArray, n: int
    ) -> npt.NDArray[np.float64]:
        """Drop-one weights ``(len(targets), len(items))`` of the history items that can be
        among each target's ``n`` largest; ``-inf`` for the others (what a served ``because``
        of ``n`` items needs, :func:`recforge.explain.because_idx`).

        The decoder's last layer over the whole catalogue, for the log-softmax normaliser of every
        drop-one row, is most of an explanation; a first-order screen picks the rows worth it. With
        ``h(pre)`` the decoder's last hidden layer as a function of the first encoder layer's
        output, ``p₀ = softmax(W h_0 + b)`` and ``w̄ = p₀ᵀW`` (``0``: the full history), Jensen's
        inequality gives ``N_v − N_0 ≥ w̄·(h_v − h_0)`` for the normaliser ``N = logsumexp(W h +
        b)``: the weight of row ``v`` for target ``i`` is at least ``(w̄ − W_i)·(h_v − h_0)``, short
        by the same second-order term for every target. The screen linearises that bound once more,
        at the full history's ``pre_0``: ``g_i·(pre_v − pre_0)`` with ``g_i = ∂[(w̄ − W_i)·h]/∂pre``
        (one vector-Jacobian product for all targets), so only the first layer (rank-one updates)
        runs for every row. The union over targets of each one's :func:`_screen_rows` best-screened
        rows (8 for ``n = 3``) goes through the layers after the first (a quarter of the
        catalogue-wide last layer's multiply-adds per row on ML-100k), and a second screen ranks
        them by the Jensen bound itself, ``(W_i − w̄)·(h_0 − h_v)``; the union of each target's
        :func:`_refine_rows` best (5 for ``n = 3``) is occluded exactly: the same log-softmax
        difference as :meth:`explain_rows` over those rows only. On ML-100k (943 users, their
        top-10, ``n = 3``) 9422 of 9430 lists equal the full path's
        (docs/benchmarks/explain_screen_coverage.md). The screens and the exact rows run in numpy
        (:mod:`recforge.models._vae_screen`: torch's small CPU products cost several times numpy's);
        weights agree with the full path to float32 rounding of the logits (up to 7.2e-6 on ML-100k,
        1e-6 on the tests' networks; the 8 other lists there order near-equal weights differently).
        Histories with no more rows than the first screen keeps are explained in full
        (:meth:`explain_history`). Served ``because`` only: :meth:`explain_rows` stays complete.
        """
        idx = np.asarray(items, dtype=np.int64)
        targets = np.asarray(targets, dtype=np.int64)
        if len(idx) <= _screen_rows(n) or not len(targets):
            return self.explain_history(idx, ratings, targets)[1]
        lay = self._numpy_net()
        pre_of, screen_of = self._screen_parts(lay, idx, np.asarray(ratings, dtype=np.float32))
        return self._screened_top(lay, pre_of, screen_of, len(idx), targets, n, None)

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
        """A user's served top-``k`` and its ``because`` weights from one forward pass.

        ``items``/``ratings``: a known user's training history (timeline order), or with
        ``new_user`` a new user's fold-in ratings (:meth:`fold_in_scores`: always a binary
        row); ``exclude`` the item indices left out of the ranking. Returns the ranked item
        indices and their scores (as :func:`~recforge.models.base.rank_scores`: -1 / -inf
        where unfilled) and :meth:`explain_history_top`'s weights for them. The screened
        explanation computes the full history's catalogue-wide logits anyway (its row 0): the
        ranking reads them instead of a second pass through the torch network. Scores are
        ``log softmax`` of those logits, the same function as :meth:`score_items` and
        :meth:`fold_in_scores`, through numpy's kernels and a sparse first layer (the sum of
        the history's columns): equal to theirs up to float32
        rounding (the top-``k`` lists of ML-100k's users are the same; see
        docs/explain.md), and the logits the screens linearise at.

        None when this path does not apply and the caller ranks and explains separately: the
        encoder's input row is not the binary history (``positive_threshold``,
        ``recency_tau``, repeat counts). A history short enough to be explained in full has
        every drop-one row computed in the same pass (:meth:`_rank_short_history`).
        """
        from recforge.models import _vae_screen
        from recforge.models.base import rank_one_row

        cfg = self._cfg()
        idx = np.asarray(items, dtype=np.int64)
        vals = np.asarray(ratings, dtype=np.float32)
        # Implicit data's repeat counts are the input row's values (binary only when all 1).
        counted = (
            not new_user
            and cfg.weighting == "auto"
            and self.rating_scale_ is None
            and bool((vals != 1).any())
        )
        if cfg.positive_threshold is not None or cfg.recency_tau is not None or counted:
            return None
        if len(np.unique(idx)) != len(idx):
            return None
        if len(idx) <= _screen_rows(n):
            return self._rank_short_history(idx, vals, k, exclude)
        lay = self._numpy_net()
        pre_of, screen_of = self._screen_parts(lay, idx, vals)
        head = _vae_screen.head(lay, pre_of(np.zeros(1, dtype=np.int64)))
        logp = _vae_screen.log_softmax(head.z0[None, :])
        top, scores, targets = rank_one_row(logp, k, exclude)
        if not len(targets):
            return top, scores, np.zeros((0, len(idx)))
        weights = self._screened_top(lay, pre_of, screen_of, len(idx), targets, n, head)
        return top, scores, weights

    def _rank_short_history(
        self, idx: IndexArray, vals: FloatArray, k: int, exclude: IndexArray
    ) -> tuple[IndexArray, FloatArray, npt.NDArray[np.float64]]:
        """:meth:`rank_history_top` of a history short enough to occlude in full (no screen):
        the full row and every drop-one row in one pass, as :meth:`explain_rows` computes them;
        row 0's log-probabilities rank (a new user's POST: one pass, not a fold-in, then it)."""
        from recforge.models.base import rank_one_row

        net = self._net()
        net.eval()
        with torch.no_grad():
            logits = net.decoder[-1](self._drop_one_hidden(idx, vals))
            logp = F.log_softmax(logits, dim=1).double().cpu().numpy()
        top, scores, targets = rank_one_row(logp[0].astype(np.float32), k, exclude)
        weights = logp[0, targets][:, None] - logp[1:, targets].T
        return top, scores, weights

    def _screen_parts(
        self, lay: Any, idx: IndexArray, vals: FloatArray
    ) -> tuple[Callable[[IndexArray], FloatArray], Callable[[FloatArray], FloatArray]]:
        """The first layer's drop-one rows of a history (``pre_of(rows)``) and the first
        screen's products with them (``screen_of(g)``), for :meth:`_screened_top`."""
        from recforge.models import _vae_screen

        kept = self._first_layer_kept(idx, vals)
        pre_of: Callable[[IndexArray], FloatArray]
        screen_of: Callable[[FloatArray], FloatArray]
        if kept is None:  # recency weights, repeats, one positive: the general rows (torch)
            with torch.no_grad():
                pre = self._drop_one_pre(idx, vals).float().cpu().numpy()

            def pre_of(r: IndexArray) -> FloatArray:
                return pre[r]

            def screen_of(g: FloatArray) -> FloatArray:
                out: FloatArray = (pre[1:] - pre[:1]) @ g.T
                return out

        else:
            parts = _vae_screen.first_layer(lay, idx, None if kept.all() else kept)
            pre_of, screen_of = parts.rows, parts.screen
        return pre_of, screen_of

    def _screened_top(
        self,
        lay: Any,
        pre_of: Callable[[IndexArray], FloatArray],
        screen_of: Callable[[FloatArray], FloatArray],
        n_hist: int,
        targets: IndexArray,
        n: int,
        head: Any,
    ) -> npt.NDArray[np.float64]:
        """:meth:`explain_history_top`'s two screens and exact rows (``head``: the full
        history's :func:`recforge.models._vae_screen.head` when already computed)."""
        from recforge.models import _vae_screen

        zero = np.zeros(1, dtype=np.int64)
        if head is None:
            head = _vae_screen.head(lay, pre_of(zero))
        cand, wbar, wt = _vae_screen.first_screen(lay, head, screen_of, targets, _screen_rows(n))
        rows = np.concatenate([zero, cand + 1])
        best, hidden = _vae_screen.second_screen(lay, pre_of(rows), wbar, wt, _refine_rows(n))
        out = np.full((len(targets), n_hist), -math.inf, dtype=np.float64)
        out[:, cand[best]] = _vae_screen.exact_weights(lay, hidden, targets)
        return out

    def _numpy_net(self) -> Any:
        """The network's layers as numpy arrays (:mod:`recforge.models._vae_screen`), built once
        per set of weights: rebuilt when a parameter is replaced or changed in place."""
        from recforge.models import _vae_screen

        net = self._net()
        cached = self.__dict__.get("_numpy_layers")
        # The check reads each parameter's slot in its module's own dict (the parameter held
        # there, its version): ``net.parameters()`` walks the module tree, ~0.1 ms a request.
        if (
            cached is None
            or cached[0] is not net
            or any(slots.get(name) is not p or p._version != v for slots, name, p, v in cached[1])
        ):
            slots = [
                (m._parameters, name, p, p._version)
                for m in net.modules()
                for name, p in m._parameters.items()
                if p is not None
            ]
            # A whole tuple swapped in at once: threads reading the old one keep a valid copy.
            cached = (net, slots, _vae_screen.numpy_net(net))
            self.__dict__["_numpy_layers"] = cached
        return cached[2]

    def _first_layer_kept(self, idx: IndexArray, vals: FloatArray) -> npt.NDArray[np.bool_] | None:
        """Which history entries the encoder's binary row counts, when every drop-one row is
        the full row less at most the dropped entry; None otherwise (recency weights, repeated
        items, or a threshold that leaves one positive: dropping it brings the others back)."""
        cfg = self._cfg()
        if cfg.recency_tau is not None or len(np.unique(idx)) != len(idx):
            return None
        kept = np.ones(len(idx), dtype=bool)
        if cfg.positive_threshold is not None:
            pos = np.asarray(vals) >= cfg.positive_threshold
            if int(pos.sum()) == 1:
                return None
            if pos.any():
                kept = pos
        return kept

    def _drop_one_hidden(self, idx: IndexArray, vals: FloatArray) -> torch.Tensor:
        """The decoder's last hidden layer (its input) of the full history (row 0) and of each
        drop-one history (row ``1 + m``: without entry ``m``), ``(|H| + 1, width)``."""
        net = self._net()
        return net.decode_hidden(net.encode_from_first(self._drop_one_pre(idx, vals))[0])

    def _drop_one_pre(self, idx: IndexArray, vals: FloatArray) -> torch.Tensor:
        """The first encoder layer's output ``W₁ x̂_v + c₁`` of the rows of
        :meth:`_drop_one_hidden`, in the weights' dtype."""
        from recforge.explain import drop_one_products, drop_one_rows

        net = self._net()
        first = net.encoder[0]
        assert isinstance(first, nn.Linear)
        found = self._drop_one_first_layer(idx, vals, first.weight)
        if found is None:
            inputs = self._encoder_inputs(drop_one_rows(idx, vals, self.n_items))
            prod = drop_one_products(inputs, first.weight)
            sq = np.asarray(inputs.multiply(inputs).sum(axis=1), np.float64).ravel()
            norm = torch.as_tensor(np.sqrt(sq), device=prod.device)
        else:
            prod, norm = found
        return self._pre_from(prod, norm)

    def _pre_from(self, prod: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        """``W₁ x̂ + c₁`` in the weights' dtype from rows' products ``x W₁ᵀ`` and norms ``‖x‖``."""
        first = self._net().encoder[0]
        assert isinstance(first, nn.Linear)
        # F.normalize: x / max(‖x‖, 1e-12); an empty row stays 0 (no rounding residue).
        unit = prod / norm.clamp_min(1e-12)[:, None]
        if not bool((norm > 0).all()):
            unit = torch.where(norm[:, None] > 0, unit, 0.0)
        pre: torch.Tensor = (unit + first.bias.to(unit.dtype)).to(first.weight.dtype)
        return pre

    def _drop_one_first_layer(
        self, idx: IndexArray, vals: FloatArray, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(x_v W₁ᵀ, ‖x_v‖)`` of the full row (``v = 0``) and each drop-one row, in float64,
        straight from the history when every drop-one row is the full binary row less at most
        the dropped item; None otherwise (recency weights, repeated items, or a threshold that
        leaves one positive: dropping it brings the others back), for the general path.
        """
        parts = self._first_layer_parts(idx, vals, weight)
        if parts is None:
            return None
        full, cols, norm = parts
        return torch.cat([full[None, :], full[None, :] - cols.T]), norm

    def _first_layer_parts(
        self, idx: IndexArray, vals: FloatArray, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """What :meth:`_drop_one_first_layer` builds its rows from: the full row's product
        ``full`` (``(hidden,)``), the kept entries' columns of ``W₁`` (``(hidden, |H|)``, zero
        for entries below the threshold) and every row's norm; None for the general path."""
        kept = self._first_layer_kept(idx, vals)
        if kept is None:
            return None
        dev = weight.device
        # W₁[:, idx] (hidden × |H|) from an item-major copy: |H| contiguous rows instead of a
        # column gather touching a cache line per cell (the gather was ~0.5 ms of a served
        # explanation); the same float64 values in the same layout, so the sums are unchanged.
        cached = self.__dict__.get("_w1_by_item")
        if cached is None or cached[0] is not weight or cached[1] != weight._version:
            cached = (weight, weight._version, weight.detach().T.contiguous())
            self.__dict__["_w1_by_item"] = cached
        rows = cached[2].index_select(0, torch.as_tensor(idx, device=dev))
        cols = rows.double().T.contiguous()
        if not kept.all():  # (× 1 is exact: skipped when every item is kept)
            cols = cols * torch.as_tensor(kept, device=dev)
        n_kept = float(kept.sum())
        sq = np.concatenate([[n_kept], n_kept - kept.astype(np.float64)])
        return cols.sum(1), cols, torch.as_tensor(np.sqrt(sq), device=dev)

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """Network weights plus the binary input rows."""
        return {**super().get_state(), **csr_to_state("inputs", self.inputs_)}

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Restore the input rows, then rebuild the network and load its weights."""
        self.inputs_ = csr_from_state("inputs", state)
        self._rows = None
        super().set_state(state)


class MultVAE(MultDAE):
    """Mult-VAE^PR: variational autoencoder, multinomial likelihood, annealed KL (module doc).

    Loss: ``−E_q[log p(x_u|z)] + β·KL(q(z|x_u) ‖ N(0, I))`` with
    ``β = min(β_max, step / total_anneal_steps)``. Citation: Liang et al., "Variational
    Autoencoders for Collaborative Filtering", WWW 2018.
    """

    name: ClassVar[str] = "mult_vae"
    Config: ClassVar[type[ModelConfig]] = MultVAEConfig
    variational: ClassVar[bool] = True

    def _beta(self, steps_per_epoch: int) -> Callable[[int], float]:
        cfg = self.config
        assert isinstance(cfg, MultVAEConfig)
        # None: ramp over the whole run, so β = min(β_max, progress) with progress in [0, 1).
        total = cfg.total_anneal_steps
        if total is None:
            total = steps_per_epoch * cfg.epochs
        beta_max = cfg.beta_max
        return lambda step: kl_beta(step, total, beta_max)
