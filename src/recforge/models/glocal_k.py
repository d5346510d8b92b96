"""GLocal-K: an item autoencoder with local kernelised weights, fine-tuned with a global kernel.

Han, Lim, Long, Burgstaller and Poon, "GLocal-K: Global and Local Kernels for Recommender
Systems", CIKM 2021 — the local kernel comes from Muller, Hoffmann and Chaudhuri ("Kernel-based
sparse fully-connected layers", Sparse FC, 2018).

**Local kernel layer.** Every layer ``n_in → n_out`` owns, besides its weights ``W`` and bias
``b``, a small vector per input unit ``u_i ∈ R^d`` and per output unit ``v_j ∈ R^d``
(``d = n_dim``). A finite-support RBF-like kernel of their distance gates each weight::

    k(u_i, v_j) = max(0, 1 − ‖u_i − v_j‖²),      W̃ = W ⊙ K,      y = g(x W̃ + b)

so the layer learns which connections to keep (``k = 0`` switches a weight off) and which
weights to shrink; the vectors start near 0 (every gate near 1, a dense layer) and the
``λ_s ‖K‖²`` penalty pushes gates towards 0 (sparse).

**Network (pre-training).** Rows are items (a vector over users, unobserved entries 0, as in
I-AutoRec): ``r̂_i = W̃_out h_L(r_i) + b_out`` with ``L`` sigmoid kernel layers (``hidden``, the
paper's 500-500) and an identity kernel output layer. Loss over the observed entries, written per
rating against the ``N`` training ratings (the paper's ``½Σ(r − r̂)² + ½λ_2 Σ‖W‖² + ½λ_s Σ‖K‖²``
divided by ``N/2``)::

    L = Σ_observed (r̂_ui − r_ui)² / #observed + (λ_2 Σ_l ‖W_l‖² + λ_s Σ_l ‖K_l‖²) / N

**Global kernel (fine-tuning).** The pre-trained reconstruction ``R̂`` is average-pooled over
users (one number per item, ``p = mean_u R̂[:, u]``) and a learned ``(n_items × k²)`` matrix
``C`` turns it into a ``k × k`` convolution kernel ``G = dot_scale · reshape(pᵀ C)``. The
rating matrix (items × users, in item-index order) is convolved with it, and the fine-tuned
autoencoder reads the result instead of the raw rows::

    R' = relu(conv2d(R, G, padding "same")),       r̂_i = AE(R'_i)

with the same loss. ``fine_epochs = 0`` skips the stage (the local-kernel autoencoder alone,
close to Sparse FC).

Differences from the paper's code, on purpose (CPU budget): both stages are trained by Adam on
mini-batches of items (the paper runs full-batch L-BFGS-B for 1,000 + 300 iterations on ML-1M),
and the pooled vector ``p`` is taken from the pre-trained network once, at the start of
fine-tuning (the paper back-propagates through it); ``C`` and every layer are fine-tuned. The
paper reports the best *test* RMSE over fine-tuning epochs (ML-1M 90/10: 0.8227; ML-100k u1:
0.8889); here the number of epochs is a hyper-parameter chosen on a validation carve.

Scoring, fold-in and persistence are I-AutoRec's (:class:`recforge.models.autorec.AutoRec`): the
network reads the (convolved) training rows, item codes are cached, a new user's output weights
are fitted in closed form by ridge regression on the item codes, and the state holds the weights,
the fixed global kernel ``G`` and the training rating matrix (``R'`` is recomputed on load).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, cast

import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.autorec import (
    AutoRec,
    AutoRecConfig,
    AutoRecNet,
    make_activation,
    masked_mse,
)
from recforge.train.losses import Batch, Objective
from recforge.train.rows import CSRRows
from recforge.train.trainer import Trainer

__all__ = ["GLocalK", "GLocalKConfig", "GLocalKNet", "KernelLinear", "local_kernel"]


def local_kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``K_ij = max(0, 1 − ‖u_i − v_j‖²)`` for ``u (n_in, d)`` and ``v (n_out, d)``."""
    dist2 = u.pow(2).sum(1, keepdim=True) + v.pow(2).sum(1) - 2.0 * (u @ v.T)
    return (1.0 - dist2).clamp(min=0.0)


