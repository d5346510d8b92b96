"""Recency weighting (``recency_tau``) of EASE and Mult-VAE/DAE histories.

Planted data: two item groups, A = items 0..19 and B = items 20..39. Background users only ever
interact within one group. "Switcher" users interacted with many A items long ago and with a few
B items recently. Without recency their (longer) A history dominates their row; weighting the
history by recency must turn their recommendations towards B.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.models.base import Recommender
from recforge.models.recency import (
    recency_matrix,
    recency_positions,
    row_sequence_weights,
    sequence_weights,
)
from recforge.models.registry import create
from recforge.testing import ModelContract

N_A = N_B = 20
N_SWITCHERS = 40


def _planted(seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users: list[int] = []
    items: list[int] = []
    times: list[int] = []
    uid = 0
    for group_start in (0, N_A):
        for _ in range(120):
            chosen = rng.choice(20, size=8, replace=False) + group_start
            users += [uid] * 8
            items += chosen.tolist()
            times += rng.permutation(8).tolist()
            uid += 1
    for _ in range(N_SWITCHERS):
        old = rng.choice(N_A, size=8, replace=False)
        new = rng.choice(N_B, size=3, replace=False) + N_A
        users += [uid] * 11
        items += old.tolist() + new.tolist()
        times += list(range(11))  # the B items are the latest three
        uid += 1
    frame = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": times})
    return Interactions.from_frame(frame, source="planted-recency")


def _switchers(data: Interactions) -> np.ndarray:
    return data.users.index(np.arange(240, 240 + N_SWITCHERS))


def _share_of_b_in_top(model: Recommender, data: Interactions, k: int = 5) -> float:
    idx, _ = model.recommend_idx(_switchers(data), k)
    raw = data.items.lookup(idx.ravel())
    return float(np.mean(raw >= N_A))


def _history_in_time_order(data: Interactions, u: int) -> dict[Any, float]:
    rows = np.flatnonzero(data.user_idx == u)
    order = np.lexsort((data.items.ids[data.item_idx[rows]], data.timestamp[rows]))
    rows = rows[order]
    return {data.items.ids[data.item_idx[r]]: 1.0 for r in rows}


# ---------------------------------------------------------------------- helpers
def test_positions_follow_time_then_item_id() -> None:
    frame = pd.DataFrame(
        {"user_id": [1, 1, 1, 2, 2], "item_id": [7, 3, 5, 9, 8], "timestamp": [2, 1, 2, 5, 6]}
    )
    data = Interactions.from_frame(frame)
    # user 1 timeline: 3 (t=1), 5 (t=2), 7 (t=2, larger id last); user 2: 9 then 8.
    np.testing.assert_array_equal(recency_positions(data), [0, 2, 1, 1, 0])
    w = recency_matrix(data, 2.0).toarray()
    assert w[data.users.index_one(1), data.items.index_one(3)] == pytest.approx(np.exp(-1.0))
    assert w[data.users.index_one(1), data.items.index_one(7)] == pytest.approx(1.0)
    np.testing.assert_allclose(sequence_weights(3, 1.0), np.exp([-2.0, -1.0, 0.0]), rtol=1e-6)
    np.testing.assert_array_equal(sequence_weights(2, None), [1.0, 1.0])
    np.testing.assert_allclose(
        row_sequence_weights(np.array([0, 2, 2, 3]), 1.0), np.exp([-1.0, 0.0, 0.0]), rtol=1e-6
    )


# ---------------------------------------------------------------------- recency must matter
@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("ease", {"reg": 10.0}),
        ("item_knn", {"feedback": "implicit", "k_neighbors": 20}),
        ("mult_vae", {"epochs": 30, "hidden": [32], "latent": 8, "batch_size": 50, "seed": 0}),
        ("mult_dae", {"epochs": 30, "hidden": [32], "latent": 8, "batch_size": 50, "seed": 0}),
    ],
)
def test_recency_turns_switchers_to_their_recent_group(name: str, config: dict[str, Any]) -> None:
    data = _planted()
    off = create(name, config).fit(data)
    on = create(name, {**config, "recency_tau": 1.0}).fit(data)
    share_off, share_on = _share_of_b_in_top(off, data), _share_of_b_in_top(on, data)
    assert share_off < 0.5  # their 8 old A items dominate an unweighted row
    assert share_on > 0.8
    assert share_on > share_off + 0.3


# ---------------------------------------------------------------------- persistence and fold-in
@pytest.fixture(scope="module", params=["ease", "mult_vae", "item_knn"])
def fitted(request: pytest.FixtureRequest) -> tuple[Recommender, Interactions]:
    data = _planted(1)
    config: dict[str, Any] = {"recency_tau": 3.0}
    if request.param == "mult_vae":
        config |= {"epochs": 5, "hidden": [16], "latent": 4, "batch_size": 50}
    if request.param == "item_knn":
        config |= {"feedback": "implicit"}
    return create(request.param, config).fit(data), data


def test_save_load_gives_identical_scores(
    fitted: tuple[Recommender, Interactions], tmp_path: Path
) -> None:
    model, data = fitted
    loaded = Recommender.load(model.save(tmp_path / "run"))
    assert loaded.config == model.config
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(loaded.score_items(users), model.score_items(users))


def test_fold_in_in_time_order_reproduces_a_trained_user(
    fitted: tuple[Recommender, Interactions],
) -> None:
    model, data = fitted
    for u in _switchers(data)[:5]:
        history = _history_in_time_order(data, int(u))
        scores = model.score_items(np.array([u]))[0]
        item_idx, vals = model._fold_in_inputs(history)
        np.testing.assert_allclose(model.fold_in_scores(item_idx, vals), scores, atol=1e-5)
        # The order is the timeline: reversing it weights the old A items most.
        reversed_history = dict(reversed(list(history.items())))
        r_idx, r_vals = model._fold_in_inputs(reversed_history)
        assert not np.allclose(model.fold_in_scores(r_idx, r_vals), scores, atol=1e-5)
        rec = model.recommend_for_ratings(history, k=3)
        expected = model.recommend_idx(np.array([u]), 3)[0][0]
        np.testing.assert_array_equal(rec.item_ids, data.items.lookup(expected))


def test_batch_fold_in_uses_the_stored_row_order(fitted: tuple[Recommender, Interactions]) -> None:
    import scipy.sparse as sp

    model, data = fitted
    u = int(_switchers(data)[0])
    item_idx, vals = model._fold_in_inputs(_history_in_time_order(data, u))
    row = sp.csr_matrix((vals, item_idx, np.array([0, len(item_idx)])), shape=(1, data.n_items))
    np.testing.assert_allclose(
        model.fold_in_scores_batch(row)[0], model.fold_in_scores(item_idx, vals), atol=1e-6
    )


def test_none_is_todays_behaviour() -> None:
    data = _planted(2)
    plain = create("ease", {"reg": 10.0}).fit(data)
    explicit_none = create("ease", {"reg": 10.0, "recency_tau": None}).fit(data)
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(plain.score_items(users), explicit_none.score_items(users))
    np.testing.assert_array_equal(plain.user_matrix_.toarray(), data.csr("binary").toarray())


# ---------------------------------------------------------------------- the shared contract
class TestEaseRecencyContract(ModelContract):
    model_name = "ease"
    config = {"recency_tau": 5.0}
    explicit = False


class TestMultVAERecencyContract(ModelContract):
    model_name = "mult_vae"
    config = {"epochs": 30, "hidden": [64], "latent": 16, "batch_size": 100, "recency_tau": 20.0}
    explicit = False


def test_vae_targets_are_binary_unless_recency_target() -> None:
    from recforge.models.vae import MultinomialELBO

    data = _planted(3)
    cfg: dict[str, Any] = {"epochs": 1, "hidden": [8], "latent": 2, "recency_tau": 2.0}
    for weighted in (True, False):
        model = create("mult_vae", {**cfg, "recency_target": weighted})
        seen: list[Any] = []
        setup = model.training_setup  # type: ignore[attr-defined]

        def spy(train: Interactions, setup: Any = setup, seen: list[Any] = seen) -> Any:
            out = setup(train)
            seen.append(out[1])
            return out

        model.training_setup = spy  # type: ignore[attr-defined]
        model.fit(data)
        # The encoder always reads the recency-weighted rows ...
        np.testing.assert_allclose(
            model.inputs_.toarray(),  # type: ignore[attr-defined]
            recency_matrix(data, 2.0).toarray(),
            rtol=1e-6,
        )
        # ... and the likelihood counts them too, or counts plain 1s.
        objective = seen[0]
        assert isinstance(objective, MultinomialELBO)
        assert (objective.targets is None) == weighted
        if objective.targets is not None:
            np.testing.assert_array_equal(objective.targets.values.numpy(), 1.0)


def test_knn_recency_is_item_knn_implicit_only() -> None:
    from recforge.errors import ConfigError

    data = _planted(4)
    with pytest.raises(ConfigError, match="recency_tau"):
        create("user_knn", {"feedback": "implicit", "recency_tau": 2.0}).fit(data)
    explicit = Interactions.from_frame(
        data.to_frame().assign(rating=4.0), rating_scale=(1.0, 5.0), source="explicit"
    )
    with pytest.raises(ConfigError, match="recency_tau"):
        create("item_knn", {"recency_tau": 2.0}).fit(explicit)


class TestItemKNNRecencyContract(ModelContract):
    model_name = "item_knn"
    config = {"feedback": "implicit", "recency_tau": 5.0}
    explicit = False
