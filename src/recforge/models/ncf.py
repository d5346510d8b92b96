"""Neural Collaborative Filtering: GMF, MLP and NeuMF (He et al., 2017).

Reference: Xiangnan He, Lizi Liao, Hanwang Zhang, Liqiang Nie, Xia Hu and Tat-Seng Chua,
"Neural Collaborative Filtering", WWW 2017, https://doi.org/10.1145/3038912.3052569.

Three ``nn.Module`` s map index tensors to one raw score (a logit for implicit feedback, a
pre-activation for explicit ratings):

* :class:`GMF`   ``s(u, i) = h^T (p_u ⊙ q_i) + b``
* :class:`NCFMLP` ``s(u, i) = h^T φ_L(... φ_1([p_u; q_i])) + b``, ``φ_l(x) = ReLU(W_l x + b_l)``
* :class:`NeuMF` ``s(u, i) = h^T [p^G_u ⊙ q^G_i ; φ_L(... [p^M_u; q^M_i])] + b`` — separate
  embeddings for the two branches, fused only in the last (predict) layer.

The MLP layer sizes follow the paper's convention: ``layers[0]`` is the width of the concatenated
embeddings (so each side has ``layers[0] // 2`` factors) and ``layers[1:]`` are the hidden widths;
``layers=(128, 64)`` is the ``concat 128 → 64 → 1`` network of our reference material.

Scoring every item for a batch of users (ranking) never loops over items: GMF folds ``h`` into the
item matrix and does one matmul; the MLP splits its first layer as ``W [p; q] = W_u p + W_i q``, so
the item half is computed once for all items and broadcast-added to the user half, in user chunks
bounded by a memory budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn

#: Upper bound on (users × items × hidden) floats materialised at once by MLP full scoring.
_MLP_SCORE_BUDGET = 1 << 24


def _init_embedding(emb: nn.Embedding, std: float) -> None:
    # The paper initialises embeddings from N(0, 0.01); small values keep the early ReLUs alive.
    nn.init.normal_(emb.weight, 0.0, std)


class GMF(nn.Module):
    """Generalised matrix factorisation: ``s(u, i) = h^T (p_u ⊙ q_i) + b``.

    Args:
        n_users, n_items: vocabulary sizes.
        n_factors: embedding width ``d``.
        init_std: std of the normal embedding initialisation.

    Shapes:
        ``forward(user_idx (B,), item_idx (B,)) -> (B,)``;
        ``score_all(user_idx (B,)) -> (B, n_items)``.
    """

    def __init__(
        self, n_users: int, n_items: int, n_factors: int = 32, *, init_std: float = 0.01
    ) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(n_users, n_factors)
        self.item_emb = nn.Embedding(n_items, n_factors)
        self.predict = nn.Linear(n_factors, 1)
        _init_embedding(self.user_emb, init_std)
        _init_embedding(self.item_emb, init_std)

    def features(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """The element-wise product ``p_u ⊙ q_i``: ``(B, d)``."""
        out: torch.Tensor = self.user_emb(user_idx) * self.item_emb(item_idx)
        return out

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs: ``(B,)``."""
        out: torch.Tensor = self.predict(self.features(user_idx, item_idx)).squeeze(-1)
        return out

    def score_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user: ``(B, n_items)``, via ``p_u (Q diag(h))^T + b``."""
        weighted = self.item_emb.weight * self.predict.weight  # (n_items, d) * (1, d)
        out: torch.Tensor = self.user_emb(user_idx) @ weighted.T + self.predict.bias
        return out


class NCFMLP(nn.Module):
    """The NCF multi-layer perceptron: ``s(u, i) = h^T φ_L(...φ_1([p_u; q_i])) + b``.

    Args:
        n_users, n_items: vocabulary sizes.
        layers: ``layers[0]`` is the concatenated embedding width (each side ``layers[0] // 2``),
            ``layers[1:]`` the hidden widths (each Linear → ReLU → Dropout). At least two entries.
        dropout: dropout after each hidden layer (and on the concatenated embeddings).
        init_std: std of the normal embedding initialisation.

    Shapes:
        ``forward(user_idx (B,), item_idx (B,)) -> (B,)``;
        ``score_all(user_idx (B,)) -> (B, n_items)``.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        layers: Sequence[int] = (128, 64),
        *,
        dropout: float = 0.0,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        if len(layers) < 2 or layers[0] < 2 or layers[0] % 2:
            raise ValueError(
                f"NCF MLP layers need >= 2 entries and an even first width, got {list(layers)}"
            )
        d = layers[0] // 2
        self.user_emb = nn.Embedding(n_users, d)
        self.item_emb = nn.Embedding(n_items, d)
        _init_embedding(self.user_emb, init_std)
        _init_embedding(self.item_emb, init_std)
        self.drop = nn.Dropout(dropout)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(layers))
        self.predict = nn.Linear(layers[-1], 1)
        self.out_dim = int(layers[-1])
        self.first_width = int(layers[1])

    def features(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Last hidden activation ``φ_L(...)``: ``(B, layers[-1])``."""
        x: torch.Tensor = self.drop(
            torch.cat([self.user_emb(user_idx), self.item_emb(item_idx)], -1)
        )
        for layer in self.hidden:
            x = self.drop(torch.relu(layer(x)))
        return x

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs: ``(B,)``."""
        out: torch.Tensor = self.predict(self.features(user_idx, item_idx)).squeeze(-1)
        return out

    def features_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Last hidden activation for every (user, item): ``(B, n_items, layers[-1])``.

        The first layer is split into its user and item halves so the item half is computed once.
        Dropout is not applied (call under ``eval()``; this is a scoring path).
        """
        first = self.hidden[0]
        assert isinstance(first, nn.Linear)
        d = self.user_emb.embedding_dim
        w_u, w_i = first.weight[:, :d], first.weight[:, d:]
        user_part = self.user_emb(user_idx) @ w_u.T + first.bias  # (B, h1)
        item_part = self.item_emb.weight @ w_i.T  # (n_items, h1)
        x = torch.relu(user_part[:, None, :] + item_part[None, :, :])
        for layer in list(self.hidden)[1:]:
            x = torch.relu(layer(x))
        return x

    def score_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user: ``(B, n_items)``, in memory-bounded user chunks."""
        return _chunked_users(
            user_idx, self.item_emb.num_embeddings, self.first_width, self._score_chunk
        )

    def _score_chunk(self, user_idx: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.predict(self.features_all(user_idx)).squeeze(-1)
        return out


def _chunked_users(
    user_idx: torch.Tensor, n_items: int, width: int, fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Apply ``fn`` to user chunks sized so ``chunk × n_items × width`` stays under the budget."""
    chunk = max(1, _MLP_SCORE_BUDGET // max(1, n_items * width))
    if len(user_idx) <= chunk:
        return fn(user_idx)
    return torch.cat([fn(user_idx[s : s + chunk]) for s in range(0, len(user_idx), chunk)], dim=0)


class NeuMF(nn.Module):
    """Neural matrix factorisation: GMF and MLP branches fused in one predict layer.

    ``s(u, i) = h^T [p^G_u ⊙ q^G_i ; φ_L(...φ_1([p^M_u; q^M_i]))] + b``.

    Args:
        n_users, n_items: vocabulary sizes.
        n_factors: GMF embedding width.
        layers: MLP layer widths (see :class:`NCFMLP`).
        dropout: MLP dropout.
        init_std: std of the normal embedding initialisation.

    Shapes:
        ``forward(user_idx (B,), item_idx (B,)) -> (B,)``;
        ``score_all(user_idx (B,)) -> (B, n_items)``.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int = 32,
        layers: Sequence[int] = (128, 64),
        *,
        dropout: float = 0.0,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        self.gmf = GMF(n_users, n_items, n_factors, init_std=init_std)
        self.mlp = NCFMLP(n_users, n_items, layers, dropout=dropout, init_std=init_std)
        # The branches' own predict layers are unused here; NeuMF has one fused predict layer.
        self.predict = nn.Linear(n_factors + self.mlp.out_dim, 1)

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs: ``(B,)``."""
        x = torch.cat(
            [self.gmf.features(user_idx, item_idx), self.mlp.features(user_idx, item_idx)], dim=-1
        )
        out: torch.Tensor = self.predict(x).squeeze(-1)
        return out

    def score_all(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user: ``(B, n_items)``, in memory-bounded user chunks."""
        n_items = self.gmf.item_emb.num_embeddings
        return _chunked_users(user_idx, n_items, self.mlp.first_width, self._score_chunk)

    def _score_chunk(self, user_idx: torch.Tensor) -> torch.Tensor:
        d = self.gmf.item_emb.embedding_dim
        h_gmf, h_mlp = self.predict.weight[0, :d], self.predict.weight[0, d:]
        gmf_part = self.gmf.user_emb(user_idx) @ (self.gmf.item_emb.weight * h_gmf).T
        mlp_part = self.mlp.features_all(user_idx) @ h_mlp
        out: torch.Tensor = gmf_part + mlp_part + self.predict.bias
        return out

    @torch.no_grad()
    def load_pretrained(self, gmf: GMF, mlp: NCFMLP, alpha: float = 0.5) -> None:
        """Initialise from separately trained GMF and MLP models (He et al. 2017, §3.4.1).

        Embeddings and hidden layers are copied; the fused predict layer becomes
        ``h = [α h^GMF ; (1 - α) h^MLP]`` with bias ``α b^GMF + (1 - α) b^MLP``.
        """
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.gmf.load_state_dict(gmf.state_dict())
        self.mlp.load_state_dict(mlp.state_dict())
        self.predict.weight.copy_(
            torch.cat([alpha * gmf.predict.weight, (1.0 - alpha) * mlp.predict.weight], dim=1)
        )
        self.predict.bias.copy_(alpha * gmf.predict.bias + (1.0 - alpha) * mlp.predict.bias)
