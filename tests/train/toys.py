"""A tiny id-pair network shared by the checkpoint and distributed Trainer tests."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class ToyMF(nn.Module):
    """``p_u · q_i + b``, optional dropout on ``p_u`` (so that training consumes the global RNG).

    Initialised from its own generator, so every instance (and every rank) starts identical.
    """

    user_param_names: ClassVar[tuple[str, ...]] = ("p.weight",)
    item_param_names: ClassVar[tuple[str, ...]] = ("q.weight",)

    def __init__(self, dropout: float = 0.0, bias: float = 0.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.p = nn.Embedding(30, 4)
        self.q = nn.Embedding(20, 4)
        self.bias = nn.Parameter(torch.full((), bias))
        with torch.no_grad():
            self.p.weight.copy_(torch.randn(30, 4, generator=g) * 0.1)
            self.q.weight.copy_(torch.randn(20, 4, generator=g) * 0.1)
        self.drop = nn.Dropout(dropout)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = (self.drop(self.p(user)) * self.q(item)).sum(-1) + self.bias
        return out
