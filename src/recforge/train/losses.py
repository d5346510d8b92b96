"""Loss functions and the *objectives* that turn a training batch into one scalar loss.

Pure loss functions (hand-checked in tests):

* :func:`mse_loss` — explicit ratings, ``mean((ŷ − r)²)``.
* :func:`scaled_sigmoid` — fastai's ``sigmoid_range``: ``lo + (hi − lo)·σ(x)``, used to squash a
  rating model's raw output into a slightly widened rating range (e.g. ``(0.5, 5.5)`` for 1–5
  stars) so that the extreme ratings are reachable without infinite logits.
* :func:`bce_pos_neg` — pointwise log loss of NCF (He et al. 2017, eq. 7): positives labelled 1,
  sampled negatives labelled 0, ``−[Σ log σ(s⁺) + Σ log(1 − σ(s⁻))] / (n⁺ + n⁻)``.
* :func:`bpr_loss` — Bayesian Personalized Ranking (Rendle et al., UAI 2009):
  ``mean(−log σ(s⁺ − s⁻))`` over (positive, negative) pairs.

An :class:`Objective` is what the :class:`~recforge.train.Trainer` calls per batch:
``objective(module, batch) -> scalar``. ``batch`` is a dict of equally long tensors sliced from
the training data (e.g. ``user``, ``item``, ``rating``). Objectives for id-pair models call
``module(user_idx, item_idx) -> scores (B,)``; other families (autoencoders over user rows,
in-batch softmax for two towers) write their own :class:`Objective` subclass.

Optional L2 on the embedding *rows used in the batch* (``reg``; Funk-SVD/Surprise style, unlike
optimizer weight decay, which shrinks every row every step) reads the module's
``user_param_names`` / ``item_param_names``: names of parameters whose first axis is indexed by
user / item index.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F

from recforge.train.sampling import NegativeSampler

Batch = Mapping[str, torch.Tensor]


# ====================================================================== pure losses
def scaled_sigmoid(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``low + (high − low)·σ(x)``: maps raw scores into the open interval ``(low, high)``."""
    return low + (high - low) * torch.sigmoid(x)


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error ``mean((pred − target)²)``."""
    return F.mse_loss(pred, target)


def bce_pos_neg(
    pos_logits: torch.Tensor, neg_logits: torch.Tensor, neg_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy of positives (label 1) and sampled negatives (label 0).

    Args:
        pos_logits: ``(B,)`` logits of positive pairs.
        neg_logits: ``(B, n)`` logits of each positive's ``n`` sampled negatives.
        neg_mask: optional ``(B, n)`` bool, False for negatives to ignore (users with none).

    Returns:
        The mean log loss over every positive and every kept negative.
    """
    pos_term = F.softplus(-pos_logits).sum()  # -log σ(s) == softplus(-s)
    neg_terms = F.softplus(neg_logits)  # -log(1 - σ(s)) == softplus(s)
    if neg_mask is not None:
        neg_terms = neg_terms * neg_mask
        n_neg = neg_mask.sum()
    else:
        n_neg = torch.tensor(float(neg_terms.numel()), device=neg_terms.device)
    return (pos_term + neg_terms.sum()) / (pos_logits.numel() + n_neg)


