"""Blend: a linear stack of rating models whose weights are fitted on a validation carve.

``blend`` is a regular registered model: it fits, predicts, recommends, folds in new users,
saves and loads like the others, and its members are any registered rating models.

Fitting (stacking with a hold-out, Breiman 1996; the blends of the Netflix Prize)::

    1. carve a random ``valid_ratio`` of the training ratings (seed ``seed``);
    2. fit every member on the rest and predict the carved ratings (clipped to the rating
       scale; a pair a member cannot score gets the inner training mean);
    3. fit r ≈ w₀ + Σ_m w_m · p_m by ridge regression on the carved ratings: the member
       predictions are centred, ``w = (PᶜᵀPᶜ / n + ridge · I)⁻¹ Pᶜᵀ(r − r̄) / n`` and
       ``w₀ = r̄ − p̄ · w`` (the intercept is not penalised);
    4. refit every member on **all** of the training data; the blend scores
       ``w₀ + Σ_m w_m · clip(s_m)`` with each member's score ``s_m``.

Only the blend's own training data is used (never a test split). Members must predict ratings
on explicit data (checked after the carve fit). A new user is folded in by folding them into
every member (so every member must support fold-in). ``item_vectors`` is None: a weighted sum of
different models has no single item embedding.

Saved state: the weights, and each member's own state under the prefix ``m<k>.`` (members share
the blend's vocabularies and base state, because they are refitted on the same data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field, field_validator

from recforge.config import FrozenConfig, ModelConfig
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError
from recforge.models.base import FloatArray, IndexArray, Recommender

__all__ = ["Blend", "BlendConfig", "BlendMember", "ridge_blend_weights"]


class BlendMember(FrozenConfig):
    """One member of a blend: a registered model name and its config."""

    model: str = Field(description="Registered model name (a rating model).")
    config: dict[str, Any] = Field(default_factory=dict, description="The member's config.")


#: The default blend: the strongest rating models of docs/benchmarks/ml100k_folds.md that differ
#: in kind (autoencoder, factorisation, two neighbourhood models).
DEFAULT_MEMBERS: tuple[BlendMember, ...] = (
    BlendMember(model="autorec", config={"variant": "item"}),
    BlendMember(model="biased_mf"),
    BlendMember(model="item_knn", config={"similarity": "pearson_baseline"}),
    BlendMember(model="user_knn", config={"similarity": "pearson_baseline"}),
)


class BlendConfig(ModelConfig):
    """Hyper-parameters of :class:`Blend`."""

    members: tuple[BlendMember, ...] = Field(
        DEFAULT_MEMBERS, description="Member models (name + config), blended linearly."
    )
    valid_ratio: float = Field(
        0.1, gt=0, lt=0.5, description="Fraction of the training ratings carved to fit weights."
    )
    ridge: float = Field(
        1e-3, ge=0, description="L2 penalty on the member weights (per carved rating)."
    )

    @field_validator("members")
    @classmethod
    def _check_members(cls, members: tuple[BlendMember, ...]) -> tuple[BlendMember, ...]:
        from recforge.models.registry import create

        if not members:
            raise ValueError("a blend needs at least one member")
        for k, m in enumerate(members):
            if m.model == "blend":
                raise ValueError(f"members.{k}: a blend cannot contain a blend")
            try:
                member = create(m.model, m.config)
            except ConfigError as exc:
                raise ValueError(f"members.{k}: {exc}") from None
            # Before fitting this is the configured intent ("auto" feedback counts as ratings);
            # a member that can never predict ratings is refused now, not after the other fits.
            if not member.predicts_ratings:
                raise ValueError(
                    f"members.{k}: {m.model} does not predict ratings with this config (it "
                    "ranks items); a blend stacks rating models"
                )
        return members


def ridge_blend_weights(
    preds: npt.NDArray[np.floating[Any]], target: npt.NDArray[np.floating[Any]], ridge: float
) -> tuple[float, npt.NDArray[np.float64]]:
    """``(w₀, w)`` minimising ``mean (t − w₀ − P w)² + ridge · ‖w‖²`` (intercept not penalised).

    Args:
        preds: ``(n, m)`` member predictions.
        target: ``(n,)`` observed ratings.
        ridge: the penalty (0 = ordinary least squares; a tiny jitter keeps it solvable).
    """
    p = np.asarray(preds, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    mean_p, mean_t = p.mean(axis=0), float(t.mean())
    pc = p - mean_p
    gram = pc.T @ pc / len(t) + (ridge + 1e-12) * np.eye(p.shape[1])
    w = np.linalg.solve(gram, pc.T @ (t - mean_t) / len(t))
    return mean_t - float(mean_p @ w), w


class Blend(Recommender):
    """Linear blend of rating models, weights fitted on a validation carve (module docstring).

    Attributes:
        members_: the fitted member models (refitted on all training data).
        intercept_: ``w₀``; weights_: ``(n_members,)`` float64 member weights.
        valid_rmse_: RMSE of the blend on the carved ratings (members fitted without them).
        member_valid_rmse_: ``(n_members,)`` each member's RMSE on the carved ratings.
    """

    name: ClassVar[str] = "blend"
    Config: ClassVar[type[ModelConfig]] = BlendConfig
    predicts_ratings: ClassVar[bool] = True
    config: BlendConfig

    members_: list[Recommender]
    intercept_: float
    weights_: npt.NDArray[np.float64]
    valid_rmse_: float
    member_valid_rmse_: npt.NDArray[np.float64]

    def _new_members(self) -> list[Recommender]:
        from recforge.models.registry import create

        return [create(m.model, m.config) for m in self.config.members]

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        from recforge.data.split import random_holdout

        if train.rating_scale is None:
            raise DataError(
                f"{train.source}: blend combines rating predictions and needs explicit ratings"
            )
        cfg = self.config
        carve = random_holdout(train, test_ratio=cfg.valid_ratio, seed=cfg.seed)
        held = carve.test.to_frame()
        preds = np.empty((len(held), len(cfg.members)), dtype=np.float64)
        for k, member in enumerate(self._new_members()):
            member.fit(carve.train)
            if not member.predicts_ratings:
                raise ConfigError(
                    f"blend: members.{k} ({member.name}) does not predict ratings with this "
                    "config; use rating models only"
                )
            p = member.predict(held["user_id"].to_numpy(), held["item_id"].to_numpy())
            preds[:, k] = np.where(np.isfinite(p), p, carve.train.global_mean)
        target = held["rating"].to_numpy(dtype=np.float64)
        self.intercept_, self.weights_ = ridge_blend_weights(preds, target, cfg.ridge)
        fitted = self.intercept_ + preds @ self.weights_
        lo, hi = train.rating_scale
        self.valid_rmse_ = float(np.sqrt(np.mean((np.clip(fitted, lo, hi) - target) ** 2)))
        self.member_valid_rmse_ = np.sqrt(np.mean((preds - target[:, None]) ** 2, axis=0))
        # Refit on everything: the weights were learned for members of this strength or weaker.
        self.members_ = [m.fit(train) for m in self._new_members()]

    # ------------------------------------------------------------------ scoring
    def _clip_member(self, values: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
        out = np.asarray(values, dtype=np.float64)
        if self.rating_scale_ is not None:
            out = np.clip(out, *self.rating_scale_)
        return out

    def _combine(self, parts: list[npt.NDArray[np.floating[Any]]]) -> FloatArray:
        total = np.full(np.shape(parts[0]), self.intercept_, dtype=np.float64)
        for w, p in zip(self.weights_, parts, strict=True):
            total += w * self._clip_member(p)
        return total.astype(np.float32)

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """``w₀ + Σ_m w_m · clip(member scores)`` of every item: ``(len(user_idx), n_items)``."""
        self._check_fitted()
        return self._combine([m.score_items(user_idx) for m in self.members_])

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """The blend of the members' ``predict_idx`` for each (user, item) pair."""
        self._check_fitted()
        return self._combine([m.predict_idx(user_idx, item_idx) for m in self.members_])

    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """Every member folds the new user in; their scores are blended with the fitted weights."""
        self._check_fitted()
        return self._combine([m.fold_in_scores(item_idx, ratings) for m in self.members_])

    def fold_in_scores_batch(self, rows: sp.csr_matrix) -> FloatArray:
        """The blend of every member's batched fold-in of the rows (an occlusion explanation's
        ``|H| + 1`` rows reach the members' batched paths, not one fold-in per row)."""
        self._check_fitted()
        return self._combine([m.fold_in_scores_batch(rows) for m in self.members_])

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """Weights, carve diagnostics and each member's state under ``m<k>.``."""
        state: dict[str, npt.NDArray[Any]] = {
            "blend_weights": np.concatenate([[self.intercept_], self.weights_]),
            "blend_valid_rmse": np.concatenate([[self.valid_rmse_], self.member_valid_rmse_]),
        }
        for k, member in enumerate(self.members_):
            state |= {f"m{k}.{key}": value for key, value in member.get_state().items()}
        return state

    def set_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Rebuild the members with the blend's base state, then restore each one's state."""
        n = len(self.config.members)
        weights = np.asarray(state["blend_weights"], dtype=np.float64)
        if weights.shape != (n + 1,):
            raise ValueError(
                f"state 'blend_weights' has shape {weights.shape}, expected {(n + 1,)}"
            )
        rmse = np.asarray(state["blend_valid_rmse"], dtype=np.float64)
        self.intercept_, self.weights_ = float(weights[0]), weights[1:].copy()
        self.valid_rmse_, self.member_valid_rmse_ = float(rmse[0]), rmse[1:].copy()
        members = self._new_members()
        for k, member in enumerate(members):
            prefix = f"m{k}."
            # Members were refitted on the blend's own training data: same vocabularies and base.
            member.users_, member.items_, member.seen_ = self.users_, self.items_, self.seen_
            member.global_mean_, member.rating_scale_ = self.global_mean_, self.rating_scale_
            member.item_meta_ = self.item_meta_
            member.set_state(
                {key[len(prefix) :]: v for key, v in state.items() if key.startswith(prefix)}
            )
        self.members_ = members
