"""Peer adapters: they fit on recforge data, recover planted structure, and score like the peer."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from recforge.bench import peers
from recforge.bench.peers import create_peer, peer_names, peer_status, peer_task
from recforge.data.split import Split, random_holdout
from recforge.data.synthetic import make_interactions
from recforge.errors import ConfigError
from recforge.eval.evaluate import evaluate_ranking, evaluate_ratings
from recforge.models.registry import create

if os.environ.get("RECFORGE_REQUIRE_PEERS"):
    # `make test` (and so CI) installs the peers extra: the reference comparisons must run there.
    import implicit  # noqa: F401
    import surprise  # noqa: F401
else:
    pytest.importorskip("surprise", reason="peers extra missing: pip install 'recforge[peers]'")
    pytest.importorskip("implicit", reason="peers extra missing: pip install 'recforge[peers]'")

RATING_PEERS = [n for n in peer_names() if peer_task(n) == "rating"]
RANKING_PEERS = [n for n in peer_names() if peer_task(n) == "ranking"]

#: Small configs so each fit takes well under a second on the tiny planted data.
SMALL: dict[str, dict[str, object]] = {
    "surprise-baselineonly": {},
    "surprise-svd": {"n_factors": 8, "n_epochs": 30, "lr_all": 0.01},
    "surprise-svdpp": {"n_factors": 8, "n_epochs": 20},
    "surprise-knnbaseline": {"k": 20},  # msd: many tied similarities, ties must match too
    "implicit-als": {"factors": 8, "regularization": 1.0, "iterations": 10, "alpha": 5.0},
    "implicit-bpr": {"factors": 8, "iterations": 60, "learning_rate": 0.05},
}


def _surprise_estimates(algo: object, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Surprise's own unclipped predictions; raw ids in our trainsets are recforge indices."""
    pairs = zip(users.tolist(), items.tolist(), strict=True)
    return np.array([algo.predict(u, i, clip=False).est for u, i in pairs])  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def explicit_split() -> Split:
    data = make_interactions(300, 200, n_factors=4, noise=0.2, seed=3).interactions
    return random_holdout(data, 0.2, seed=0)


@pytest.fixture(scope="module")
def implicit_split() -> Split:
    data = make_interactions(300, 200, n_factors=4, rating_scale=None, seed=4).interactions
    return random_holdout(data, 0.2, seed=0)


def test_names_tasks_and_status() -> None:
    assert peer_names() == [
        "surprise-baselineonly",
        "surprise-svd",
        "surprise-svdpp",
        "surprise-knnbaseline",
        "implicit-als",
        "implicit-bpr",
    ]
    assert (peer_names()[:4], peer_names()[4:]) == (RATING_PEERS, RANKING_PEERS)
    assert peer_status() == dict.fromkeys(peer_names(), "ok")
    with pytest.raises(ConfigError, match="unknown peer"):
        create_peer("surprise-nmf")
    with pytest.raises(ConfigError, match="n_factors"):
        create_peer("surprise-svd", {"n_factors": 0})


def test_missing_library_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    real = peers.importlib.import_module

    def fake(name: str, package: str | None = None) -> object:
        if name == "implicit":
            raise ImportError("No module named 'implicit'")
        return real(name, package)

    monkeypatch.setattr(peers.importlib, "import_module", fake)
    status = peer_status()
    assert status["surprise-svd"] == "ok"
    assert "recforge[peers]" in status["implicit-als"]
    with pytest.raises(ConfigError, match=r"recforge\[peers\]"):
        create_peer("implicit-bpr")


@pytest.mark.parametrize("name", RATING_PEERS)
def test_rating_peer_beats_global_mean(name: str, explicit_split: Split) -> None:
    model = create_peer(name, SMALL[name]).fit(explicit_split.train)
    rmse = evaluate_ratings(model, explicit_split.test).summary["rmse"]
    floor = evaluate_ratings(create("global_mean").fit(explicit_split.train), explicit_split.test)
    assert rmse < floor.summary["rmse"] - 0.1
    # Full-ranking scores exist for every item and agree with pairwise predictions.
    users = np.arange(5)
    scores = model.score_items(users)
    assert scores.shape == (5, model.n_items) and np.isfinite(scores).all()
    items = np.array([3, 17, 42, 99, 150])
    assert np.allclose(model.predict_idx(users, items), scores[users, items], atol=1e-4)


@pytest.mark.parametrize("name", RANKING_PEERS)
def test_ranking_peer_beats_popularity(name: str, implicit_split: Split) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # implicit's BLAS-thread warning must not fire
        model = create_peer(name, SMALL[name]).fit(implicit_split.train)
    ndcg = evaluate_ranking(model, implicit_split, ks=10).summary["ndcg@10"]
    pop = create("popularity").fit(implicit_split.train)
    assert ndcg > 1.3 * evaluate_ranking(pop, implicit_split, ks=10).summary["ndcg@10"]
    assert model.score_items(np.arange(3)).shape == (3, implicit_split.train.n_items)


def test_baselineonly_equals_recforge_biases(explicit_split: Split) -> None:
    peer = create_peer("surprise-baselineonly").fit(explicit_split.train)
    ours = create("biases").fit(explicit_split.train)
    users = np.arange(explicit_split.train.n_users)
    assert np.allclose(peer.score_items(users), ours.score_items(users), atol=1e-5)


@pytest.mark.parametrize("name", ["surprise-svd", "surprise-svdpp", "surprise-knnbaseline"])
def test_vectorised_scores_equal_surprise_predict(name: str, explicit_split: Split) -> None:
    model = create_peer(name, SMALL[name]).fit(explicit_split.train)
    algo = model.algo_  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    users = rng.integers(0, model.n_users, 40)
    items = rng.integers(0, model.n_items, 40)
    theirs = _surprise_estimates(algo, users, items)
    scores = model.score_items(users)[np.arange(40), items]
    assert np.allclose(scores, theirs, atol=1e-4)


def test_item_based_knn_matches_surprise(explicit_split: Split) -> None:
    model = create_peer("surprise-knnbaseline", {"k": 10, "user_based": False}).fit(
        explicit_split.train
    )
    algo = model.algo_  # type: ignore[attr-defined]
    users, items = np.arange(0, 60, 3), np.arange(0, 200, 10)
    theirs = _surprise_estimates(algo, users, items)
    assert np.allclose(model.score_items(users)[np.arange(20), items], theirs, atol=1e-4)


def test_peers_are_seeded(implicit_split: Split, explicit_split: Split) -> None:
    for name, split in (("surprise-svd", explicit_split), ("implicit-bpr", implicit_split)):
        a = create_peer(name, SMALL[name]).fit(split.train).score_items(np.arange(4))
        b = create_peer(name, SMALL[name]).fit(split.train).score_items(np.arange(4))
        c = create_peer(name, {**SMALL[name], "seed": 7}).fit(split.train).score_items(np.arange(4))
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)
