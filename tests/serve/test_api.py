"""Live-mode API: answers equal the model's own methods; errors have stable details."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recforge.artifacts import load_run
from recforge.errors import ConfigError
from recforge.serve import Settings
from recforge.serve.live import LiveBackend, retrieval_vectors

from .conftest import client_for


@pytest.fixture(scope="module")
def model(mf_run: Path):  # type: ignore[no-untyped-def]
    return load_run(mf_run).model


def test_health_reports_live_mode_counts_and_index(live: TestClient, model) -> None:  # type: ignore[no-untyped-def]
    body = live.get("/health").json()
    assert body["status"] == "ok" and body["mode"] == "live"
    assert body["model_name"] == "biased_mf"
    assert body["n_users"] == model.n_users and body["n_items"] == model.n_items
    assert body["index"]["mode"] == "exact"  # 60 items: far below the ANN threshold
    assert body["model_version"].startswith("mf-")


def test_user_recommendations_equal_model_recommend(live: TestClient, model) -> None:  # type: ignore[no-untyped-def]
    for uid in model.users_.ids[:5].tolist():
        want = model.recommend([uid], 10)[0]
        body = live.get(f"/users/{uid}/recommendations", params={"k": 10}).json()
        assert body["source"] == "live" and body["user_id"] == str(uid)
        assert [it["item_id"] for it in body["items"]] == [str(i) for i in want.item_ids]
        np.testing.assert_allclose([it["score"] for it in body["items"]], want.scores, rtol=1e-4)
        assert [it["rank"] for it in body["items"]] == list(range(1, 11))
        seen = set(
            live.get(f"/users/{uid}/history").json()["items"][i]["item_id"] for i in range(3)
        )
        assert not seen & {it["item_id"] for it in body["items"]}


def test_exclude_seen_false_matches_model(live: TestClient, model) -> None:  # type: ignore[no-untyped-def]
    uid = model.users_.ids[0].item()
    want = model.recommend([uid], 15, exclude_seen=False)[0]
    body = live.get(f"/users/{uid}/recommendations?k=15&exclude_seen=false").json()
    assert [it["item_id"] for it in body["items"]] == [str(i) for i in want.item_ids]


def test_titles_and_genres_in_responses(live: TestClient) -> None:
    body = live.get("/items/1/similar?k=3").json()
    assert body["item"] == {
        "item_id": "1",
        "title": "Toy Story",
        "year": 1991,
        "genres": ["Comedy"],
    }
    assert all(it["title"] for it in body["items"])


@pytest.mark.parametrize("uid", ["999999", "abc", "1.5"])
def test_unknown_user_is_404_with_stable_detail(live: TestClient, uid: str) -> None:
    for path in (f"/users/{uid}/recommendations", f"/users/{uid}/history"):
        r = live.get(path)
        assert r.status_code == 404
        assert r.json() == {"detail": f"unknown user: {uid}"}


def test_popular_fallback(mf_run: Path, model) -> None:  # type: ignore[no-untyped-def]
    with client_for(run=str(mf_run), fallback="popular") as client:
        body = client.get("/users/nobody/recommendations?k=5").json()
    counts = np.asarray(model.seen_.sum(axis=0)).ravel()
    top = np.argsort(-counts, kind="stable")[:5]
    assert body["source"] == "popular"
    assert [it["item_id"] for it in body["items"]] == [str(model.items_.ids[i]) for i in top]


@pytest.mark.parametrize("k", ["0", "-1", "1001", "ten"])
def test_bad_k_is_422(live: TestClient, model, k: str) -> None:  # type: ignore[no-untyped-def]
    uid = model.users_.ids[0]
    assert live.get(f"/users/{uid}/recommendations?k={k}").status_code == 422
    assert live.get(f"/items/1/similar?k={k}").status_code == 422
    r = live.post("/recommendations", json={"ratings": {"1": 5}, "k": k})
    assert r.status_code == 422


def test_k_over_configured_max(mf_run: Path, model) -> None:  # type: ignore[no-untyped-def]
    with client_for(run=str(mf_run), max_k=5) as client:
        r = client.get(f"/users/{model.users_.ids[0]}/recommendations?k=6")
    assert r.status_code == 422 and r.json() == {"detail": "k must be at most 5"}


def test_new_user_fold_in_equals_model(live: TestClient, model) -> None:  # type: ignore[no-untyped-def]
    ratings = {1: 5.0, 3: 4.0, 7: 1.0}
    want = model.recommend_for_ratings(ratings, 10)
    body = live.post(
        "/recommendations",
        json={"ratings": {str(k): v for k, v in ratings.items()} | {"no-such": 3}, "k": 10},
    ).json()
    got = [it["item_id"] for it in body["items"]]
    assert body["source"] == "fold_in" and body["user_id"] is None
    assert got == [str(i) for i in want.item_ids]
    assert len(got) == 10 and not {"1", "3", "7"} & set(got)


@pytest.mark.parametrize("threshold", [0.0, float("inf")])
def test_fold_in_same_answer_inline_or_in_thread(
    mf_run: Path,
    model,  # type: ignore[no-untyped-def]
    threshold: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # threshold 0: every fold-in counts as slow (worker thread); inf: every one inline
    monkeypatch.setattr("recforge.serve.live.INLINE_FOLD_IN_SECONDS", threshold)
    ratings = {2: 5.0, 4: 2.0}
    want = model.recommend_for_ratings(ratings, 5)
    with client_for(run=str(mf_run)) as client:
        live = client.app.state.service.live  # type: ignore[attr-defined]
        assert live.fold_in_inline is (threshold > 0)
        r = client.post("/recommendations", json={"ratings": {"2": 5.0, "4": 2.0}, "k": 5})
    assert r.status_code == 200
    assert [it["item_id"] for it in r.json()["items"]] == [str(i) for i in want.item_ids]


def test_new_user_errors(mf_run: Path) -> None:
    with client_for(run=str(mf_run), max_ratings=3, max_body_bytes=2048) as client:
        r = client.post("/recommendations", json={"ratings": {"x": 5, "9999": 4}})
        assert r.status_code == 422
        assert r.json() == {"detail": "none of the rated items is known to the model"}
        r = client.post("/recommendations", json={"ratings": {str(i): 3 for i in range(4)}})
        assert r.status_code == 422 and r.json() == {
            "detail": "too many ratings: at most 3 per request"
        }
        assert client.post("/recommendations", json={"ratings": {}}).status_code == 422
        assert client.post("/recommendations", json={"k": 3}).status_code == 422
        big = {"ratings": {str(i): 3 for i in range(400)}}
        r = client.post("/recommendations", json=big)
        assert r.status_code == 413 and r.json() == {"detail": "request body too large"}

        def chunks():  # type: ignore[no-untyped-def]
            yield b'{"ratings": {'
            for i in range(300):
                yield f'"{i}": 3, '.encode()
            yield b'"0": 1}}'

        r = client.post("/recommendations", content=chunks())
        assert r.status_code == 413


def test_similar_equals_model_and_errors(live: TestClient, model, pop_run: Path) -> None:  # type: ignore[no-untyped-def]
    want = model.similar_items(5, 8)
    body = live.get("/items/5/similar?k=8").json()
    assert [it["item_id"] for it in body["items"]] == [str(i) for i in want.item_ids]
    np.testing.assert_allclose([it["score"] for it in body["items"]], want.scores, rtol=1e-4)
    for bad in ("424242", "abc"):
        r = live.get(f"/items/{bad}/similar")
        assert r.status_code == 404 and r.json() == {"detail": f"unknown item: {bad}"}
    with client_for(run=str(pop_run)) as client:
        r = client.get("/items/5/similar")
        assert r.status_code == 404  # a 5xx is kept for server faults
        assert r.json()["detail"].startswith("this model has no item vectors")
        # No retrieval vectors either: recommendations come from model.recommend.
        assert client.get("/health").json()["index"] is None
        assert client.get("/users/1/recommendations?k=3").status_code == 200


def test_search_case_insensitive_prefix_first(live: TestClient) -> None:
    body = live.get("/items", params={"query": "toy sTORY"}).json()
    assert [it["title"] for it in body["items"]] == ["Toy Story"]
    titles = [it["title"] for it in live.get("/items?query=movie 1&limit=50").json()["items"]]
    assert titles and all("movie 1" in t.lower() for t in titles)
    assert live.get("/items?query=zzzz").json()["items"] == []
    assert live.get("/items?query=").status_code == 422


def test_history_is_training_items(live: TestClient, model) -> None:  # type: ignore[no-untyped-def]
    uid = model.users_.ids[2].item()
    u = model.users_.index([uid])[0]
    want = {str(model.items_.ids[i]) for i in model.seen_[u].indices}
    body = live.get(f"/users/{uid}/history").json()
    assert {it["item_id"] for it in body["items"]} == want and body["n_items"] == len(want)


def test_openapi_documents_every_endpoint(live: TestClient) -> None:
    paths = live.get("/openapi.json").json()["paths"]
    for p in (
        "/health",
        "/users/{user_id}/recommendations",
        "/users/{user_id}/history",
        "/recommendations",
        "/items",
        "/items/{item_id}/similar",
        "/admin/reload",
    ):
        assert p in paths
    get_recs = paths["/users/{user_id}/recommendations"]["get"]
    assert "404" in get_recs["responses"]
    # The hot routes answer with a pre-serialised response; their schema must still be documented.
    for path, method in (("/users/{user_id}/recommendations", "get"), ("/recommendations", "post")):
        ok = paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/Recommendations"}


def test_retrieval_vectors_reproduce_scores(model) -> None:  # type: ignore[no-untyped-def]
    found = retrieval_vectors(model)
    assert found is not None
    users, items, f = found
    np.testing.assert_allclose(
        f(users[:4] @ items.T), model.score_items(np.arange(4)), rtol=1e-4, atol=1e-4
    )


def test_wrong_derivation_falls_back(model, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import recforge.serve.live as live_mod

    real = live_mod._derive

    def broken(m):  # type: ignore[no-untyped-def]
        u, v, f = real(m)
        return u[::-1].copy(), v, f  # users shuffled: scores no longer match

    monkeypatch.setattr(live_mod, "_derive", broken)
    assert retrieval_vectors(model) is None


def test_hnsw_mode_serves_close_answers(mf_run: Path, model) -> None:  # type: ignore[no-untyped-def]
    backend = LiveBackend(mf_run, Settings(run=str(mf_run), index="hnsw"))
    assert backend.describe_index()["mode"] == "hnsw"  # type: ignore[index]
    uid = str(model.users_.ids[0])
    got = backend.recommend(uid, 10, True)
    assert got is not None and len(got) == 10
    want = model.recommend([model.users_.ids[0]], 10)[0]
    assert len({g.item_id for g in got} & {str(i) for i in want.item_ids}) >= 9


def test_settings_from_env_and_errors() -> None:
    s = Settings.from_env({"RECFORGE_RUN": "runs/x", "RECFORGE_MAX_K": "50", "RECFORGE_WEB": "0"})
    assert s.run == "runs/x" and s.max_k == 50 and s.web is False
    assert Settings.from_env({"RECFORGE_RUN": "a"}, run="b").run == "b"
    with pytest.raises(ConfigError, match="RECFORGE_MAX_K"):
        Settings.from_env({"RECFORGE_MAX_K": "5000"})
    with pytest.raises(ConfigError, match="nothing to serve"):
        Settings().check()


def test_settings_to_env_round_trips() -> None:
    # --workers hands the settings to worker processes through these variables
    s = Settings(run="runs/x", store="sqlite:///r.db", fallback="popular", admin=False, max_k=50)
    env = s.to_env()
    assert env["RECFORGE_ADMIN"] == "False" and env["RECFORGE_MAX_K"] == "50"
    assert Settings.from_env(env) == s
    assert "RECFORGE_RUN" not in Settings(store="sqlite:///r.db").to_env()


def test_model_json_response_is_the_models_json() -> None:
    from recforge.serve.responses import ModelJSONResponse
    from recforge.serve.schemas import Because, Recommendations, ScoredItem

    item = ScoredItem(
        item_id="i7",
        title="Ä film",
        rank=1,
        score=0.1 + 0.2,
        because=[Because(item_id="i2", weight=1e-5)],
    )
    answer = Recommendations(user_id=None, model_version="v1", source="fold_in", items=[item])
    response = ModelJSONResponse(answer)
    assert response.media_type == "application/json" and response.status_code == 200
    assert json.loads(response.body) == answer.model_dump(mode="json")
    assert json.loads(response.body)["items"][0]["score"] == 0.1 + 0.2  # shortest round trip
