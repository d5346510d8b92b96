"""Neural Collaborative Filtering: GMF, MLP and NeuMF (He et al., 2017).

Reference: Xiangnan He, Lizi Liao, Hanwang Zhang, Liqiang Nie, Xia Hu and Tat-Seng Chua,
"Neural Collaborative Filtering", WWW 2017, https://doi.org/10.1145/3038912.3052569.

Three ``nn.Module`` s map index tensors to one raw score (a logit for implicit feedback, a
pre-activation for explicit ratings):

* :class:`GMF`   ``s(u, i) = h^T (p_u ⊙ q_i) + b``
* :class:`NCFMLP` ``s(u, i) = h^T φ_L(... φ_1([p_u; q_i])) + b``, ``φ_l(x) = ReLU(W_l x + b_l)``
* :class:`NeuMF` ``s(u, i) = h^T [p^G_u ⊙ q^G_i ; φ_L(... [p^M_u; q^M_i])] + b`` — separate
  embeddings for the two branches, fused only in the last (predict) layer.

The MLP layer sizes follow the paper's convention: ``layers[0]`` is the width of the concatenated
embeddings (so each side has ``layers[0] // 2`` factors) and ``layers[1:]`` are the hidden widths;
``layers=(128, 64)`` is the ``concat 128 → 64 → 1`` network of our reference material.

Recommender (:class:`NCF`, registered as ``ncf``; ``variant`` picks the network). Losses:

* explicit ratings: MSE, the output passed through the scaled sigmoid ``y_range`` (default: the
  rating scale widened by 1/8 of its span each side) and centred on the global mean at start;
* implicit feedback: the paper's pointwise log loss (BCE) against ``n_negatives`` sampled
  negatives per positive (eq. 7; uniform or popularity sampler), or BPR.

Pre-training (§3.4.1 of the paper): with ``variant="neumf", pretrain=True`` a GMF and an MLP with
the same sizes are first fitted on the same data (``pretrain_epochs`` each, at ``pretrain_lr``),
their weights copied into NeuMF and the fused predict layer set to ``[α h^GMF ; (1 − α) h^MLP]``
(``alpha = 0.5``); then NeuMF trains as configured. The paper switches to plain SGD for this
last phase (Adam's moment estimates are not carried over); set ``optimizer = "sgd"`` for that.

Defaults (all variants): AdamW with decoupled weight decay 1.0 at a constant lr 3e-3, 20 epochs
of 1024-row batches, dropout 0.3 in the MLP branch, 32 GMF factors, MLP layers (128, 64), one
torch thread. Decoupled decay matters: Adam's L2 (``optimizer="adam"``) shrinks every row by about
``lr`` per step whatever its coefficient, since Adam normalises the gradient; that regularised
explicit models well but stopped implicit ones learning (NeuMF hit-rate@10 on planted data 0.14,
vs 0.92 with AdamW). Measured with ``benchmarks/ml100k_folds.py`` (ML-100k u1..u5, mean RMSE,
explicit; biases baseline 0.947): gmf 0.932, mlp 0.925, neumf 0.914, neumf with pretrain 0.912.

Scoring every item for a batch of users (ranking) never loops over items: GMF folds ``h`` into the
item matrix and does one matmul; the MLP splits its first layer as ``W [p; q] = W_u p + W_i q``, so
the item half is computed once for all items and broadcast-added to the user half, in user chunks
bounded by a memory budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch import nn

from recforge.config import ModelConfig, OptimizerName, ScheduleName
from recforge.data.interactions import Interactions
from recforge.models._row_jacobian import (
    F64,
    FrozenItemHalf,
    IntArray,
    RowJacobian,
    concat_mlp,
    dense,
)
from recforge.models.base import FloatArray
from recforge.models.neural import NeuralRecommender, OutputHead, PairConfig, YRange

#: Upper bound on (users × items × hidden) floats materialised at once by MLP full scoring.
_MLP_SCORE_BUDGET = 1 << 24


def _init_embedding(emb: nn.Embedding, std: float) -> None:
    # The paper initialises embeddings from N(0, 0.01); small values keep the early ReLUs alive.
    nn.init.normal_(emb.weight, 0.0, std)


class GMF(nn.Module):
    """Generalised matrix factorisation: ``s(u, i) = h^T (p_u ⊙ q_i) + b``.

    Args:
        n_users, n_items: vocabulary sizes.
        n_factors: embedding width ``d``.
        init_std: std of the normal embedding initialisation.

    Shapes:
        ``forward(user_idx (B,), item_idx (B,)) -> (B,)``;
        ``score_all(user_idx (B,)) -> (B, n_items)``.
    """

    user_param_names: ClassVar[tuple[str, ...]] = ("user_emb.weight",)
    item_param_names: ClassVar[tuple[str, ...]] = ("item_emb.weight",)

    def __init__(
        self, n_users: int, n_items: int, n_factors: int = 32, *, init_std: float = 0.01
    ) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(n_users, n_factors)
        self.item_emb = nn.Embedding(n_items, n_factors)
        self.predict = nn.Linear(n_factors, 1)
        _init_embedding(self.user_emb, init_std)
        _init_embedding(self.item_emb, init_std)

    def features(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """The element-wise product ``p_u ⊙ q_i``: ``(B, d)``."""
        out: torch.Tensor = self.user_emb(user_idx) * self.item_emb(item_idx)
        return out

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs: ``(B,)``."""
        out: torch.Tensor = self.predict(self.features(user_idx, item_idx)).squeeze(-1)
        return out

    def score_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user: ``(B, n_items)``, via ``p_u (Q diag(h))^T + b``."""
        weighted = self.item_emb.weight * self.predict.weight  # (n_items, d) * (1, d)
        out: torch.Tensor = self.user_emb(user_idx) @ weighted.T + self.predict.bias
        return out

    def row_jacobian(self, item_idx: IntArray, row: IntArray) -> RowJacobian:
        """Pairs' scores and gradients in the user rows (linear: ``∂s/∂p_u = h ⊙ q_i``)."""
        coef = dense(self.item_emb.weight)[item_idx] * dense(self.predict.weight)  # (P, d)
        bias = float(self.predict.bias)

        def at(theta: F64) -> tuple[F64, F64]:
            return (theta[row] * coef).sum(1) + bias, coef

        return at


