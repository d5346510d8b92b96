"""Negative samplers: never a positive, right distributions, vectorised and seeded."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.errors import ConfigError, DataError
from recforge.train.sampling import NegativeSampler


def _random_positives(
    seed: int = 0, n_users: int = 50, n_items: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Heavy users (up to 90% of the catalogue) make collisions common for rejection sampling.
    counts = rng.integers(1, int(0.9 * n_items), n_users)
    users = np.repeat(np.arange(n_users), counts)
    items = np.concatenate([rng.choice(n_items, c, replace=False) for c in counts])
    return users, items


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
def test_never_returns_a_positive(kind: str) -> None:
    users, items = _random_positives()
    sampler = NegativeSampler(users, items, 50, 40, kind=kind, seed=1)  # type: ignore[arg-type]
    query = np.repeat(np.arange(50), 40)
    neg = sampler.sample(query, 5)
    assert neg.shape == (len(query), 5)
    positives = set(zip(users.tolist(), items.tolist(), strict=True))
    flat_u = np.repeat(query, 5)
    flat_i = neg.reshape(-1)
    assert flat_i.min() >= 0 and flat_i.max() < 40
    assert not any(
        (u, i) in positives for u, i in zip(flat_u.tolist(), flat_i.tolist(), strict=True)
    )


def test_is_positive_matches_a_set_lookup() -> None:
    users, items = _random_positives(3)
    sampler = NegativeSampler(users, items, 50, 40)
    positives = set(zip(users.tolist(), items.tolist(), strict=True))
    qu, qi = np.meshgrid(np.arange(50), np.arange(40), indexing="ij")
    expected = np.array(
        [(u, i) in positives for u, i in zip(qu.ravel().tolist(), qi.ravel().tolist(), strict=True)]
    )
    assert np.array_equal(sampler.is_positive(qu.ravel(), qi.ravel()), expected)


def test_uniform_is_uniform_over_the_free_items() -> None:
    # User 0 owns {1, 3, 4} of 6 items: free items are {0, 2, 5}, each with probability 1/3.
    sampler = NegativeSampler([0, 0, 0, 1], [1, 3, 4, 0], n_users=2, n_items=6, seed=0)
    draws = sampler.sample(np.zeros(30_000, dtype=np.int64)).ravel()
    assert set(np.unique(draws).tolist()) == {0, 2, 5}
    freq = np.bincount(draws, minlength=6)[[0, 2, 5]] / len(draws)
    assert np.allclose(freq, 1 / 3, atol=0.015)


def test_popularity_frequencies_follow_popularity() -> None:
    # Item j occurs (j + 1) * 10 times among other users; user 0 owns items 7 and 9.
    n_items = 10
    counts = (np.arange(n_items) + 1) * 10
    items = np.repeat(np.arange(n_items), counts)
    users = 1 + np.arange(len(items)) % 200  # spread over users 1..200
    users = np.concatenate([users, [0, 0]])
    items = np.concatenate([items, [7, 9]])
    sampler = NegativeSampler(users, items, 201, n_items, kind="popularity", alpha=1.0, seed=5)
    draws = sampler.sample(np.zeros(200_000, dtype=np.int64)).ravel()
    pop = np.bincount(items, minlength=n_items).astype(float)
    expected = pop.copy()
    expected[[7, 9]] = 0
    expected /= expected.sum()
    freq = np.bincount(draws, minlength=n_items) / len(draws)
    assert freq[7] == 0 and freq[9] == 0
    assert np.abs(freq - expected).max() < 0.005
    # And it really is popularity-shaped, not uniform: the most popular free item is ~8x the least.
    assert freq[8] > 5 * freq[0]


def test_alpha_flattens_popularity() -> None:
    items = np.repeat(np.arange(4), [1, 1, 1, 97])
    users = np.arange(len(items)) + 1
    s = NegativeSampler(users, items, len(items) + 1, 4, kind="popularity", alpha=0.5)
    p = s.probabilities
    assert p[3] / p[0] == pytest.approx(np.sqrt(97))


def test_user_with_every_item_gets_minus_one() -> None:
    sampler = NegativeSampler([0, 0, 0, 1], [0, 1, 2, 0], n_users=2, n_items=3)
    out = sampler.sample([0, 1], 4)
    assert np.all(out[0] == -1)
    assert set(out[1].tolist()) <= {1, 2}
    pop = NegativeSampler([0, 0, 0, 1], [0, 1, 2, 0], n_users=2, n_items=3, kind="popularity")
    assert np.all(pop.sample([0], 3) == -1)


def test_seeded_and_rng_override() -> None:
    users, items = _random_positives(1)
    a = NegativeSampler(users, items, 50, 40, seed=9).sample(np.arange(50), 3)
    b = NegativeSampler(users, items, 50, 40, seed=9).sample(np.arange(50), 3)
    c = NegativeSampler(users, items, 50, 40, seed=10).sample(np.arange(50), 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    s = NegativeSampler(users, items, 50, 40, seed=9)
    s.sample(np.arange(50), 3, rng=np.random.default_rng(0))  # does not advance s's own stream
    assert np.array_equal(s.sample(np.arange(50), 3), a)


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError):
        NegativeSampler([0], [0], 1, 2, kind="nope")  # type: ignore[arg-type]
    with pytest.raises(DataError):
        NegativeSampler([0, 1], [0], 2, 2)
    with pytest.raises(DataError):
        NegativeSampler([0], [5], 1, 2)
    with pytest.raises(ConfigError):
        NegativeSampler([0], [0], 1, 2).sample([0], 0)
