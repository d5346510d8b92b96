"""Sequences view: timeline order, ties, padding and training windows on hand-made histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.data.sequences import Sequences, pad_left
from recforge.errors import ConfigError


def _data() -> Interactions:
    # user "a": items 30 (t=5), 10 (t=1), 20 (t=5) -> order 10, 20, 30 (tie at t=5 by item id)
    # user "b": items 20 (t=2), 10 (t=3); user "c": one item 30.
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b", "c"],
            "item_id": [30, 10, 20, 20, 10, 30],
            "rating": [5.0, 3.0, 4.0, 1.0, 2.0, 5.0],
            "timestamp": [5, 1, 5, 2, 3, 9],
        }
    )
    return Interactions.from_frame(frame)


def test_histories_in_timeline_order_ties_by_item_id() -> None:
    data = _data()
    seq = Sequences.from_interactions(data)
    raw = {u: data.items.lookup(seq.history(int(data.users.index_one(u)))).tolist() for u in "abc"}
    assert raw == {"a": [10, 20, 30], "b": [20, 10], "c": [30]}
    assert seq.lengths.tolist() == [3, 2, 1]


def test_keep_mask_filters_events() -> None:
    data = _data()
    seq = Sequences.from_interactions(data, keep=data.rating >= 3)
    assert seq.lengths.tolist() == [3, 0, 1]


def test_padded_left_with_latest_last_and_truncated() -> None:
    data = _data()
    seq = Sequences.from_interactions(data)
    i10, i20, i30 = (int(data.items.index_one(x)) + 1 for x in (10, 20, 30))
    out = seq.padded([0, 1, 2], max_len=2)
    assert out.tolist() == [[i20, i30], [i20, i10], [0, i30]]
    wide = seq.padded([1], max_len=4)
    assert wide.tolist() == [[0, 0, i20, i10]]


def test_windows_shifted_every_event_a_target_once() -> None:
    seq = Sequences.from_lists([[0, 1, 2, 3, 4], [5, 6], [7]], n_items=8)
    inputs, targets = seq.windows(max_len=3)
    # user 0: targets 1..4 (+1 encoded 2..5) -> windows [3,4,5] (latest) and [pad, pad, 2]
    assert targets.tolist() == [[3, 4, 5], [0, 0, 2], [0, 0, 7]]
    assert inputs.tolist() == [[2, 3, 4], [0, 0, 1], [0, 0, 6]]


def test_windows_unshifted_for_masked_models() -> None:
    seq = Sequences.from_lists([[0, 1, 2, 3], [4]], n_items=5)
    inputs, targets = seq.windows(max_len=3, shift=False)
    assert targets.tolist() == [[2, 3, 4], [0, 0, 1], [0, 0, 5]]
    np.testing.assert_array_equal(inputs, targets)


def test_pad_left_rejects_zero_width() -> None:
    with pytest.raises(ConfigError, match="max_len"):
        pad_left(np.arange(3), np.array([0, 3]), np.array([0]), 0)


def test_large_random_windows_cover_each_event_once() -> None:
    rng = np.random.default_rng(0)
    lists = [rng.integers(0, 50, rng.integers(0, 40)) for _ in range(200)]
    seq = Sequences.from_lists(lists, n_items=50)
    inputs, targets = seq.windows(max_len=7)
    assert int((targets > 0).sum()) == sum(max(len(h) - 1, 0) for h in lists)
    # Every (input -> target) cell is a consecutive pair of some history.
    pairs = {(a, b) for h in lists for a, b in zip(h[:-1] + 1, h[1:] + 1, strict=True)}
    cells = targets > 0
    assert set(zip(inputs[cells].tolist(), targets[cells].tolist(), strict=True)) <= pairs


def test_window_priors_list_the_items_read_before_each_window() -> None:
    seq = Sequences.from_lists([[0, 1, 0, 2, 3, 4, 5, 1], [5, 6]], n_items=8)
    inputs, _ = seq.windows(max_len=2)
    # user 0's windows, latest first, read events (5, 6), (3, 4), (1, 2), (0); user 1 reads (0).
    assert inputs.tolist() == [[5, 6], [3, 4], [2, 1], [0, 1], [0, 6]]
    # Before them: events 0-4 (items 0, 1, 0, 2, 3), 0-2, 0, none; none for user 1 (+1 coded).
    priors = seq.window_priors(max_len=2)
    assert priors.tolist() == [[1, 2, 3, 4], [1, 2, 0, 0], [1, 0, 0, 0], [0] * 4, [0] * 4]
    unshifted = seq.window_priors(max_len=2, shift=False)
    assert unshifted[0].tolist() == [1, 2, 3, 4, 5]  # events 0-5 precede the last window (6, 7)


def test_window_priors_match_a_per_window_reading_on_random_histories() -> None:
    rng = np.random.default_rng(1)
    lists = [rng.integers(0, 30, rng.integers(0, 40)) for _ in range(80)]
    seq = Sequences.from_lists(lists, n_items=30)
    inputs, _ = seq.windows(max_len=6)
    priors = seq.window_priors(max_len=6)
    assert priors.shape[0] == inputs.shape[0]
    row = 0
    for h in lists:  # reference: slice each history by hand, latest window first
        n_targets = max(len(h) - 1, 0)
        for k in range(-(-n_targets // 6)):
            start = max(n_targets - (k + 1) * 6, 0)
            want = sorted({int(x) + 1 for x in h[:start]})
            got = priors[row][priors[row] > 0].tolist()
            assert got == want
            assert inputs[row][inputs[row] > 0][0] == h[start] + 1  # the window's first input
            row += 1
    assert row == inputs.shape[0]
