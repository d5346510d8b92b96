"""Unit tests of the seeded synthetic data generator."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data.synthetic import make_interactions
from recforge.errors import ConfigError


def test_same_seed_same_data_and_other_seed_differs() -> None:
    a = make_interactions(120, 80, seed=3)
    b = make_interactions(120, 80, seed=3)
    c = make_interactions(120, 80, seed=4)
    assert a.interactions.fingerprint() == b.interactions.fingerprint()
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    assert a.interactions.fingerprint() != c.interactions.fingerprint()


@pytest.mark.parametrize("density", [0.03, 0.1])
def test_density_roughly_as_asked(density: float) -> None:
    x = make_interactions(500, 400, density=density, min_per_user=2, seed=1).interactions
    assert x.density == pytest.approx(density, rel=0.1)


def test_min_per_user_and_no_duplicate_pairs() -> None:
    x = make_interactions(200, 100, density=0.02, min_per_user=6, seed=2).interactions
    assert x.user_counts().min() >= 6
    keys = x.user_idx.astype(np.int64) * x.n_items + x.item_idx
    assert len(np.unique(keys)) == len(x)  # drawn without replacement


@pytest.mark.parametrize("scale", [(1.0, 5.0), (1.0, 10.0)])
def test_rating_scale_respected(scale: tuple[float, float]) -> None:
    x = make_interactions(200, 100, rating_scale=scale, seed=5).interactions
    lo, hi = scale
    assert x.rating_scale == scale
    assert x.rating.min() >= lo and x.rating.max() <= hi
    np.testing.assert_array_equal(x.rating, np.round(x.rating))
    assert len(np.unique(x.rating)) >= 5  # not collapsed onto a few values


def test_implicit_mode() -> None:
    x = make_interactions(100, 60, rating_scale=None, seed=0).interactions
    assert not x.is_explicit
    assert x.rating_scale is None
    assert np.all(x.rating == 1.0)


def test_planted_structure_is_visible() -> None:
    data = make_interactions(300, 150, density=0.08, seed=7)
    x = data.interactions
    aff = data.true_affinity(np.arange(x.n_users))
    assert aff.shape == (x.n_users, x.n_items)
    chosen = aff[x.user_idx, x.item_idx]
    # Users pick items they like (low temperature), and rate them accordingly.
    assert chosen.mean() > aff.mean() + 1.0
    assert np.corrcoef(chosen, x.rating)[0, 1] > 0.5


def test_metadata_and_factor_alignment() -> None:
    data = make_interactions(50, 40, n_factors=3, seed=1)
    x = data.interactions
    assert data.user_factors.shape == (x.n_users, 3)
    assert data.item_factors.shape == (x.n_items, 3)
    assert x.item_meta is not None
    assert set(x.items.ids) <= set(x.item_meta.index)
    assert x.source == "synthetic(seed=1)"


@pytest.mark.parametrize(
    "kwargs", [{"n_users": 0}, {"n_items": 1}, {"density": 0.0}, {"density": 1.5}]
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        make_interactions(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the sampled (large-scale) path
def test_sampled_method_plants_structure_and_power_law() -> None:
    data = make_interactions(400, 3000, density=0.01, seed=3, method="sampled")
    x = data.interactions
    assert x.density == pytest.approx(0.01, rel=0.15)
    keys = x.user_idx.astype(np.int64) * x.n_items + x.item_idx
    assert len(np.unique(keys)) == len(x)  # no repeated (user, item)
    assert x.user_counts().min() >= 1
    # power law: the most popular 1% of items get several times their share of events
    counts = np.sort(x.item_counts())[::-1]
    assert counts[: x.n_items // 100].sum() / len(x) > 0.03
    aff = data.true_affinity(np.arange(x.n_users))
    chosen = aff[x.user_idx, x.item_idx]
    # weaker selection than the exact sampler (3x oversampling), but clearly there
    assert chosen.mean() > aff.mean() + 0.6
    assert np.corrcoef(chosen, x.rating)[0, 1] > 0.5
    # ground truth rows line up with the (compacted) vocabulary: index j is planted id j + 1
    assert len(data.item_factors) == x.n_items and len(data.user_factors) == x.n_users


def test_sampled_method_is_seeded_and_auto_switches_by_size() -> None:
    a = make_interactions(200, 500, density=0.02, seed=1, method="sampled").interactions
    b = make_interactions(200, 500, density=0.02, seed=1, method="sampled").interactions
    assert a.fingerprint() == b.fingerprint()
    exact = make_interactions(200, 500, density=0.02, seed=1).interactions  # auto: small -> exact
    assert (
        exact.fingerprint()
        == make_interactions(
            200, 500, density=0.02, seed=1, method="exact"
        ).interactions.fingerprint()
    )
    assert exact.fingerprint() != a.fingerprint()


def test_small_chunks_give_the_same_data_shape() -> None:
    # chunking bounds memory; every user is still generated exactly once
    x = make_interactions(300, 800, density=0.02, seed=2, method="sampled", chunk_events=500)
    assert x.interactions.n_users == 300
    assert np.all(np.diff(x.interactions.user_idx) >= 0)  # user-major, each user in one chunk


@pytest.mark.parametrize("method", ["exact", "sampled"])
def test_timestamps_optional(method: str) -> None:
    x = make_interactions(50, 40, seed=0, method=method, timestamps=False).interactions  # type: ignore[arg-type]
    assert not x.has_timestamps and x.nbytes == 12 * len(x)
    y = make_interactions(50, 40, seed=0, method=method).interactions  # type: ignore[arg-type]
    assert y.has_timestamps and y.timestamp.min() >= 1_000_000_000


def test_bad_method_arguments() -> None:
    with pytest.raises(ConfigError, match="method"):
        make_interactions(10, 10, method="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="oversample"):
        make_interactions(10, 10, oversample=0.5)
