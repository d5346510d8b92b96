"""``Recommender.item_embeddings()`` / ``user_embeddings()`` across the model families."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recforge.artifacts import load_run, save_run
from recforge.data.interactions import Interactions
from recforge.data.synthetic import make_interactions
from recforge.models.registry import create

#: model, config, expected (item width, user width) — None where it follows the config.
FACTOR_MODELS: list[tuple[str, dict[str, Any], tuple[int, int]]] = [
    ("mf", {"n_factors": 6}, (6, 6)),
    ("biased_mf", {"n_factors": 6}, (6, 6)),
    ("embedding_net", {"n_factors": 6, "hidden": [8]}, (6, 6)),
    ("ncf", {"variant": "gmf", "n_factors": 6}, (6, 6)),
    ("ncf", {"variant": "neumf", "n_factors": 6, "layers": [8, 4]}, (6 + 4, 6 + 4)),
    ("two_tower", {"n_factors": 6, "layers": [5]}, (5, 5)),
    ("als", {"n_factors": 6}, (6, 6)),
    ("autorec", {"variant": "item", "hidden": [7]}, (7, 7)),
    ("autorec", {"variant": "user", "hidden": [7, 3, 7]}, (7, 7)),
    ("mult_dae", {"hidden": [9], "latent": 4}, (9, 4)),
    ("mult_vae", {"hidden": [9], "latent": 4}, (9, 4)),
]


@pytest.fixture(scope="module")
def data() -> Interactions:
    return make_interactions(n_users=60, n_items=40, density=0.15, seed=2).interactions


@pytest.mark.parametrize(("name", "cfg", "widths"), FACTOR_MODELS)
def test_factor_models_expose_embeddings(
    name: str, cfg: dict[str, Any], widths: tuple[int, int], data: Interactions
) -> None:
    cfg = {**cfg, "epochs": 2} if name != "als" else {**cfg, "iterations": 2}
    model = create(name, cfg).fit(data)
    items, users = model.item_embeddings(), model.user_embeddings()
    assert items is not None and users is not None
    assert items.shape == (model.n_items, widths[0])
    assert users.shape == (model.n_users, widths[1])
    assert items.dtype == np.float32 and users.dtype == np.float32
    assert np.isfinite(items).all() and np.isfinite(users).all()


@pytest.mark.parametrize("name", ["popularity", "ease", "item_knn", "biases"])
def test_models_without_embeddings_return_none(name: str, data: Interactions) -> None:
    model = create(name).fit(data)
    assert model.item_embeddings() is None and model.user_embeddings() is None


def test_mf_embeddings_are_the_scoring_factors(data: Interactions) -> None:
    # With a linear output s = offset + p_u . q_i, so scores minus the dot are one constant.
    model = create("mf", {"n_factors": 4, "epochs": 2, "y_range": "none"}).fit(data)
    users = np.arange(model.n_users)
    p, q = model.user_embeddings(), model.item_embeddings()
    assert p is not None and q is not None
    rest = model.score_items(users) - p @ q.T
    np.testing.assert_allclose(rest, rest[0, 0], atol=1e-5)


def test_als_embeddings_are_the_factors(data: Interactions) -> None:
    model = create("als", {"n_factors": 4, "iterations": 2}).fit(data)
    p, q = model.user_embeddings(), model.item_embeddings()
    assert p is not None and q is not None
    np.testing.assert_allclose(model.score_items(np.arange(5)), p[:5] @ q.T, rtol=1e-5, atol=1e-6)


def test_two_tower_embeddings_are_the_tower_outputs(data: Interactions) -> None:
    model = create("two_tower", {"n_factors": 6, "layers": [5], "epochs": 2}).fit(data)
    q = model.item_embeddings()
    vecs = model.item_vectors()
    assert q is not None and vecs is not None
    np.testing.assert_allclose(vecs[:, : q.shape[1]], q, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("biased_mf", {"n_factors": 4, "epochs": 2}),
        ("mult_vae", {"hidden": [8], "latent": 3, "epochs": 2}),
    ],
)
def test_embeddings_survive_save_and_load(
    name: str, cfg: dict[str, Any], data: Interactions, tmp_path: Path
) -> None:
    model = create(name, cfg).fit(data)
    loaded = load_run(save_run(tmp_path / name, model)).model
    for side in ("item_embeddings", "user_embeddings"):
        before, after = getattr(model, side)(), getattr(loaded, side)()
        np.testing.assert_allclose(after, before, atol=1e-6)
