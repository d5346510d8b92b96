"""AutoRec: autoencoders over rating rows (U-AutoRec and I-AutoRec).

Sedhain, Menon, Sanner and Xie, "AutoRec: Autoencoders Meet Collaborative Filtering", WWW 2015.

A row ``r ∈ R^n`` of the rating matrix (unobserved entries 0) is encoded and decoded::

    h_0 = r,   h_k = dropout(g(W_k h_{k-1} + c_k))   (k = 1..L, widths ``hidden``)
    r̂ = f(V h_L + b)                     (g: ``activation``, f: ``output_activation``)

and the loss counts the observed entries of the batch only (the unobserved zeros are inputs, never
targets)::

    L = Σ_{(row, j) observed} (r̂_j − r_j)² / #observed  +  λ/(2N) · (Σ_k ‖W_k‖² + ‖V‖²)

``λ`` is the paper's weight decay (``reg``), written against the *sum* of squared errors over all
``N`` training ratings; dividing both terms by ``N`` keeps its meaning while the data term is a
mean (biases are not penalised, as in the paper).

Variants (``variant``):

* ``"item"`` — **I-AutoRec**, the paper's best model: rows are items (a vector over users), one
  hidden layer of 500 sigmoid units, identity output; ``r̂_ui = [f(V h(r_i) + b)]_u``. The paper
  reports 0.831 RMSE on ML-1M (90/10). The defaults here reach 0.8956 ± 0.0046 mean RMSE on
  ML-100k u1..u5 in about 9 s per fit on one CPU thread (``benchmarks/ml100k_folds.py``, results
  in ``docs/benchmarks/ml100k_folds_autorec.md``); they were chosen on a random 10% validation
  carve of u1.base (λ 1 → 100 with a one-cycle schedule: validation RMSE 0.903 at the best epoch
  → 0.895 at the last).
* ``"user"`` — **U-AutoRec**, as in our tutorial material: rows are users (a vector over items).
  The tutorial's stacked autoencoder is ``hidden = (20, 10, 20)`` with sigmoid activations, a
  linear output, RMSprop and the masked MSE, and ``variant = "user"`` alone gives exactly that
  network and optimizer (:data:`VARIANT_DEFAULTS`). The tutorial's own schedule (one user per
  step, RMSprop weight decay 0.5) did not transfer: with this loss the decay held every output
  near 0 (ML-100k u1, 20 epochs: training loss flat at 12.6, RMSE 2.79), so the defaults
  regularise with ``λ`` and use batches of 32 users (0.952 ± 0.007 mean RMSE on u1..u5; the
  10-unit bottleneck limits it, the paper's U-AutoRec has 500 hidden units).

Training never densifies the whole matrix: the Trainer draws batches of row indices and the
objective expands only those rows from CSR (:class:`recforge.train.rows.CSRRows`).

Scoring: U-AutoRec forwards the user's training row. I-AutoRec caches the item codes
``H = [h_L(r_i)]_i`` (``n_items × width``, computed once per fitted model) so that the scores of a
batch of users are one matmul, ``f(H V[users]ᵀ + b[users])``, never the full ``n_items × n_users``
reconstruction. Unknown users or items predict NaN (the base class), and ``predict`` clips to the
rating scale.

New users without retraining (:meth:`AutoRec.fold_in_scores`):

* U-AutoRec encodes the new row: ``r̂ = net(r_new)`` — exactly what a trained user with the same
  row gets.
* I-AutoRec cannot take the new user as an input (the input width is the number of training users).
  Its prediction for user ``u`` is linear in that user's decoder parameters
  ``w_u = [V_u; b_u]``: ``r̂_ui = f(w_u · [h_i; 1])``. A new user's ``w`` is fitted in closed form
  by ridge regression on the rated items' codes, shrunk towards the average trained user ``w̄``::

      w = argmin Σ_rated (w · x_i − r_i)² + λ_f ‖w − w̄‖²,   x_i = [h_i; 1]

  (``λ_f = fold_in_reg``; exact for the identity output and for relu, whose positive outputs are
  the identity), solved in its dual form ``w = w̄ + Xᵀ (X Xᵀ + λ_f I)⁻¹ (t − X w̄)`` — a
  ``n_rated × n_rated`` system: ``recommend_for_ratings`` for a new user with 10 ratings takes a
  median 0.3 ms on ML-100k (U-AutoRec: 0.2 ms).

AutoRec predicts *how much* a user will like an item, not *which* items they will rate: ranked by
predicted rating on the ML-100k temporal 80/20 ranking table it gets NDCG@10 0.097 (I-AutoRec) and
0.004 (U-AutoRec) against popularity's 0.116 (``docs/benchmarks/ml100k_ranking_autoencoders.md``);
use ``mult_vae``, ``mult_dae`` (or EASE, ALS) for top-N lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
from pydantic import Field, model_validator
from torch import nn

from recforge.config import ModelConfig, OptimizerName, ScheduleName, TrainConfig
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.models.base import DEFAULT_SCORE_CHUNK, FloatArray, IndexArray
from recforge.models.neural import NeuralRecommender
from recforge.train.losses import Batch, Objective
from recforge.train.rows import CSRRows, csr_from_state, csr_to_state
from recforge.train.trainer import Validator

if TYPE_CHECKING:
    from recforge.explain import Attribution

Activation = Literal["sigmoid", "tanh", "relu", "elu", "selu", "identity"]
#: Output activations that can reach ratings on their scale (a sigmoid could not exceed 1).
OutputActivation = Literal["identity", "relu"]

#: Dense floats materialised per scoring chunk (rows × columns).
_DENSE_BUDGET = 1 << 23


def make_activation(name: str) -> nn.Module:
    """The ``nn.Module`` of an activation name (``identity`` is ``nn.Identity``)."""
    table: dict[str, type[nn.Module]] = {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "elu": nn.ELU,
        "selu": nn.SELU,
        "identity": nn.Identity,
    }
    if name not in table:
        raise ConfigError(f"activation: unknown {name!r}; use one of {', '.join(table)}")
    return table[name]()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Σ mask·(pred − target)² / Σ mask``: squared error over observed entries only.

    Unobserved entries (mask False) contribute nothing, whatever their predicted value; with no
    observed entry at all the loss is 0.
    """
    m = mask.to(pred.dtype)
    return ((pred - target).pow(2) * m).sum() / m.sum().clamp(min=1.0)