class NCFMLP(FrozenItemHalf, nn.Module):
    """The NCF multi-layer perceptron: ``s(u, i) = h^T φ_L(...φ_1([p_u; q_i])) + b``.

    Args:
        n_users, n_items: vocabulary sizes.
        layers: ``layers[0]`` is the concatenated embedding width (each side ``layers[0] // 2``),
            ``layers[1:]`` the hidden widths (each Linear → ReLU → Dropout). At least two entries.
        dropout: dropout after each hidden layer (and on the concatenated embeddings).
        init_std: std of the normal embedding initialisation.

    Shapes:
        ``forward(user_idx (B,), item_idx (B,)) -> (B,)``;
        ``score_all(user_idx (B,)) -> (B, n_items)``.
    """

    user_param_names: ClassVar[tuple[str, ...]] = ("user_emb.weight",)
    item_param_names: ClassVar[tuple[str, ...]] = ("item_emb.weight",)

    def __init__(
        self,
        n_users: int,
        n_items: int,
        layers: Sequence[int] = (128, 64),
        *,
        dropout: float = 0.0,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        if len(layers) < 2 or layers[0] < 2 or layers[0] % 2:
            raise ValueError(
                f"NCF MLP layers need >= 2 entries and an even first width, got {list(layers)}"
            )
        d = layers[0] // 2
        self.user_emb = nn.Embedding(n_users, d)
        self.item_emb = nn.Embedding(n_items, d)
        _init_embedding(self.user_emb, init_std)
        _init_embedding(self.item_emb, init_std)
        self.drop = nn.Dropout(dropout)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(layers))
        self.predict = nn.Linear(layers[-1], 1)
        self.out_dim = int(layers[-1])
        self.first_width = int(layers[1])

    def first_layer(self) -> tuple[nn.Linear, nn.Embedding, int]:
        """The first layer, the item embedding table and the user part's width."""
        first = self.hidden[0]
        assert isinstance(first, nn.Linear)
        return first, self.item_emb, self.user_emb.embedding_dim

    def features(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Last hidden activation ``φ_L(...)``: ``(B, layers[-1])``."""
        x: torch.Tensor = self.drop(
            torch.cat([self.user_emb(user_idx), self.item_emb(item_idx)], -1)
        )
        for layer in self.hidden:
            x = self.drop(torch.relu(layer(x)))
        return x

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs: ``(B,)``."""
        out: torch.Tensor = self.predict(self.features(user_idx, item_idx)).squeeze(-1)
        return out

    def features_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Last hidden activation for every (user, item): ``(B, n_items, layers[-1])``.

        The first layer is split into its user and item halves so the item half is computed once.
        Dropout is not applied (call under ``eval()``; this is a scoring path).
        """
        first = self.hidden[0]
        assert isinstance(first, nn.Linear)
        d = self.user_emb.embedding_dim
        user_part = self.user_emb(user_idx) @ first.weight[:, :d].T + first.bias  # (B, h1)
        item_part = self.item_half()  # (n_items, h1)
        x = torch.relu(user_part[:, None, :] + item_part[None, :, :])
        for layer in list(self.hidden)[1:]:
            x = torch.relu(layer(x))
        return x

    def score_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user, in memory-bounded user chunks."""
        n = self.item_emb.num_embeddings
        return _chunked_users(user_idx, n, self.first_width, self._score_chunk)

    def row_features(
        self, item_idx: IntArray, row: IntArray, head: F64
    ) -> Callable[[F64], tuple[F64, F64]]:
        """``θ -> (φ_L (P, h_L), ∂(head φ_L)/∂θ (k, P, d))`` of fixed pairs (eval mode)."""
        return concat_mlp(self, list(self.hidden), head, item_idx, row)

    def row_jacobian(self, item_idx: IntArray, row: IntArray) -> RowJacobian:
        """Pairs' scores and gradients in the user rows, in closed form (eval mode)."""
        head, bias = dense(self.predict.weight), float(self.predict.bias)
        features = self.row_features(item_idx, row, head)

        def at(theta: F64) -> tuple[F64, F64]:
            x, grad = features(theta)
            return x @ head[0] + bias, grad[0]

        return at

    def _score_chunk(self, user_idx: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.predict(self.features_all(user_idx)).squeeze(-1)
        return out


def _chunked_users(
    user_idx: torch.Tensor, n_items: int, width: int, fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Apply ``fn`` to user chunks sized so ``chunk × n_items × width`` stays under the budget."""
    chunk = max(1, _MLP_SCORE_BUDGET // max(1, n_items * width))
    if len(user_idx) <= chunk:
        return fn(user_idx)
    return torch.cat([fn(user_idx[s : s + chunk]) for s in range(0, len(user_idx), chunk)], dim=0)


class NeuMF(nn.Module):
    """Neural matrix factorisation: GMF and MLP branches fused in one predict layer.

    ``s(u, i) = h^T [p^G_u ⊙ q^G_i ; φ_L(...φ_1([p^M_u; q^M_i]))] + b``.

    Args:
        n_users, n_items: vocabulary sizes.
        n_factors: GMF embedding width.
        layers: MLP layer widths (see :class:`NCFMLP`).
        dropout: MLP dropout.
        init_std: std of the normal embedding initialisation.

    Shapes:
        ``forward(user_idx (B,), item_idx (B,)) -> (B,)``;
        ``score_all(user_idx (B,)) -> (B, n_items)``.
    """

    user_param_names: ClassVar[tuple[str, ...]] = ("gmf.user_emb.weight", "mlp.user_emb.weight")
    item_param_names: ClassVar[tuple[str, ...]] = ("gmf.item_emb.weight", "mlp.item_emb.weight")

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int = 32,
        layers: Sequence[int] = (128, 64),
        *,
        dropout: float = 0.0,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        self.gmf = GMF(n_users, n_items, n_factors, init_std=init_std)
        self.mlp = NCFMLP(n_users, n_items, layers, dropout=dropout, init_std=init_std)
        # The branches' own predict layers are unused here; NeuMF has one fused predict layer.
        self.predict = nn.Linear(n_factors + self.mlp.out_dim, 1)

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs: ``(B,)``."""
        x = torch.cat(
            [self.gmf.features(user_idx, item_idx), self.mlp.features(user_idx, item_idx)], dim=-1
        )
        out: torch.Tensor = self.predict(x).squeeze(-1)
        return out

    def score_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user, in memory-bounded user chunks."""
        n = self.gmf.item_emb.num_embeddings
        return _chunked_users(user_idx, n, self.mlp.first_width, self._score_chunk)

    def _score_chunk(self, user_idx: torch.Tensor) -> torch.Tensor:
        d = self.gmf.item_emb.embedding_dim
        h_gmf, h_mlp = self.predict.weight[0, :d], self.predict.weight[0, d:]
        gmf_part = self.gmf.user_emb(user_idx) @ (self.gmf.item_emb.weight * h_gmf).T
        mlp_part = self.mlp.features_all(user_idx) @ h_mlp
        out: torch.Tensor = gmf_part + mlp_part + self.predict.bias
        return out

    def freeze_item_side(self) -> None:
        """Precompute the MLP branch's item side (:meth:`NCFMLP.freeze_item_side`)."""
        self.mlp.freeze_item_side()

    def row_jacobian(self, item_idx: IntArray, row: IntArray) -> RowJacobian:
        """Pairs' scores and gradients in the user rows ``θ = [p^G; p^M]`` (eval mode)."""
        d = self.gmf.item_emb.embedding_dim
        head, bias = dense(self.predict.weight), float(self.predict.bias)
        h_gmf, h_mlp = head[:, :d], head[:, d:]
        coef = dense(self.gmf.item_emb.weight)[item_idx] * h_gmf  # (P, d): ∂s/∂p^G
        features = self.mlp.row_features(item_idx, row, h_mlp)

        def at(theta: F64) -> tuple[F64, F64]:
            x, grad = features(theta[:, d:])
            out = (theta[row, :d] * coef).sum(1) + x @ h_mlp[0] + bias
            return out, np.concatenate([coef, grad[0]], 1)

        return at

    @torch.no_grad()
    def load_pretrained(self, gmf: GMF, mlp: NCFMLP, alpha: float = 0.5) -> None:
        """Initialise from separately trained GMF and MLP models (He et al. 2017, §3.4.1).

        Embeddings and hidden layers are copied; the fused predict layer becomes
        ``h = [α h^GMF ; (1 - α) h^MLP]`` with bias ``α b^GMF + (1 - α) b^MLP``.
        """
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.gmf.load_state_dict(gmf.state_dict())
        self.mlp.load_state_dict(mlp.state_dict())
        self.predict.weight.copy_(
            torch.cat([alpha * gmf.predict.weight, (1.0 - alpha) * mlp.predict.weight], dim=1)
        )
        self.predict.bias.copy_(alpha * gmf.predict.bias + (1.0 - alpha) * mlp.predict.bias)


# ====================================================================== recommender
Variant = Literal["gmf", "mlp", "neumf"]


class NCFConfig(PairConfig):
    """Hyper-parameters of ``ncf``; the defaults are the ones measured on ML-100k u1..u5."""

    variant: Variant = Field("neumf", description="Network: gmf, mlp or neumf (both fused).")
    n_factors: int = Field(32, ge=1, le=4096, description="GMF embedding width.")
    layers: tuple[int, ...] = Field(
        (128, 64),
        description="MLP widths: layers[0] = concatenated embeddings (2 x factors), then hidden.",
    )
    dropout: float = Field(0.3, ge=0, lt=1, description="Dropout in the MLP branch.")
    pretrain: bool = Field(False, description="neumf: start from separately fitted GMF and MLP.")
    pretrain_epochs: int | None = Field(
        None, ge=1, le=10_000, description="Epochs of each pre-training fit (None: epochs)."
    )
    pretrain_lr: float | None = Field(
        None, gt=0, le=10, description="Learning rate of the pre-training fits (None: lr)."
    )
    alpha: float = Field(
        0.5, ge=0, le=1, description="Pre-training: weight of GMF's predict layer."
    )
    y_range: YRange = "auto"
    num_threads: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Torch CPU threads (None: the CPUs available, recforge.threads).",
    )
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(1024, ge=1, le=10_000_000)
    lr: float = Field(3e-3, gt=0, le=10)
    # Decoupled decay: Adam's L2 shrinks rarely-sampled rows by ~lr every step whatever the decay
    # coefficient (Adam normalises the gradient), which wrecks implicit training.
    optimizer: OptimizerName = "adamw"
    weight_decay: float = Field(1.0, ge=0)
    schedule: ScheduleName = "constant"

    @model_validator(mode="after")
    def _check(self) -> NCFConfig:
        if len(self.layers) < 2 or any(w < 1 for w in self.layers) or self.layers[0] % 2:
            raise ValueError(
                "layers needs >= 2 positive widths and an even first one (2 x MLP factors), "
                f"e.g. [128, 64]; got {list(self.layers)}"
            )
        if self.pretrain and self.variant != "neumf":
            raise ValueError("pretrain applies to variant 'neumf' only; set pretrain = false")
        return self


class NCF(NeuralRecommender):
    """Neural Collaborative Filtering recommender (GMF, MLP or NeuMF; see the module docstring).

    Scores: GMF ``h^T(p_u ⊙ q_i)``, MLP ``h^T φ([p_u; q_i])``, NeuMF both fused; explicit outputs go
    through the scaled sigmoid ``y_range``. Loss: MSE (explicit) or BCE with sampled negatives /
    BPR (implicit). Citation: He et al., "Neural Collaborative Filtering", WWW 2017.

    Fitted attributes (besides the neural base ones):
        pretrain_history_: per-epoch histories of the GMF and MLP pre-training fits
            (``{"gmf": ..., "mlp": ...}``; empty without pre-training; not saved).
    """

    name: ClassVar[str] = "ncf"
    Config: ClassVar[type[ModelConfig]] = NCFConfig
    center_output: ClassVar[bool] = True

    pretrain_history_: dict[str, pd.DataFrame]
    _pretrained: tuple[GMF, NCFMLP] | None = None

    def _cfg(self) -> NCFConfig:
        cfg = self.config
        assert isinstance(cfg, NCFConfig)
        return cfg

    def build_network(self) -> nn.Module:
        cfg = self._cfg()
        if cfg.variant == "gmf":
            return GMF(self.n_users, self.n_items, cfg.n_factors, init_std=cfg.init_std)
        if cfg.variant == "mlp":
            return NCFMLP(
                self.n_users, self.n_items, cfg.layers, dropout=cfg.dropout, init_std=cfg.init_std
            )
        net = NeuMF(
            self.n_users,
            self.n_items,
            cfg.n_factors,
            cfg.layers,
            dropout=cfg.dropout,
            init_std=cfg.init_std,
        )
        if self._pretrained is not None:
            net.load_pretrained(*self._pretrained, alpha=cfg.alpha)
        return net

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self._cfg()
        self.pretrain_history_ = {}
        if not cfg.pretrain:
            super()._fit(train, valid)
            return
        # Same data, sizes, seed and objective; only the variant (and epochs) differ.
        base: dict[str, Any] = cfg.model_dump()
        base.update(
            pretrain=False, epochs=cfg.pretrain_epochs or cfg.epochs, lr=cfg.pretrain_lr or cfg.lr
        )
        nets: dict[str, nn.Module] = {}
        for variant in ("gmf", "mlp"):
            sub = NCF(base, variant=variant).fit(train, valid)
            self.pretrain_history_[variant] = sub.history_
            head = sub._module()
            assert isinstance(head, OutputHead)
            nets[variant] = head.inner.cpu()
        gmf, mlp = nets["gmf"], nets["mlp"]
        assert isinstance(gmf, GMF) and isinstance(mlp, NCFMLP)
        self._pretrained = (gmf, mlp)
        try:
            super()._fit(train, valid)
        finally:
            self._pretrained = None

    def network(self) -> GMF | NCFMLP | NeuMF:
        """The trained family network (inside the output head)."""
        head = self._module()
        assert isinstance(head, OutputHead)
        inner = head.inner
        assert isinstance(inner, GMF | NCFMLP | NeuMF)
        return inner

    def item_vectors(self) -> FloatArray | None:
        """Item embeddings ``(n_items, d)``: ``q_i`` (GMF, MLP) or ``[q^G_i ; q^M_i]`` (NeuMF)."""
        return self._embedding_table("item_emb")

    def _embedding_table(self, name: Literal["user_emb", "item_emb"]) -> FloatArray:
        """One side's embedding table; NeuMF concatenates its GMF and MLP tables."""
        net = self.network()
        if isinstance(net, NeuMF):
            w = torch.cat([getattr(net.gmf, name).weight, getattr(net.mlp, name).weight], dim=1)
        else:
            w = getattr(net, name).weight
        out: FloatArray = w.detach().float().cpu().numpy()
        return out

    def item_embeddings(self) -> FloatArray | None:
        """Item embeddings ``q_i`` (GMF, MLP) or the concatenation ``[q^G_i ; q^M_i]`` (NeuMF).

        NeuMF concatenates both parts, as :meth:`item_vectors` does, so a PCA of it sees every
        learned item parameter (GMF columns first, then MLP columns).
        """
        return self.item_vectors()

    def user_embeddings(self) -> FloatArray | None:
        """User embeddings ``p_u`` (GMF, MLP) or ``[p^G_u ; p^M_u]`` (NeuMF)."""
        return self._embedding_table("user_emb")
