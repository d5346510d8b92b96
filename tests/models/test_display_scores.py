"""Shown scores of rating models stay on the rating scale (recommend, new users, exports, HTTP).

A baseline-adjusted kNN prediction is ``b_ui`` plus a weighted residual, and it can pass the
scale's top: on a 1-10 file a new user who gave three items 10 saw "11.05" as a predicted
rating. Lists are still ranked on the uncapped scores; only the shown value is capped, as
``predict`` (and Surprise's ``predict(clip=True)``) always did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.batch import recommend_all
from recforge.data import Interactions
from recforge.models import create


def _one_to_ten(fan: bool = False) -> Interactions:
    """Six users × six items on a 1-10 scale: item i5 is rated 10 by everyone, the rest 2-4;
    ``fan``: a seventh user who gave i0-i2 a 10 and has not rated i5."""
    rows = [
        (f"u{u}", f"i{i}", 10.0 if i == 5 else 2.0 + (u + i) % 3)
        for u in range(6)
        for i in range(6)
    ]
    rows += [("fan", f"i{i}", 10.0) for i in range(3)] if fan else []
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    return Interactions.from_frame(frame, rating_scale=(1.0, 10.0))


@pytest.mark.parametrize("name", ["user_knn", "item_knn"])
def test_new_user_scores_are_capped_to_the_scale_in_the_model_order(name: str) -> None:
    model = create(name).fit(_one_to_ten())
    liked = {"i0": 10.0, "i1": 10.0, "i2": 10.0}
    raw = model.fold_in_scores(*model._fold_in_inputs(liked))
    assert raw.max() > 10.0  # the uncapped prediction passes the top: the cap has work to do
    rec = model.recommend_for_ratings(liked, k=3)
    assert rec.item_ids[0] == "i5"  # ranked on the uncapped scores
    assert float(rec.scores.max()) <= 10.0
    assert float(rec.scores.min()) >= 1.0
    shown = model.predict_for_ratings(liked, ["i5"])
    assert float(rec.scores[0]) == pytest.approx(float(shown[0]))


def test_known_user_lists_and_exports_show_capped_ratings_and_keep_unfilled_slots() -> None:
    model = create("item_knn").fit(_one_to_ten(fan=True))
    users = np.arange(model.n_users)
    raw = model.score_items(users)
    assert raw.max() > 10.0  # the fan's i5 passes the top uncapped
    idx, val = model.recommend_idx(users, k=6, exclude_seen=False)
    np.testing.assert_array_equal(val, np.clip(np.take_along_axis(raw, idx, 1), 1.0, 10.0))
    # u0 has seen every item, so excluding them leaves every slot unfilled: -inf, not 1.
    _, empty = model.recommend_idx(model.users_.index(["u0"]), k=2, exclude_seen=True)
    assert np.isneginf(empty).all()
    for _, _, scores in recommend_all(model, k=3, exclude_seen=False):
        assert float(scores.max()) <= 10.0
    fan = model.recommend(["fan"], k=1)[0]
    assert list(fan.item_ids) == ["i5"] and float(fan.scores[0]) == 10.0


def test_scores_that_are_not_ratings_are_left_as_they_are() -> None:
    data = _one_to_ten()
    # Normalised neighbour rows: scores below the scale's floor of 1, which a cap would lift.
    model = create("item_knn", {"feedback": "implicit", "normalize": True}).fit(data)
    assert not model.predicts_ratings
    liked = {"i0": 10.0, "i1": 10.0, "i2": 10.0}
    raw = model.fold_in_scores(*model._fold_in_inputs(liked))
    assert raw.max() < 1.0
    rec = model.recommend_for_ratings(liked, k=3)
    np.testing.assert_allclose(rec.scores, np.sort(raw[~np.isin(np.arange(6), [0, 1, 2])])[::-1])


@pytest.mark.parametrize("name", ["user_knn", "item_knn"])
def test_the_service_shows_capped_ratings_for_known_and_new_users(
    name: str, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from recforge.artifacts import save_run
    from recforge.serve import Settings, create_app

    run = save_run(tmp_path / name, create(name).fit(_one_to_ten(fan=True)))
    with TestClient(create_app(Settings(run=str(run)))) as client:
        for explain in ("false", "true"):
            known = client.get(f"/users/fan/recommendations?k=2&explain={explain}").json()
            new = client.post(
                f"/recommendations?explain={explain}",
                json={"ratings": {"i0": 10, "i1": 10, "i2": 10}, "k": 2},
            ).json()
            for answer in (known, new):
                scores = [it["score"] for it in answer["items"]]
                assert answer["items"][0]["item_id"] == "i5", answer
                assert max(scores) <= 10.0, answer
