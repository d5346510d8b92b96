"""loo-latest: leave-latest-out with full ranking; the validation carve is the event before."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.data.split import Split
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create


def _pairs(part: Interactions) -> set[tuple[int, int]]:
    frame = part.to_frame()
    return set(zip(frame["user_id"].tolist(), frame["item_id"].tolist(), strict=True))


@pytest.fixture(scope="module")
def tiny() -> Interactions:
    # user 1: items 4 (t1), 6 (t2), 9 and 8 tie at t4 -> 9 is last (test), 8 validation.
    # user 2: items 2 (t10), 1 (t70), 7 (t50) -> test 1, validation 7.  user 3: one event.
    rows = [
        (1, 4, 5, 1),
        (1, 6, 3, 2),
        (1, 9, 2, 4),
        (1, 8, 5, 4),
        (2, 2, 3, 10),
        (2, 1, 4, 70),
        (2, 7, 4, 50),
        (3, 4, 5, 1),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return Interactions.from_frame(frame, rating_scale=(1.0, 5.0), source="tiny")


def test_test_is_latest_and_validation_the_one_before(tiny: Interactions) -> None:
    proto = get_protocol("loo-latest")
    assert not proto.sampled and proto.primary_metric == "ndcg@10"
    ps = proto.split(tiny)
    assert isinstance(ps.split, Split)
    assert _pairs(ps.split.test) == {(1, 9), (2, 1)}
    inner = proto.validation_split(ps)
    assert isinstance(inner.split, Split)
    assert _pairs(inner.split.test) == {(1, 8), (2, 7)}
    assert not _pairs(inner.train) & _pairs(ps.split.test)


def test_full_ranking_hand_checked() -> None:
    # Test items: user 1 -> 2, user 2 -> 8, user 3 -> 8, user 4 -> 2 (each its latest event).
    rows = [
        (1, 4, 1), (1, 6, 2), (1, 2, 3),
        (2, 6, 1), (2, 4, 2), (2, 8, 3),
        (3, 2, 1), (3, 4, 2), (3, 6, 3), (3, 8, 4),
        (4, 8, 1), (4, 2, 2),
    ]  # fmt: skip
    data = Interactions.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    proto = get_protocol("loo-latest")
    ps = proto.split(data)
    out = proto.evaluate(create("popularity").fit(ps.train), ps)
    # Train popularity 4: 3, 6: 3, 2: 1, 8: 1 -> ranking 4, 6, 2, 8 (ties by index) minus seen:
    # user 1 {4, 6}: 2 at rank 1; user 2 {4, 6}: 8 at rank 2; user 3 {2, 4, 6}: 8 at rank 1;
    # user 4 {8}: 2 at rank 3.
    ndcg = (1 + 1 / np.log2(3) + 1 + 1 / np.log2(4)) / 4
    assert out["metrics"]["ndcg@10"] == pytest.approx(ndcg)
    assert out["metrics"]["hit_rate@10"] == pytest.approx(1.0)
    assert out["metrics"]["mrr@10"] == pytest.approx((1 + 0.5 + 1 + 1 / 3) / 4)