class AutoRecNet(nn.Module):
    """Autoencoder over rows of width ``n_in``: ``n_in → hidden[0] → … → hidden[-1] → n_in``.

    Args:
        n_in: row width (items for U-AutoRec, users for I-AutoRec).
        hidden: hidden widths (at least one).
        activation: hidden activation ``g``.
        output_activation: output activation ``f``.
        dropout: dropout rate after each hidden activation (training only).

    Shapes:
        ``forward(x (B, n_in)) -> (B, n_in)``; ``features(x (B, n_in)) -> (B, hidden[-1])``, the
        code fed to the output layer.
    """

    def __init__(
        self,
        n_in: int,
        hidden: Sequence[int],
        *,
        activation: str = "sigmoid",
        output_activation: str = "identity",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not hidden:
            raise ConfigError("autorec: hidden needs at least one layer width")
        dims = [n_in, *hidden]
        self.hidden_layers = nn.ModuleList(
            nn.Linear(dims[k], dims[k + 1]) for k in range(len(hidden))
        )
        self.act = make_activation(activation)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output = nn.Linear(dims[-1], n_in)
        self.out_act = make_activation(output_activation)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden code ``h_L``: ``(B, hidden[-1])``."""
        for layer in self.hidden_layers:
            x = self.drop(self.act(layer(x)))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``f(V h_L(x) + b)``: ``(B, n_in)``."""
        out: torch.Tensor = self.out_act(self.output(self.features(x)))
        return out

    def weight_penalty(self) -> torch.Tensor:
        """``Σ ‖W‖²`` over every weight matrix (biases excluded)."""
        total = self.output.weight.pow(2).sum()
        for layer in self.hidden_layers:
            assert isinstance(layer, nn.Linear)
            total = total + layer.weight.pow(2).sum()
        return total


class MaskedRowMSE(Objective):
    """AutoRec's loss on a batch of rows: :func:`masked_mse` + ``reg_scale · Σ‖W‖²``.

    Batch key: ``row`` (B,) int64 row indices of ``rows`` (the CSR training matrix).
    """

    def __init__(self, rows: CSRRows, reg_scale: float = 0.0) -> None:
        self.rows = rows
        self.reg_scale = float(reg_scale)

    def to(self, device: torch.device) -> MaskedRowMSE:
        self.rows.to(device)
        return self

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        x, mask = self.rows.dense(batch["row"])
        out = masked_mse(module(x), x, mask)
        if self.reg_scale > 0:
            assert isinstance(module, AutoRecNet)
            out = out + self.reg_scale * module.weight_penalty()
        return out


#: Defaults that depend on ``variant``; filled in at construction for every key the caller omits.
#: "item" is I-AutoRec tuned on ML-100k u1.base (validation carve); "user" is the tutorial's
#: network and optimizer (RMSprop) with small batches (its 20-unit bottleneck needs many more
#: updates than I-AutoRec), measured 0.964 RMSE on ML-100k u1.
VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {
    "item": {"hidden": (500,), "batch_size": 256, "lr": 3e-3, "epochs": 60, "reg": 100.0},
    "user": {
        "hidden": (20, 10, 20),
        "optimizer": "rmsprop",
        "momentum": 0.0,
        "batch_size": 32,
        "lr": 3e-3,
        "epochs": 100,
        "reg": 3.0,
    },
}


class AutoRecConfig(TrainConfig):
    """Hyper-parameters of ``autorec``.

    The field defaults are I-AutoRec's; with ``variant = "user"``, the keys of
    :data:`VARIANT_DEFAULTS` that the caller does not set take U-AutoRec's values instead.
    """

    variant: Literal["user", "item"] = Field(
        "item", description='"item": I-AutoRec (rows are items); "user": U-AutoRec.'
    )
    hidden: tuple[int, ...] = Field(
        (500,), description="Hidden widths (variant default: (500,) item, (20, 10, 20) user)."
    )
    activation: Activation = "sigmoid"
    output_activation: OutputActivation = "identity"
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after each hidden activation.")
    reg: float = Field(
        100.0, ge=0, description="λ: L2 on weights against the summed squared error (paper's λ)."
    )
    # 50 chosen on a validation carve of u1.base (u1.test unread): per seed 100 users left out
    # of training, 80% of their u1.base ratings folded in, RMSE on the other 20%; mean of seeds
    # 0-2: λ_f 1 -> 1.025, 10 -> 0.908, 30 -> 0.884, 50 -> 0.880, 100 -> 0.880, 300 -> 0.892
    # (benchmarks/autorec_fold_in_reg.py, docs/benchmarks/autorec_fold_in_reg.md).
    fold_in_reg: float = Field(
        50.0, ge=0, description="I-AutoRec fold-in: ridge pull towards the average user."
    )
    # None: the CPUs available (recforge.threads). Two threads once took 17-28 s against 0.3-4 s
    # for one on a busy 2-core machine because OpenMP workers spin-waited; recforge now makes
    # them sleep (OMP_WAIT_POLICY=PASSIVE). Set 1 to pin a small fit to one core.
    num_threads: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Torch CPU threads (None: the CPUs available, recforge.threads).",
    )
    epochs: int = Field(60, ge=1, le=10_000)
    batch_size: int = Field(256, ge=1, le=10_000_000)
    lr: float = Field(3e-3, gt=0, le=10)
    optimizer: OptimizerName = "adam"
    schedule: ScheduleName = "one_cycle"

    @model_validator(mode="before")
    @classmethod
    def _variant_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            preset = VARIANT_DEFAULTS.get(str(data.get("variant", "item")), {})
            return {**preset, **data}
        return data

    @model_validator(mode="after")
    def _check_hidden(self) -> AutoRecConfig:
        if not self.hidden or any(w < 1 for w in self.hidden):
            raise ValueError(f"hidden needs >= 1 positive width, got {list(self.hidden)}")
        return self


