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