class KernelLinear(nn.Module):
    """A fully connected layer whose weights are gated by the local kernel: ``x (W ⊙ K) + b``.

    ``weight`` is exposed as ``(n_out, n_in)`` like ``nn.Linear.weight`` (the gated matrix), so
    I-AutoRec's scoring and fold-in code reads it unchanged.
    """

    def __init__(self, n_in: int, n_out: int, n_dim: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(n_in, n_out))
        nn.init.xavier_uniform_(self.W)  # TF's default (glorot uniform), as in the paper's code
        # Kernel vectors start near 0, so every gate starts near 1 (a dense layer).
        self.u = nn.Parameter(torch.nn.init.trunc_normal_(torch.empty(n_in, n_dim), std=1e-3))
        self.v = nn.Parameter(torch.nn.init.trunc_normal_(torch.empty(n_out, n_dim), std=1e-3))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def kernel(self) -> torch.Tensor:
        """The gates ``K`` ``(n_in, n_out)``."""
        return local_kernel(self.u, self.v)

    @property
    def weight(self) -> torch.Tensor:
        """The gated weight matrix transposed, ``(n_out, n_in)``."""
        return (self.W * self.kernel()).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, n_in) → (B, n_out)``."""
        return x @ (self.W * self.kernel()) + self.bias

    def penalties(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(‖W‖², ‖K‖²)``."""
        return self.W.pow(2).sum(), self.kernel().pow(2).sum()


