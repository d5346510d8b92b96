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

With ``cv_folds = K`` (K ≥ 2) steps 1–2 are *cross-fitted* instead (stacked generalisation,
Wolpert 1992; Breiman 1996, "Stacked regressions", §3): the training ratings are cut into K
random folds (seed ``seed``), every member is fitted K times, each time on K − 1 folds, and
predicts the fold left out, so **every** training rating gets an out-of-fold prediction and the
weights are fitted on all of them, not on a ``valid_ratio`` carve. The members are fitted K + 1
times instead of twice; the weights (FWLS's ~50 coefficients above all) are learned from
``1 / valid_ratio`` times as many ratings, by members closer to the final ones' strength
(trained on (K − 1)/K of the data instead of 1 − ``valid_ratio``).

With ``meta_features`` set, the stack is *feature-weighted* (FWLS; Sill, Takács, Mackey & Lin
2009, the Netflix Prize blend; :mod:`recforge.models.blend_meta`): each member's weight is a
linear function of meta-features ``f_j(u, i)`` of the pair (log support, rating mean and sd of
the user and of the item, from the ratings the members were trained on)::

    r̂(u, i) = w₀ + Σ_m (w_m + Σ_j v_mj f_j(u, i)) · clip(s_m) + Σ_j a_j f_j(u, i)

fitted by the same ridge regression on the columns ``[p_m, p_m·f_j, f_j]`` (the ``v`` and ``a``
coefficients penalised by ``meta_ridge``). The meta-features of a folded-in user come from their
given ratings. With ``meta_features = []`` (the default) the blend is the plain stack above.

With ``boost_rounds > 0``, gradient-boosted regression trees are fitted to the stack's residuals
on the same held-out (or out-of-fold) ratings, from the clipped member predictions, their spread
and the meta-features (:mod:`recforge.models.blend_boost`; the non-linear blending of the Netflix
Prize's winners, Töscher, Jahrer & Bell 2009)::

    r̂(u, i) = stack(u, i) + Σ_t η · tree_t([clip(s_1) … clip(s_m), sd_m clip(s_m), f(u, i)])

Only the blend's own training data is used (never a test split). Members must predict ratings
on explicit data (checked after the carve fit). A new user is folded in by folding them into
every member (so every member must support fold-in). ``item_vectors`` is None: a weighted sum of
different models has no single item embedding.

Saved state: the weights, the boosted trees as node arrays (``blend_boost_*``), and each member's
own state under the prefix ``m<k>.`` (members share
the blend's vocabularies and base state, because they are refitted on the same data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field, field_validator

from recforge.config import FrozenConfig, ModelConfig
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError, DataError
from recforge.models.base import FloatArray, IndexArray, Recommender
from recforge.models.blend_boost import BOOST_CHUNK_ROWS, TreeEnsemble, boost_inputs, fit_boost
from recforge.models.blend_meta import (
    META_FEATURES,
    fwls_design,
    fwls_split,
    pair_features,
    side_tables,
    user_row,
    user_rows,
)

if TYPE_CHECKING:
    from recforge.data.split import Split

__all__ = ["Blend", "BlendConfig", "BlendMember", "fit_residual_trees", "ridge_blend_weights"]


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
    cv_folds: int = Field(
        0,
        ge=0,
        le=20,
        description=(
            "0: fit the weights on one valid_ratio carve; K >= 2: cross-fitted stacking, every "
            "training rating predicted by members fitted on the other K-1 folds (valid_ratio "
            "is then unused)."
        ),
    )

    meta_features: tuple[str, ...] = Field(
        (),
        description=(
            "Feature-weighted linear stacking (Sill et al. 2009): meta-features the member "
            f"weights depend on, any of {', '.join(META_FEATURES)}; empty = plain linear stack."
        ),
    )
    meta_ridge: float | None = Field(
        None, ge=0, description="L2 penalty on the FWLS coefficients (None: the same as ridge)."
    )
    boost_rounds: int = Field(
        0,
        ge=0,
        le=100_000,
        description=(
            "Gradient-boosted trees on the stack's residuals (recforge.models.blend_boost): at "
            "most this many trees, early-stopped; 0 = the linear stack alone."
        ),
    )
    boost_lr: float = Field(0.05, gt=0, le=1, description="Boosting learning rate (shrinkage).")
    boost_leaves: int = Field(15, ge=2, le=4096, description="Leaves per boosted tree.")
    boost_min_leaf: int = Field(
        100, ge=1, description="Fewest held-out ratings in a boosted tree's leaf."
    )
    boost_l2: float = Field(1.0, ge=0, description="L2 penalty on the boosted leaf values.")

    @field_validator("meta_features")
    @classmethod
    def _check_meta(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if name not in META_FEATURES:
                raise ValueError(
                    f"meta_features: unknown feature {name!r}; "
                    f"choose from {', '.join(META_FEATURES)}"
                )
        if len(set(names)) != len(names):
            raise ValueError("meta_features: a feature is listed twice")
        # Users first, then items: the order of the design's feature columns.
        return tuple(n for n in names if n.startswith("user_")) + tuple(
            n for n in names if n.startswith("item_")
        )

    @field_validator("cv_folds")
    @classmethod
    def _check_cv_folds(cls, k: int) -> int:
        if k == 1:
            raise ValueError("cv_folds: 1 fold leaves nothing to train on; use 0 or >= 2")
        return k

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
    preds: npt.NDArray[np.floating[Any]],
    target: npt.NDArray[np.floating[Any]],
    ridge: float | npt.NDArray[np.floating[Any]],
) -> tuple[float, npt.NDArray[np.float64]]:
    """``(w₀, w)`` minimising ``mean (t − w₀ − P w)² + Σ_k ridge_k · w_k²`` (w₀ not penalised).

    Args:
        preds: ``(n, m)`` member predictions (or any regressors, e.g. FWLS columns).
        target: ``(n,)`` observed ratings.
        ridge: the penalty, one for all weights or ``(m,)`` per column (0 = ordinary least
            squares; a tiny jitter keeps it solvable).
    """
    p = np.asarray(preds, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    mean_p, mean_t = p.mean(axis=0), float(t.mean())
    pc = p - mean_p
    if np.ndim(ridge) == 0:
        penalty = (ridge + 1e-12) * np.eye(p.shape[1])
    else:
        penalty = np.diag(np.asarray(ridge, dtype=np.float64) + 1e-12)
    gram = pc.T @ pc / len(t) + penalty
    w = np.linalg.solve(gram, pc.T @ (t - mean_t) / len(t))
    return mean_t - float(mean_p @ w), w


def fit_residual_trees(
    cfg: BlendConfig,
    clipped: npt.NDArray[np.float64],
    feats: npt.NDArray[np.float64] | None,
    residual: npt.NDArray[np.float64],
) -> TreeEnsemble:
    """The blend's boosted trees (``cfg.boost_*``) fitted to the stack's ``residual`` on the
    held-out rows, from their ``(n, m)`` clipped member predictions and standardised
    meta-features (None without FWLS)."""
    return fit_boost(
        boost_inputs(list(clipped.T), feats),
        residual,
        max_rounds=cfg.boost_rounds,
        learning_rate=cfg.boost_lr,
        max_leaves=cfg.boost_leaves,
        min_leaf=cfg.boost_min_leaf,
        l2=cfg.boost_l2,
        seed=cfg.seed,
    )


class Blend(Recommender):
    """Linear blend of rating models, weights fitted on a validation carve (module docstring).

    Attributes:
        members_: the fitted member models (refitted on all training data).
        intercept_: ``w₀``; weights_: ``(n_members,)`` float64 member weights.
        valid_rmse_: RMSE of the blend on the carved ratings (members fitted without them).
        member_valid_rmse_: ``(n_members,)`` each member's RMSE on the carved ratings.
        meta_v_, meta_a_: FWLS coefficients ``(n_members, q)`` and ``(q,)`` (with meta_features).
        meta_mu_, meta_sd_: ``(q,)`` standardisation of the raw meta-features (carve values).
        meta_users_, meta_items_: standardised per-user ``(n_users, q_u)`` and per-item
            ``(n_items, q_i)`` meta-features of the training data the members were refitted on.
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
    meta_v_: npt.NDArray[np.float64]
    meta_a_: npt.NDArray[np.float64]
    meta_mu_: npt.NDArray[np.float64]
    meta_sd_: npt.NDArray[np.float64]
    meta_users_: npt.NDArray[np.float64]
    meta_items_: npt.NDArray[np.float64]
    boost_: TreeEnsemble

    def _new_members(self) -> list[Recommender]:
        from recforge.models.registry import create

        return [create(m.model, m.config) for m in self.config.members]

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        if train.rating_scale is None:
            raise DataError(
                f"{train.source}: blend combines rating predictions and needs explicit ratings"
            )
        cfg = self.config
        blocks = [self._carve_block(carve) for carve in self._carves(train)]
        preds = np.vstack([b[0] for b in blocks])
        target = np.concatenate([b[1] for b in blocks])
        feats: npt.NDArray[np.float64] | None = None
        if cfg.meta_features:
            feats = self._standardise(np.vstack([b[2] for b in blocks]))
            fitted = self._fit_fwls(feats, preds, target)
        else:
            self.intercept_, self.weights_ = ridge_blend_weights(preds, target, cfg.ridge)
            fitted = self.intercept_ + preds @ self.weights_
        lo, hi = train.rating_scale
        if cfg.boost_rounds:
            self.boost_ = fit_residual_trees(cfg, np.clip(preds, lo, hi), feats, target - fitted)
        self.valid_rmse_ = float(np.sqrt(np.mean((np.clip(fitted, lo, hi) - target) ** 2)))
        self.member_valid_rmse_ = np.sqrt(np.mean((preds - target[:, None]) ** 2, axis=0))
        # Refit on everything: the weights were learned for members of this strength or weaker.
        self.members_ = [m.fit(train) for m in self._new_members()]
        if cfg.meta_features:
            users, items = self._raw_tables(train)
            self._set_tables(users, items)

    def _carves(self, train: Interactions) -> list[Split]:
        """The (members' training part, held-out ratings) pairs the weights are fitted on."""
        from recforge.data.split import kfold, random_holdout

        cfg = self.config
        if cfg.cv_folds >= 2:
            return kfold(train, k=cfg.cv_folds, seed=cfg.seed)
        return [random_holdout(train, test_ratio=cfg.valid_ratio, seed=cfg.seed)]

    def _carve_block(
        self, carve: Split
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Members fitted on ``carve.train`` predict ``carve.test``: ``(predictions (n, m),
        ratings (n,), raw meta-features (n, q))`` (q = 0 without FWLS)."""
        held = carve.test.to_frame()
        preds = np.empty((len(held), len(self.config.members)), dtype=np.float64)
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
        raw = np.zeros((len(held), 0))
        if self.config.meta_features:
            # Meta-features from what the members saw; held extends inner's vocabularies, so
            # ids only it has get the no-ratings row.
            users, items = self._raw_tables(carve.train)
            raw = pair_features(
                users,
                items,
                carve.test.user_idx,
                carve.test.item_idx,
                self.config.meta_features,
                carve.train.global_mean,
            )
        return preds, target, raw

    def _raw_tables(
        self, data: Interactions
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        return side_tables(
            data.user_idx,
            data.item_idx,
            data.rating,
            data.n_users,
            data.n_items,
            self.config.meta_features,
        )

    def _set_tables(self, users: npt.NDArray[np.float64], items: npt.NDArray[np.float64]) -> None:
        qu = users.shape[1]
        self.meta_users_ = (users - self.meta_mu_[:qu]) / self.meta_sd_[:qu]
        self.meta_items_ = (items - self.meta_mu_[qu:]) / self.meta_sd_[qu:]

    def _standardise(self, raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Set the meta-features' mean and sd from the held-out rows; their standardised values."""
        self.meta_mu_ = raw.mean(axis=0)
        sd = raw.std(axis=0)
        self.meta_sd_ = np.where(sd > 0, sd, 1.0)
        return (raw - self.meta_mu_) / self.meta_sd_

    def _fit_fwls(
        self,
        feats: npt.NDArray[np.float64],
        preds: npt.NDArray[np.float64],
        target: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """FWLS weights on the held-out ratings, from their standardised meta-features; the
        fitted values."""
        cfg = self.config
        design = fwls_design(preds, feats)
        n, q = preds.shape[1], feats.shape[1]
        meta_ridge = cfg.ridge if cfg.meta_ridge is None else cfg.meta_ridge
        penalty = np.concatenate([np.full(n, cfg.ridge), np.full(design.shape[1] - n, meta_ridge)])
        self.intercept_, coef = ridge_blend_weights(design, target, penalty)
        self.weights_, self.meta_v_, self.meta_a_ = fwls_split(coef, n, q)
        fitted: npt.NDArray[np.float64] = self.intercept_ + design @ coef
        return fitted

    # ------------------------------------------------------------------ scoring
    def _clip_member(self, values: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
        out = np.asarray(values, dtype=np.float64)
        if self.rating_scale_ is not None:
            out = np.clip(out, *self.rating_scale_)
        return out

    def _combine(
        self,
        parts: list[npt.NDArray[np.floating[Any]]],
        user_feats: npt.NDArray[np.float64] | None = None,
        item_feats: npt.NDArray[np.float64] | None = None,
        grid: bool = False,
    ) -> FloatArray:
        """Blend member scores; with FWLS, the standardised meta-features of the rows.

        ``grid``: ``parts`` are ``(len(user_feats), len(item_feats))`` score matrices; otherwise
        they are ``(n,)`` vectors of pairs and both feature arrays have ``n`` rows.
        """
        clipped = [self._clip_member(p) for p in parts]
        shape = np.shape(parts[0])
        if not self.config.meta_features:
            total = np.full(shape, self.intercept_, dtype=np.float64)
            for w, p in zip(self.weights_, clipped, strict=True):
                total += w * p
        else:
            assert user_feats is not None and item_feats is not None
            qu = user_feats.shape[1]
            # Per-row member-weight offsets and feature terms, user and item parts separately,
            # so a (users × items) score matrix never materialises a (users × items × q) array.
            u_w, i_w = user_feats @ self.meta_v_[:, :qu].T, item_feats @ self.meta_v_[:, qu:].T
            u_o, i_o = user_feats @ self.meta_a_[:qu], item_feats @ self.meta_a_[qu:]
            if grid:
                u_w, i_w, u_o, i_o = u_w[:, None, :], i_w[None, :, :], u_o[:, None], i_o[None, :]
            total = self.intercept_ + u_o + i_o
            for m, p in enumerate(clipped):
                total = total + (self.weights_[m] + u_w[..., m] + i_w[..., m]) * p
            total = np.broadcast_to(total, shape)
        if self.config.boost_rounds:
            total = total + self._boost_term(clipped, user_feats, item_feats, grid)
        return np.asarray(total, dtype=np.float32)

    def _boost_term(
        self,
        clipped: list[npt.NDArray[np.float64]],
        user_feats: npt.NDArray[np.float64] | None,
        item_feats: npt.NDArray[np.float64] | None,
        grid: bool,
    ) -> npt.NDArray[np.float64]:
        """The boosted trees' output for every score of ``clipped`` (pairs or a grid)."""
        shape = np.shape(clipped[0])
        meta = self.config.meta_features
        if not grid:
            feats = None
            if meta:
                assert user_feats is not None and item_feats is not None
                feats = np.hstack([user_feats, item_feats])
            flat = [np.ravel(p) for p in clipped]
            return self.boost_.predict(boost_inputs(flat, feats)).reshape(shape)
        # A (users × items) grid, a block of users at a time (bounded input rows).
        n_users, n_items = shape
        out = np.empty(shape, dtype=np.float64)
        step = max(1, BOOST_CHUNK_ROWS // max(1, n_items))
        for a in range(0, n_users, step):
            b = min(n_users, a + step)
            flat = [np.ravel(p[a:b]) for p in clipped]
            feats = None
            if meta:
                assert user_feats is not None and item_feats is not None
                feats = np.hstack(
                    [
                        np.repeat(user_feats[a:b], n_items, axis=0),
                        np.tile(item_feats, (b - a, 1)),
                    ]
                )
            out[a:b] = self.boost_.predict(boost_inputs(flat, feats)).reshape(b - a, n_items)
        return out

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """The blend of every item's member scores: ``(len(user_idx), n_items)``."""
        self._check_fitted()
        parts = [m.score_items(user_idx) for m in self.members_]
        if not self.config.meta_features:
            return self._combine(parts)
        users = np.asarray(user_idx, dtype=np.int64)
        return self._combine(parts, self.meta_users_[users], self.meta_items_, grid=True)

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """The blend of the members' ``predict_idx`` for each (user, item) pair."""
        self._check_fitted()
        parts = [m.predict_idx(user_idx, item_idx) for m in self.members_]
        if not self.config.meta_features:
            return self._combine(parts)
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        return self._combine(parts, self.meta_users_[users], self.meta_items_[items])

    def fold_in_scores(self, item_idx: IndexArray, ratings: FloatArray) -> FloatArray:
        """Every member folds the new user in; their scores are blended with the fitted weights.

        With FWLS the new user's meta-features come from the given ratings.
        """
        self._check_fitted()
        parts = [m.fold_in_scores(item_idx, ratings) for m in self.members_]
        if not self.config.meta_features:
            return self._combine(parts)
        qu = self.meta_users_.shape[1]
        raw = user_row(ratings, self.config.meta_features, self.global_mean_)
        feats = (raw - self.meta_mu_[:qu]) / self.meta_sd_[:qu]
        rows = [np.asarray(p)[None, :] for p in parts]
        out: FloatArray = self._combine(rows, feats, self.meta_items_, grid=True)[0]
        return out

    def fold_in_scores_batch(self, rows: sp.csr_matrix) -> FloatArray:
        """The blend of every member's batched fold-in of the rows (an occlusion explanation's
        ``|H| + 1`` rows reach the members' batched paths, not one fold-in per row)."""
        self._check_fitted()
        parts = [m.fold_in_scores_batch(rows) for m in self.members_]
        if not self.config.meta_features:
            return self._combine(parts)
        # FWLS: each row's user meta-features come from that row's own ratings.
        rows = sp.csr_matrix(rows)
        owner = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        qu = self.meta_users_.shape[1]
        raw = user_rows(
            owner, rows.data, rows.shape[0], self.config.meta_features, self.global_mean_
        )
        feats = (raw - self.meta_mu_[:qu]) / self.meta_sd_[:qu]
        return self._combine(parts, feats, self.meta_items_, grid=True)

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict[str, npt.NDArray[Any]]:
        """Weights, carve diagnostics and each member's state under ``m<k>.``."""
        state: dict[str, npt.NDArray[Any]] = {
            "blend_weights": np.concatenate([[self.intercept_], self.weights_]),
            "blend_valid_rmse": np.concatenate([[self.valid_rmse_], self.member_valid_rmse_]),
        }
        if self.config.meta_features:
            state |= {
                "blend_meta_coef": np.vstack([self.meta_v_, self.meta_a_[None, :]]),
                "blend_meta_norm": np.vstack([self.meta_mu_, self.meta_sd_]),
            }
            # Zero-width tables are not stored (a side without features is rebuilt empty).
            if self.meta_users_.shape[1]:
                state["blend_meta_users"] = self.meta_users_
            if self.meta_items_.shape[1]:
                state["blend_meta_items"] = self.meta_items_
        if self.config.boost_rounds:
            state |= self.boost_.to_state("blend_boost_")
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
        names = self.config.meta_features
        if names:
            coef = np.asarray(state["blend_meta_coef"], dtype=np.float64)
            norm = np.asarray(state["blend_meta_norm"], dtype=np.float64)
            if coef.shape != (n + 1, len(names)) or norm.shape != (2, len(names)):
                raise ValueError(
                    f"state 'blend_meta_coef'/'blend_meta_norm' have shapes {coef.shape}/"
                    f"{norm.shape}, expected {(n + 1, len(names))}/{(2, len(names))}"
                )
            self.meta_v_, self.meta_a_ = coef[:n].copy(), coef[n].copy()
            self.meta_mu_, self.meta_sd_ = norm[0].copy(), norm[1].copy()
            qu = sum(1 for name in names if name.startswith("user_"))
            empty_u, empty_i = np.zeros((len(self.users_), 0)), np.zeros((len(self.items_), 0))
            self.meta_users_ = np.asarray(state.get("blend_meta_users", empty_u), np.float64)
            self.meta_items_ = np.asarray(state.get("blend_meta_items", empty_i), np.float64)
            if self.meta_users_.shape[1] != qu or self.meta_items_.shape[1] != len(names) - qu:
                raise ValueError(
                    "state 'blend_meta_users'/'blend_meta_items' do not match the config"
                )
        if self.config.boost_rounds:
            self.boost_ = TreeEnsemble.from_state(dict(state), "blend_boost_")
            n_inputs = n + 1 + len(names)
            if self.boost_.n_features != n_inputs:
                raise ValueError(
                    f"state 'blend_boost_scalars': trees over {self.boost_.n_features} inputs, "
                    f"the config gives {n_inputs}"
                )
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
