"""Negative samplers for implicit feedback: items a user has *not* interacted with.

Both samplers are vectorised over a whole batch of users and never return a training positive.

* ``uniform`` is *exact* and needs no rejection loop: with a user's positives sorted,
  ``p_0 < p_1 < …``, the ``r``-th free item (0-based) is ``r + #{m : p_m − m ≤ r}``. The shifted
  values ``p_m − m`` are non-decreasing, so one ``np.searchsorted`` over all users' shifted keys
  (``user · n_items + p_m − m``) maps uniform ranks to free items for a whole batch at once.
* ``popularity`` draws item ``i`` with probability ``∝ count_i^α`` (``α = 0.75`` as in word2vec;
  Mikolov et al. 2013), by inverse-CDF lookup, then redraws only the collisions with positives
  (membership via ``np.searchsorted`` on sorted ``user · n_items + item`` keys). Collisions left
  after ``max_rounds`` (users who own almost all the popular items) fall back to the exact
  uniform draw, so the result is still never a positive.

A user who interacted with every item has no negatives: those entries are ``-1`` and losses mask
them out.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from recforge.errors import ConfigError, DataError

SamplerKind = Literal["uniform", "popularity"]
IntArray = npt.NDArray[np.int64]

#: Draws from which the uniform sampler uses its compiled search (numba, when installed).
_COMPILED_FROM = 1 << 16


def _numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


class NegativeSampler:
    """Draws, for each requested user, items outside that user's training positives.

    Args:
        user_idx, item_idx: the positive (user, item) pairs (duplicates allowed).
        n_users, n_items: vocabulary sizes.
        kind: ``"uniform"`` over each user's free items, or ``"popularity"`` (``∝ count^alpha``).
        alpha: popularity exponent (0 gives uniform over items that occur at least once).
        seed: seed of the sampler's own ``numpy`` generator.
        max_rounds: redraw rounds for the popularity sampler before the uniform fallback.
    """

    def __init__(
        self,
        user_idx: npt.ArrayLike,
        item_idx: npt.ArrayLike,
        n_users: int,
        n_items: int,
        *,
        kind: SamplerKind = "uniform",
        alpha: float = 0.75,
        seed: int = 0,
        max_rounds: int = 20,
    ) -> None:
        if kind not in ("uniform", "popularity"):
            raise ConfigError(f"negative sampler: unknown kind {kind!r}; use uniform or popularity")
        u = np.asarray(user_idx, dtype=np.int64)
        i = np.asarray(item_idx, dtype=np.int64)
        if len(u) != len(i):
            raise DataError(f"negative sampler: {len(u)} users but {len(i)} items")
        if len(u) and (u.min() < 0 or u.max() >= n_users or i.min() < 0 or i.max() >= n_items):
            raise DataError("negative sampler: user or item index outside the vocabulary")
        self.n_users = int(n_users)
        self.n_items = int(n_items)
        self.kind: SamplerKind = kind
        self.alpha = float(alpha)
        self.max_rounds = int(max_rounds)
        self._rng = np.random.default_rng(seed)
        # Sorted unique pair keys == the flattened CSR of positives (by user, then item).
        self._keys: IntArray = np.unique(u * self.n_items + i)
        key_users = self._keys // self.n_items
        key_items = self._keys - key_users * self.n_items
        counts = np.bincount(key_users, minlength=self.n_users).astype(np.int64)
        self._indptr: IntArray = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._n_free: IntArray = self.n_items - counts
        rank_in_user = np.arange(len(self._keys), dtype=np.int64) - self._indptr[key_users]
        # Shifted keys (see module docstring); non-decreasing because p_m - m never decreases.
        self._shifted: IntArray = key_users * self.n_items + (key_items - rank_in_user)
        #: The compiled uniform draw's bucket index (_mf_kernels.uniform_buckets), when first used.
        self._buckets: tuple[IntArray, IntArray, npt.NDArray[np.int32]] | None = None
        pop = np.bincount(i, minlength=self.n_items).astype(np.float64)
        weights = np.where(pop > 0, pop**self.alpha, 0.0)
        total = weights.sum()
        self._cdf: npt.NDArray[np.float64] = (
            np.cumsum(weights) / total if total > 0 else np.linspace(0, 1, self.n_items + 1)[1:]
        )

    def reseed(self, seed: int) -> None:
        """Restart the sampler's random stream (e.g. to draw fixed validation negatives)."""
        self._rng = np.random.default_rng(seed)

    def get_rng_state(self) -> dict[str, Any]:
        """The random stream's position (JSON-serialisable; for training checkpoints)."""
        return dict(self._rng.bit_generator.state)

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Continue the random stream from :meth:`get_rng_state`'s value."""
        self._rng.bit_generator.state = state

    @property
    def probabilities(self) -> npt.NDArray[np.float64]:
        """Item proposal probabilities before excluding a user's positives (popularity kind)."""
        if self.kind == "uniform":
            return np.full(self.n_items, 1.0 / self.n_items)
        return np.diff(self._cdf, prepend=0.0)

    def is_positive(self, users: npt.ArrayLike, items: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Elementwise: is ``(users[k], items[k])`` a training positive?"""
        q = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        pos = np.searchsorted(self._keys, q)
        pos = np.minimum(pos, max(len(self._keys) - 1, 0))
        if len(self._keys) == 0:
            return np.zeros(q.shape, dtype=bool)
        hit: npt.NDArray[np.bool_] = self._keys[pos] == q
        return hit

    def sample(
        self, users: npt.ArrayLike, n: int = 1, *, rng: np.random.Generator | None = None
    ) -> IntArray:
        """``n`` negatives per user: an int64 array of shape ``(len(users), n)``.

        Entries are ``-1`` only for users with no free item at all. ``rng`` overrides the
        sampler's own generator (e.g. a fixed one for validation negatives).
        """
        if n < 1:
            raise ConfigError(f"negative sampler: n must be >= 1, got {n}")
        gen = self._rng if rng is None else rng
        u = np.repeat(np.asarray(users, dtype=np.int64).reshape(-1), n)
        out = self._uniform(u, gen) if self.kind == "uniform" else self._popularity(u, gen)
        return out.reshape(-1, n)

    def compiled_uniform(self, n_draws: int) -> bool:
        """Whether :meth:`sample` makes ``n_draws`` draws (users × n) by the compiled uniform
        search: then ``sample(users, n)`` is ``uniform_items(u, uniform_random(len(u)))`` with
        ``u = np.repeat(users, n)``, which a caller may split into ranges."""
        return self.kind == "uniform" and n_draws >= _COMPILED_FROM and _numba_available()

    def uniform_random(self, n_draws: int) -> npt.NDArray[np.float64]:
        """The uniform numbers the next ``n_draws`` uniform draws use (from the own stream)."""
        if _numba_available():
            self._bucket_index()  # here, before the draws are spread over threads
        return self._rng.random(n_draws)

    def uniform_items(self, users: IntArray, rand: npt.NDArray[np.float64]) -> IntArray:
        """Exact uniform negatives of ``users`` from the numbers ``rand`` (compiled; the GIL is
        released, and each draw depends only on its own user and number)."""
        from recforge.train._mf_kernels import uniform_negatives

        out: IntArray = uniform_negatives(
            self._shifted, self._indptr, self._n_free, users, rand, self.n_items,
            *self._bucket_index(),
        )  # fmt: skip
        return out

    def _bucket_index(self) -> tuple[IntArray, IntArray, npt.NDArray[np.int32]]:
        """The compiled draw's bucket index (``_mf_kernels.uniform_buckets``), built on first
        use (~1 ms for 80k events; built twice at worst by racing threads, the same arrays)."""
        if self._buckets is None:
            from recforge.train._mf_kernels import uniform_buckets

            self._buckets = uniform_buckets(self._shifted, self._indptr, self._n_free, self.n_items)
        return self._buckets

    def _uniform(self, users: IntArray, rng: np.random.Generator) -> IntArray:
        if len(users) >= _COMPILED_FROM and _numba_available():
            # A whole epoch's draws (the fused MF epoch): the same items from the same random
            # numbers, ~3x sooner than the vectorised numpy below.
            return self.uniform_items(users, rng.random(len(users)))
        free = self._n_free[users]
        ranks = np.floor(rng.random(len(users)) * np.maximum(free, 1)).astype(np.int64)
        base = users * self.n_items
        below = np.searchsorted(self._shifted, base + ranks, side="right") - self._indptr[users]
        items = ranks + below
        return np.where(free > 0, items, -1)

    def _draw_popular(self, size: int, rng: np.random.Generator) -> IntArray:
        drawn = np.searchsorted(self._cdf, rng.random(size), side="right")
        return np.minimum(drawn, self.n_items - 1).astype(np.int64)

    def _popularity(self, users: IntArray, rng: np.random.Generator) -> IntArray:
        items = self._draw_popular(len(users), rng)
        todo = np.flatnonzero(self.is_positive(users, items))
        for _ in range(self.max_rounds):
            if len(todo) == 0:
                break
            items[todo] = self._draw_popular(len(todo), rng)
            todo = todo[self.is_positive(users[todo], items[todo])]
        if len(todo):
            items[todo] = self._uniform(users[todo], rng)
        return items
