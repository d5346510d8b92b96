"""Seeded synthetic interaction data with planted latent structure.

Used by unit tests (models must recover what was planted) and scale benchmarks. The generative
model: user factors ``p_u`` and item factors ``q_i`` ~ N(0, 1/d); item popularity follows a power
law ``pop_i ∝ (rank_i)^(-alpha)``. Each user draws a number of interactions (log-normal around
``density × n_items``, at least ``min_per_user``) *without replacement* with probability
``∝ pop_i^beta · exp(p_u·q_i / temperature)`` (Gumbel top-k, vectorised per user chunk).
Explicit ratings are ``mu + b_u + b_i + 0.9·z(p_u·q_i) + noise`` (z: standardised over the
chosen pairs), rounded and clipped to the scale.

Two samplers draw the items (``method``):

* ``"exact"`` — the Gumbel top-k above over the full ``users × items`` key matrix, one user chunk
  at a time. Exact, but it draws and sorts ``n_items`` keys per user: ~3 ms a user at 27k items,
  so ML-20M size (138k users) would take 7 minutes.
* ``"sampled"`` — for large catalogues: each user draws ``oversample × count`` candidates from
  the popularity law ``∝ pop_i^beta`` (inverse CDF, with replacement), duplicates are merged and
  the ``count`` candidates with the largest ``p_u·q_i / temperature + Gumbel`` keys are kept
  (sampling-importance-resampling of the same target). Cost is linear in the number of events,
  not in ``users × items``: ML-20M size in well under a minute, and memory is bounded by the
  candidate chunk (``chunk_events``). A user whose candidates hold fewer distinct items than
  their count gets fewer events (rare with the default oversampling).
* ``"auto"`` (default) — exact up to 50M user × item cells, sampled above; every size used in
  the tests stays exact (and bit-identical to earlier releases).

``timestamps=False`` leaves the events without timestamps (no 8 bytes per event; see
:func:`recforge.data.interactions.no_timestamps`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from recforge.data.interactions import Interactions, no_timestamps
from recforge.data.vocab import IdVocab
from recforge.errors import ConfigError

SamplingMethod = Literal["auto", "exact", "sampled"]
#: Above this many user × item cells, ``method="auto"`` switches to the sampled generator.
EXACT_CELL_LIMIT = 50_000_000


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
    method: SamplingMethod = "auto",
    oversample: float = 3.0,
    chunk_events: int = 4_000_000,
    timestamps: bool = True,
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
        chunk_users: users per key matrix (``method="exact"``).
        method: ``"exact"``, ``"sampled"`` or ``"auto"`` (module docstring).
        oversample: candidates drawn per wanted event (``method="sampled"``).
        chunk_events: candidates per chunk (``method="sampled"``); bounds the temporaries at
            about 60 bytes per candidate.
        timestamps: draw random timestamps (int64); False stores none.
    """
    if n_users < 1 or n_items < 2 or n_factors < 1:
        raise ConfigError("make_interactions needs n_users >= 1, n_items >= 2, n_factors >= 1")
    if not 0 < density <= 1:
        raise ConfigError(f"density must be in (0, 1], got {density}")
    rng = np.random.default_rng(seed)
    planted = _planted(rng, n_users, n_items, n_factors)
    ranks = rng.permutation(n_items) + 1
    log_pop = (-popularity_alpha * np.log(ranks)).astype(np.float32)
    mean_count = max(density * n_items, min_per_user)
    counts = np.exp(rng.normal(np.log(mean_count) - 0.125, 0.5, n_users))
    counts = np.clip(np.round(counts), min(min_per_user, n_items), n_items).astype(np.int64)
    if method not in ("auto", "exact", "sampled"):
        raise ConfigError(f"method must be auto, exact or sampled, got {method!r}")
    if oversample < 1:
        raise ConfigError(f"oversample must be >= 1, got {oversample}")
    if method == "sampled" or (method == "auto" and n_users * n_items > EXACT_CELL_LIMIT):
        return _make_sampled(
            rng,
            planted,
            log_pop,
            counts,
            popularity_weight=popularity_weight,
            temperature=temperature,
            noise=noise,
            rating_scale=rating_scale,
            seed=seed,
            oversample=oversample,
            chunk_events=chunk_events,
            timestamps=timestamps,
        )
    return _make_exact(
        rng,
        planted,
        popularity_weight * log_pop,
        counts,
        temperature=temperature,
        noise=noise,
        rating_scale=rating_scale,
        seed=seed,
        chunk_users=chunk_users,
        timestamps=timestamps,
    )


def _planted(
    rng: np.random.Generator, n_users: int, n_items: int, n_factors: int
) -> tuple[npt.NDArray[np.float32], ...]:
    """The planted model ``(p, q, b_u, b_i)``: user and item factors, user and item biases."""
    # std d^-1/4 on both sides gives p·q unit variance whatever the rank.
    p = rng.normal(0, n_factors**-0.25, (n_users, n_factors)).astype(np.float32)
    q = rng.normal(0, n_factors**-0.25, (n_items, n_factors)).astype(np.float32)
    b_u = rng.normal(0, 0.3, n_users).astype(np.float32)
    b_i = rng.normal(0, 0.4, n_items).astype(np.float32)
    return p, q, b_u, b_i


