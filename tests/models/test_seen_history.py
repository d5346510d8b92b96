"""seen_history: the training rating and timeline position of each seen (user, item) entry."""

from __future__ import annotations


def test_seen_history_keeps_the_mean_timeline_position_of_repeated_pairs() -> None:
    import pandas as pd

    from recforge.data.interactions import Interactions
    from recforge.models.base import seen_history

    # User a's timeline: x (t=1), y (t=2), x again (t=3), z (t=4): x sits at positions 0 and 2
    # (mean 1), y at 1, z at 3. User b: z (t=5) only. Entries are in (user, item) order.
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b"],
            "item_id": ["x", "y", "x", "z", "z"],
            "rating": [4.0, 3.0, 2.0, 5.0, 1.0],
            "timestamp": [1, 2, 3, 4, 5],
        }
    )
    data = Interactions.from_frame(frame)
    ratings, order = seen_history(data)
    seen = data.csr("binary")
    items = data.items.lookup(seen.indices)
    assert list(items) == ["x", "y", "z", "z"]
    assert order.tolist() == [1, 1, 3, 0]
    assert ratings.tolist() == [6.0, 3.0, 5.0, 1.0]  # csr("rating") sums a repeated pair


def test_entry_of_is_searchsorted_on_every_path() -> None:
    import numpy as np

    from recforge.models.base import _entry_of

    rng = np.random.default_rng(3)
    for space, n_keys in ((5_000, 900), (10**9, 900), (40, 40)):
        keys = np.unique(rng.integers(0, space, n_keys)).astype(np.int64)
        # Events: every key at least once, some repeated, in shuffled (timeline) order and sorted.
        queries = np.concatenate([keys, rng.choice(keys, 300)])
        for q in (rng.permutation(queries), np.sort(queries)):
            got = _entry_of(keys, q)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, np.searchsorted(keys, q))


def test_fit_computes_the_seen_history_on_first_read_and_refits_replace_it() -> None:
    import numpy as np
    import pandas as pd
    import pytest

    from recforge.data.interactions import Interactions
    from recforge.models.base import seen_history
    from recforge.models.registry import create

    def frame(rating: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "user_id": ["a", "a", "a", "b", "b"],
                "item_id": ["x", "y", "z", "z", "x"],
                "rating": [4.0, 3.0, rating, 1.0, 2.0],
                "timestamp": [3, 1, 2, 5, 4],
            }
        )

    model = create("popularity")
    with pytest.raises(AttributeError):
        _ = model.seen_order_  # unfitted: no history, no events
    first = Interactions.from_frame(frame(5.0))
    model.fit(first)
    assert "_seen_source_" in model.__dict__  # kept until read, not computed by fit
    ratings, order = seen_history(first)
    np.testing.assert_array_equal(model.seen_order_, order)
    np.testing.assert_array_equal(model.seen_ratings_, ratings)
    assert "_seen_source_" not in model.__dict__  # the events are let go once computed
    # A refit replaces the history of the previous fit (not the cached arrays of the first).
    second = Interactions.from_frame(frame(2.5))
    model.fit(second)
    np.testing.assert_array_equal(model.seen_ratings_, seen_history(second)[0])
    assert model.seen_ratings_.tolist() != ratings.tolist()
