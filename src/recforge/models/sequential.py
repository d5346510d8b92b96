"""Shared base of the sequential recommenders (SASRec, GRU4Rec, BERT4Rec).

A sequential model reads a user's history **in order** (:mod:`recforge.data.sequences`: timestamp
order, ties by item id, item ``i`` encoded ``i + 1``, 0 = padding, left-padded so the latest event
sits in the last column) and scores every item as the user's *next* one::

    h_u = f_θ(s_u)[−1] ∈ R^d            the network's state after the user's last event
    score(u, i) = ⟨h_u, e_i⟩             e_i: the item's embedding (input and output tied)

The three roles stay apart as for every neural family (DESIGN.md §3): the network (``encode``,
``score_last``; shapes in each network's docstring), this recommender (ids, sequences, fold-in,
persistence) and :class:`recforge.train.Trainer` (epochs, optimizer, early stopping), which
trains on the padded window tensors ``{"input", "target"}`` of :meth:`Sequences.windows` — every
position of every window is a training example, attended causally (next-item models) or through
random masks (BERT4Rec).

Objectives (``loss``), for next-item models, over the positions ``t`` with a target ``y_t``:

* ``"ce"`` — full softmax cross-entropy over the catalogue (SASRec+, Klenitskiy & Vasilev,
  "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?", RecSys 2023)::

      L = −mean_t log softmax(H_t Eᵀ)_{y_t}

  With ``target_window = w > 1`` each position learns its next ``w`` events (those inside the
  same training window), ``L = −mean_t mean_{j<w} log softmax(H_t Eᵀ)_{y_{t+j}}`` — the
  "all action" objective of PinnerFormer (Pancha et al., KDD 2022), suited to protocols that
  score the next *several* events (``temporal-user-80-20``) rather than the next one.
  ``window_decay = γ < 1`` weights the ``j``-th next event by ``γ^j`` (normalised over the
  targets a position has): ``L = −mean_t Σ_j γ^j log p(y_{t+j}) / Σ_j γ^j`` — nearer events
  count more, the time-decayed variant of the all-action loss;

  With ``exclude_seen`` the items of a position's own history (its window's inputs up to ``t``)
  leave that position's softmax, except its targets: ``log softmax`` runs over
  ``I ∖ (s_≤t ∖ targets_t)``. Evaluation removes a user's training items from the ranking, so
  the model need not spend capacity pushing them down (the train-time analogue of the
  held-out ranking's mask, as in the masked softmax of Mult-VAE's evaluation).
  ``exclude_seen_scope = "history"`` widens the removed set to the user's whole earlier
  history, ``I ∖ ((p_w ∪ s_≤t) ∖ targets_t)`` with ``p_w`` the items of the events before
  window ``w`` (:meth:`Sequences.window_priors`): a history longer than ``max_len`` is cut into
  windows, and without it a later window's positions keep the items of earlier windows in
  their softmax although evaluation removes every training item. The default ``"window"``
  removes only ``s_≤t``;

* ``"sampled_ce"`` — the same softmax over the target and ``n_negatives`` items drawn uniformly
  once per batch (shared by its positions; a drawn negative equal to a target is ignored for that
  position): cheaper for catalogues of 10⁵+ items;
* ``"gbce"`` — generalised binary cross-entropy with those negatives (Petrov & Macdonald,
  "gSASRec: Reducing Overconfidence in Sequential Recommendation Trained with Negative Sampling",
  RecSys 2023)::

      L = mean_t [ −β log σ(s⁺) − Σ_neg log(1 − σ(s⁻)) ],   β = α (t (1 − 1/α) + 1/α),
      α = n_negatives / (n_items − 1),   t = gbce_t  (t = 0: plain BCE; t → 1: calibrated)

Item features: with ``use_features`` an item's embedding is ``e_i + W g_i`` where ``g_i`` is the
item's genre multi-hot averaged over its genres (``item_meta["genres"]``) — a cold item still gets
its genres' direction.

Item initialisation: with ``item_init = "svd"`` the item table starts from
``e_i⁰ = N(0, init_std²) + F_i``, ``F`` the items' factors from a truncated SVD of the
cosine-normalised training matrix (:func:`recforge.models.item_factors.svd_item_factors`, std
``item_init_scale``): items that share users start close, so a small catalogue's many rare
items need not learn their place from the event order alone.

The model reads the user's training events: :meth:`SequentialRecommender.score_items` uses the
last ``max_len`` training events of each user (``sequences_``, saved with the run). New users
need no retraining (:meth:`~SequentialRecommender.fold_in_scores`): their items, **in the order
given** (oldest first), are encoded the same way, so a trained user's own history gives exactly
their scores. ``recommend_for_items(ordered_ids, k)`` is the entry point for an ordered list.

Validation (``fit(train, valid)``): ``valid_loss`` is the softmax negative log-likelihood of the
held-out items given each user's training sequence (training items removed from the softmax) and
``valid_ndcg@{valid_k}`` their full-ranking NDCG (binary gains, training items excluded).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from collections.abc import Sequence as SequenceABC
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from recforge.config import ModelConfig, OptimizerName, ScheduleName, TrainConfig
from recforge.data.interactions import Interactions
from recforge.data.sequences import Sequences, pad_left
from recforge.errors import DataError
from recforge.models.base import (
    DEFAULT_SCORE_CHUNK,
    FloatArray,
    IndexArray,
    RecList,
    Recommender,
)
from recforge.models.item_factors import svd_item_factors
from recforge.models.neural import NeuralRecommender
from recforge.train.heldout import HeldOutRanking
from recforge.train.losses import Batch, Objective
from recforge.train.rows import CSRRows
from recforge.train.softmax_ce import full_softmax_ce
from recforge.train.trainer import Validator, seeded

SequenceLoss = Literal["ce", "sampled_ce", "gbce"]

#: Dense floats materialised per validation / scoring chunk (users × items).
_DENSE_BUDGET = 1 << 23


# ====================================================================== configs
class SequentialConfig(TrainConfig):
    """Options shared by the sequential recommenders (plus the training loop's)."""

    implicit_only: ClassVar[bool] = True  # no rating metric exists: monitor="valid_rmse" is refused

    max_len: int = Field(
        200, ge=2, le=4096, description="Events of a history the model reads (the latest ones)."
    )
    hidden: int = Field(64, ge=1, le=4096, description="Embedding and state width d.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout on embeddings and layers.")
    loss: SequenceLoss = Field(
        "ce",
        description='"ce": full softmax over the catalogue; "sampled_ce" / "gbce": against '
        "n_negatives uniform negatives per batch (large catalogues).",
    )
    n_negatives: int = Field(256, ge=1, le=1_000_000, description="sampled_ce / gbce negatives.")
    target_window: int = Field(
        1,
        ge=1,
        le=1024,
        description='"ce": each position learns its next target_window events (1: next item).',
    )
    window_decay: float = Field(
        1.0,
        gt=0,
        le=1,
        description='"ce", target_window > 1: weight gamma**j of the j-th next event (1: equal).',
    )
    exclude_seen: bool = Field(
        False,
        description='"ce": drop each position\'s own history items (not its targets) from its '
        "softmax, as evaluation drops a user's training items.",
    )
    exclude_seen_scope: Literal["window", "history"] = Field(
        "window",
        description='exclude_seen: "window" drops the items read inside the training window; '
        '"history" also those of the user\'s earlier events (histories longer than max_len).',
    )
    gbce_t: float = Field(0.75, ge=0, le=1, description="gBCE calibration t (0: plain BCE).")
    use_features: bool = Field(
        False, description="Add item genre embeddings (item_meta genres) to item embeddings."
    )
    positive_threshold: float | None = Field(
        None, description="Rated data: only ratings >= this enter sequences (None: every event)."
    )
    valid_k: int = Field(10, ge=1, description="Cut-off of the valid_ndcg@k validation metric.")
    init_std: float = Field(0.02, gt=0, description="Std of the normal embedding initialisation.")
    item_init: Literal["normal", "svd"] = Field(
        "normal",
        description='Item embeddings at the start: "normal" (std init_std), or "svd": that plus '
        "the items' factors from a truncated SVD of the training user x item matrix "
        "(recforge.models.item_factors), std item_init_scale.",
    )
    item_init_scale: float = Field(
        0.05, gt=0, le=10, description='item_init = "svd": std of the added SVD factors.'
    )
    ensemble: int = Field(
        1,
        ge=1,
        le=16,
        description="Networks trained side by side from initialisations seed, seed+1, ...; "
        "the model scores with the mean of their log-softmax (1: one network).",
    )
    # One thread, as for mf and mult_vae: on a busy 2-core machine a second OpenMP worker
    # spin-waits for a core (measured: a SASRec step 0.24 s on 1 thread, 2.4 s on 2, load 7).
    num_threads: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Torch CPU threads (None: the CPUs available, recforge.threads).",
    )
    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=10_000_000, description="Windows (sequences) per batch.")
    lr: float = Field(1e-3, gt=0, le=10)
    optimizer: OptimizerName = "adam"
    schedule: ScheduleName = "constant"

    @model_validator(mode="after")
    def _check_ce_options(self) -> SequentialConfig:
        # Silently ignoring them would train a different model than the config says.
        if self.loss != "ce" and (self.exclude_seen or self.window_decay < 1):
            raise ValueError(
                f'exclude_seen and window_decay apply to loss = "ce" only (loss is '
                f'"{self.loss}"); set loss = "ce" or drop them'
            )
        if self.exclude_seen_scope != "window" and not self.exclude_seen:
            raise ValueError(
                f'exclude_seen_scope = "{self.exclude_seen_scope}" needs exclude_seen = true; '
                "set it or drop exclude_seen_scope"
            )
        return self


