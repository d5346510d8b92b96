"""explain=true from a real `recforge serve` (uvicorn on loopback) under concurrent clients.

Every answer's ``because`` lists must be the model's own explanations, whichever request of the
16 concurrent ones it answers: known users (GET) and new users (POST), for an exact family
(EASE, explained on the event loop) and occlusion ones in worker threads (Mult-DAE, and NCF,
whose gradient fold-in once swapped parameters on the shared network under concurrent requests).
No timing is asserted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from recforge.artifacts import load_run
from recforge.explain import liked_only
from recforge.models.base import Recommender

from ._server import serve

CLIENTS = 16


def _fit(path: Path, name: str, density: float = 0.12, **cfg: object) -> Path:
    from recforge.data.synthetic import make_interactions
    from recforge.models.registry import create

    data = make_interactions(120, 50, density=density, seed=5).interactions
    ids = data.items.ids.tolist()
    meta = pd.DataFrame({"title": [f"Movie {i}" for i in ids]}, index=pd.Index(ids, name="item_id"))
    data = dataclasses.replace(data, item_meta=meta)
    return create(name, cfg).fit(data).save(path)


def _requests(
    model: Recommender, n_rated: int = 6
) -> list[tuple[str, str, dict[str, Any] | None, Any]]:
    """(method, path, body, user as the model sees it): known users, then new users who rate
    ``n_rated`` items each."""
    out: list[tuple[str, str, dict[str, Any] | None, Any]] = []
    for uid in model.users_.ids[:24].tolist():
        out.append(("GET", f"/users/{uid}/recommendations?k=5&explain=true", None, uid))
    items = [str(i) for i in model.items_.ids.tolist()]
    for n in range(24):
        ratings = {items[(3 * n + j) % len(items)]: float(1 + (n + j) % 5) for j in range(n_rated)}
        body = {"ratings": ratings, "k": 5, "explain": True}
        user = liked_only(model, {int(k): v for k, v in ratings.items()})
        out.append(("POST", "/recommendations", body, user))
    return out


async def _fetch_all(base: str, reqs: list[tuple[str, str, Any, Any]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        sem = asyncio.Semaphore(CLIENTS)

        async def one(method: str, path: str, body: Any) -> httpx.Response:
            async with sem:
                return await client.request(method, path, json=body)

        return await asyncio.gather(*(one(m, p, b) for m, p, b, _ in reqs))


@pytest.mark.parametrize(
    ("name", "cfg", "density", "n_rated"),
    [
        ("ease", {"reg": 20.0}, 0.12, 6),
        ("mult_dae", {"epochs": 3}, 0.12, 6),
        ("ncf", {"epochs": 2}, 0.12, 6),
        # Histories of ~20 items: long enough for Mult-VAE's one-pass rank-and-explain path
        # (known users and new users), which short histories never reach.
        ("mult_vae", {"epochs": 3}, 0.4, 24),
    ],
)
def test_concurrent_explained_answers_match_the_models_explanations(
    tmp_path: Path, name: str, cfg: dict[str, Any], density: float, n_rated: int
) -> None:
    run = _fit(tmp_path / name, name, density=density, **cfg)
    model = load_run(run).model
    reqs = _requests(model, n_rated)
    with serve(run) as base:
        answers = asyncio.run(_fetch_all(base, reqs))
    checked = 0
    for (_, _, _, user), r in zip(reqs, answers, strict=True):
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert items
        if isinstance(user, dict) and not user:
            # No liked rating: the most popular items, which nothing the user rated raised.
            assert all(it["because"] == [] for it in items)
            continue
        exps = model.explain_batch(user, [int(it["item_id"]) for it in items], k=3)
        for it, exp in zip(items, exps, strict=True):
            want = [(str(c.item_id), c.weight) for c in exp.because(3)]
            got = [(b["item_id"], b["weight"]) for b in it["because"]]
            assert [g[0] for g in got] == [w[0] for w in want]
            assert [g[1] for g in got] == pytest.approx([w[1] for w in want], abs=1e-4)
            assert all(b["title"] == f"Movie {b['item_id']}" for b in it["because"])
            checked += 1
    assert checked >= 100


@pytest.mark.parametrize("name", ["mult_vae", "ease"])
def test_ranked_and_explained_together_is_ranked_then_explained(tmp_path: Path, name: str) -> None:
    """`LiveBackend.recommend_explained` (Mult-VAE: ranking and `because` from one pass) serves
    the items, `because` lists and weights of `recommend` + `add_because`; scores to float32
    rounding (bit for bit where the model has no fused pass)."""
    from recforge.data.synthetic import make_interactions
    from recforge.models.registry import create
    from recforge.serve.live import LiveBackend
    from recforge.serve.settings import Settings

    data = make_interactions(80, 40, density=0.45, seed=2).interactions  # histories of ~18
    cfg: dict[str, Any] = {"epochs": 3} if name == "mult_vae" else {"reg": 20.0}
    run = create(name, cfg).fit(data).save(tmp_path / name)
    live = LiveBackend(run, Settings(run=str(run), web=False))
    fused = 0
    for uid in [str(u) for u in live.model.users_.ids.tolist()]:
        want = live.recommend(uid, 10, True)
        assert want is not None
        live.add_because(uid, want)
        got = live.recommend_explained(uid, 10, True)
        assert got is not None
        assert [it.item_id for it in got] == [it.item_id for it in want]
        assert [it.because for it in got] == [it.because for it in want]
        if name == "ease":
            assert [it.score for it in got] == [it.score for it in want]
        else:
            assert [it.score for it in got] == pytest.approx([it.score for it in want], abs=1e-5)
        fused += any(it.because for it in got)
    assert live.recommend_explained("no-such-user", 10, True) is None
    assert fused >= 40
    # New users (POST): the fused pass against ranking, then explaining (the pass disabled).
    ids = [str(i) for i in live.model.items_.ids.tolist()]
    rng = np.random.default_rng(0)
    for t in range(30):
        pick = rng.choice(len(ids), size=int(rng.integers(3, 25)), replace=False)
        ratings = {ids[i]: float(rng.integers(1, 6)) for i in pick}
        got = live.fold_in(ratings, 10, bool(t % 3), explain=True)
        live.model.rank_history_top = None  # type: ignore[attr-defined]
        try:
            want = live.fold_in(ratings, 10, bool(t % 3), explain=True)
        finally:
            del live.model.rank_history_top  # type: ignore[attr-defined]
        assert [it.item_id for it in got] == [it.item_id for it in want]
        assert [it.because for it in got] == [it.because for it in want]
        assert [it.score for it in got] == pytest.approx([it.score for it in want], abs=1e-5)
    if name == "mult_vae":  # the fused pass was the one that served
        from recforge.explain import history_of

        long = int(np.argmax(np.diff(live.model.seen_.indptr)))
        items, ratings = history_of(live.model, long)
        assert live.model.rank_history_top(items, ratings, 10, items, 3) is not None


def test_slow_model_work_runs_on_the_model_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Iterative fold-ins and their explanations queue on the backend's own threads
    (Settings.model_threads), not in the request thread pool."""
    import threading

    from recforge.serve import live as live_module
    from recforge.serve.live import LiveBackend

    from .conftest import client_for

    # A fold-in this small (synthetic data) would be fast enough for the event loop.
    monkeypatch.setattr(live_module, "INLINE_FOLD_IN_SECONDS", 0.0)
    run = _fit(tmp_path / "ncf", "ncf", epochs=1)
    seen: list[str] = []
    for name in ("fold_in", "add_because"):
        real = getattr(LiveBackend, name)

        def spy(self: LiveBackend, *args: Any, _real: Any = real, **kw: Any) -> Any:
            seen.append(threading.current_thread().name)
            return _real(self, *args, **kw)

        monkeypatch.setattr(LiveBackend, name, spy)
    with client_for(run=str(run)) as client:
        live = client.app.state.service.live  # type: ignore[attr-defined]
        assert not live.fold_in_inline
        seen.clear()  # start-up timed three fold-ins while loading (in a loader thread)
        uid = str(live.model.users_.ids[0])
        assert client.get(f"/users/{uid}/recommendations?explain=true").status_code == 200
        item = str(live.model.items_.ids[0])
        body = {"ratings": {item: 5.0}, "explain": True}
        assert client.post("/recommendations", json=body).status_code == 200
    assert len(seen) >= 2 and all(n.startswith("recforge-model") for n in seen), seen
