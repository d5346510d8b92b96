"""SASRec: self-attentive sequential recommendation, trained with full softmax cross-entropy.

Kang and McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018; the loss of SASRec+ from
Klenitskiy and Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?",
RecSys 2023; gBCE from Petrov and Macdonald, "gSASRec", RecSys 2023.

Network (:class:`SASRecNet`), for a left-padded history ``s_1..s_L`` (0 = padding)::

    x_t = √d · E[s_t] + P[t]            (padding rows zeroed; P: learned positions, the last
                                         column is always the latest event)
    x ← x + Dropout(MHA(LN(x)))          causal: position t attends to t' ≤ t, never to padding
    x ← x + Dropout(FFN(LN(x)))          FFN: d → d, ReLU, d → d   (n_layers blocks, pre-LN)
    h_t = LN(x_t);   score(i | s_≤t) = ⟨h_t, E[i]⟩          input and output embeddings tied

Loss (``loss`` config, see :mod:`recforge.models.sequential`): ``"ce"`` full softmax over the
catalogue at every position (default, SASRec+), ``"sampled_ce"``, or ``"gbce"`` with
``n_negatives`` uniform negatives. ``"ce"`` options: ``target_window``/``window_decay`` (each
position learns its next ``w`` events, the ``j``-th weighted ``γ^j``: the all-action objective of
PinnerFormer, Pancha et al. KDD 2022) and ``exclude_seen`` (a position's own history leaves its
softmax, as evaluation removes training items; ``exclude_seen_scope = "history"``: the items of
the user's events before the training window too, not only those inside it). Trained on every
position of every window of the history (causal mask), by the shared
:class:`~recforge.train.Trainer`.

For explanations, :meth:`SASRec.attention_to_history` gives the last layer's attention of the
final position over the history (averaged over heads): which past items the next-item state
reads most.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from recforge.config import ModelConfig
from recforge.data.sequences import pad_left
from recforge.models.base import FloatArray, IndexArray
from recforge.models.sequential import (
    ItemEmbedding,
    SequenceEnsemble,
    SequenceNet,
    SequentialConfig,
    SequentialRecommender,
)


class SASRecConfig(SequentialConfig):
    """Hyper-parameters of ``sasrec``."""

    n_layers: int = Field(2, ge=1, le=64, description="Self-attention blocks.")
    n_heads: int = Field(1, ge=1, le=64, description="Attention heads (must divide hidden).")


class _Block(nn.Module):
    """Pre-LN transformer block: ``x + MHA(LN(x))`` then ``x + FFN(LN(x))``."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, blocked: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.ln1(x)
        a, w = self.attn(h, h, h, attn_mask=blocked, need_weights=need_weights)
        x = x + self.drop(a)
        x = x + self.drop(self.ff(self.ln2(x)))
        return x, w


