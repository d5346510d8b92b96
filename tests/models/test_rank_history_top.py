"""MF, biased MF and ALS: a new user's ranking and its explanation in one call
(``rank_history_top``, the service's explained POST) equal the separate calls."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.models.registry import create
from recforge.testing import planted_explicit, planted_implicit


@pytest.mark.parametrize(
    ("name", "cfg", "implicit"),
    [
        ("mf", {"epochs": 3, "seed": 0, "verbose": False}, False),
        ("biased_mf", {"epochs": 3, "seed": 0, "verbose": False}, False),
        ("als", {"iterations": 3, "seed": 0}, False),
        ("als", {"iterations": 3, "seed": 0}, True),
    ],
)
def test_one_call_ranks_and_explains_as_the_separate_calls(
    name: str, cfg: dict[str, object], implicit: bool
) -> None:
    data = planted_implicit(3) if implicit else planted_explicit(3)
    model = create(name, cfg).fit(data.train)
    rng = np.random.default_rng(0)
    for _ in range(5):
        idx = rng.choice(model.n_items, 8, replace=False).astype(np.int64)
        vals = rng.integers(1, 6, 8).astype(np.float32)
        got = model.rank_history_top(idx, vals, 10, idx, 3, new_user=True)
        assert got is not None
        top, scores, weights = got
        ratings = dict(zip(model.items_.lookup(idx).tolist(), vals.tolist(), strict=True))
        want = model.recommend_for_ratings(ratings, 10)
        np.testing.assert_array_equal(model.items_.lookup(top), want.item_ids)
        np.testing.assert_allclose(scores, want.scores, rtol=1e-6)
        np.testing.assert_allclose(weights, model.explain_history(idx, vals, top)[1], rtol=1e-9)


def test_known_users_and_implicit_losses_rank_separately() -> None:
    model = create("biased_mf", {"epochs": 2, "verbose": False}).fit(planted_explicit(3).train)
    idx = np.arange(5, dtype=np.int64)
    assert model.rank_history_top(idx, np.ones(5, np.float32), 10, idx, 3) is None
    bpr = create("mf", {"epochs": 1, "loss": "bpr", "verbose": False})
    bpr.fit(planted_implicit(0).train)
    assert bpr.rank_history_top(idx, np.ones(5, np.float32), 10, idx, 3, new_user=True) is None
