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
