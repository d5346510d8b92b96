"""Tests of the two-tower module, its in-batch softmax loss and the ``two_tower`` recommender."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from recforge.data.interactions import Interactions
from recforge.data.vocab import IdVocab
from recforge.errors import ConfigError
from recforge.models.registry import create
from recforge.models.two_tower import TwoTower, TwoTowerNet, genre_matrix, in_batch_softmax_loss
from recforge.testing import hit_rate, planted_explicit, planted_implicit, rating_rmse

N_USERS, N_ITEMS = 6, 9


def _features() -> torch.Tensor:
    f = torch.zeros(N_ITEMS, 4)
    f[torch.arange(N_ITEMS), torch.arange(N_ITEMS) % 4] = 1.0
    f[0, 3] = 1.0  # item 0 has two genres
    return f


# ---------------------------------------------------------------------- module
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("with_features", [False, True])
def test_score_all_is_tower_dot_product(use_bias: bool, with_features: bool) -> None:
    torch.manual_seed(0)
    m = TwoTowerNet(
        N_USERS,
        N_ITEMS,
        5,
        (7, 3),
        item_features=_features() if with_features else None,
        feature_dim=2,
        use_bias=use_bias,
        init_std=0.5,
    ).eval()
    u = torch.tensor([0, 4, 5])
    uv, iv = m.user_vectors(u), m.item_vectors()
    assert uv.shape == (3, 3) and iv.shape == (N_ITEMS, 3)
    expected = uv @ iv.T
    if use_bias:
        assert m.user_bias is not None and m.item_bias is not None
        torch.nn.init.normal_(m.user_bias.weight)
        torch.nn.init.normal_(m.item_bias.weight)
        expected = expected + m.user_bias.weight[u] + m.item_bias.weight[:, 0][None, :]
    full = m.score_all(u)
    torch.testing.assert_close(full, expected)
    pair = m(u.repeat_interleave(N_ITEMS), torch.arange(N_ITEMS).repeat(3))
    torch.testing.assert_close(pair.reshape(3, N_ITEMS), full)


def test_item_features_change_item_vectors_and_are_mean_normalised() -> None:
    torch.manual_seed(1)
    m = TwoTowerNet(
        N_USERS, N_ITEMS, 4, (3,), item_features=_features(), feature_dim=2, init_std=0.5
    )
    assert m.item_features is not None and m.feature_emb is not None
    torch.testing.assert_close(m.item_features[0], torch.tensor([0.5, 0.0, 0.0, 0.5]))
    # Items 1 and 5 share a genre; giving them the same id embedding makes their vectors equal,
    # and changing the genre embedding moves them while an item without that genre stays put.
    with torch.no_grad():
        m.item_emb.weight[5] = m.item_emb.weight[1]
    v = m.item_vectors()
    torch.testing.assert_close(v[1], v[5])
    before = v.detach().clone()
    with torch.no_grad():
        m.feature_emb.weight[:, 1] += 1.0
    after = m.item_vectors().detach()
    assert not torch.allclose(after[1], before[1])
    torch.testing.assert_close(after[2], before[2])


def test_normalize_gives_unit_vectors() -> None:
    m = TwoTowerNet(N_USERS, N_ITEMS, 4, (5, 3), normalize=True, init_std=0.5)
    torch.testing.assert_close(m.item_vectors().norm(dim=1), torch.ones(N_ITEMS))
    torch.testing.assert_close(
        m.user_vectors(torch.arange(N_USERS)).norm(dim=1), torch.ones(N_USERS)
    )


def test_feature_rows_must_match_items() -> None:
    with pytest.raises(ValueError, match="rows"):
        TwoTowerNet(N_USERS, N_ITEMS, item_features=torch.zeros(N_ITEMS + 1, 3))


# ---------------------------------------------------------------------- loss
def test_in_batch_softmax_hand_computed() -> None:
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    # logits [[2, 1], [0, 1]] / tau=0.5 -> [[4, 2], [0, 2]]
    expected = -0.5 * (
        (4 - math.log(math.exp(4) + math.exp(2))) + (2 - math.log(math.exp(0) + math.exp(2)))
    )
    loss = in_batch_softmax_loss(u, v, torch.tensor([0, 1]), temperature=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_in_batch_softmax_log_q_correction_subtracts_column_log_prob() -> None:
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    log_q = torch.log(torch.tensor([0.8, 0.2]))
    # logits [[2, 1], [0, 1]] - log_q per column.
    l00, l01 = 2 - math.log(0.8), 1 - math.log(0.2)
    l10, l11 = 0 - math.log(0.8), 1 - math.log(0.2)
    expected = -0.5 * (
        (l00 - math.log(math.exp(l00) + math.exp(l01)))
        + (l11 - math.log(math.exp(l10) + math.exp(l11)))
    )
    loss = in_batch_softmax_loss(u, v, torch.tensor([0, 1]), log_q=log_q)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_in_batch_softmax_masks_repeated_items() -> None:
    u = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    # Rows 0 and 1 are the same item: each sees only itself and item 2 as candidates.
    loss = in_batch_softmax_loss(u, v, torch.tensor([4, 4, 7]))
    r0 = 1 - math.log(math.exp(1) + math.exp(0))
    r2 = 3 - math.log(math.exp(0) + math.exp(0) + math.exp(3))
    assert loss.item() == pytest.approx(-(2 * r0 + r2) / 3, rel=1e-6)


# ---------------------------------------------------------------------- item features
def _vocab(ids: list[int]) -> IdVocab:
    return IdVocab(np.asarray(ids), name="item")


def test_genre_matrix_from_lists_strings_and_missing_items() -> None:
    meta = pd.DataFrame(
        {"genres": [["Drama", "Comedy"], "Action|Drama", [], "(no genres listed)", None]},
        index=pd.Index([10, 20, 30, 40, 50], name="item_id"),
    )
    # Vocab order differs from the frame's, and item 60 has no metadata row at all.
    mat = genre_matrix(meta, _vocab([20, 10, 60, 30, 40, 50]))
    assert mat is not None and mat.dtype == np.float32
    # Columns are the sorted genre names: Action, Comedy, Drama.
    expected = np.array(
        [[1, 0, 1], [0, 1, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=np.float32
    )
    np.testing.assert_array_equal(mat, expected)


def test_genre_matrix_absent_metadata_gives_none() -> None:
    items = _vocab([1, 2])
    assert genre_matrix(None, items) is None
    assert genre_matrix(pd.DataFrame({"title": ["a", "b"]}, index=[1, 2]), items) is None
    no_genres = pd.DataFrame({"genres": [[], []]}, index=[1, 2])
    assert genre_matrix(no_genres, items) is None


# ---------------------------------------------------------------------- recommender
def _fit(train: Interactions, **cfg: Any) -> TwoTower:
    model = create("two_tower", {"verbose": False, **cfg}).fit(train)
    assert isinstance(model, TwoTower)
    return model


def _without_meta(inter: Interactions) -> Interactions:
    return Interactions.from_frame(
        inter.to_frame(), users=inter.users, items=inter.items, rating_scale=inter.rating_scale
    )


def _net(model: TwoTower) -> TwoTowerNet:
    net = model.network()
    assert isinstance(net, TwoTowerNet)
    return net


@pytest.fixture(scope="module")
def explicit_model() -> TwoTower:
    return _fit(planted_explicit(2).train, epochs=15)


@pytest.fixture(scope="module")
def implicit_model() -> TwoTower:
    return _fit(planted_implicit(2).train, epochs=15, batch_size=256)


def test_explicit_beats_global_mean_and_uses_genres(explicit_model: TwoTower) -> None:
    data = planted_explicit(2)
    assert explicit_model.objective_kind() == "mse" and explicit_model.predicts_ratings
    net = _net(explicit_model)
    # Each synthetic item carries one genre; the item tower gets them as one-hot features.
    meta = data.train.item_meta
    assert meta is not None and net.item_features is not None
    names = sorted(meta["genres"].explode().unique())
    assert net.item_features.shape == (data.train.n_items, len(names))
    own = meta["genres"].reindex(data.train.items.ids).str[0].to_numpy()
    expected = (own[:, None] == np.asarray(names)[None, :]).astype(np.float32)
    np.testing.assert_array_equal(net.item_features.numpy(), expected)
    base = rating_rmse(create("global_mean").fit(data.train), data.test)
    assert rating_rmse(explicit_model, data.test) < 0.9 * base


def test_without_metadata_trains_on_ids_only() -> None:
    data = planted_explicit(2)
    model = _fit(_without_meta(data.train), epochs=15)
    assert _net(model).item_features is None and _net(model).feature_emb is None
    base = rating_rmse(create("global_mean").fit(data.train), data.test)
    assert rating_rmse(model, data.test) < 0.9 * base
    off = _fit(data.train, epochs=1, use_features=False)
    assert _net(off).item_features is None


def test_implicit_softmax_ranks_withheld_items_better_than_popularity(
    implicit_model: TwoTower,
) -> None:
    data = planted_implicit(2)
    assert implicit_model.objective_kind() == "softmax" and not implicit_model.predicts_ratings
    got = hit_rate(implicit_model, data, 10)
    pop = hit_rate(create("popularity").fit(data.train), data, 10)
    assert got >= pop + 0.3, f"two_tower hit-rate@10 {got:.3f} vs popularity {pop:.3f}"
    # Normalised towers: the scores are cosines.
    scores = implicit_model.score_items(np.arange(10))
    assert np.abs(scores).max() <= 1.0 + 1e-5


@pytest.mark.parametrize("which", ["explicit", "implicit"])
def test_item_vectors_consistent_with_score_items(
    which: str, explicit_model: TwoTower, implicit_model: TwoTower
) -> None:
    model = explicit_model if which == "explicit" else implicit_model
    users = np.arange(0, model.n_users, 7)
    items = model.item_vectors()
    assert items is not None
    # Explicit models carry their biases in two extra columns: [v; b_i; 1] and [u; 1; b_u].
    width = _net(model).out_dim + (2 if which == "explicit" else 0)
    assert items.shape == (model.n_items, width)
    raw = model.user_vectors(users) @ items.T
    offset = model.global_mean_ if which == "explicit" else 0.0
    np.testing.assert_allclose(model.score_items(users), raw + offset, rtol=1e-5, atol=1e-5)
    # ... and pairwise predictions (the network's forward pass) agree with both.
    u = np.repeat(users[:5], 3)
    i = np.tile([0, 5, 9], 5)
    np.testing.assert_allclose(
        model.predict_idx(u, i), model.score_items(users[:5])[:, [0, 5, 9]].ravel(), atol=1e-5
    )
    # Top-1 by inner product over item_vectors is the model's own top-1.
    top_ip = np.argmax(raw, axis=1)
    top_rec, _ = model.recommend_idx(users, 1, exclude_seen=False)
    np.testing.assert_array_equal(top_rec[:, 0], top_ip)


def test_log_q_correction_is_configurable() -> None:
    data = planted_implicit(2)
    with_q = _fit(data.train, epochs=2, batch_size=256)
    without = _fit(data.train, epochs=2, batch_size=256, log_q=False)
    # Same seed and data: only the loss differs, so the learned scores must differ.
    assert not np.allclose(with_q.score_items(np.arange(5)), without.score_items(np.arange(5)))


def test_save_load_identical_scores_with_features(explicit_model: TwoTower, tmp_path: Path) -> None:
    loaded = TwoTower.load(explicit_model.save(tmp_path / "run"))
    assert isinstance(loaded, TwoTower)
    users = np.arange(explicit_model.n_users)
    np.testing.assert_array_equal(loaded.score_items(users), explicit_model.score_items(users))
    loaded_vecs, vecs = loaded.item_vectors(), explicit_model.item_vectors()
    assert loaded_vecs is not None and vecs is not None
    np.testing.assert_array_equal(loaded_vecs, vecs)
    assert _net(loaded).item_features is not None


def test_implicit_fold_in_recovers_a_training_users_taste(implicit_model: TwoTower) -> None:
    data = planted_implicit(2)
    hits = 0
    users = data.target_users[:30]
    csr = data.train.csr()
    for u in users:
        rated = data.train.items.lookup(csr.indices[csr.indptr[u] : csr.indptr[u + 1]])
        rec = implicit_model.recommend_for_ratings(dict.fromkeys(rated.tolist(), 1.0), k=10)
        hits += int(data.train.items.ids[data.target_item[u]] in set(rec.item_ids.tolist()))
    pop = hit_rate(create("popularity").fit(data.train), data, 10)
    assert hits / len(users) >= pop + 0.2


def test_bad_layers_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="layers"):
        create("two_tower", {"layers": ()})
