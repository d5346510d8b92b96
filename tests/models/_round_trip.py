"""Save/load round trips the model tests share."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recforge.models.base import Recommender


def assert_loads_identically(
    model: Recommender, path: Path, ratings: Mapping[Any, float]
) -> Recommender:
    """Save ``model`` to ``path``, load it back and assert the same scores for every user and
    the same new-user list (items and scores) for ``ratings``; returns the loaded model."""
    loaded = Recommender.load(model.save(path))
    users = np.arange(model.n_users)
    np.testing.assert_array_equal(loaded.score_items(users), model.score_items(users))
    want, got = (
        model.recommend_for_ratings(ratings, k=5),
        loaded.recommend_for_ratings(ratings, k=5),
    )
    np.testing.assert_array_equal(got.item_ids, want.item_ids)
    np.testing.assert_array_equal(got.scores, want.scores)
    return loaded
