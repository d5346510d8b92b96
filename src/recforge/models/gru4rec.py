"""GRU4Rec: a recurrent next-item model trained with full softmax cross-entropy.

Hidasi, Karatzoglou, Baltrunas and Tikk, "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016; the cross-entropy objective and tied (constrained) embeddings as
recommended in Hidasi and Czapp, "The Effect of Third Party Implementations on Reproducibility",
RecSys 2023.

Network (:class:`GRU4RecNet`), for a left-padded history ``s_1..s_L`` (0 = padding)::

    x_t = Dropout(E[s_t])                       (padding rows are zero vectors)
    h_t = GRU(x_t, h_{t−1})                     n_layers stacked GRUs of width d
    score(i | s_≤t) = ⟨Dropout(h_t), E[i]⟩      input and output item embeddings tied

Loss: ``−mean_t log softmax(h_t Eᵀ)_{s_{t+1}}`` over every position (``loss = "ce"``; the sampled
``"sampled_ce"`` / ``"gbce"`` options of :mod:`recforge.models.sequential` apply too). The GRU
runs over the padding too (left padding: the padding comes first, so the state at the last column
always follows the user's latest event); training and scoring pad to the same ``max_len``, so
they see the same start state.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import nn

from recforge.config import ModelConfig
from recforge.models.sequential import (
    ItemEmbedding,
    SequenceNet,
    SequentialConfig,
    SequentialRecommender,
)


class GRU4RecConfig(SequentialConfig):
    """Hyper-parameters of ``gru4rec``."""

    n_layers: int = Field(1, ge=1, le=16, description="Stacked GRU layers.")
    max_len: int = Field(50, ge=2, le=4096, description="Events of a history the GRU reads.")


class GRU4RecNet(SequenceNet):
    """Embedding → GRU → tied output (module docstring).

    Shapes: ``encode(seq (B, L)) -> (B, L, d)``; ``score_last(seq) -> (B, n_items)``.
    """

    def __init__(
        self,
        n_items: int,
        dim: int,
        n_layers: int,
        dropout: float,
        *,
        features: torch.Tensor | None = None,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.items = ItemEmbedding(n_items, dim, features=features, init_std=init_std)
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(
            dim, dim, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0
        )

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """States ``(B, L, d)`` after each position."""
        out, _ = self.gru(self.drop(self.items(seq)))
        states: torch.Tensor = self.drop(out)
        return states


class GRU4Rec(SequentialRecommender):
    """GRU4Rec with cross-entropy over the catalogue (module docstring).

    Score: ``⟨h_L, e_i⟩`` with ``h_L`` the GRU state after the user's last event. Loss:
    ``−mean_t log softmax(h_t Eᵀ)_{s_{t+1}}``. Citation: Hidasi et al., ICLR 2016.
    """

    name: ClassVar[str] = "gru4rec"
    Config: ClassVar[type[ModelConfig]] = GRU4RecConfig

    def build_network(self) -> nn.Module:
        cfg = self.config
        assert isinstance(cfg, GRU4RecConfig)
        return GRU4RecNet(
            self.n_items,
            cfg.hidden,
            cfg.n_layers,
            cfg.dropout,
            features=self._genres(),
            init_std=cfg.init_std,
        )
