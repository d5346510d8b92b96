"""POST /recommendations with ordered ``items`` (click data, no ratings) for every kind of model."""

from __future__ import annotations

from pathlib import Path

import pytest

from recforge.artifacts import load_run

from .conftest import client_for, fit_run


@pytest.fixture(scope="module")
def sasrec_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_run(
        tmp_path_factory.mktemp("sasrec") / "run", "sasrec", epochs=2, max_len=20, hidden=16
    )


def test_items_follow_the_order_for_a_sequential_model(sasrec_run: Path) -> None:
    model = load_run(sasrec_run).model
    forward, backward = ["2", "4", "5", "1"], ["1", "5", "4", "2"]
    with client_for(run=str(sasrec_run)) as client:
        got = {}
        for order in (forward, backward):
            r = client.post("/recommendations", json={"items": order, "k": 5})
            assert r.status_code == 200, r.text
            got[tuple(order)] = r.json()["items"]
            want = model.recommend_for_items([int(i) for i in order], 5)
            assert [it["item_id"] for it in r.json()["items"]] == [str(i) for i in want.item_ids]
            assert not {it["item_id"] for it in r.json()["items"]} & set(order)
        scores = [[it["score"] for it in v] for v in got.values()]
        assert scores[0] != scores[1]  # the order changed the answer
        # ratings + items: the ratings are read in the order of items (all liked ratings, since
        # low ones are no evidence for an implicit model and would be dropped).
        r = client.post(
            "/recommendations",
            json={"ratings": {"1": 4, "2": 5, "4": 4, "5": 5}, "items": forward, "k": 5},
        )
        assert r.json()["items"] == got[tuple(forward)]


def test_items_are_implicit_positives_for_other_models(mf_run: Path) -> None:
    model = load_run(mf_run).model
    want = model.recommend_for_ratings({2: 5.0, 4: 5.0}, 5)  # top of the 1-5 scale
    with client_for(run=str(mf_run)) as client:
        r = client.post("/recommendations", json={"items": ["2", "4"], "k": 5})
    assert r.status_code == 200, r.text
    assert [it["item_id"] for it in r.json()["items"]] == [str(i) for i in want.item_ids]


def test_items_errors(sasrec_run: Path) -> None:
    with client_for(run=str(sasrec_run), max_ratings=3) as client:
        r = client.post("/recommendations", json={"items": ["x", "99999"]})
        assert r.status_code == 422
        assert r.json() == {"detail": "none of the rated items is known to the model"}
        assert client.post("/recommendations", json={"items": []}).status_code == 422
        r = client.post("/recommendations", json={"items": ["1", "2", "3", "4"]})
        assert r.json() == {"detail": "too many ratings: at most 3 per request"}