def bpr_loss(
    pos_scores: torch.Tensor, neg_scores: torch.Tensor, neg_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """BPR: ``mean(−log σ(s⁺ − s⁻))`` over every (positive, negative) pair.

    Args:
        pos_scores: ``(B,)`` scores of positive pairs.
        neg_scores: ``(B, n)`` scores of their sampled negatives.
        neg_mask: optional ``(B, n)`` bool, False for pairs to ignore.
    """
    terms = F.softplus(neg_scores - pos_scores[:, None])
    if neg_mask is None:
        return terms.mean()
    return (terms * neg_mask).sum() / neg_mask.sum().clamp(min=1)


def embedding_l2(module: nn.Module, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``Σ‖row‖²`` of the user and item parameter rows it uses.

    Reads ``module.user_param_names`` and ``module.item_param_names`` (tuples of parameter names
    whose first axis is the user / item index). ``item_idx`` may be ``(B,)`` or ``(B, n)``.
    """
    total = torch.zeros((), device=user_idx.device)
    for names, idx in (
        (getattr(module, "user_param_names", ()), user_idx),
        (getattr(module, "item_param_names", ()), item_idx),
    ):
        for name in names:
            owner_name, _, attr = name.rpartition(".")
            owner = module.get_submodule(owner_name)
            # Through the Embedding itself, so sparse tables get sparse gradients (SparseAdam).
            rows = (
                owner(idx)
                if isinstance(owner, nn.Embedding) and attr == "weight"
                else (module.get_parameter(name)[idx])
            )
            total = total + rows.pow(2).sum() / user_idx.shape[0]
    return total


# ====================================================================== objectives
class Objective(ABC):
    """Computes the training loss of a batch; the Trainer's only model-specific hook.

    Subclasses implement :meth:`loss`. :meth:`start_epoch` lets an objective change with the
    epoch (e.g. KL annealing); :meth:`to` moves tensors the objective owns to the device.
    """

    def __call__(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        return self.loss(module, batch)

    @abstractmethod
    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Scalar loss of ``batch`` (a dict of equally long tensors on the module's device)."""

    def start_epoch(self, epoch: int) -> None:  # noqa: B027 - optional hook, empty by design
        """Called by the Trainer before each epoch (0-based)."""

    def to(self, device: torch.device) -> Objective:
        """Move owned tensors to ``device`` (default: nothing to move); returns self."""
        return self

    def _samplers(self) -> dict[str, NegativeSampler]:
        return {k: v for k, v in vars(self).items() if isinstance(v, NegativeSampler)}

    def rng_state(self) -> dict[str, Any]:
        """JSON-serialisable random state (training checkpoints).

        The default covers every :class:`NegativeSampler` attribute; an objective with other
        random streams overrides this and :meth:`set_rng_state`.
        """
        return {k: s.get_rng_state() for k, s in self._samplers().items()}

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`rng_state`'s value."""
        for k, s in self._samplers().items():
            if k in state:
                s.set_rng_state(dict(state[k]))

    def reseed(self, seed: int) -> None:
        """Restart every random stream the objective owns from ``seed`` (distributed epochs)."""
        for s in self._samplers().values():
            s.reseed(seed)


class RatingMSE(Objective):
    """Explicit ratings: ``mean((f(u, i) − r)²) + reg · mean_batch(Σ‖rows‖²)``.

    Batch keys: ``user`` (B,) int64, ``item`` (B,) int64, ``rating`` (B,) float32.
    """

    def __init__(self, reg: float = 0.0) -> None:
        self.reg = float(reg)

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        pred = module(batch["user"], batch["item"])
        out = mse_loss(pred, batch["rating"])
        if self.reg > 0:
            out = out + self.reg * embedding_l2(module, batch["user"], batch["item"])
        return out


class _SampledObjective(Objective):
    """Shared part of the implicit objectives: scores of positives and sampled negatives."""

    def __init__(self, sampler: NegativeSampler, n_negatives: int = 4, reg: float = 0.0) -> None:
        self.sampler = sampler
        self.n_negatives = int(n_negatives)
        self.reg = float(reg)

    def negatives(self, users: torch.Tensor) -> torch.Tensor:
        """``(B, n_negatives)`` int64 negatives for ``users`` (on the users' device)."""
        neg = self.sampler.sample(users.detach().cpu().numpy(), self.n_negatives)
        return torch.from_numpy(neg).to(users.device)

    def scores(
        self, module: nn.Module, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(positive scores (B,), negative scores (B, n), negative mask or None, negatives)."""
        user, item = batch["user"], batch["item"]
        neg = batch["neg"] if "neg" in batch else self.negatives(user)
        mask = neg >= 0
        has_missing = not bool(mask.all())
        neg_safe = neg.clamp(min=0)
        b, n = neg_safe.shape
        # One forward over positives and negatives together: fewer kernel launches per batch.
        users_all = torch.cat([user, user.repeat_interleave(n)])
        items_all = torch.cat([item, neg_safe.reshape(-1)])
        s = module(users_all, items_all)
        return s[:b], s[b:].reshape(b, n), (mask if has_missing else None), neg_safe

    def _reg(self, module: nn.Module, batch: Batch, neg: torch.Tensor) -> torch.Tensor:
        items = torch.cat([batch["item"][:, None], neg], dim=1)
        return self.reg * embedding_l2(module, batch["user"], items)


class SampledBCE(_SampledObjective):
    """Implicit feedback, pointwise: :func:`bce_pos_neg` with ``n_negatives`` per positive.

    Batch keys: ``user``, ``item`` (positives) and optionally ``neg`` ``(B, n)`` fixed negatives
    (used for reproducible validation losses); otherwise negatives are drawn from ``sampler``.
    """

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        pos, neg_s, mask, neg = self.scores(module, batch)
        out = bce_pos_neg(pos, neg_s, mask)
        if self.reg > 0:
            out = out + self._reg(module, batch, neg)
        return out


class BPR(_SampledObjective):
    """Implicit feedback, pairwise: :func:`bpr_loss` against ``n_negatives`` per positive.

    Batch keys as for :class:`SampledBCE`.
    """

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        pos, neg_s, mask, neg = self.scores(module, batch)
        out = bpr_loss(pos, neg_s, mask)
        if self.reg > 0:
            out = out + self._reg(module, batch, neg)
        return out


def fixed_negatives(
    sampler: NegativeSampler, users: npt.ArrayLike, n: int, seed: int
) -> torch.Tensor:
    """``(len(users), n)`` negatives drawn with their own seeded generator (validation batches).

    The sampler's training stream is left untouched, so validating does not change training.
    """
    return torch.from_numpy(sampler.sample(users, n, rng=np.random.default_rng(seed)))
