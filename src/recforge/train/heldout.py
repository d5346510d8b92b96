"""Validation of full-softmax models on held-out items: softmax NLL and NDCG@k over user chunks.

Mult-VAE/DAE and the sequential models score every item for a chunk of validation users; both
report the same two numbers, accumulated here so the formulas live in one place.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class HeldOutRanking:
    """Accumulates ``valid_loss`` and ``valid_ndcg@k`` chunk by chunk.

    ``valid_loss`` is the held-out items' negative log-likelihood under the softmax over items the
    user has not seen in training, per held-out item; ``valid_ndcg@k`` uses binary gains and the
    ideal DCG over ``min(k, |held-out|)``, averaged over the validation users.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
        self.ideal = torch.cumsum(self.discount, 0)
        self.nll = 0.0
        self.ndcg = 0.0
        self.n_held = 0

    def add(self, logits: torch.Tensor, target: torch.Tensor, seen: torch.Tensor) -> None:
        """One chunk: ``(B, n_items)`` logits, held-out target counts and training-item mask."""
        # Training items are never recommended, so they leave the softmax and the ranking.
        target = target.masked_fill(seen, 0.0)
        logits = logits.masked_fill(seen, -math.inf)
        logp = F.log_softmax(logits, dim=1).masked_fill(seen, 0.0)
        self.nll -= float((logp * target).sum())
        self.n_held += int(target.sum())
        top = torch.topk(logits, self.k, dim=1).indices
        gains = target.gather(1, top).double().cpu()
        n_rel = target.sum(1).long().clamp(max=self.k).cpu()
        hit = n_rel > 0
        self.ndcg += float(((gains * self.discount).sum(1)[hit] / self.ideal[n_rel[hit] - 1]).sum())

    def result(self, n_users: int) -> dict[str, float]:
        """``{"valid_loss", "valid_ndcg@k"}`` over ``n_users`` validation users."""
        return {
            "valid_loss": self.nll / max(self.n_held, 1),
            f"valid_ndcg@{self.k}": self.ndcg / max(n_users, 1),
        }
