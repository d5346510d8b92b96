"""Two-tower (dual encoder) retrieval model.

Each side maps an id embedding (the item side optionally concatenated with a learned embedding of
its content features, e.g. multi-hot genres) through its own tower of dense layers to a vector in
a shared space; the score is their dot product::

    u = T_U(e_u),   v = T_I([e_i ; g_i^T G]),   s(u, i) = u · v   (+ b_u + b_i + μ if explicit)

Because the score is an inner product, all items can be pre-encoded once (:meth:`item_vectors`)
and retrieved by (approximate) maximum inner product search.

Losses: explicit ratings use MSE on ``s(u, i)``. Implicit feedback uses the in-batch sampled
softmax of Yi et al. 2019 ("Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
Recommendations", RecSys): for a batch of positive pairs, the other items of the batch act as
negatives, ``L = -Σ_b log softmax_j((u_b · v_j) / τ - log Q(j))_b`` where ``Q(j)`` is item ``j``'s
sampling probability (its training frequency) — the optional logQ correction that stops popular
items being over-penalised for appearing often as negatives. Repeated items in a batch are masked
so an item is never its own negative. Original dual-encoder reference: Covington, Adams and
Sargin, "Deep Neural Networks for YouTube Recommendations", RecSys 2016.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _tower(in_dim: int, layers: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear → ReLU → Dropout for every hidden width, then a final Linear (no activation)."""
    mods: list[nn.Module] = []
    width = in_dim
    for h in layers[:-1]:
        mods += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    mods.append(nn.Linear(width, layers[-1]))
    return nn.Sequential(*mods)


class TwoTowerNet(nn.Module):
    """User and item towers over id embeddings (+ item features) scored by dot product.

    Args:
        n_users, n_items: vocabulary sizes.
        n_factors: id embedding width.
        layers: tower widths; the last one is the output (retrieval) dimension ``k``.
        item_features: optional ``(n_items, n_features)`` float matrix (e.g. multi-hot genres);
            each row is mean-normalised and mapped through a learned ``(n_features, feature_dim)``
            embedding before the item tower.
        feature_dim: width of the feature embedding.
        dropout: dropout inside the towers.
        use_bias: add learned user and item biases (for explicit ratings).
        normalize: L2-normalise tower outputs (cosine scores; usual with a softmax temperature).
        init_std: std of the normal id embedding initialisation.

    Shapes:
        ``user_vectors(user_idx (B,)) -> (B, k)``;
        ``item_vectors(item_idx (B,)) -> (B, k)``, ``item_vectors() -> (n_items, k)``;
        ``forward(user_idx (B,), item_idx (B,)) -> (B,)``;
        ``score_all(user_idx (B,)) -> (B, n_items)``.
    """

    item_features: torch.Tensor | None

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int = 64,
        layers: Sequence[int] = (128, 64),
        *,
        item_features: torch.Tensor | None = None,
        feature_dim: int = 16,
        dropout: float = 0.0,
        use_bias: bool = False,
        normalize: bool = False,
        init_std: float = 0.05,
    ) -> None:
        super().__init__()
        if not layers:
            raise ValueError("two_tower needs at least one tower layer (the output width)")
        self.user_emb = nn.Embedding(n_users, n_factors)
        self.item_emb = nn.Embedding(n_items, n_factors)
        nn.init.normal_(self.user_emb.weight, 0.0, init_std)
        nn.init.normal_(self.item_emb.weight, 0.0, init_std)
        item_in = n_factors
        if item_features is not None:
            if item_features.shape[0] != n_items:
                raise ValueError(
                    f"item_features has {item_features.shape[0]} rows, expected {n_items}"
                )
            feats = item_features.float()
            # Mean over an item's features so items with many genres are not louder than others.
            feats = feats / feats.sum(dim=1, keepdim=True).clamp_min(1.0)
            self.register_buffer("item_features", feats)
            self.feature_emb: nn.Linear | None = nn.Linear(feats.shape[1], feature_dim, bias=False)
            item_in += feature_dim
        else:
            self.register_buffer("item_features", None)
            self.feature_emb = None
        self.user_tower = _tower(n_factors, layers, dropout)
        self.item_tower = _tower(item_in, layers, dropout)
        self.normalize = normalize
        self.use_bias = use_bias
        if use_bias:
            self.user_bias: nn.Embedding | None = nn.Embedding(n_users, 1)
            self.item_bias: nn.Embedding | None = nn.Embedding(n_items, 1)
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.item_bias.weight)
        else:
            self.user_bias = self.item_bias = None
        self.out_dim = int(layers[-1])

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, dim=-1) if self.normalize else x

    def user_vectors(self, user_idx: torch.Tensor) -> torch.Tensor:
        """User tower output: ``(B, k)``."""
        return self._finish(self.user_tower(self.user_emb(user_idx)))

    def item_vectors(self, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Item tower output for ``item_idx`` ``(B, k)``, or for every item ``(n_items, k)``."""
        x = self.item_emb.weight if item_idx is None else self.item_emb(item_idx)
        if self.feature_emb is not None and self.item_features is not None:
            f = self.item_features if item_idx is None else self.item_features[item_idx]
            x = torch.cat([x, self.feature_emb(f)], dim=-1)
        return self._finish(self.item_tower(x))

    def user_bias_of(self, user_idx: torch.Tensor) -> torch.Tensor:
        """User biases ``(B,)`` (zeros without biases)."""
        if self.user_bias is None:
            return torch.zeros(len(user_idx), device=user_idx.device)
        out: torch.Tensor = self.user_bias(user_idx).squeeze(-1)
        return out

    def item_bias_of(self, item_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Item biases ``(B,)`` or ``(n_items,)`` (zeros without biases)."""
        if self.item_bias is None:
            n = self.item_emb.num_embeddings if item_idx is None else len(item_idx)
            return torch.zeros(n, device=self.item_emb.weight.device)
        w = self.item_bias.weight.squeeze(-1)
        return w if item_idx is None else w[item_idx]

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs: ``(B,)`` = ``u · v (+ b_u + b_i)``."""
        dot = (self.user_vectors(user_idx) * self.item_vectors(item_idx)).sum(-1)
        if self.use_bias:
            dot = dot + self.user_bias_of(user_idx) + self.item_bias_of(item_idx)
        return dot

    def score_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user: ``(B, n_items)`` by one matmul."""
        scores = self.user_vectors(user_idx) @ self.item_vectors().T
        if self.use_bias:
            scores = scores + self.user_bias_of(user_idx)[:, None] + self.item_bias_of()[None, :]
        return scores


def in_batch_softmax_loss(
    user_vecs: torch.Tensor,
    item_vecs: torch.Tensor,
    item_idx: torch.Tensor,
    *,
    temperature: float = 1.0,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """In-batch sampled softmax loss over a batch of positive pairs (mean over the batch).

    Args:
        user_vecs: ``(B, k)`` user tower outputs.
        item_vecs: ``(B, k)`` item tower outputs of the positives (row ``b`` pairs with user ``b``).
        item_idx: ``(B,)`` item indices, used to mask repeats of the same item as negatives.
        temperature: softmax temperature ``τ``.
        log_q: optional ``(B,)`` log sampling probability of each batch item (logQ correction).
    """
    logits = (user_vecs @ item_vecs.T) / temperature
    if log_q is not None:
        logits = logits - log_q[None, :]
    # The same item appearing twice in the batch would be a false negative for its other user.
    same = item_idx[:, None] == item_idx[None, :]
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, torch.finfo(logits.dtype).min)
    target = torch.arange(len(item_idx), device=logits.device)
    return nn.functional.cross_entropy(logits, target)