# ====================================================================== network parts
class ItemEmbedding(nn.Module):
    """Item embeddings for padded index tensors, optionally plus genre embeddings.

    Rows: 0 = padding (always zero), ``1..n_items`` = items, ``n_items + 1`` = the mask token
    (masked-item models). ``forward(idx (…)) -> (…, d)``; ``table() -> (n_items, d)`` the real
    items' embeddings (the output layer of every sequential model: scores are ``h · table()ᵀ``).

    With ``features`` ``(n_items, n_features)`` (e.g. multi-hot genres) an item's vector is
    ``e_i + W f̄_i`` with ``f̄_i`` its features averaged (items with many genres are not louder).
    """

    features: torch.Tensor

    def __init__(
        self, n_items: int, dim: int, *, features: torch.Tensor | None, init_std: float
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.emb = nn.Embedding(n_items + 2, dim, padding_idx=0)
        nn.init.normal_(self.emb.weight, 0.0, init_std)
        with torch.no_grad():
            self.emb.weight[0].zero_()
        self.proj: nn.Linear | None = None
        if features is not None:
            full = torch.zeros(n_items + 2, features.shape[1])
            full[1 : n_items + 1] = features / features.sum(1, keepdim=True).clamp(min=1.0)
            self.register_buffer("features", full)
            self.proj = nn.Linear(features.shape[1], dim, bias=False)
            nn.init.normal_(self.proj.weight, 0.0, init_std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.emb(idx)
        if self.proj is not None:
            out = out + self.proj(self.features[idx])
        return out

    def table(self) -> torch.Tensor:
        """Embeddings of the real items, ``(n_items, d)`` (row ``i`` = item index ``i``)."""
        idx = torch.arange(1, self.n_items + 1, device=self.emb.weight.device)
        return self.forward(idx)


class SequenceNet(nn.Module):
    """Interface of sequential networks (subclasses implement :meth:`encode`).

    Shapes: ``encode(seq (B, L) int64, 0 = pad) -> (B, L, d)`` states;
    ``score_last(seq (B, L)) -> (B, n_items)`` scores of every item as the next one.
    """

    items: ItemEmbedding

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """States ``(B, L, d)`` (= :meth:`encode`)."""
        return self.encode(seq)

    def item_table(self) -> torch.Tensor:
        """Output item embeddings ``(n_items, d)``."""
        return self.items.table()

    def last_state(self, seq: torch.Tensor) -> torch.Tensor:
        """The state that scores the next item: ``(B, d)``."""
        return self.encode(seq)[:, -1]

    def score_last(self, seq: torch.Tensor) -> torch.Tensor:
        """Scores of every item as each sequence's next one: ``(B, n_items)``."""
        return self.last_state(seq) @ self.item_table().T


class SequenceEnsemble(SequenceNet):
    """Several networks of one family, trained side by side, scoring together.

    ``score_last`` is the mean of the members' log-softmax over the catalogue (a geometric mean
    of their next-item distributions: each member's scale drops out); ``item_table`` is the
    members' tables side by side ``(n_items, Σ d)``, for item similarity. Trained by
    :class:`EnsembleLoss`, each member gets exactly the gradient it would get alone on the same
    batches: averaging differently initialised networks is the usual variance reduction of
    deep models (Lakshminarayanan et al. 2017, "Simple and scalable predictive uncertainty
    estimation using deep ensembles").
    """

    def __init__(self, members: SequenceABC[SequenceNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        raise TypeError("an ensemble has no single state sequence; use score_last")

    def item_table(self) -> torch.Tensor:
        """The members' output item embeddings side by side: ``(n_items, Σ d)``."""
        return torch.cat([_member(m).item_table() for m in self.members], dim=1)

    def score_last(self, seq: torch.Tensor) -> torch.Tensor:
        """Mean of the members' next-item log-probabilities: ``(B, n_items)``."""
        logp = [F.log_softmax(_member(m).score_last(seq), dim=-1) for m in self.members]
        return torch.stack(logp).mean(0)


def _member(m: nn.Module) -> SequenceNet:
    assert isinstance(m, SequenceNet)
    return m


# ====================================================================== objectives
class EnsembleLoss(Objective):
    """The sum of ``inner``'s loss over the members of a :class:`SequenceEnsemble`: members
    share no weights, so each gets the gradient of its own loss on the batch."""

    def __init__(self, inner: Objective) -> None:
        self.inner = inner

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        assert isinstance(module, SequenceEnsemble)
        return torch.stack([self.inner.loss(m, batch) for m in module.members]).sum()


class NextItemLoss(Objective):
    """Next-item objectives over every position with a target (module docstring).

    Batch keys: ``input``, ``target`` ``(B, L)`` int64 (0 = no target at that position).
    Negatives for ``sampled_ce`` / ``gbce`` come from torch's global generator, which the
    Trainer seeds (and checkpoints), so runs are reproducible.
    """

    def __init__(
        self,
        kind: SequenceLoss,
        n_items: int,
        n_negatives: int = 256,
        gbce_t: float = 0.75,
        *,
        window: int = 1,
        decay: float = 1.0,
        exclude_seen: bool = False,
    ) -> None:
        self.kind = kind
        self.window = int(window)
        self.decay = float(decay)
        self.exclude_seen = bool(exclude_seen)
        self.n_items = int(n_items)
        self.n_negatives = int(min(n_negatives, max(1, n_items - 1)))
        alpha = self.n_negatives / max(1, self.n_items - 1)
        self.beta = alpha * (gbce_t * (1.0 - 1.0 / alpha) + 1.0 / alpha)

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        assert isinstance(module, SequenceNet)
        target = batch["target"]
        states = module.encode(batch["input"])
        keep = target > 0
        h = states[keep]
        y = target[keep] - 1
        table = module.item_table()
        if self.kind == "ce":
            blocked = None
            if self.exclude_seen:
                prior = batch.get("prior")  # present with exclude_seen_scope = "history"
                blocked = _seen_items(
                    len(y), self.n_items, batch["input"], target, keep, self.window, prior
                )
            if self.window == 1:
                return full_softmax_ce(h, table, y, blocked)
            logits = h @ table.T
            if blocked is not None:
                logits = logits.masked_fill(blocked, -math.inf)
            return _window_ce(logits, target, keep, self.window, self.decay)
        neg = torch.randint(0, self.n_items, (self.n_negatives,), device=h.device)
        pos_s = (h * table[y]).sum(-1)
        neg_s = h @ table[neg].T
        clash = neg[None, :] == y[:, None]
        if self.kind == "sampled_ce":
            logits = torch.cat([pos_s[:, None], neg_s.masked_fill(clash, -math.inf)], dim=1)
            return F.cross_entropy(logits, torch.zeros_like(y))
        neg_terms = F.softplus(neg_s).masked_fill(clash, 0.0).sum(1)
        return (self.beta * F.softplus(-pos_s) + neg_terms).mean()


def _ahead(target: torch.Tensor, keep: torch.Tensor, window: int) -> torch.Tensor:
    """``(N, window)``: each kept position's next ``window`` targets of its row (0 = none)."""
    length = target.shape[1]
    steps = torch.arange(length, device=target.device)[:, None] + torch.arange(
        window, device=target.device
    )
    future = target[:, steps.clamp(max=length - 1)]  # (B, L, window)
    return future.masked_fill(~(steps < length)[None], 0)[keep]


def _window_ce(
    logits: torch.Tensor,
    target: torch.Tensor,
    keep: torch.Tensor,
    window: int,
    decay: float = 1.0,
) -> torch.Tensor:
    """Mean CE of each kept position against its next ``window`` targets of the same row.

    ``logits`` ``(N, n_items)`` are the kept positions' scores; position ``(r, c)``'s targets are
    ``target[r, c : c + window]`` (those that exist), the ``j``-th weighted ``decay**j`` and the
    weights normalised per position. One log-sum-exp per position serves all of them:
    ``CE_j = lse − s_{y_j}``.
    """
    future = _ahead(target, keep, window)
    weight = (future > 0).to(logits.dtype) * (
        decay ** torch.arange(window, device=logits.device, dtype=logits.dtype)
    )
    picked = logits.gather(1, (future - 1).clamp(min=0))
    lse = torch.logsumexp(logits, dim=1, keepdim=True)
    # where, not a product: a missing target's gathered logit may be −inf (exclude_seen).
    ce = torch.where(weight > 0, lse - picked, torch.zeros_like(picked))
    per = (ce * weight).sum(1) / weight.sum(1).clamp(min=1e-12)
    return per.mean()


def _seen_items(
    n_rows: int,
    n_items: int,
    inputs: torch.Tensor,
    target: torch.Tensor,
    keep: torch.Tensor,
    window: int,
    prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(n_rows, n_items)`` bool: each kept position's history items, its targets left out.

    Position ``(r, c)``'s history is ``inputs[r, :c + 1]`` (the inputs are the events before
    each target) plus, when given, ``prior[r]`` (``(B, P)``, the items of the user's events
    before row ``r``'s window, 0 = pad); its targets are ``target[r, c : c + window]``, which
    stay in the softmax even when seen before (a re-watched item remains a valid answer).
    """
    length = inputs.shape[1]
    upto = torch.ones(length, length, dtype=torch.bool, device=inputs.device).tril()
    history = (inputs[:, None, :] * upto[None]).expand(-1, length, -1)[keep]  # (N, L)
    # Column 0 collects the padding (index 0) so every scatter writes one value per call.
    seen = torch.zeros(n_rows, n_items + 1, dtype=torch.bool, device=inputs.device)
    seen.scatter_(1, history, True)
    if prior is not None:
        # One row per window, then copied to its kept positions: (B, I+1) -> (N, I+1).
        earlier = torch.zeros(prior.shape[0], seen.shape[1], dtype=torch.bool, device=seen.device)
        earlier.scatter_(1, prior, True)
        rows = torch.arange(inputs.shape[0], device=inputs.device)[:, None].expand(-1, length)
        seen |= earlier[rows[keep]]
    seen.scatter_(1, _ahead(target, keep, window), False)
    return seen[:, 1:]


class MaskedItemLoss(Objective):
    """Masked-item (cloze) objective of BERT4Rec: full softmax over the masked positions.

    Each non-padding position is replaced by the mask token with probability ``mask_prob`` and
    predicted from both sides: ``L = −mean_{t masked} log softmax(H_t Eᵀ)_{s_t}``. A batch in
    which no position was drawn masks each sequence's last event instead.

    Batch key: ``target`` ``(B, L)`` int64 (the sequence itself, 0 = pad).
    """

    def __init__(self, n_items: int, mask_prob: float) -> None:
        self.mask_token = int(n_items) + 1
        self.mask_prob = float(mask_prob)

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        assert isinstance(module, SequenceNet)
        seq = batch["target"]
        real = seq > 0
        masked = (torch.rand(seq.shape, device=seq.device) < self.mask_prob) & real
        if not bool(masked.any()):
            masked = torch.zeros_like(real)
            masked[:, -1] = real[:, -1]
        states = module.encode(seq.masked_fill(masked, self.mask_token))
        return full_softmax_ce(states[masked], module.item_table(), seq[masked] - 1)


def sequence_validator(
    histories: IndexArray, held: sp.csr_matrix, seen: sp.csr_matrix, k: int
) -> Validator | None:
    """``valid_loss`` (held-out softmax NLL) and ``valid_ndcg@k`` from padded train histories.

    Args:
        histories: ``(n_users, L)`` padded training sequences (what the model reads).
        held: user × item CSR of the held-out events (binary).
        seen: user × item CSR of the training events (removed from softmax and ranking).
        k: NDCG cut-off (capped at the catalogue size).
    """
    users = np.flatnonzero(np.diff(held.indptr) > 0).astype(np.int64)
    if len(users) == 0:
        return None
    n_items = held.shape[1]
    k = min(k, n_items)
    held_rows, seen_rows = CSRRows(held), CSRRows(seen)
    step = max(1, _DENSE_BUDGET // max(1, n_items))
    seqs = torch.from_numpy(np.ascontiguousarray(histories[users]))

    def validate(module: nn.Module) -> dict[str, float]:
        assert isinstance(module, SequenceNet)
        device = next(module.parameters()).device
        held_rows.to(device)
        seen_rows.to(device)
        acc = HeldOutRanking(k)
        for s in range(0, len(users), step):
            u = torch.as_tensor(users[s : s + step], device=device)
            target, _ = held_rows.dense(u)
            _, mask = seen_rows.dense(u)
            acc.add(module.score_last(seqs[s : s + step].to(device)), target, mask)
        return acc.result(len(users))

    return validate


# ====================================================================== recommender
class SequentialRecommender(NeuralRecommender):
    """Base of the sequential families (module docstring): a network over ordered histories.

    Subclasses set ``name``, ``Config`` and implement :meth:`build_network`; masked-item models
    set ``shift = False`` and override :meth:`make_objective`.

    Fitted attributes (besides the neural ones):
        sequences_: ``(n_users, max_len)`` int64, each user's last ``max_len`` training events
            (item index + 1, left-padded with 0): what :meth:`score_items` reads. Saved.
    """

    Config: ClassVar[type[ModelConfig]] = SequentialConfig
    #: Next-item models train on (previous event -> event); masked-item models on the events.
    shift: ClassVar[bool] = True

    sequences_: IndexArray
    _sequences: Sequences | None = None
    #: ``item_init = "svd"``: the factors added to new networks' item embeddings (during fit).
    _item_init: npt.NDArray[np.float32] | None = None

    def _cfg(self) -> SequentialConfig:
        cfg = self.config
        assert isinstance(cfg, SequentialConfig)
        return cfg

    def loss_kind(self) -> Literal["mse", "bce", "bpr"]:
        """``"bce"``: the base class's word for "implicit scores, not ratings" (no clipping)."""
        return "bce"

    def wrap_network(self, network: nn.Module) -> nn.Module:
        """No output head: scores are inner products with item embeddings."""
        return network

    def _new_module(self) -> nn.Module:
        """One network, or ``ensemble`` of them initialised from seeds seed, seed+1, ..."""
        cfg = self._cfg()
        if cfg.ensemble == 1:
            return self._with_item_init(super()._new_module())
        members = []
        for k in range(cfg.ensemble):
            with seeded(cfg.seed + k):
                members.append(_member(self.wrap_network(self.build_network())))
        return self._with_item_init(SequenceEnsemble(members))

    def _with_item_init(self, module: nn.Module) -> nn.Module:
        """``module`` with :attr:`_item_init` added to every item table (``item_init = "svd"``,
        during a fit; each ensemble member keeps its own normal part)."""
        if self._item_init is not None:
            init = torch.from_numpy(self._item_init)
            with torch.no_grad():
                for part in module.modules():
                    if isinstance(part, ItemEmbedding):
                        rows = part.emb.weight[1 : part.n_items + 1]
                        rows += init.to(rows.device, rows.dtype)
        return module

    def _genres(self) -> torch.Tensor | None:
        """The genre multi-hot of the training items when ``use_features`` and known."""
        if not self._cfg().use_features:
            return None
        from recforge.models.two_tower import genre_matrix

        feats = genre_matrix(self.item_meta_, self.items_)
        return None if feats is None else torch.from_numpy(feats)

    # ------------------------------------------------------------------ training
    def _keep(self, data: Interactions) -> npt.NDArray[np.bool_] | None:
        thr = self._cfg().positive_threshold
        return None if thr is None else np.asarray(data.rating >= thr)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        keep = self._keep(train)
        self._sequences = Sequences.from_interactions(train, keep)
        self.sequences_ = self._sequences.padded(np.arange(train.n_users), self._cfg().max_len)
        if self._cfg().item_init == "svd":
            self._item_init = self._svd_item_init(train, keep)
        try:
            super()._fit(train, valid)
        finally:
            self._sequences = None
            self._item_init = None

    def _svd_item_init(
        self, train: Interactions, keep: npt.NDArray[np.bool_] | None
    ) -> npt.NDArray[np.float32]:
        """``item_init = "svd"``: the SVD item factors of the (user, item) pairs the sequences
        keep (binary: a repeated pair counts once)."""
        cfg = self._cfg()
        part = train if keep is None else train.subset(keep)
        return svd_item_factors(part.csr("binary"), cfg.hidden, cfg.item_init_scale)

    def make_objective(self) -> Objective:
        """The training objective (next-item losses; BERT4Rec overrides)."""
        cfg = self._cfg()
        return NextItemLoss(
            cfg.loss,
            self.n_items,
            cfg.n_negatives,
            cfg.gbce_t,
            window=cfg.target_window,
            decay=cfg.window_decay,
            exclude_seen=cfg.exclude_seen,
        )

    def training_setup(self, train: Interactions) -> tuple[dict[str, torch.Tensor], Objective]:
        """Window tensors ``{"input", "target"}`` of every user's history and the objective."""
        assert self._sequences is not None
        cfg = self._cfg()
        inputs, targets = self._sequences.windows(cfg.max_len, shift=self.shift)
        if len(targets) == 0:
            raise DataError(
                f"{train.source}: no user has {'two events' if self.shift else 'an event'} to "
                f"train {self.name} on"
            )
        data = {"input": torch.from_numpy(inputs), "target": torch.from_numpy(targets)}
        if cfg.exclude_seen and cfg.exclude_seen_scope == "history":
            prior = self._sequences.window_priors(cfg.max_len, shift=self.shift)
            data["prior"] = torch.from_numpy(prior)
        objective = self.make_objective()
        return data, objective if cfg.ensemble == 1 else EnsembleLoss(objective)

    def make_validator(self, train: Interactions, valid: Interactions) -> Validator | None:
        """``valid_loss`` and ``valid_ndcg@k`` of the held-out events (module docstring)."""
        keep = self._keep(valid)
        part = valid if keep is None else valid.subset(keep)
        held = part.csr("binary")
        return sequence_validator(self.sequences_, held, self.seen_, self._cfg().valid_k)

    # ------------------------------------------------------------------ scoring
    def _net(self) -> SequenceNet:
        net = self._module()
        assert isinstance(net, SequenceNet)
        return net

    def score_sequences(self, rows: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """Scores of every item after each padded history ``rows`` ``(B, max_len)``."""
        net = self._net()
        net.eval()
        device = self._device()
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.n_items), dtype=np.float32)
        step = max(1, min(DEFAULT_SCORE_CHUNK, _DENSE_BUDGET // max(1, self.n_items)))
        with torch.no_grad():
            for s in range(0, len(rows), step):
                chunk = torch.as_tensor(rows[s : s + step], device=device)
                out[s : s + len(chunk)] = net.score_last(chunk).float().cpu().numpy()
        return out

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """``⟨h_u, e_i⟩`` for every item after each user's training sequence."""
        self._check_fitted()
        return self.score_sequences(self.sequences_[np.asarray(user_idx, dtype=np.int64)])

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """Scores of (user, item) pairs, gathered from :meth:`score_items` per user chunk."""
        return Recommender.predict_idx(self, user_idx, item_idx)

    # ------------------------------------------------------------------ new users (ordered)
    def _ordered_rows(self, rows: sp.csr_matrix) -> IndexArray:
        """Padded histories of CSR rows, reading each row's entries in their **stored** order.

        With ``positive_threshold`` only entries whose value is >= it count (all of a row's
        entries when none is).
        """
        csr = sp.csr_matrix(rows)
        values = np.asarray(csr.data, dtype=np.float32)
        counts = np.diff(csr.indptr).astype(np.int64)
        thr = self._cfg().positive_threshold
        if thr is None or len(values) == 0:
            return pad_left(csr.indices, csr.indptr, np.arange(csr.shape[0]), self._cfg().max_len)
        row_of = np.repeat(np.arange(csr.shape[0]), counts)
        pos = values >= thr
        n_pos = np.bincount(row_of[pos], minlength=csr.shape[0])
        keep = pos | (n_pos[row_of] == 0)
        kept = np.bincount(row_of[keep], minlength=csr.shape[0]).astype(np.int64)
        indptr = np.concatenate([[0], np.cumsum(kept)])
        return pad_left(csr.indices[keep], indptr, np.arange(csr.shape[0]), self._cfg().max_len)

    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """Scores of every item after the new user's items **in the order given**, oldest first.

        Ratings matter only through ``positive_threshold``; a trained user's own sequence gives
        exactly their :meth:`score_items` row.
        """
        idx = np.asarray(item_idx, dtype=np.int64)
        r = np.asarray(ratings, dtype=np.float32)
        row = sp.csr_matrix((r, idx, np.array([0, len(idx)])), shape=(1, self.n_items))
        out: FloatArray = self.score_sequences(self._ordered_rows(row))[0]
        return out

    def fold_in_scores_batch(self, rows: sp.csr_matrix) -> FloatArray:
        """Fold-in for several new users, one CSR row each, entries read in stored order.

        Build rows without sorting their indices to keep each history's order (the last stored
        entry is the most recent event); a row with sorted indices is read in item-index order.
        """
        return self.score_sequences(self._ordered_rows(rows))

    def recommend_for_items(
        self, item_ids: SequenceABC[Any], k: int = 10, *, exclude_rated: bool = True
    ) -> RecList:
        """Recommendations after an ordered list of raw item ids (oldest first), no retraining.

        Repeats are kept (a re-watched item is two events); unknown ids are ignored.
        """
        return self.recommend_for_ratings(
            _OrderedItems(list(item_ids)), k, exclude_rated=exclude_rated
        )

    # ------------------------------------------------------------------ explanations
    def attention_to_history(self, item_idx: IndexArray) -> FloatArray | None:
        """Weights the last position gives to each history item (attention models), or None."""
        return None

    # ------------------------------------------------------------------ vectors
    def item_vectors(self) -> FloatArray | None:
        """Output item embeddings ``(n_items, d)`` (genres included when used)."""
        with torch.no_grad():
            out: FloatArray = self._net().item_table().float().cpu().numpy()
        return out

    def item_embeddings(self) -> FloatArray | None:
        """The item embeddings (as :meth:`item_vectors`)."""
        return self.item_vectors()

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """Network weights plus the padded training sequences."""
        return {**super().get_state(), "sequences": np.ascontiguousarray(self.sequences_)}

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Restore the sequences, then rebuild the network and load its weights."""
        seqs = np.asarray(state["sequences"], dtype=np.int64)
        if seqs.shape != (self.n_users, self._cfg().max_len) or (
            seqs.size and (seqs.min() < 0 or seqs.max() > self.n_items)
        ):
            raise DataError(
                f"stored sequences have shape {seqs.shape} or ids outside the catalogue; "
                f"expected ({self.n_users}, {self._cfg().max_len})"
            )
        self.sequences_ = seqs
        super().set_state(state)


class _OrderedItems(Mapping[Any, float]):
    """An ordered list of item ids seen as ``{item_id: 1.0}`` without collapsing repeats.

    :meth:`Recommender.recommend_for_ratings` reads ``keys()`` and ``[key]``; iterating yields
    every id in order (repeats included), so a sequential fold-in sees the whole history.
    """

    def __init__(self, ids: list[Any]) -> None:
        self._ids = ids
        self._set = set(ids)

    def __getitem__(self, key: Any) -> float:
        if key not in self._set:
            raise KeyError(key)
        return 1.0

    def __iter__(self) -> Iterator[Any]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)
