"""Seeded synthetic interaction data with planted latent structure.

Used by unit tests (models must recover what was planted) and scale benchmarks. The generative
model: user factors ``p_u`` and item factors ``q_i`` ~ N(0, 1/d); item popularity follows a power
law ``pop_i ∝ (rank_i)^(-alpha)``. Each user draws a number of interactions (log-normal around
``density × n_items``, at least ``min_per_user``) *without replacement* with probability
``∝ pop_i^beta · exp(p_u·q_i / temperature)`` (Gumbel top-k, vectorised per user chunk).
Explicit ratings are ``mu + b_u + b_i + 0.9·z(p_u·q_i) + noise`` (z: standardised over the
chosen pairs), rounded and clipped to the scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError


@dataclass(frozen=True)
class SyntheticData:
    """Generated interactions and the ground truth that produced them."""

    interactions: Interactions
    user_factors: npt.NDArray[np.float32]
    item_factors: npt.NDArray[np.float32]
    user_bias: npt.NDArray[np.float32]
    item_bias: npt.NDArray[np.float32]

    def true_affinity(self, user_idx: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Planted affinity ``p_u · q_i`` of every item for the given user indices."""
        out: npt.NDArray[np.float32] = self.user_factors[user_idx] @ self.item_factors.T
        return out


def make_interactions(
    n_users: int = 300,
    n_items: int = 200,
    *,
    n_factors: int = 4,
    density: float = 0.08,
    min_per_user: int = 5,
    popularity_alpha: float = 0.8,
    popularity_weight: float = 0.5,
    temperature: float = 0.35,
    noise: float = 0.3,
    rating_scale: tuple[float, float] | None = (1.0, 5.0),
    seed: int = 0,
    chunk_users: int = 2048,
) -> SyntheticData:
    """Generate a seeded dataset with planted structure.

    Args:
        n_users, n_items, n_factors: sizes of the planted factor model.
        density: mean fraction of items each user interacts with.
        min_per_user: floor on interactions per user (capped at ``n_items``).
        popularity_alpha: power-law exponent of item popularity.
        popularity_weight: how much popularity (vs. affinity) drives which items are chosen.
        temperature: lower = choices follow the planted affinity more sharply.
        noise: std of Gaussian rating noise (explicit data).
        rating_scale: (low, high) for explicit integer ratings, or None for implicit data.
        seed: the only source of randomness.
    """
    if n_users < 1 or n_items < 2 or n_factors < 1:
        raise ConfigError("make_interactions needs n_users >= 1, n_items >= 2, n_factors >= 1")
    if not 0 < density <= 1:
        raise ConfigError(f"density must be in (0, 1], got {density}")
    rng = np.random.default_rng(seed)
    # std d^-1/4 on both sides gives p·q unit variance whatever the rank.
    p = rng.normal(0, n_factors**-0.25, (n_users, n_factors)).astype(np.float32)
    q = rng.normal(0, n_factors**-0.25, (n_items, n_factors)).astype(np.float32)
    b_u = rng.normal(0, 0.3, n_users).astype(np.float32)
    b_i = rng.normal(0, 0.4, n_items).astype(np.float32)
    ranks = rng.permutation(n_items) + 1
    log_pop = (-popularity_alpha * np.log(ranks)).astype(np.float32)

    mean_count = max(density * n_items, min_per_user)
    counts = np.exp(rng.normal(np.log(mean_count) - 0.125, 0.5, n_users))
    counts = np.clip(np.round(counts), min(min_per_user, n_items), n_items).astype(np.int64)

    users_out: list[npt.NDArray[np.int64]] = []
    items_out: list[npt.NDArray[np.int64]] = []
    for start in range(0, n_users, chunk_users):
        stop = min(start + chunk_users, n_users)
        logits = popularity_weight * log_pop[None, :] + (p[start:stop] @ q.T) / temperature
        gumbel = np.asarray(rng.gumbel(size=logits.shape), dtype=np.float32)
        keys = logits + gumbel
        order = np.argsort(-keys, axis=1)
        c = counts[start:stop]
        take = np.arange(n_items)[None, :] < c[:, None]
        rows, cols = np.nonzero(take)
        users_out.append(rows + start)
        items_out.append(order[rows, cols])
    u = np.concatenate(users_out)
    i = np.concatenate(items_out)
    if rating_scale is not None:
        lo, hi = rating_scale
        # Chosen items are biased towards high affinity; standardise so ratings use the whole scale.
        aff = np.einsum("nd,nd->n", p[u], q[i])
        aff = (aff - aff.mean()) / (aff.std() + 1e-9)
        centre = lo + 0.62 * (hi - lo)
        raw = centre + b_u[u] + b_i[i] + 0.9 * aff + rng.normal(0, noise, len(u))
        rating = np.clip(np.round(raw), lo, hi).astype(np.float32)
    else:
        rating = np.ones(len(u), dtype=np.float32)
    timestamp = (1_000_000_000 + rng.integers(0, 10_000_000, len(u))).astype(np.int64)
    frame = pd.DataFrame(
        {"user_id": u + 1, "item_id": i + 1, "rating": rating, "timestamp": timestamp}
    )
    genres = np.array(["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"])
    # Genre follows the dominant planted factor, so content models have real signal too.
    main = genres[np.argmax(q, axis=1) % len(genres)]
    item_meta = pd.DataFrame(
        {"title": [f"Item {j + 1}" for j in range(n_items)], "genres": [[g] for g in main]},
        index=pd.Index(np.arange(1, n_items + 1), name="item_id"),
    )
    inter = Interactions.from_frame(
        frame, item_meta=item_meta, rating_scale=rating_scale, source=f"synthetic(seed={seed})"
    )
    # Vocab is sorted over ids 1..n, so index j is planted item j for every id that occurs.
    return SyntheticData(
        inter,
        p[inter.users.ids - 1],
        q[inter.items.ids - 1],
        b_u[inter.users.ids - 1],
        b_i[inter.items.ids - 1],
    )
