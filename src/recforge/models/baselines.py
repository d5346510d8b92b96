"""Baselines every comparison needs: global mean, regularised user/item biases, popularity.

They are closed-form or counting models: no torch, no epochs of SGD, fitted in milliseconds even on
ML-25M, and they set the bar each learned model has to clear (Surprise's ``BaselineOnly`` measures
0.946 mean RMSE on ML-100k u1..u5; :class:`Biases` reproduces its algorithm exactly).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.explain import Attribution, row_entries
from recforge.models.base import FloatArray, IndexArray, Recommender

F64Array = npt.NDArray[np.float64]


def _state_array(
    state: Mapping[str, npt.NDArray[Any]], key: str, shape: tuple[int, ...]
) -> F64Array:
    """``state[key]`` as float64, checked against the expected shape (ValueError otherwise)."""
    arr = np.asarray(state[key], dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"state {key!r} has shape {arr.shape}, expected {shape}")
    return arr


class GlobalMean(Recommender):
    """Predicts the mean training rating for every (user, item) pair.

    Scoring: ``r̂_ui = μ`` with ``μ = (1/|R|) Σ_{(u,i)∈R} r_ui``. No loss is optimised (μ is the
    least-squares constant). Every item ties, so its rankings carry no information; it exists as
    the RMSE floor that every rating model must beat.
    """

    name: ClassVar[str] = "global_mean"
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    predicts_ratings: ClassVar[bool] = True

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        # μ is already computed by Recommender.fit (global_mean_); nothing else to learn.
        pass

    def _full(self, n_rows: int) -> FloatArray:
        out: FloatArray = np.full((n_rows, self.n_items), self.global_mean_, dtype=np.float32)
        return out

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """``μ`` for every item: shape ``(len(user_idx), n_items)``."""
        self._check_fitted()
        return self._full(len(user_idx))

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """``μ`` for every pair."""
        self._check_fitted()
        return np.full(len(user_idx), self.global_mean_, dtype=np.float32)

    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """A new user also gets ``μ`` for every item (their ratings do not move the global mean)."""
        self._check_fitted()
        return np.full(self.n_items, self.global_mean_, dtype=np.float32)

    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """``{"mean": [μ]}``."""
        return {"mean": np.asarray([self.global_mean_], dtype=np.float64)}

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Restore ``μ``."""
        self.global_mean_ = float(_state_array(state, "mean", (1,))[0])


class BiasesConfig(ModelConfig):
    """Hyper-parameters of :class:`Biases` (defaults: Surprise ``BaselineOnly``'s ALS options)."""

    reg_u: float = Field(15.0, ge=0, le=1e6, description="λ_u, ridge penalty on user biases.")
    reg_i: float = Field(10.0, ge=0, le=1e6, description="λ_i, ridge penalty on item biases.")
    epochs: int = Field(10, ge=1, le=1000, description="Alternating sweeps (Surprise's n_epochs).")