class GLocalKNet(nn.Module):
    """Kernel autoencoder over item rows of width ``n_in`` (users), plus the global kernel.

    Shapes: ``forward(x (B, n_in)) -> (B, n_in)``; ``features(x) -> (B, hidden[-1])``.
    ``conv_kernel`` is ``C`` ``(n_items, k²)``; the buffer ``global_kernel`` is ``G`` ``(k, k)``,
    all zeros until fine-tuning fixes it (zeros = no global stage).
    """

    global_kernel: torch.Tensor

    def __init__(
        self,
        n_in: int,
        n_items: int,
        hidden: tuple[int, ...],
        *,
        n_dim: int,
        gk_size: int,
        activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        dims = [n_in, *hidden]
        self.hidden_layers = nn.ModuleList(
            KernelLinear(dims[k], dims[k + 1], n_dim) for k in range(len(hidden))
        )
        self.act = make_activation(activation)
        self.output = KernelLinear(dims[-1], n_in, n_dim)
        self.out_act = nn.Identity()
        self.conv_kernel = nn.Parameter(
            torch.nn.init.trunc_normal_(torch.empty(n_items, gk_size**2), std=0.1)
        )
        self.register_buffer("global_kernel", torch.zeros(gk_size, gk_size))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden code ``h_L``."""
        for layer in self.hidden_layers:
            x = self.act(layer(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``W̃_out h_L(x) + b_out``."""
        out: torch.Tensor = self.output(self.features(x))
        return out

    def penalties(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Σ‖W‖², Σ‖K‖²)`` over every kernel layer."""
        w2, k2 = self.output.penalties()
        for layer in self.hidden_layers:
            assert isinstance(layer, KernelLinear)
            a, b = layer.penalties()
            w2, k2 = w2 + a, k2 + b
        return w2, k2

    def make_global_kernel(self, pooled: torch.Tensor, dot_scale: float) -> torch.Tensor:
        """``G = dot_scale · reshape(pᵀ C)``: ``(k, k)`` from the pooled item vector ``p``."""
        k = self.global_kernel.shape[0]
        return (dot_scale * (pooled @ self.conv_kernel)).view(k, k)


def convolve_rows(
    rows: CSRRows, items: torch.Tensor, kernel: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``relu(conv2d(R, G))`` for the item rows ``items`` (``'same'`` padding, zero borders).

    Returns ``(convolved (B, n_users), raw rows (B, n_users), observed mask (B, n_users))``:
    each item row mixes its ``k`` neighbouring item rows (by index) and ``k`` neighbouring users.
    """
    k = kernel.shape[0]
    r = k // 2
    n = rows.shape[0]
    offsets = torch.arange(-r, r + 1, device=items.device)
    nb = items[:, None] + offsets[None, :]
    inside = (nb >= 0) & (nb < n)
    dense, _ = rows.dense(nb.clamp(0, n - 1).reshape(-1))
    dense = dense.view(len(items), k, -1) * inside[:, :, None].to(dense.dtype)
    conv = F.conv2d(dense[:, None], kernel.view(1, 1, k, k), padding=(0, r))
    centre = dense[:, r]
    return torch.relu(conv[:, 0, 0]), centre, centre != 0


class KernelAEMSE(Objective):
    """Pre-training loss: masked MSE + ``(λ_2 Σ‖W‖² + λ_s Σ‖K‖²) / N`` (batch key ``row``)."""

    def __init__(self, rows: CSRRows, lambda_2: float, lambda_s: float, n: int) -> None:
        self.rows = rows
        self.l2, self.ls = lambda_2 / max(n, 1), lambda_s / max(n, 1)

    def to(self, device: torch.device) -> KernelAEMSE:
        self.rows.to(device)
        return self

    def penalty(self, module: nn.Module) -> torch.Tensor:
        assert isinstance(module, GLocalKNet)
        w2, k2 = module.penalties()
        return self.l2 * w2 + self.ls * k2

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        x, mask = self.rows.dense(batch["row"])
        return masked_mse(module(x), x, mask) + self.penalty(module)


class GlobalKernelMSE(KernelAEMSE):
    """Fine-tuning loss: the same, with the network reading ``relu(conv2d(R, G))``."""

    def __init__(
        self,
        rows: CSRRows,
        lambda_2: float,
        lambda_s: float,
        n: int,
        pooled: torch.Tensor,
        dot_scale: float,
    ) -> None:
        super().__init__(rows, lambda_2, lambda_s, n)
        self.pooled, self.dot_scale = pooled, dot_scale

    def to(self, device: torch.device) -> GlobalKernelMSE:
        super().to(device)
        self.pooled = self.pooled.to(device)
        return self

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        assert isinstance(module, GLocalKNet)
        gk = module.make_global_kernel(self.pooled, self.dot_scale)
        x, target, mask = convolve_rows(self.rows, batch["row"], gk)
        return masked_mse(module(x), target, mask) + self.penalty(module)


class GLocalKConfig(AutoRecConfig):
    """Hyper-parameters of ``glocal_k`` (``reg`` is ``λ_2``; ``epochs``/``lr`` pre-train).

    The λ defaults are the paper's ML-1M values, not yet validated here with Adam. On ML-100k,
    a validation carve of u1.base chose λ_2 10, λ_s 0.006, 60 epochs and no fine-tuning
    (``configs/ml-100k/ml100k-folds/glocal_k.toml``; ``docs/benchmarks/tuning_ml1m.md``).
    """

    variant: Literal["item"] = Field("item", description="Rows are items (as in the paper).")
    hidden: tuple[int, ...] = Field((500, 500), description="Hidden kernel-layer widths.")
    n_dim: int = Field(5, ge=1, le=100, description="Dimension of the kernel vectors u, v.")
    reg: float = Field(70.0, ge=0, description="λ_2: L2 on the weights W (against the SSE).")
    lambda_s: float = Field(0.018, ge=0, description="λ_s: L2 on the kernel gates K.")
    gk_size: int = Field(3, ge=1, le=15, description="Global kernel side k (odd).")
    dot_scale: float = Field(0.5, gt=0, description="Scale of the global kernel's dot product.")
    fine_epochs: int = Field(20, ge=0, le=10_000, description="Fine-tuning epochs (0: none).")
    fine_lr: float = Field(1e-3, gt=0, le=10, description="Fine-tuning peak learning rate.")
    epochs: int = Field(40, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=10_000_000)
    lr: float = Field(3e-3, gt=0, le=10)

    @model_validator(mode="before")
    @classmethod
    def _variant_defaults(cls, data: Any) -> Any:
        # Overrides AutoRec's: its I-AutoRec presets (one layer, λ = 100) must not apply here.
        return data

    @model_validator(mode="after")
    def _check_gk(self) -> GLocalKConfig:
        if self.gk_size % 2 == 0:
            raise ValueError(f"gk_size must be odd (a centred kernel), got {self.gk_size}")
        return self


class GLocalK(AutoRec):
    """GLocal-K (module docstring): kernel item autoencoder, pre-trained then fine-tuned.

    Loss: masked MSE + ``(λ_2 Σ‖W‖² + λ_s Σ‖K‖²)/N``. Citation: Han et al., "GLocal-K: Global and
    Local Kernels for Recommender Systems", CIKM 2021; Muller et al., "Kernel-based sparse
    fully-connected layers" (Sparse FC), 2018.

    Fitted attributes: ``ratings_`` (training CSR), ``module_`` (:class:`GLocalKNet` with the
    fixed global kernel), ``history_`` (pre-training then fine-tuning epochs, column ``stage``).
    """

    name: ClassVar[str] = "glocal_k"
    Config: ClassVar[type[ModelConfig]] = GLocalKConfig

    def _gcfg(self) -> GLocalKConfig:
        cfg = self.config
        assert isinstance(cfg, GLocalKConfig)
        return cfg

    def build_network(self) -> nn.Module:
        cfg = self._gcfg()
        return GLocalKNet(
            self.n_users,
            self.n_items,
            tuple(cfg.hidden),
            n_dim=cfg.n_dim,
            gk_size=cfg.gk_size,
            activation=cfg.activation,
        )

    def _glk(self) -> GLocalKNet:
        net = self._module()
        assert isinstance(net, GLocalKNet)
        return net

    def _net(self) -> AutoRecNet:
        # GLocalKNet has AutoRecNet's scoring interface (features, output.weight/bias, out_act),
        # which is all that I-AutoRec's scoring and fold-in code reads.
        return cast(AutoRecNet, self._glk())

    def _row_matrix(self) -> sp.csr_matrix:
        """Item rows the network reads: ``R`` before fine-tuning, ``relu(conv2d(R, G))`` after."""
        raw = sp.csr_matrix(self.ratings_.T)
        net = getattr(self, "module_", None)
        if not isinstance(net, GLocalKNet) or not bool(net.global_kernel.abs().sum() > 0):
            return raw
        rows = CSRRows(raw)
        gk = net.global_kernel.detach().cpu().float()
        step = max(1, (1 << 22) // max(1, self.n_users))
        parts = []
        with torch.no_grad():
            for s in range(0, raw.shape[0], step):
                idx = torch.arange(s, min(raw.shape[0], s + step))
                parts.append(sp.csr_matrix(convolve_rows(rows, idx, gk)[0].numpy()))
        return sp.csr_matrix(sp.vstack(parts))

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if self.rating_scale_ is None:
            raise ConfigError(
                f"{train.source}: glocal_k reconstructs explicit ratings but the data is "
                "implicit (no rating scale); use mult_vae or mult_dae for implicit feedback"
            )
        cfg = self._gcfg()
        self.ratings_ = train.csr("rating")
        self._reset_caches()
        raw = sp.csr_matrix(self.ratings_.T)
        data = {"row": torch.arange(raw.shape[0])}
        n = max(len(train), 1)
        trainer = Trainer(cfg)
        self.device_ = trainer.device
        self.module_ = self._new_module()
        validator = self.make_validator(train, valid) if valid is not None else None
        pre = trainer.fit(
            self.module_,
            data,
            KernelAEMSE(CSRRows(raw), cfg.reg, cfg.lambda_s, n),
            validate=validator,
            description=f"{self.name} pre-training",
        )
        history = pre.history.assign(stage="pre")
        result = pre
        if cfg.fine_epochs > 0:
            net = self._glk()
            net.eval()
            pooled = self._pooled_reconstruction(net)
            fine = Trainer(cfg.model_copy(update={"epochs": cfg.fine_epochs, "lr": cfg.fine_lr}))
            # Validation during fine-tuning would need R' for every G step: pre-training only.
            result = fine.fit(
                net,
                data,
                GlobalKernelMSE(CSRRows(raw), cfg.reg, cfg.lambda_s, n, pooled, cfg.dot_scale),
                description=f"{self.name} fine-tuning",
            )
            with torch.no_grad():
                net.global_kernel.copy_(net.make_global_kernel(pooled, cfg.dot_scale))
            history = pd.concat([history, result.history.assign(stage="fine")], ignore_index=True)
        self.module_.eval()
        self._reset_caches()
        self.train_result_ = result
        self.history_ = history

    def _pooled_reconstruction(self, net: GLocalKNet) -> torch.Tensor:
        """``p_i = mean_u R̂[i, u]`` from the pre-trained network: ``(n_items,)``."""
        rows = CSRRows(sp.csr_matrix(self.ratings_.T), self._device())
        step = max(1, (1 << 22) // max(1, self.n_users))
        parts = []
        with torch.no_grad():
            for s in range(0, rows.shape[0], step):
                idx = torch.arange(s, min(rows.shape[0], s + step), device=rows.device)
                parts.append(net(rows.dense(idx)[0]).mean(1))
        return torch.cat(parts)

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore ratings and weights (the global kernel is a saved buffer; ``R'`` is rebuilt)."""
        super().set_state(state)
        self._reset_caches()
