"""BERT4Rec: a bidirectional transformer trained to recover masked items (cloze task).

Sun, Liu, Wu, Pei, Lin, Ou and Jiang, "BERT4Rec: Sequential Recommendation with Bidirectional
Encoder Representations from Transformer", CIKM 2019.

Network: the transformer of :class:`recforge.models.sasrec.SASRecNet` without the causal mask
(every position reads every non-padding position). Training (:class:`MaskedItemLoss`): each
event of a window is replaced by the mask token ``[M]`` with probability ``mask_prob`` and the
model predicts it with a full softmax over the catalogue::

    L = −mean_{t masked} log softmax(h_t Eᵀ)_{s_t}

Scoring appends ``[M]`` after the user's last ``max_len − 1`` events and reads the state there::

    score(i | s_u) = ⟨h_[M]([s_{L−max_len+2}, …, s_L, [M]]), e_i⟩
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, model_validator

from recforge.config import ModelConfig
from recforge.models.sasrec import SASRec, SASRecConfig, SASRecNet
from recforge.models.sequential import MaskedItemLoss
from recforge.train.losses import Objective


class BERT4RecConfig(SASRecConfig):
    """Hyper-parameters of ``bert4rec``."""

    mask_prob: float = Field(0.2, gt=0, lt=1, description="Share of events masked in training.")
    n_heads: int = Field(2, ge=1, le=64, description="Attention heads (must divide hidden).")

    @model_validator(mode="after")
    def _check_next_item_options(self) -> BERT4RecConfig:
        # The cloze objective has no next-item window or per-position history to exclude.
        if self.exclude_seen or self.window_decay < 1 or self.target_window > 1:
            raise ValueError(
                "exclude_seen, target_window and window_decay are next-item options; bert4rec "
                "trains on masked items (set mask_prob instead)"
            )
        return self


class BERT4RecNet(SASRecNet):
    """Bidirectional :class:`SASRecNet` whose next-item state is read at an appended mask token.

    Shapes: ``encode(seq (B, L)) -> (B, L, d)``; ``score_last(seq (B, L)) -> (B, n_items)``
    (the oldest column is dropped to make room for the mask token).
    """

    def last_state(self, seq: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(seq[:, :1], self.items.n_items + 1)
        return self.encode(torch.cat([seq[:, 1:], mask], dim=1))[:, -1]

    def last_attention(self, seq: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(seq[:, :1], self.items.n_items + 1)
        shifted = super().last_attention(torch.cat([seq[:, 1:], mask], dim=1))
        # Column c of the shifted input is column c + 1 of the history; the mask reads itself.
        return torch.cat([torch.zeros_like(shifted[:, :1]), shifted[:, :-1]], dim=1)


class BERT4Rec(SASRec):
    """BERT4Rec (module docstring).

    Score: the bidirectional state at a mask token appended to the history, dotted with item
    embeddings. Loss: masked-item cross-entropy over the catalogue. Citation: Sun et al., CIKM
    2019.
    """

    name: ClassVar[str] = "bert4rec"
    Config: ClassVar[type[ModelConfig]] = BERT4RecConfig
    causal: ClassVar[bool] = False
    shift: ClassVar[bool] = False
    net_class: ClassVar[type[SASRecNet]] = BERT4RecNet

    def make_objective(self) -> Objective:
        cfg = self.config
        assert isinstance(cfg, BERT4RecConfig)
        return MaskedItemLoss(self.n_items, cfg.mask_prob)
