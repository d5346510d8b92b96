"""Every registered model runs the shared contract (recforge.testing.ModelContract).

Add one small class per model: ``model_name``, fast ``config`` overrides, ``explicit``, and any
threshold the model needs changed (with a comment saying why).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recforge.data.interactions import Interactions
from recforge.models import registry
from recforge.models.base import Recommender
from recforge.models.baselines import Biases, Popularity
from recforge.testing import ModelContract, _FitOutcome


class TestGlobalMean(ModelContract):
    model_name = "global_mean"
    explicit = True
    # Every item ties, so it cannot rank; and it *is* the RMSE baseline (ratio exactly 1).
    check_ranking = False
    max_rmse_ratio = 1.0


class TestBiases(ModelContract):
    model_name = "biases"
    explicit = True


class TestPopularity(ModelContract):
    model_name = "popularity"
    explicit = False
    # It is the reference ranking, so it can only tie with itself.
    hit_rate_margin = 0.0


# ---------------------------------------------------------------------- the contract checks itself
# Deliberately broken models: each must trip the check written for its defect, so a contract
# that silently stopped checking would fail here.


class _Unseeded(Biases):
    name = "_unseeded"

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        super()._fit(train, valid)
        self.item_bias_ = self.item_bias_ + np.random.default_rng().normal(0, 0.1, train.n_items)


class _ForgetsUsers(Biases):
    name = "_forgets_users"

    def set_state(self, state: dict[str, np.ndarray]) -> None:  # type: ignore[override]
        super().set_state(state)
        self.user_bias_ = np.zeros_like(self.user_bias_)


class _Inconsistent(Biases):
    name = "_inconsistent"

    def predict_idx(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:  # type: ignore[override]
        return super().predict_idx(user_idx, item_idx) + np.float32(0.25)


class _NotSelf(Biases):
    name = "_not_self"

    def fit(self, train: Interactions, valid: Interactions | None = None) -> None:  # type: ignore[override]
        super().fit(train, valid)


class _Shuffled(Popularity):
    name = "_shuffled"

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.item_popularity_ = np.random.default_rng(0).random(train.n_items)


def _fitted_contract(
    monkeypatch: pytest.MonkeyPatch, cls: type[Recommender], *, explicit: bool = True
) -> tuple[ModelContract, Recommender, object]:
    monkeypatch.setitem(registry._MODELS, cls.name, f"{__name__}:{cls.__name__}")
    contract = type(
        f"Contract{cls.__name__}", (ModelContract,), {"model_name": cls.name, "explicit": explicit}
    )
    data = contract.known_answer_data()
    model = contract.make_model()
    returned = contract.fit_model(model, data.train)
    return contract(), model, returned


def test_contract_catches_nondeterministic_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    contract, model, _ = _fitted_contract(monkeypatch, _Unseeded)
    with pytest.raises(AssertionError):
        contract.test_same_seed_gives_identical_scores(model, contract.known_answer_data())


def test_contract_catches_state_lost_on_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    contract, model, _ = _fitted_contract(monkeypatch, _ForgetsUsers)
    with pytest.raises(AssertionError):
        contract.test_save_load_gives_identical_scores(
            model, contract.known_answer_data(), tmp_path
        )


def test_contract_catches_predict_disagreeing_with_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    contract, model, _ = _fitted_contract(monkeypatch, _Inconsistent)
    with pytest.raises(AssertionError):
        contract.test_predict_agrees_with_score_items(model, contract.known_answer_data())


def test_contract_catches_fit_not_returning_self(monkeypatch: pytest.MonkeyPatch) -> None:
    contract, model, returned = _fitted_contract(monkeypatch, _NotSelf)
    with pytest.raises(AssertionError):
        contract.test_fit_returns_self(_FitOutcome(model, returned))


def test_contract_catches_a_model_that_ranks_at_random(monkeypatch: pytest.MonkeyPatch) -> None:
    contract, model, _ = _fitted_contract(monkeypatch, _Shuffled, explicit=False)
    with pytest.raises(AssertionError, match="hit-rate@10"):
        contract.test_known_answer_ranking(model, contract.known_answer_data())


# ---------------------------------------------------------------------- ncf, two_tower
class TestNCFNeuMFExplicit(ModelContract):
    model_name = "ncf"
    config = {"variant": "neumf", "epochs": 10}
    explicit = True


class TestNCFMLPExplicit(ModelContract):
    model_name = "ncf"
    config = {"variant": "mlp", "epochs": 10}
    explicit = True


class TestNCFGMFImplicit(ModelContract):
    model_name = "ncf"
    # The planted implicit set is small (~60 batches an epoch): a larger step learns it quickly.
    config = {"variant": "gmf", "epochs": 10, "lr": 1e-2}
    explicit = False


class TestTwoTowerExplicit(ModelContract):
    model_name = "two_tower"
    config = {"epochs": 10}
    explicit = True


class TestTwoTowerImplicit(ModelContract):
    model_name = "two_tower"
    # Smaller batches: more softmax steps on the small planted set (in-batch negatives suffice).
    config = {"epochs": 10, "batch_size": 256}
    explicit = False


# ---------------------------------------------------------------------- item_knn, user_knn, content
class _StoredNeighbourSimilarItems:
    """item_knn answers similar_items from its stored neighbourhood although it has no vectors.

    The shared check expects a ConfigError whenever ``item_vectors()`` is None; this replaces it
    with the equivalent positive check (ranked neighbours, the query item excluded).
    """

    def test_similar_items(self, fitted: Recommender, planted: object) -> None:
        items = fitted.items_.ids
        assert fitted.item_vectors() is None
        rec = fitted.similar_items(items[0], k=5)
        assert rec.user_id == items[0] and rec.query == "item"
        assert 0 < len(rec) <= 5 and items[0] not in set(rec.item_ids.tolist())
        assert np.all(np.diff(rec.scores) <= 0) and np.all(rec.scores > 0)


class TestItemKNNExplicit(_StoredNeighbourSimilarItems, ModelContract):
    model_name = "item_knn"
    config = {"similarity": "pearson_baseline"}
    explicit = True


class TestItemKNNImplicit(_StoredNeighbourSimilarItems, ModelContract):
    model_name = "item_knn"
    explicit = False


class TestUserKNNExplicit(ModelContract):
    model_name = "user_knn"
    config = {"similarity": "adjusted_cosine"}
    explicit = True


class TestUserKNNImplicit(ModelContract):
    model_name = "user_knn"
    explicit = False


class TestContentExplicit(ModelContract):
    model_name = "content"
    explicit = True


class TestContentImplicit(ModelContract):
    model_name = "content"
    explicit = False
    # The planted "genre" is one coarse label per item (the argmax of 4 planted factors), so pure
    # content knows only which quarter of the catalogue a user likes: hit-rate@10 ≈ 0.25 against
    # popularity's ≈ 0.22. It must still beat chance (2x) and not lose to popularity.
    hit_rate_margin = 0.0


class TestContentHybridExplicit(ModelContract):
    model_name = "content"
    config = {"hybrid_with": "item_knn", "hybrid_config": {"similarity": "pearson_baseline"}}
    explicit = True


class TestContentHybridImplicit(ModelContract):
    model_name = "content"
    config = {"hybrid_with": "item_knn", "hybrid_weight": 0.7}
    explicit = False


# ---------------------------------------------------------------------- ease, als (issue 4)
class TestEase(ModelContract):
    model_name = "ease"
    explicit = False


class TestAlsImplicit(ModelContract):
    model_name = "als"
    config = {"n_factors": 16, "iterations": 8, "track_loss": True}
    explicit = False


class TestAlsExplicit(ModelContract):
    model_name = "als"
    config = {"objective": "explicit", "n_factors": 16, "iterations": 8, "track_loss": True}
    explicit = True


# ------------------------------------------------------------------ mf, biased_mf, embedding_net
class TestMFExplicit(ModelContract):
    model_name = "mf"
    explicit = True


class TestMFImplicit(ModelContract):
    model_name = "mf"
    config = {"loss": "bpr"}
    explicit = False


class TestBiasedMF(ModelContract):
    model_name = "biased_mf"
    explicit = True


class TestFunkSVD(ModelContract):
    model_name = "funk_svd"
    config = {"n_factors": 16, "epochs": 10}
    explicit = True


class TestBiasedMFImplicit(ModelContract):
    model_name = "biased_mf"
    config = {"loss": "bce"}
    explicit = False


class TestEmbeddingNet(ModelContract):
    model_name = "embedding_net"
    explicit = True


# ---------------------------------------------------------------------- autorec, mult_vae, mult_dae
# I-AutoRec gets smaller batches than its ML-100k defaults (1 batch per epoch here otherwise).
class TestAutoRecItem(ModelContract):
    model_name = "autorec"
    config = {"variant": "item", "batch_size": 64, "epochs": 40, "reg": 10.0}
    explicit = True


class TestAutoRecUser(ModelContract):
    model_name = "autorec"
    config = {"variant": "user"}
    explicit = True


# GLocal-K: small layers and both stages (pre-training, then the global-kernel fine-tuning).
class TestGLocalK(ModelContract):
    model_name = "glocal_k"
    config = {
        "hidden": [64, 64],
        "batch_size": 16,
        "epochs": 40,
        "lr": 0.01,
        "fine_epochs": 5,
        "reg": 5.0,
        "lambda_s": 0.01,
    }
    explicit = True


class TestMultVAE(ModelContract):
    model_name = "mult_vae"
    config = {"epochs": 30, "hidden": [64], "latent": 16, "batch_size": 100}
    explicit = False


class TestMultDAE(ModelContract):
    model_name = "mult_dae"
    config = {"epochs": 30, "hidden": [64], "latent": 16, "batch_size": 100}
    explicit = False


def test_failed_fit_leaves_model_unfitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit that raises part-way must not leave a model that claims to be fitted."""
    from recforge.data.synthetic import make_interactions
    from recforge.errors import ModelFitError, NotFittedError
    from recforge.models.registry import create

    data = make_interactions(n_users=30, n_items=20, density=0.3, seed=0).interactions
    model = create("biases")
    model.fit(data)
    assert model.is_fitted

    def diverge(self: object, train: object, valid: object) -> None:
        raise ModelFitError("training diverged")

    monkeypatch.setattr(type(model), "_fit", diverge)
    with pytest.raises(ModelFitError):
        model.fit(data)  # a failed re-fit discards the earlier fit too: its state is mixed now
    assert not model.is_fitted
    with pytest.raises(NotFittedError):
        model.recommend_idx([0], k=3)