class AutoRec(NeuralRecommender):
    """U-AutoRec / I-AutoRec (module docstring): ``r̂ = f(V g(W r + c) + b)`` on rating rows.

    Loss: squared error over observed entries (mean) + ``λ/(2N)·Σ‖W‖²``. Citation: Sedhain et al.,
    "AutoRec: Autoencoders Meet Collaborative Filtering", WWW 2015.

    Fitted attributes (besides the neural ones):
        ratings_: user × item CSR of the training ratings (the rows the network reads).
    """

    name: ClassVar[str] = "autorec"
    Config: ClassVar[type[ModelConfig]] = AutoRecConfig

    ratings_: sp.csr_matrix
    _codes: torch.Tensor | None = None
    _rows: CSRRows | None = None
    _ridge: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None

    # ------------------------------------------------------------------ config
    def _cfg(self) -> AutoRecConfig:
        cfg = self.config
        assert isinstance(cfg, AutoRecConfig)
        return cfg

    @property
    def item_based(self) -> bool:
        """True for I-AutoRec (rows are items)."""
        return self._cfg().variant == "item"

    def hidden_dims(self) -> tuple[int, ...]:
        """The hidden widths of the network."""
        return tuple(self._cfg().hidden)

    def loss_kind(self) -> Literal["mse", "bce", "bpr"]:
        """Always ``"mse"``: AutoRec reconstructs explicit ratings."""
        return "mse"

    # ------------------------------------------------------------------ network and training
    def build_network(self) -> nn.Module:
        cfg = self._cfg()
        return AutoRecNet(
            self.n_users if self.item_based else self.n_items,
            self.hidden_dims(),
            activation=cfg.activation,
            output_activation=cfg.output_activation,
            dropout=cfg.dropout,
        )

    def wrap_network(self, network: nn.Module) -> nn.Module:
        """No output head: the autoencoder's output already is the rating."""
        return network

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if self.rating_scale_ is None:
            raise ConfigError(
                f"{train.source}: autorec reconstructs explicit ratings but the data is implicit "
                "(no rating scale); use mult_vae or mult_dae for implicit feedback"
            )
        self.ratings_ = train.csr("rating")
        self._reset_caches()
        super()._fit(train, valid)

    def _reset_caches(self) -> None:
        self._codes = None
        self._rows = None
        self._ridge = None

    def _row_matrix(self) -> sp.csr_matrix:
        """The matrix whose rows the network reads: ratings (users) or their transpose (items)."""
        return sp.csr_matrix(self.ratings_.T) if self.item_based else self.ratings_

    def _input_rows(self) -> CSRRows:
        if self._rows is None or self._rows.device != self._device():
            self._rows = CSRRows(self._row_matrix(), self._device())
        return self._rows

    def training_setup(self, train: Interactions) -> tuple[dict[str, torch.Tensor], Objective]:
        """Rows ``arange(n_rows)`` and :class:`MaskedRowMSE` with ``λ / (2N)``."""
        cfg = self._cfg()
        rows = CSRRows(self._row_matrix())
        scale = cfg.reg / (2.0 * max(len(train), 1))
        return {"row": torch.arange(rows.shape[0])}, MaskedRowMSE(rows, scale)

    def make_validator(self, train: Interactions, valid: Interactions) -> Validator | None:
        """``valid_loss`` (unclipped MSE), ``valid_rmse`` and ``valid_mae`` (clipped)."""
        if len(valid) == 0:
            return None
        users = np.asarray(valid.user_idx, dtype=np.int64)
        items = np.asarray(valid.item_idx, dtype=np.int64)
        target = valid.rating.astype(np.float64)
        lo, hi = self.rating_scale_ or (-np.inf, np.inf)

        def validate(module: nn.Module) -> dict[str, float]:
            # Any network with AutoRecNet's scoring interface (GLocal-K's kernelised one too).
            net = cast(AutoRecNet, module)
            pred = self._pair_scores(net, users, items, codes=None).astype(np.float64)
            err = pred - target
            cerr = np.clip(pred, lo, hi) - target
            return {
                "valid_loss": float(np.mean(err**2)),
                "valid_rmse": float(np.sqrt(np.mean(cerr**2))),
                "valid_mae": float(np.mean(np.abs(cerr))),
            }

        return validate

    # ------------------------------------------------------------------ scoring internals
    def _net(self) -> AutoRecNet:
        net = self._module()
        assert isinstance(net, AutoRecNet)
        return net

    def _forward_rows(self, net: AutoRecNet, rows: npt.NDArray[np.int64]) -> torch.Tensor:
        """``net(dense rows)`` for training rows ``rows``: ``(len(rows), n_in)``."""
        dense, _ = self._input_rows().dense(torch.as_tensor(rows, device=self._device()))
        out: torch.Tensor = net(dense)
        return out

    def _compute_codes(self, net: AutoRecNet) -> torch.Tensor:
        """I-AutoRec item codes ``h_L(r_i)`` of every item: ``(n_items, hidden[-1])``."""
        n = self.n_items
        step = max(1, _DENSE_BUDGET // max(1, self.n_users))
        src = self._input_rows()
        with torch.no_grad():
            parts = [
                net.features(src.dense(torch.arange(s, min(n, s + step), device=src.device))[0])
                for s in range(0, n, step)
            ]
        return torch.cat(parts)

    def _item_codes(self) -> torch.Tensor:
        if self._codes is None:
            net = self._net()
            net.eval()
            self._codes = self._compute_codes(net)
        return self._codes

    def _pair_scores(
        self,
        net: AutoRecNet,
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        *,
        codes: torch.Tensor | None,
    ) -> FloatArray:
        """Outputs of (user, item) index pairs with ``net`` (``codes``: cached I-AutoRec codes)."""
        device = self._device()
        out = np.empty(len(users), dtype=np.float32)
        with torch.no_grad():
            if self.item_based:
                h = codes if codes is not None else self._compute_codes(net)
                step = max(1, _DENSE_BUDGET // max(1, h.shape[1]))
                for s in range(0, len(users), step):
                    u = torch.as_tensor(users[s : s + step], device=device)
                    i = torch.as_tensor(items[s : s + step], device=device)
                    raw = (h[i] * net.output.weight[u]).sum(-1) + net.output.bias[u]
                    out[s : s + len(u)] = net.out_act(raw).float().cpu().numpy()
                return out
            order = np.argsort(users, kind="stable")
            uniq, inverse = np.unique(users[order], return_inverse=True)
            step = max(1, _DENSE_BUDGET // max(1, self.n_items))
            bounds = np.searchsorted(users[order], uniq[::step])
            bounds = np.append(bounds, len(users))
            for c, s in enumerate(range(0, len(uniq), step)):
                rec = self._forward_rows(net, uniq[s : s + step]).float().cpu().numpy()
                sel = order[bounds[c] : bounds[c + 1]]
                out[sel] = rec[inverse[bounds[c] : bounds[c + 1]] - s, items[sel]]
        return out

    # ------------------------------------------------------------------ scoring (public)
    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """Predicted ratings of every item: ``(len(user_idx), n_items)`` (unclipped)."""
        net = self._net()
        net.eval()
        users = np.asarray(user_idx, dtype=np.int64)
        out = np.empty((len(users), self.n_items), dtype=np.float32)
        with torch.no_grad():
            for s in range(0, len(users), DEFAULT_SCORE_CHUNK):
                chunk = users[s : s + DEFAULT_SCORE_CHUNK]
                if self.item_based:
                    u = torch.as_tensor(chunk, device=self._device())
                    raw = self._item_codes() @ net.output.weight[u].T + net.output.bias[u]
                    out[s : s + len(chunk)] = net.out_act(raw).T.float().cpu().numpy()
                else:
                    out[s : s + len(chunk)] = self._forward_rows(net, chunk).float().cpu().numpy()
        return out

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """Predicted ratings of (user, item) index pairs (unclipped)."""
        net = self._net()
        net.eval()
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        codes = self._item_codes() if self.item_based else None
        return self._pair_scores(net, users, items, codes=codes)

    def item_vectors(self) -> FloatArray | None:
        """I-AutoRec: item codes ``h_L(r_i)``; U-AutoRec: output weight rows ``V_i``."""
        net = self._net()
        net.eval()
        vecs = self._item_codes() if self.item_based else net.output.weight.detach()
        out: FloatArray = vecs.float().cpu().numpy()
        return out

    def item_embeddings(self) -> FloatArray | None:
        """Same as :meth:`item_vectors`: I-AutoRec item codes, U-AutoRec decoder rows ``V_i``."""
        return self.item_vectors()

    def user_embeddings(self) -> FloatArray | None:
        """I-AutoRec: decoder weight rows ``V_u``; U-AutoRec: user codes ``h_L(r_u)``.

        Mirrors :meth:`item_embeddings`: whichever side is the network's input gets its codes,
        the other side its output-layer weights.
        """
        net = self._net()
        net.eval()
        if self.item_based:
            out: FloatArray = net.output.weight.detach().float().cpu().numpy()
            return out
        # U-AutoRec: encode every training user row, in chunks bounded like the item codes.
        src = self._input_rows()
        n, step = self.n_users, max(1, _DENSE_BUDGET // max(1, self.n_items))
        with torch.no_grad():
            parts = [
                net.features(src.dense(torch.arange(s, min(n, s + step), device=src.device))[0])
                for s in range(0, n, step)
            ]
        codes: FloatArray = torch.cat(parts).float().cpu().numpy()
        return codes

    # ------------------------------------------------------------------ new users
    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """Predicted ratings of every item for a new user (module docstring).

        U-AutoRec: the network applied to the new row. I-AutoRec: closed-form ridge regression of
        the new user's decoder weights on the rated items' codes.
        """
        net = self._net()
        net.eval()
        device = self._device()
        idx = np.asarray(item_idx, dtype=np.int64)
        r = np.asarray(ratings, dtype=np.float64)
        if not self.item_based:
            x = torch.zeros(1, self.n_items, device=device)
            x[0, torch.as_tensor(idx, device=device)] = torch.as_tensor(
                r, dtype=torch.float32, device=device
            )
            with torch.no_grad():
                scores: FloatArray = net(x)[0].float().cpu().numpy()
            return scores
        # torch, not numpy: see _ridge_drop_one (OpenBLAS threads on a busy machine).
        codes_np, w0_np = self._ridge_parts()
        codes, w0 = torch.from_numpy(codes_np), torch.from_numpy(w0_np)
        x_r = torch.cat(
            [codes[torch.as_tensor(idx)], torch.ones(len(idx), 1, dtype=codes.dtype)], 1
        )
        lam = max(self._cfg().fold_in_reg, 1e-8)
        gram = x_r @ x_r.T + lam * torch.eye(len(idx), dtype=codes.dtype)
        rhs = torch.as_tensor(r) - x_r @ w0
        w = w0 + x_r.T @ torch.linalg.solve(gram, rhs)
        with torch.no_grad():
            out: FloatArray = net.out_act(codes @ w[:-1] + w[-1]).numpy().astype(np.float32)
        return out

    def fold_in_scores_batch(self, rows: sp.csr_matrix) -> FloatArray:
        """Fold-in for several new users (one CSR row of item ratings each): ``(B, n_items)``.

        U-AutoRec runs all rows through the network in chunks; I-AutoRec solves each user's ridge
        system (they differ in size) with the shared cached codes.
        """
        if self.item_based:
            return super().fold_in_scores_batch(rows)
        net = self._net()
        net.eval()
        new = CSRRows(sp.csr_matrix(rows), self._device())
        out = np.empty((new.shape[0], self.n_items), dtype=np.float32)
        step = max(1, _DENSE_BUDGET // max(1, self.n_items))
        with torch.no_grad():
            for s in range(0, new.shape[0], step):
                idx = torch.arange(s, min(new.shape[0], s + step), device=new.device)
                out[s : s + len(idx)] = net(new.dense(idx)[0]).float().cpu().numpy()
        return out

    # ------------------------------------------------------------------ explanations
    def explain_rows(
        self, rows: sp.csr_matrix, row_of: IndexArray, targets: IndexArray
    ) -> Attribution:
        """Drop-one occlusion of the fold-in, in closed form (the same weights as the default
        :func:`recforge.explain.occlusion`, without its ``|H| + 1`` fold-ins).

        I-AutoRec: the fold-in is a ridge regression of the user's decoder weights on the rated
        items' codes ``x_j = [h_j; 1]``, and the leave-one-out identity of ridge regression
        gives every drop-one fit from the full one. In the dual (``K = XXᵀ + λ_f I``,
        ``M = K⁻¹``, ``α = M(t − X w̄)``) the raw score of item ``i`` loses
        ``(M X x_i)_j · α_j / M_jj`` when rating ``j`` is dropped (``1 − h_jj = λ_f M_jj`` and the
        full fit's residual on ``j`` is ``λ_f α_j``); the output activation is applied to both
        scores. ``O(|H|² · width)`` for all drop-one fits instead of ``|H|`` solves and
        ``|H|`` full-catalogue scorings.

        U-AutoRec: the first layer is linear in the rating row, so each drop-one row's
        pre-activation is the full row's minus the dropped rating's column ``W₁[:, j] r_j``;
        the other layers run as before, on the ``|H| + 1`` rows. Histories that repeat an item
        keep the default (a dense row keeps one value per item).
        """
        from recforge.explain import Attribution, row_entries

        rows = sp.csr_matrix(rows)
        row_of = np.asarray(row_of, dtype=np.int64)
        targets = np.asarray(targets, dtype=np.int64)
        repeats = any(
            len(np.unique(row_entries(rows, r)[0])) != rows.indptr[r + 1] - rows.indptr[r]
            for r in range(rows.shape[0])
        )
        if repeats and not self.item_based:
            return super().explain_rows(rows, row_of, targets)
        net = self._net()
        net.eval()
        score = np.zeros(len(targets), dtype=np.float64)
        weights: list[npt.NDArray[np.float64]] = [np.zeros(0)] * len(targets)
        for r in range(rows.shape[0]):
            pairs = np.flatnonzero(row_of == r)
            if not len(pairs):
                continue
            idx, vals = row_entries(rows, r)
            cols, col_of = np.unique(targets[pairs], return_inverse=True)
            if self.item_based:
                raw, delta = self._ridge_drop_one(idx, vals, cols)
                with torch.no_grad():
                    both = torch.as_tensor(np.vstack([raw[None, :], raw[None, :] - delta]))
                    out = net.out_act(both).numpy().astype(np.float32).astype(np.float64)
            else:
                out = self._user_drop_one(net, idx, vals, cols)
            for p, k in zip(pairs.tolist(), col_of.tolist(), strict=True):
                score[p] = out[0, k]
                weights[p] = out[0, k] - out[1:, k]
        return Attribution(score, weights, "occlusion")

    def _ridge_drop_one(
        self, idx: IndexArray, vals: FloatArray, cols: IndexArray
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """I-AutoRec: raw fold-in scores ``(C,)`` of items ``cols`` and their drops ``(L, C)``
        when each rating is left out (leave-one-out ridge, :meth:`explain_rows`)."""
        # In torch (float64): its thread count is the process's setting (one in a service),
        # while numpy's OpenBLAS spreads these small products over idle threads that, on a busy
        # machine, made one explanation 13x slower (86 vs 6.4 ms per request at load 9-11).
        codes_np, w0_np = self._ridge_parts()
        codes, w0 = torch.from_numpy(codes_np), torch.from_numpy(w0_np)
        ones = torch.ones(1, dtype=torch.float64)
        x = torch.cat([codes[torch.as_tensor(idx)], ones.expand(len(idx), 1)], dim=1)
        xi = torch.cat([codes[torch.as_tensor(cols)], ones.expand(len(cols), 1)], dim=1)
        lam = max(self._cfg().fold_in_reg, 1e-8)
        gram = x @ x.T + lam * torch.eye(len(idx), dtype=torch.float64)
        m = torch.cholesky_inverse(torch.linalg.cholesky(gram))
        alpha = m @ (torch.as_tensor(np.asarray(vals, np.float64)) - x @ w0)
        k_i = x @ xi.T  # (L, C)
        raw = xi @ w0 + k_i.T @ alpha
        delta = (m @ k_i) * (alpha / torch.diagonal(m))[:, None]
        return raw.numpy(), delta.numpy()

    def _user_drop_one(
        self, net: AutoRecNet, idx: IndexArray, vals: FloatArray, cols: IndexArray
    ) -> npt.NDArray[np.float64]:
        """U-AutoRec: outputs ``(1 + L, C)`` of the full rating row and each drop-one row."""
        first = net.hidden_layers[0]
        assert isinstance(first, nn.Linear)
        dev = first.weight.device
        with torch.no_grad():
            w = first.weight.index_select(1, torch.as_tensor(idx, device=dev)).double()
            r = torch.as_tensor(np.asarray(vals, np.float64), device=dev)
            terms = w * r  # (h, L): each rating's share of the first layer
            full = terms.sum(1)
            pre = torch.cat([full[None, :], full[None, :] - terms.T]) + first.bias.double()
            h = net.drop(net.act(pre.to(first.weight.dtype)))
            for layer in list(net.hidden_layers)[1:]:
                h = net.drop(net.act(layer(h)))
            out = net.out_act(net.output(h))[:, torch.as_tensor(cols, device=dev)]
            result: npt.NDArray[np.float64] = out.double().cpu().numpy()
        return result

    def _ridge_parts(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """I-AutoRec fold-in constants, cached: item codes (float64) and the average user's
        decoder parameters ``w̄ = mean_u [V_u; b_u]``."""
        if self._ridge is None:
            net = self._net()
            codes = self._item_codes().double().cpu().numpy()
            w_out = net.output.weight.detach().double().cpu().numpy()
            b_out = net.output.bias.detach().double().cpu().numpy()
            self._ridge = (codes, np.concatenate([w_out.mean(0), [b_out.mean()]]))
        return self._ridge

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """Network weights plus the training rating matrix (the rows the network reads)."""
        return {**super().get_state(), **csr_to_state("ratings", self.ratings_)}

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Restore the rating matrix, then rebuild the network and load its weights."""
        self.ratings_ = csr_from_state("ratings", state)
        self._reset_caches()
        super().set_state(state)
