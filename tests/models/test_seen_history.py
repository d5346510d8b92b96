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