class SASRecNet(SequenceNet):
    """Transformer over left-padded item sequences (module docstring).

    Args:
        n_items: catalogue size (embedding rows ``n_items + 2``: padding and mask token).
        dim: width ``d``; heads: attention heads; n_layers: blocks; max_len: positions.
        dropout: on embeddings, attention, FFN and residual branches.
        causal: True (SASRec) masks future positions; False (BERT4Rec) attends both ways.
        features: optional ``(n_items, n_features)`` item features (genres).
        init_std: std of the normal initialisation of embeddings.

    Shapes: ``encode(seq (B, L)) -> (B, L, d)`` with ``L <= max_len`` (column ``L − 1`` gets
    the last position embedding); ``score_last(seq) -> (B, n_items)``.
    """

    def __init__(
        self,
        n_items: int,
        dim: int,
        heads: int,
        n_layers: int,
        max_len: int,
        dropout: float,
        *,
        causal: bool = True,
        features: torch.Tensor | None = None,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden ({dim}) must be divisible by n_heads ({heads})")
        self.items = ItemEmbedding(n_items, dim, features=features, init_std=init_std)
        self.pos = nn.Embedding(max_len, dim)
        nn.init.normal_(self.pos.weight, 0.0, init_std)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim)
        self.heads = heads
        self.max_len = max_len
        self.causal = causal
        self.scale = math.sqrt(dim)

    def _blocked(self, seq: torch.Tensor) -> torch.Tensor:
        """``(B·heads, L, L)`` bool, True where query t may not read key t'.

        Padding keys are blocked, and future keys when causal; every position may read itself,
        so no row is fully blocked (padding rows would give NaN softmaxes otherwise).
        """
        length = seq.shape[1]
        pad = seq == 0
        eye = torch.eye(length, dtype=torch.bool, device=seq.device)
        blocked = pad[:, None, :].expand(-1, length, -1)
        if self.causal:
            future = torch.ones(length, length, dtype=torch.bool, device=seq.device).triu(1)
            blocked = blocked | future
        blocked = blocked & ~eye
        return blocked.repeat_interleave(self.heads, dim=0)

    def _run(
        self, seq: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        length = seq.shape[1]
        keep = (seq > 0).unsqueeze(-1).to(torch.float32)
        positions = torch.arange(self.max_len - length, self.max_len, device=seq.device)
        x = self.items(seq) * self.scale + self.pos(positions)[None]
        x = self.drop(x) * keep
        blocked = self._blocked(seq)
        weights = None
        for k, block in enumerate(self.blocks):
            last = need_weights and k == len(self.blocks) - 1
            x, w = block(x, blocked, need_weights=last)
            x = x * keep
            if last:
                weights = w
        return self.norm(x), weights

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """States ``(B, L, d)`` of every position."""
        return self._run(seq)[0]

    def last_attention(self, seq: torch.Tensor) -> torch.Tensor:
        """Last layer's attention of the final position over the ``L`` columns: ``(B, L)``."""
        _, w = self._run(seq, need_weights=True)
        assert w is not None
        return w[:, -1, :]


class SASRec(SequentialRecommender):
    """SASRec with full cross-entropy (SASRec+) or sampled CE / gBCE (module docstring).

    Score: ``⟨h_L(s_u), e_i⟩``, the last causal-transformer state after the user's history dotted
    with the item embedding. Loss: ``−mean_t log softmax(h_t Eᵀ)_{s_{t+1}}`` over every position
    (``loss = "ce"``). Citations: Kang & McAuley, ICDM 2018; Klenitskiy & Vasilev, RecSys 2023;
    Petrov & Macdonald, RecSys 2023 (gBCE).
    """

    name: ClassVar[str] = "sasrec"
    Config: ClassVar[type[ModelConfig]] = SASRecConfig
    causal: ClassVar[bool] = True
    #: The network class (BERT4Rec swaps in its bidirectional, mask-token variant).
    net_class: ClassVar[type[SASRecNet]] = SASRecNet

    def build_network(self) -> nn.Module:
        cfg = self.config
        assert isinstance(cfg, SASRecConfig)
        return self.net_class(
            self.n_items,
            cfg.hidden,
            cfg.n_heads,
            cfg.n_layers,
            cfg.max_len,
            cfg.dropout,
            causal=self.causal,
            features=self._genres(),
            init_std=cfg.init_std,
        )

    def _attention_rows(self, rows: IndexArray) -> FloatArray:
        """The last layer's attention from the final position (an ensemble: its members' mean)."""
        net = self._net()
        nets = list(net.members) if isinstance(net, SequenceEnsemble) else [net]
        net.eval()
        seq = torch.as_tensor(rows, device=self._device())
        with torch.no_grad():
            w = torch.stack([_attention_net(n).last_attention(seq) for n in nets]).mean(0)
        out: FloatArray = w.float().cpu().numpy()
        return out

    def attention_to_history(self, item_idx: IndexArray) -> FloatArray | None:
        """Attention of the next-item state over an ordered history (oldest first).

        Returns one weight per given item (0 for items older than ``max_len``), from the last
        layer, averaged over heads; the final position is the latest item itself, so the
        weights of the items read (the last ``max_len``) sum to 1.
        """
        idx = np.asarray(item_idx, dtype=np.int64)
        max_len = self._cfg().max_len
        rows = pad_left(idx, np.array([0, len(idx)]), np.zeros(1, np.int64), max_len)
        w = self._attention_rows(rows)[0]
        out = np.zeros(len(idx), dtype=np.float32)
        n = min(len(idx), max_len)
        if n:
            out[len(idx) - n :] = w[max_len - n :]
        return out


def _attention_net(net: nn.Module) -> SASRecNet:
    assert isinstance(net, SASRecNet)
    return net