class Biases(Recommender):
    """Regularised baseline predictor ``r̂_ui = μ + b_u + b_i`` (Koren 2010).

    Loss (regularised least squares over the training ratings ``R``)::

        Σ_{(u,i)∈R} (r_ui − μ − b_u − b_i)² + λ_u Σ_u b_u² + λ_i Σ_i b_i²

    minimised by alternating exact block updates, exactly like Surprise's ``BaselineOnly`` with
    its default ALS method (item biases first, starting from zero, for ``epochs`` sweeps)::

        b_i = Σ_{u∈U_i} (r_ui − μ − b_u) / (λ_i + |U_i|)
        b_u = Σ_{i∈I_u} (r_ui − μ − b_i) / (λ_u + |I_u|)

    Each update minimises the loss in its block, so the loss never increases; ``history_``
    records it per sweep. A user or item without training ratings keeps a zero bias. A new user
    is folded in with the same closed-form user update.

    Citation: Y. Koren, "Factor in the neighbors: scalable and accurate collaborative filtering",
    ACM TKDD 4(1), 2010, §2.1.

    Attributes:
        user_bias_: ``b_u`` per user index (float64).
        item_bias_: ``b_i`` per item index (float64).
        history_: per-sweep ``epoch, train_loss, train_rmse`` (and ``valid_rmse`` with ``valid``);
            ``train_loss`` is the loss above divided by ``|R|``.
    """

    name: ClassVar[str] = "biases"
    Config: ClassVar[type[ModelConfig]] = BiasesConfig
    predicts_ratings: ClassVar[bool] = True
    config: BiasesConfig

    user_bias_: F64Array
    item_bias_: F64Array
    history_: pd.DataFrame

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        cfg = self.config
        mu = self.global_mean_
        u = train.user_idx.astype(np.int64)
        i = train.item_idx.astype(np.int64)
        dev = train.rating.astype(np.float64) - mu
        # Denominators are zero only for rating-less rows with λ = 0; their bias stays 0.
        den_u = cfg.reg_u + np.bincount(u, minlength=train.n_users).astype(np.float64)
        den_i = cfg.reg_i + np.bincount(i, minlength=train.n_items).astype(np.float64)
        b_u = np.zeros(train.n_users, dtype=np.float64)
        b_i = np.zeros(train.n_items, dtype=np.float64)
        rows: list[dict[str, float]] = []
        for epoch in range(1, cfg.epochs + 1):
            num_i = np.bincount(i, weights=dev - b_u[u], minlength=train.n_items)
            b_i = np.divide(num_i, den_i, out=np.zeros_like(num_i), where=den_i > 0)
            num_u = np.bincount(u, weights=dev - b_i[i], minlength=train.n_users)
            b_u = np.divide(num_u, den_u, out=np.zeros_like(num_u), where=den_u > 0)
            resid = dev - b_u[u] - b_i[i]
            sse = float(resid @ resid)
            penalty = cfg.reg_u * float(b_u @ b_u) + cfg.reg_i * float(b_i @ b_i)
            row = {
                "epoch": float(epoch),
                "train_loss": (sse + penalty) / len(dev),
                "train_rmse": float(np.sqrt(sse / len(dev))),
            }
            if valid is not None and len(valid):
                vu = valid.user_idx.astype(np.int64)
                vi = valid.item_idx.astype(np.int64)
                pred = self._clip_scale(mu + b_u[vu] + b_i[vi])
                row["valid_rmse"] = float(np.sqrt(np.mean((pred - valid.rating) ** 2)))
            rows.append(row)
        self.user_bias_ = b_u
        self.item_bias_ = b_i
        self.history_ = pd.DataFrame(rows).astype({"epoch": np.int64})

    def _clip_scale(self, values: F64Array) -> F64Array:
        if self.rating_scale_ is None:
            return values
        return np.clip(values, *self.rating_scale_)

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """``μ + b_u + b_i`` for every item: shape ``(len(user_idx), n_items)``."""
        self._check_fitted()
        u = np.asarray(user_idx, dtype=np.int64)
        scores = (self.global_mean_ + self.user_bias_[u])[:, None] + self.item_bias_[None, :]
        return scores.astype(np.float32)

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """``μ + b_u + b_i`` per pair, without building the full score matrix."""
        self._check_fitted()
        u = np.asarray(user_idx, dtype=np.int64)
        i = np.asarray(item_idx, dtype=np.int64)
        return (self.global_mean_ + self.user_bias_[u] + self.item_bias_[i]).astype(np.float32)

    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """``μ + b_u + b_i``, ``b_u = Σ (r − μ − b_i) / (λ_u + n)`` over the ``n`` given ratings."""
        self._check_fitted()
        idx = np.asarray(item_idx, dtype=np.int64)
        dev = np.asarray(ratings, dtype=np.float64) - self.global_mean_ - self.item_bias_[idx]
        den = self.config.reg_u + len(idx)
        b_u = float(dev.sum() / den) if den > 0 else 0.0
        return (self.global_mean_ + b_u + self.item_bias_).astype(np.float32)

    def explain_rows(
        self, rows: sp.csr_matrix, row_of: IndexArray, targets: IndexArray
    ) -> Attribution:
        """Exact: ``b_u`` is a sum over the ratings, ``w_j = (r_j − μ − b_j) / (λ_u + n)``;
        the residual is ``μ + b_i``."""
        self._check_fitted()
        weights, score = [], []
        for r, t in zip(np.asarray(row_of).tolist(), np.asarray(targets).tolist(), strict=True):
            idx, vals = row_entries(rows, r)
            den = self.config.reg_u + len(idx)
            dev = vals.astype(np.float64) - self.global_mean_ - self.item_bias_[idx]
            w = dev / den if den > 0 else np.zeros(len(idx))
            weights.append(w)
            score.append(float(self.global_mean_ + self.item_bias_[t] + w.sum()))
        return Attribution(np.asarray(score), weights, "exact")

    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """``{"user_bias": b_u, "item_bias": b_i}`` (float64)."""
        return {"user_bias": self.user_bias_, "item_bias": self.item_bias_}

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Restore the biases; ValueError when their sizes do not match the vocabularies."""
        self.user_bias_ = _state_array(state, "user_bias", (len(self.users_),))
        self.item_bias_ = _state_array(state, "item_bias", (len(self.items_),))


class Popularity(Recommender):
    """Most-popular ranking: every user gets the items with the most training interactions.

    Scoring: ``s_ui = |U_i|``, the number of training events of item ``i`` (for explicit data a
    rating of any value counts once, so it is the same model on explicit and implicit feedback).
    Nothing is optimised. Scores are counts, not ratings (``predicts_ratings = False``), so
    :meth:`predict` returns counts. A new user gets the same popularity ranking (minus the items
    they rated). It has no item vectors, hence no similar items.
    """

    name: ClassVar[str] = "popularity"
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    predicts_ratings: ClassVar[bool] = False

    item_popularity_: F64Array

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.item_popularity_ = train.item_counts().astype(np.float64)

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """``|U_i|`` for every item, the same row per user: shape ``(len(user_idx), n_items)``."""
        self._check_fitted()
        row = self.item_popularity_.astype(np.float32)
        return np.repeat(row[None, :], len(user_idx), axis=0)

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """``|U_i|`` per pair."""
        self._check_fitted()
        return self.item_popularity_[np.asarray(item_idx, dtype=np.int64)].astype(np.float32)

    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """The popularity scores; the new user's ratings do not change them."""
        self._check_fitted()
        return self.item_popularity_.astype(np.float32)

    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """``{"item_popularity": |U_i|}``."""
        return {"item_popularity": self.item_popularity_}

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Restore the counts; ValueError when their size does not match the item vocabulary."""
        self.item_popularity_ = _state_array(state, "item_popularity", (len(self.items_),))
