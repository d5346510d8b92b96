"""explain=true on the API, the like threshold of new users' stars, and the model's own similar."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recforge.artifacts import load_run
from recforge.models.base import Recommender

from .conftest import client_for


def _fit(path: Path, name: str, **cfg: object) -> Path:
    from recforge.data.synthetic import make_interactions
    from recforge.models.registry import create

    data = make_interactions(150, 60, density=0.1, seed=3).interactions
    ids = data.items.ids.tolist()
    meta = pd.DataFrame({"title": [f"Movie {i}" for i in ids]}, index=pd.Index(ids, name="item_id"))
    data = dataclasses.replace(data, item_meta=meta)
    return create(name, cfg).fit(data).save(path)


@pytest.fixture(scope="module")
def ease_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _fit(tmp_path_factory.mktemp("runs") / "ease", "ease", reg=20.0)


@pytest.fixture(scope="module")
def ease(ease_run: Path) -> Recommender:
    return load_run(ease_run).model


@pytest.fixture
def client(ease_run: Path) -> Iterator[TestClient]:
    with client_for(run=str(ease_run)) as c:
        yield c


def test_known_user_because_matches_the_explanation(client: TestClient, ease: Recommender) -> None:
    uid = ease.users_.ids[4].item()
    plain = client.get(f"/users/{uid}/recommendations?k=5").json()
    assert all(it["because"] is None for it in plain["items"])
    body = client.get(f"/users/{uid}/recommendations?k=5&explain=true").json()
    assert [it["item_id"] for it in body["items"]] == [it["item_id"] for it in plain["items"]]
    history = {it["item_id"] for it in client.get(f"/users/{uid}/history").json()["items"]}
    for it in body["items"]:
        exp = ease.explain(uid, int(it["item_id"]), k=3)
        want = [(str(c.item_id), c.weight) for c in exp.because(3)]
        got = [(b["item_id"], b["weight"]) for b in it["because"]]
        assert [g[0] for g in got] == [w[0] for w in want]
        assert [g[1] for g in got] == pytest.approx([w[1] for w in want], abs=1e-5)
        assert {g[0] for g in got} <= history
        assert all(b["title"].startswith("Movie ") for b in it["because"])
        assert all(w > 0 for _, w in got) and [w for _, w in got] == sorted(
            (w for _, w in got), reverse=True
        )


def test_new_user_because_names_liked_rated_items(client: TestClient, ease: Recommender) -> None:
    ids = [str(i) for i in ease.items_.ids[:6].tolist()]
    ratings = {ids[0]: 5, ids[1]: 5, ids[2]: 4, ids[3]: 1}
    body = client.post("/recommendations", json={"ratings": ratings, "k": 5, "explain": True})
    assert body.status_code == 200, body.text
    items = body.json()["items"]
    assert len(items) == 5 and not {it["item_id"] for it in items} & set(ratings)
    for it in items:
        assert it["because"] is not None
        assert {b["item_id"] for b in it["because"]} <= {ids[0], ids[1], ids[2]}


def test_new_user_explain_may_come_in_the_query_as_on_get(
    client: TestClient, ease: Recommender
) -> None:
    ids = [str(i) for i in ease.items_.ids[:3].tolist()]
    body = {"ratings": dict.fromkeys(ids, 5), "k": 3}
    asked = client.post("/recommendations?explain=true", json=body)
    assert asked.status_code == 200, asked.text
    assert all(it["because"] for it in asked.json()["items"])
    plain = client.post("/recommendations", json=body).json()["items"]
    assert all(it["because"] is None for it in plain)
    assert client.post("/recommendations?explain=maybe", json=body).status_code == 422


def test_one_star_and_five_stars_give_different_lists(
    client: TestClient, ease: Recommender
) -> None:
    item = str(ease.items_.ids[7])
    loved = client.post("/recommendations", json={"ratings": {item: 5}, "k": 10}).json()
    hated = client.post("/recommendations", json={"ratings": {item: 1}, "k": 10}).json()
    loved_ids = [it["item_id"] for it in loved["items"]]
    hated_ids = [it["item_id"] for it in hated["items"]]
    assert loved_ids != hated_ids
    # 5★: what the model folds in from that item; 1★: no evidence, so the popular items.
    want = ease.recommend_for_ratings({ease.items_.ids[7]: 5.0}, k=10)
    assert loved_ids == [str(i) for i in want.item_ids]
    pop = np.asarray(ease.seen_.sum(axis=0)).ravel()
    order = [str(ease.items_.ids[i]) for i in np.argsort(-pop, kind="stable") if i != 7]
    assert hated_ids == order[:10] and item not in hated_ids
    # A rating model reads the stars itself: nothing is dropped there.
    from recforge.explain import liked_only

    assert liked_only(ease, {item: 1.0}) == {}


def test_similar_uses_the_models_own_ranking(client: TestClient, ease: Recommender) -> None:
    item = ease.items_.ids[3].item()
    r = client.get(f"/items/{item}/similar?k=5")
    assert r.status_code == 200, r.text
    want = ease.similar_items(item, 5)
    assert [it["item_id"] for it in r.json()["items"]] == [str(i) for i in want.item_ids]


def test_rating_and_occlusion_models_explain_too(mf_run: Path, tmp_path: Path) -> None:
    vae_run = _fit(tmp_path / "dae", "mult_dae", epochs=2)
    for run in (mf_run, vae_run):
        model = load_run(run).model
        uid = model.users_.ids[2].item()
        with client_for(run=str(run)) as c:
            body = c.get(f"/users/{uid}/recommendations?k=3&explain=true").json()
            assert all(isinstance(it["because"], list) for it in body["items"])
            ids = [str(i) for i in model.items_.ids[:4].tolist()]
            new = c.post(
                "/recommendations",
                json={"ratings": dict.fromkeys(ids, 5), "k": 3, "explain": True},
            ).json()
            assert all({b["item_id"] for b in it["because"]} <= set(ids) for it in new["items"])