def _make_exact(
    rng: np.random.Generator,
    planted: tuple[npt.NDArray[np.float32], ...],
    pop_logits: npt.NDArray[np.float32],
    counts: npt.NDArray[np.int64],
    *,
    temperature: float,
    noise: float,
    rating_scale: tuple[float, float] | None,
    seed: int,
    chunk_users: int,
    timestamps: bool,
) -> SyntheticData:
    """The ``"exact"`` generator (module docstring): a Gumbel key per (user, item) cell."""
    p, q, b_u, b_i = planted
    u, i = _exact_choices(rng, p, q, pop_logits, counts, temperature, chunk_users)
    rating = _ratings(rng, planted, u, i, rating_scale, noise)
    timestamp = (1_000_000_000 + rng.integers(0, 10_000_000, len(u))).astype(np.int64)
    frame = pd.DataFrame({"user_id": u + 1, "item_id": i + 1, "rating": rating})
    if timestamps:
        frame["timestamp"] = timestamp
    item_meta = _item_meta(q)
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


def _exact_choices(
    rng: np.random.Generator,
    p: npt.NDArray[np.float32],
    q: npt.NDArray[np.float32],
    pop_logits: npt.NDArray[np.float32],
    counts: npt.NDArray[np.int64],
    temperature: float,
    chunk_users: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(user, item)`` codes of the ``"exact"`` generator: each user's ``counts[u]`` items by
    Gumbel top-k over popularity plus affinity logits, one key matrix per user chunk."""
    n_users, n_items = len(p), len(q)
    users_out: list[npt.NDArray[np.int64]] = []
    items_out: list[npt.NDArray[np.int64]] = []
    for start in range(0, n_users, chunk_users):
        stop = min(start + chunk_users, n_users)
        logits = pop_logits[None, :] + (p[start:stop] @ q.T) / temperature
        gumbel = np.asarray(rng.gumbel(size=logits.shape), dtype=np.float32)
        keys = logits + gumbel
        order = np.argsort(-keys, axis=1)
        c = counts[start:stop]
        take = np.arange(n_items)[None, :] < c[:, None]
        rows, cols = np.nonzero(take)
        users_out.append(rows + start)
        items_out.append(order[rows, cols])
    return np.concatenate(users_out), np.concatenate(items_out)


def _ratings(
    rng: np.random.Generator,
    planted: tuple[npt.NDArray[np.float32], ...],
    u: npt.NDArray[np.int64],
    i: npt.NDArray[np.int64],
    rating_scale: tuple[float, float] | None,
    noise: float,
) -> npt.NDArray[np.float32]:
    """Integer ratings on the scale from biases plus standardised affinity (ones: implicit)."""
    if rating_scale is None:
        return np.ones(len(u), dtype=np.float32)
    p, q, b_u, b_i = planted
    lo, hi = rating_scale
    # Chosen items are biased towards high affinity; standardise so ratings use the whole scale.
    aff = np.einsum("nd,nd->n", p[u], q[i])
    aff = (aff - aff.mean()) / (aff.std() + 1e-9)
    centre = lo + 0.62 * (hi - lo)
    raw = centre + b_u[u] + b_i[i] + 0.9 * aff + rng.normal(0, noise, len(u))
    rating: npt.NDArray[np.float32] = np.clip(np.round(raw), lo, hi).astype(np.float32)
    return rating


def _item_meta(q: npt.NDArray[np.float32]) -> pd.DataFrame:
    genres = np.array(["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"])
    # Genre follows the dominant planted factor, so content models have real signal too.
    main = genres[np.argmax(q, axis=1) % len(genres)]
    n_items = len(q)
    return pd.DataFrame(
        {"title": [f"Item {j + 1}" for j in range(n_items)], "genres": [[g] for g in main]},
        index=pd.Index(np.arange(1, n_items + 1), name="item_id"),
    )


def _make_sampled(
    rng: np.random.Generator,
    planted: tuple[npt.NDArray[np.float32], ...],
    log_pop: npt.NDArray[np.float32],
    counts: npt.NDArray[np.int64],
    *,
    popularity_weight: float,
    temperature: float,
    noise: float,
    rating_scale: tuple[float, float] | None,
    seed: int,
    oversample: float,
    chunk_events: int,
    timestamps: bool,
) -> SyntheticData:
    """The ``"sampled"`` generator (module docstring): linear in events, bounded temporaries."""
    p, q, b_u, b_i = planted
    n_users, n_items = len(p), len(q)
    weights = np.exp(popularity_weight * (log_pop - log_pop.max()), dtype=np.float64)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    want = np.ceil(counts * oversample).astype(np.int64)
    u, i, aff = _sampled_choices(rng, p, q, cdf, counts, want, temperature, chunk_events)
    rating = _sampled_ratings(rng, b_u, b_i, u, i, aff, rating_scale, noise)
    del aff
    ts = (
        1_000_000_000 + rng.integers(0, 10_000_000, len(u), dtype=np.int64)
        if timestamps
        else no_timestamps(len(u))
    )
    # Raw ids are planted index + 1; the vocabularies hold the ids that occur, sorted (the same
    # encoding Interactions.from_frame gives), built by lookup tables instead of hashing.
    u_used, u_map = _used_codes(u, n_users)
    i_used, i_map = _used_codes(i, n_items)
    inter = Interactions(
        u_map[u],
        i_map[i],
        rating,
        ts,
        IdVocab(u_used + 1, name="user"),
        IdVocab(i_used + 1, name="item"),
        item_meta=_item_meta(q),
        rating_scale=rating_scale,
        source=f"synthetic(seed={seed}, sampled)",
    )
    return SyntheticData(inter, p[u_used], q[i_used], b_u[u_used], b_i[i_used])


def _sampled_choices(
    rng: np.random.Generator,
    p: npt.NDArray[np.float32],
    q: npt.NDArray[np.float32],
    cdf: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    want: npt.NDArray[np.int64],
    temperature: float,
    chunk_events: int,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """``(user, item, affinity)`` of the ``"sampled"`` generator: ``want[u]`` candidates per user
    drawn by popularity, repeats merged, the ``counts[u]`` best by Gumbel key over affinity kept."""
    n_users, n_items = len(p), len(q)
    # User chunks of about chunk_events candidates (at least one user each).
    bounds = np.searchsorted(np.cumsum(want), np.arange(chunk_events, want.sum(), chunk_events))
    starts = np.unique(np.concatenate([[0], bounds + 1]))
    starts = starts[starts < n_users]
    stops = np.append(starts[1:], n_users)
    u_parts: list[npt.NDArray[np.int32]] = []
    i_parts: list[npt.NDArray[np.int32]] = []
    a_parts: list[npt.NDArray[np.float32]] = []
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        m = want[start:stop]
        uu = np.repeat(np.arange(start, stop, dtype=np.int32), m)
        ii = np.searchsorted(cdf, rng.random(len(uu))).astype(np.int32)
        np.minimum(ii, n_items - 1, out=ii)  # guard the float edge at u == 1.0
        # Merge repeated (user, item) candidates: sort by the packed pair, keep the first.
        pair = uu.astype(np.int64) * n_items + ii
        pair.sort()
        first = np.ones(len(pair), dtype=bool)
        first[1:] = pair[1:] != pair[:-1]
        pair = pair[first]
        uu = (pair // n_items).astype(np.int32)
        ii = (pair % n_items).astype(np.int32)
        del pair, first
        aff = np.einsum("nd,nd->n", p[uu], q[ii])
        keys = aff / temperature + rng.gumbel(size=len(uu))
        # One sort orders by user, then by key descending: users are whole numbers and the
        # logistic squashes each key into (0, 1).
        order = np.argsort(uu + 1.0 / (1.0 + np.exp(np.clip(keys, -30.0, 30.0))), kind="stable")
        uu, ii, aff = uu[order], ii[order], aff[order]
        del order, keys
        group_start = np.searchsorted(uu, np.arange(start, stop, dtype=np.int32))
        rank = np.arange(len(uu)) - group_start[uu - start]
        keep = rank < counts[uu]
        u_parts.append(uu[keep])
        i_parts.append(ii[keep])
        a_parts.append(aff[keep].astype(np.float32))
    u = np.concatenate(u_parts)
    del u_parts
    i = np.concatenate(i_parts)
    del i_parts
    return u, i, np.concatenate(a_parts)


def _sampled_ratings(
    rng: np.random.Generator,
    b_u: npt.NDArray[np.float32],
    b_i: npt.NDArray[np.float32],
    u: npt.NDArray[np.int32],
    i: npt.NDArray[np.int32],
    aff: npt.NDArray[np.float32],
    rating_scale: tuple[float, float] | None,
    noise: float,
) -> npt.NDArray[np.float32]:
    """Like :func:`_ratings`, in chunks and standardising ``aff`` in place (memory)."""
    if rating_scale is None:
        return np.ones(len(u), dtype=np.float32)
    lo, hi = rating_scale
    aff -= aff.mean(dtype=np.float64)
    aff /= aff.std(dtype=np.float64) + 1e-9
    centre = lo + 0.62 * (hi - lo)
    rating = np.empty(len(u), dtype=np.float32)
    step = 1 << 23
    for s in range(0, len(u), step):  # chunked: no float64 temporaries over every event
        sl = slice(s, s + step)
        raw = centre + b_u[u[sl]] + b_i[i[sl]] + 0.9 * aff[sl] + rng.normal(0, noise, len(aff[sl]))
        rating[sl] = np.clip(np.round(raw), lo, hi)
    return rating


def _used_codes(
    codes: npt.NDArray[np.int32], n: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """The codes that occur (sorted) and the map from each code to its rank among them."""
    used = np.flatnonzero(np.bincount(codes, minlength=n))
    mapping = np.zeros(n, dtype=np.int32)
    mapping[used] = np.arange(len(used), dtype=np.int32)
    return used, mapping
