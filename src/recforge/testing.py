"""The shared model contract and known-answer datasets, shipped like ``lenskit.testing``.

Every registered model runs :class:`ModelContract` in the test suite; a plug-in model can run it
too::

    from recforge.testing import ModelContract

    class TestBiases(ModelContract):
        model_name = "biases"
        config = {}        # small/fast overrides, e.g. {"epochs": 5}
        explicit = True    # trained on planted ratings; predictions must lie in the scale

The known-answer data (:func:`planted_explicit`, :func:`planted_implicit`) comes from
:func:`recforge.data.synthetic.make_interactions`, whose planted factors tell us which item each
user should like most. We withhold, per user, the interacted item with the highest planted
preference and ask that the model rank it in its top ``k`` clearly more often than the popularity
ranking does. Why these choices:

- Implicit data: the target is the item with the highest planted affinity ``p_u·q_i``; which items a
  user chose is driven by that affinity, so a collaborative model can find it (a small ALS gets
  hit-rate@10 ≈ 0.95 where popularity gets ≈ 0.2).
- Explicit data: a rating model never sees *which* items were chosen, only their ratings, so its
  target is the item with the highest planted expected rating ``b_i + 0.9·p_u·q_i``. The data is
  denser (density 0.25, ~50 ratings per user) so rating models can learn it (biased MF ≈ 0.7,
  the biases baseline ≈ 0.45, popularity ≈ 0.15). A further random 20% of ratings is held out for
  the RMSE check against the global mean.

This module imports pytest; it is meant to be used from test suites.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.data.synthetic import SyntheticData, make_interactions
from recforge.errors import ConfigError, NotFittedError, UnknownIdError
from recforge.models.base import RecList, Recommender
from recforge.models.registry import create, get_class

__all__ = [
    "KnownAnswerSplit",
    "ModelContract",
    "chance_hit_rate",
    "hit_rate",
    "planted_explicit",
    "planted_implicit",
    "rating_rmse",
]

#: Extensions that would betray a pickled artifact (torch.save, joblib, pickle).
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib")


# ---------------------------------------------------------------------- known-answer data
@dataclass(frozen=True)
class KnownAnswerSplit:
    """A train/test split of planted data with one known target item per user.

    Unpacks like a split: ``train, test = planted_implicit()``.

    Attributes:
        train: training events (shares its vocabularies with ``test``).
        test: held-out events: every target, plus (explicit data) a random share of the rest.
        target_item: per user index, the withheld item index the model should rank highly
            (-1 for a user without one).
        truth: the generator's output, planted factors and biases included.
        protocol: how the split was made (name and parameters), for messages and reports.
    """

    train: Interactions
    test: Interactions
    target_item: npt.NDArray[np.int64]
    truth: SyntheticData
    protocol: Mapping[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Interactions]:
        yield self.train
        yield self.test

    @property
    def target_users(self) -> npt.NDArray[np.int64]:
        """User indices that have a target item."""
        return np.flatnonzero(self.target_item >= 0).astype(np.int64)


def _withhold(
    truth: SyntheticData, preference: npt.NDArray[np.float64], extra_fraction: float, seed: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Test mask: each user's highest-``preference`` event, plus ``extra_fraction`` of the rest.

    Every user keeps at least two training events (their random hold-outs are undone otherwise).
    """
    inter = truth.interactions
    u = inter.user_idx.astype(np.int64)
    i = inter.item_idx.astype(np.int64)
    # Sort by user, then preference descending (item index breaks ties): first row per user wins.
    order = np.lexsort((i, -preference, u))
    first = np.ones(len(order), dtype=bool)
    first[1:] = u[order[1:]] != u[order[:-1]]
    target_rows = order[first]
    is_target = np.zeros(len(u), dtype=bool)
    is_target[target_rows] = True
    target_item = np.full(inter.n_users, -1, dtype=np.int64)
    target_item[u[target_rows]] = i[target_rows]
    rng = np.random.default_rng([seed, 7])
    extra = (rng.random(len(u)) < extra_fraction) & ~is_target
    kept = np.bincount(u[~is_target & ~extra], minlength=inter.n_users)
    extra &= kept[u] >= 2
    return is_target | extra, target_item


@functools.lru_cache(maxsize=16)
def planted_explicit(
    seed: int = 0,
    *,
    n_users: int = 300,
    n_items: int = 200,
    density: float = 0.25,
    test_fraction: float = 0.2,
) -> KnownAnswerSplit:
    """Planted explicit ratings (1–5): withhold each user's best planted item + ``test_fraction``.

    The target of a user is the rated item with the highest planted expected rating
    ``b_i + 0.9·p_u·q_i`` (the user bias is constant per user). Results are cached; the returned
    objects are immutable.
    """
    truth = make_interactions(n_users, n_items, density=density, rating_scale=(1.0, 5.0), seed=seed)
    inter = truth.interactions
    u = inter.user_idx.astype(np.int64)
    i = inter.item_idx.astype(np.int64)
    aff = np.einsum("nd,nd->n", truth.user_factors[u], truth.item_factors[i]).astype(np.float64)
    preference = truth.item_bias[i].astype(np.float64) + 0.9 * aff
    mask, target = _withhold(truth, preference, test_fraction, seed)
    protocol = {
        "name": "planted_explicit",
        "seed": seed,
        "n_users": n_users,
        "n_items": n_items,
        "density": density,
        "test_fraction": test_fraction,
    }
    return KnownAnswerSplit(inter.subset(~mask), inter.subset(mask), target, truth, protocol)


@functools.lru_cache(maxsize=16)
def planted_implicit(
    seed: int = 0, *, n_users: int = 300, n_items: int = 200, density: float = 0.25
) -> KnownAnswerSplit:
    """Planted implicit feedback: withhold each user's highest-affinity (``p_u·q_i``) item.

    The test set holds exactly the targets. Results are cached; the returned objects are immutable.
    """
    truth = make_interactions(n_users, n_items, density=density, rating_scale=None, seed=seed)
    inter = truth.interactions
    u = inter.user_idx.astype(np.int64)
    i = inter.item_idx.astype(np.int64)
    aff = np.einsum("nd,nd->n", truth.user_factors[u], truth.item_factors[i]).astype(np.float64)
    mask, target = _withhold(truth, aff, 0.0, seed)
    protocol = {
        "name": "planted_implicit",
        "seed": seed,
        "n_users": n_users,
        "n_items": n_items,
        "density": density,
    }
    return KnownAnswerSplit(inter.subset(~mask), inter.subset(mask), target, truth, protocol)


# ---------------------------------------------------------------------- measurements
def hit_rate(model: Recommender, data: KnownAnswerSplit, k: int = 10) -> float:
    """Share of target users whose withheld item is in the model's top ``k`` (seen excluded)."""
    users = data.target_users
    idx, _ = model.recommend_idx(users, k, exclude_seen=True)
    return float((idx == data.target_item[users][:, None]).any(axis=1).mean())


def chance_hit_rate(data: KnownAnswerSplit, k: int = 10) -> float:
    """Expected hit rate of a uniformly random ranking of each target user's unseen items."""
    users = data.target_users
    unseen = data.train.n_items - data.train.user_counts()[users]
    return float(np.mean(np.minimum(k, unseen) / unseen))


def rating_rmse(model: Recommender, test: Interactions) -> float:
    """RMSE of ``model.predict`` over the (raw-id) pairs of ``test`` that it can score."""
    pred = model.predict(test.users.lookup(test.user_idx), test.items.lookup(test.item_idx))
    ok = np.isfinite(pred)
    return float(np.sqrt(np.mean((pred[ok].astype(np.float64) - test.rating[ok]) ** 2)))


def _string_ids(inter: Interactions) -> Interactions:
    """The same events with ids ``"u<id>"`` / ``"i<id>"`` (to catch index leaks)."""
    frame = inter.to_frame()
    frame["user_id"] = "u" + frame["user_id"].astype(str)
    frame["item_id"] = "i" + frame["item_id"].astype(str)
    meta = None
    if inter.item_meta is not None:
        meta = inter.item_meta.copy()
        meta.index = pd.Index(["i" + str(x) for x in meta.index], name="item_id")
    return Interactions.from_frame(
        frame, item_meta=meta, rating_scale=inter.rating_scale, source="string-ids"
    )


def _assert_same_reclists(a: list[RecList], b: list[RecList], rtol: float, atol: float) -> None:
    """Same users, same scores (within tolerance) and same items except swaps among near-ties."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert ra.user_id == rb.user_id
        assert len(ra) == len(rb), f"user {ra.user_id!r}: {len(ra)} vs {len(rb)} items"
        np.testing.assert_allclose(ra.scores, rb.scores, rtol=rtol, atol=atol)
        differ = np.flatnonzero(ra.item_ids != rb.item_ids)
        for j in differ:
            # A different item at position j is only acceptable if it ties with a neighbour.
            gap = np.abs(ra.scores - ra.scores[j])
            gap[j] = np.inf
            assert gap.min() <= atol + rtol * abs(float(ra.scores[j])), (
                f"user {ra.user_id!r}: position {j} differs ({ra.item_ids[j]!r} vs "
                f"{rb.item_ids[j]!r}) without a tie"
            )


def _looks_like_pickle(head: bytes) -> bool:
    """Pickle 2+ streams start with PROTO (0x80) and the protocol; torch.save writes a zip."""
    is_pickle = len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    return is_pickle or head[:4] == b"PK\x03\x04"


# ---------------------------------------------------------------------- the contract
@dataclass
class _FitOutcome:
    model: Recommender
    returned: object


class ModelContract:
    """Behaviour every registered model must show; subclass it once per model.

    Set ``model_name`` (the registry key) and, where needed, override the class attributes below
    to tune the checks for the model. Fitting happens once per class (class-scoped fixtures) plus
    one refit for the determinism check and one small fit with string ids, so keep ``config``
    small enough for a few seconds on two CPU cores.

    Attributes:
        model_name: registry name of the model under test.
        config: config overrides used for every fit (e.g. fewer epochs).
        explicit: True to train on planted ratings and require predictions inside the scale
            plus the RMSE check; False to train on planted implicit feedback.
        data_seed: seed of the known-answer data.
        check_ranking: run the known-answer ranking checks (False for models that cannot
            rank, e.g. the global mean).
        ranking_k: list length of the known-answer hit rate.
        hit_rate_margin: the model's hit rate must exceed popularity's by at least this much
            (None: do not compare against popularity).
        hit_rate_chance_factor: the model's hit rate must be at least this multiple of a
            random ranking's.
        max_rmse_ratio: explicit models' test RMSE must be at most this multiple of the
            global mean's (None: skip).
        fold_in_users: how many training users the fold-in check re-creates as new users.
        same_seed_atol: tolerance of the same-seed check (0: bit-identical).
        batch_rtol, batch_atol: tolerance of "a batch equals single calls".
        explain_users: users whose top recommendation the faithfulness check explains.
        faithful_rate: share of those where removing the 3 top explained history items must
            lower the item's fold-in score more than removing 3 random ones.
    """

    model_name: ClassVar[str] = ""
    config: ClassVar[Mapping[str, Any]] = {}
    explicit: ClassVar[bool] = True
    data_seed: ClassVar[int] = 0
    check_ranking: ClassVar[bool] = True
    ranking_k: ClassVar[int] = 10
    hit_rate_margin: ClassVar[float | None] = 0.10
    hit_rate_chance_factor: ClassVar[float] = 2.0
    max_rmse_ratio: ClassVar[float | None] = 0.95
    fold_in_users: ClassVar[int] = 40
    same_seed_atol: ClassVar[float] = 0.0
    batch_rtol: ClassVar[float] = 1e-5
    batch_atol: ClassVar[float] = 1e-6
    explain_users: ClassVar[int] = 6
    faithful_rate: ClassVar[float] = 0.8

    # ------------------------------------------------------------------ hooks
    @classmethod
    def make_model(cls, **overrides: Any) -> Recommender:
        """A fresh, unfitted model with the class config (plus ``overrides``)."""
        return create(cls.model_name, {**cls.config, **overrides})

    @classmethod
    def fit_model(cls, model: Recommender, train: Interactions) -> object:
        """Fit ``model`` on ``train`` and return what ``fit`` returned (override for extras)."""
        return model.fit(train)

    @classmethod
    def known_answer_data(cls) -> KnownAnswerSplit:
        """The planted split this model is checked on."""
        return planted_explicit(cls.data_seed) if cls.explicit else planted_implicit(cls.data_seed)

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def planted(cls) -> KnownAnswerSplit:
        """The known-answer split (class scope)."""
        return cls.known_answer_data()

    @pytest.fixture(scope="class")
    @classmethod
    def fit_outcome(cls, planted: KnownAnswerSplit) -> _FitOutcome:
        """One fit on the known-answer training data, shared by the whole class."""
        model = cls.make_model()
        return _FitOutcome(model, cls.fit_model(model, planted.train))

    @pytest.fixture
    def fitted(self, fit_outcome: _FitOutcome) -> Recommender:
        """The fitted model under test."""
        return fit_outcome.model

    @staticmethod
    def sample_users(planted: KnownAnswerSplit, n: int = 25) -> npt.NDArray[Any]:
        """Raw ids of a deterministic spread of training users."""
        ids = planted.train.users.ids
        pick = np.unique(np.linspace(0, len(ids) - 1, min(n, len(ids))).round().astype(np.int64))
        return ids[pick]

    # ------------------------------------------------------------------ construction
    def test_registered_under_its_name(self) -> None:
        assert self.model_name, "set model_name on the contract subclass"
        cls = get_class(self.model_name)
        assert issubclass(cls, Recommender)
        assert cls.name == self.model_name
        model = self.make_model()
        assert not model.is_fitted
        assert isinstance(repr(model), str)

    def test_unknown_config_key_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="no_such_option"):
            self.make_model(no_such_option=1)

    def test_fit_returns_self(self, fit_outcome: _FitOutcome) -> None:
        assert fit_outcome.returned is fit_outcome.model
        assert fit_outcome.model.is_fitted

    def test_methods_before_fit_raise_not_fitted(self, planted: KnownAnswerSplit) -> None:
        model = self.make_model()
        user, item = planted.train.users.ids[0], planted.train.items.ids[0]
        with pytest.raises(NotFittedError):
            model.predict([user], [item])
        with pytest.raises(NotFittedError):
            model.recommend([user], k=5)

    # ------------------------------------------------------------------ predictions
    def test_predictions_finite_and_in_scale(
        self, fitted: Recommender, planted: KnownAnswerSplit
    ) -> None:
        for part in (planted.train, planted.test):
            pred = fitted.predict(
                part.users.lookup(part.user_idx), part.items.lookup(part.item_idx)
            )
            assert pred.shape == (len(part),)
            assert np.isfinite(pred).all(), "known (user, item) pairs must get finite predictions"
            if self.explicit:
                assert fitted.predicts_ratings
                lo, hi = planted.train.rating_scale or (-np.inf, np.inf)
                assert pred.min() >= lo and pred.max() <= hi, (
                    "predictions must lie in the rating scale"
                )

    def test_predict_agrees_with_score_items(
        self, fitted: Recommender, planted: KnownAnswerSplit
    ) -> None:
        users = np.arange(0, planted.train.n_users, 7, dtype=np.int64)
        scores = fitted.score_items(users)
        assert scores.shape == (len(users), planted.train.n_items)
        rng = np.random.default_rng(0)
        items = rng.integers(0, planted.train.n_items, len(users))
        pairwise = fitted.predict_idx(users, items)
        np.testing.assert_allclose(
            pairwise,
            scores[np.arange(len(users)), items],
            rtol=self.batch_rtol,
            atol=self.batch_atol,
        )

    def test_unknown_ids_predict_nan(self, fitted: Recommender, planted: KnownAnswerSplit) -> None:
        user, item = planted.train.users.ids[0], planted.train.items.ids[0]
        pred = fitted.predict([user, -987654, user], [item, item, -987654])
        assert np.isfinite(pred[0])
        assert np.isnan(pred[1]) and np.isnan(pred[2])

    # ------------------------------------------------------------------ recommendations
    @pytest.fixture
    def tiny_chunks(self, monkeypatch: pytest.MonkeyPatch) -> int:
        """Score users in chunks of 7, so that one call crosses several chunk boundaries.

        The real chunk (1,024 users) exceeds every known-answer set, so a per-chunk bug (the
        seen mask built from the first chunk's users) would otherwise never show.
        """
        import recforge.models.base as base

        monkeypatch.setattr(base, "DEFAULT_SCORE_CHUNK", 7)
        return 7

    @staticmethod
    def _assert_no_seen(recs: list[RecList], planted: KnownAnswerSplit) -> None:
        seen = planted.train.csr("binary")
        for rec in recs:
            u = planted.train.users.index_one(rec.user_id)
            seen_items = set(planted.train.items.lookup(seen[u].indices).tolist())
            assert not seen_items & set(rec.item_ids.tolist()), (
                f"user {rec.user_id!r}: training items recommended"
            )

    def test_recommend_top_k_sorted_without_seen(
        self, fitted: Recommender, planted: KnownAnswerSplit, tiny_chunks: int
    ) -> None:
        k = 10
        users = self.sample_users(planted)
        assert len(users) > 3 * tiny_chunks
        recs = fitted.recommend(users, k=k)
        assert [r.user_id for r in recs] == users.tolist()
        for rec in recs:
            assert 0 < len(rec) <= k
            assert len(set(rec.item_ids.tolist())) == len(rec), "duplicate items"
            assert np.all(np.diff(rec.scores) <= 0), "scores must be sorted best first"
        self._assert_no_seen(recs, planted)
        full = fitted.recommend(users[:3], k=k, exclude_seen=False)
        assert all(len(r) == k for r in full)

    def test_recommend_without_exclusion_is_the_score_ranking(
        self, fitted: Recommender, planted: KnownAnswerSplit, tiny_chunks: int
    ) -> None:
        # exclude_seen=False must be exactly the ranking of score_items (non-finite scores last,
        # ties by lower item index), across chunk boundaries, showing display_scores' values.
        k = 10
        users = self.sample_users(planted)
        recs = fitted.recommend(users, k=k, exclude_seen=False)
        raw = np.asarray(fitted.score_items(planted.train.users.index(users)), dtype=np.float32)
        shown = fitted.display_scores(raw)
        scores = raw.copy()
        scores[~np.isfinite(scores)] = np.float32(-np.finfo(np.float32).max)
        expected = []
        for uid, row, values in zip(users, scores, shown, strict=True):
            order = np.argsort(-row, kind="stable")[:k]
            expected.append(RecList(uid, planted.train.items.lookup(order), values[order]))
        _assert_same_reclists(recs, expected, self.batch_rtol, self.batch_atol)

    def test_recommend_respects_candidates(
        self, fitted: Recommender, planted: KnownAnswerSplit, tiny_chunks: int
    ) -> None:
        allowed = planted.train.items.ids[::3]
        (rec,) = fitted.recommend(planted.train.users.ids[:1], k=5, candidates=allowed)
        assert len(rec) > 0
        assert set(rec.item_ids.tolist()) <= set(allowed.tolist())
        # With candidates, seen items stay excluded (for every user, across chunk boundaries).
        users = self.sample_users(planted)
        recs = fitted.recommend(users, k=len(allowed), candidates=allowed)
        assert [r.user_id for r in recs] == users.tolist()
        for r in recs:
            assert set(r.item_ids.tolist()) <= set(allowed.tolist())
            assert len(r) > 0
        self._assert_no_seen(recs, planted)

    def test_k_larger_than_catalogue(self, fitted: Recommender, planted: KnownAnswerSplit) -> None:
        user = planted.train.users.ids[0]
        n_seen = planted.train.csr("binary")[0].nnz
        (rec,) = fitted.recommend([user], k=planted.train.n_items + 25)
        assert len(rec) == planted.train.n_items - n_seen
        assert len(set(rec.item_ids.tolist())) == len(rec)

    def test_unknown_user_recommend_raises(self, fitted: Recommender) -> None:
        with pytest.raises(UnknownIdError):
            fitted.recommend([-987654], k=5)

    def test_batch_equals_single_calls(
        self, fitted: Recommender, planted: KnownAnswerSplit
    ) -> None:
        users = self.sample_users(planted, 6)
        batch = fitted.recommend(users, k=10)
        single = [fitted.recommend([u], k=10)[0] for u in users]
        _assert_same_reclists(batch, single, self.batch_rtol, self.batch_atol)
        items = planted.train.items.ids[: len(users)]
        together = fitted.predict(users, items)
        apart = np.concatenate(
            [fitted.predict([u], [i]) for u, i in zip(users, items, strict=True)]
        )
        np.testing.assert_allclose(together, apart, rtol=self.batch_rtol, atol=self.batch_atol)

    # ------------------------------------------------------------------ reproducibility
    def test_same_seed_gives_identical_scores(
        self, fitted: Recommender, planted: KnownAnswerSplit
    ) -> None:
        again = self.make_model()
        self.fit_model(again, planted.train)
        users = np.arange(planted.train.n_users, dtype=np.int64)
        np.testing.assert_allclose(
            again.score_items(users), fitted.score_items(users), rtol=0, atol=self.same_seed_atol
        )

    def test_save_load_gives_identical_scores(
        self, fitted: Recommender, planted: KnownAnswerSplit, tmp_path: Path
    ) -> None:
        from recforge.artifacts import load_run

        run_dir = fitted.save(tmp_path / "run")
        files = [p for p in run_dir.rglob("*") if p.is_file()]
        assert (run_dir / "weights.safetensors").is_file()
        assert not [p for p in files if p.suffix in PICKLE_SUFFIXES], "pickle-like files saved"
        for p in files:
            if p.name != "weights.safetensors":
                assert not _looks_like_pickle(p.read_bytes()[:4]), f"{p.name} looks like a pickle"
        run = load_run(run_dir)
        loaded = run.model
        assert type(loaded) is type(fitted)
        assert loaded.config == fitted.config
        assert run.manifest["model_name"] == self.model_name
        users = np.arange(planted.train.n_users, dtype=np.int64)
        np.testing.assert_array_equal(loaded.score_items(users), fitted.score_items(users))
        raw_u = planted.test.users.lookup(planted.test.user_idx)
        raw_i = planted.test.items.lookup(planted.test.item_idx)
        np.testing.assert_array_equal(loaded.predict(raw_u, raw_i), fitted.predict(raw_u, raw_i))
        sample = self.sample_users(planted, 5)
        _assert_same_reclists(loaded.recommend(sample, k=10), fitted.recommend(sample, k=10), 0, 0)

    def test_string_ids_round_trip(self, planted: KnownAnswerSplit, tmp_path: Path) -> None:
        # Fit on a string-id copy of a slice of the data: ids in and out must stay raw strings.
        small = _string_ids(planted.train.subset(planted.train.user_idx < 80).compact())
        model = self.make_model()
        self.fit_model(model, small)
        user = small.users.ids[0]
        (rec,) = model.recommend([user], k=5)
        assert rec.user_id == user
        assert all(isinstance(x, str) and x.startswith("i") for x in rec.item_ids.tolist())
        loaded = type(model).load(model.save(tmp_path / "run"))
        assert loaded.users_ == small.users and loaded.items_ == small.items
        (again,) = loaded.recommend([user], k=5)
        assert again.item_ids.tolist() == rec.item_ids.tolist()

    def test_training_loss_decreases(self, fitted: Recommender) -> None:
        history = getattr(fitted, "history_", None)
        if not isinstance(history, pd.DataFrame) or "train_loss" not in history.columns:
            pytest.skip(f"{self.model_name} exposes no history_ with a train_loss column")
        loss = history["train_loss"].to_numpy(dtype=np.float64)
        if len(loss) < 2:
            pytest.skip("history has fewer than two epochs")
        assert np.isfinite(loss).all()
        assert loss[-1] < loss[0], f"train_loss went from {loss[0]:.6g} to {loss[-1]:.6g}"

    # ------------------------------------------------------------------ known answers
    def test_known_answer_ranking(self, fitted: Recommender, planted: KnownAnswerSplit) -> None:
        if not self.check_ranking:
            pytest.skip(f"{self.model_name} does not rank (check_ranking = False)")
        k = self.ranking_k
        got = hit_rate(fitted, planted, k)
        chance = chance_hit_rate(planted, k)
        assert got >= self.hit_rate_chance_factor * chance, (
            f"hit-rate@{k} {got:.3f} is not {self.hit_rate_chance_factor}x chance ({chance:.3f})"
        )
        if self.hit_rate_margin is not None:
            pop = hit_rate(create("popularity").fit(planted.train), planted, k)
            assert got >= pop + self.hit_rate_margin, (
                f"hit-rate@{k} {got:.3f} does not beat popularity ({pop:.3f}) by "
                f"{self.hit_rate_margin}"
            )

    def test_known_answer_rmse(self, fitted: Recommender, planted: KnownAnswerSplit) -> None:
        if not self.explicit or self.max_rmse_ratio is None:
            pytest.skip("RMSE check applies to explicit models only")
        got = rating_rmse(fitted, planted.test)
        base = rating_rmse(create("global_mean").fit(planted.train), planted.test)
        assert got <= self.max_rmse_ratio * base + 1e-9, (
            f"test RMSE {got:.4f} is not below {self.max_rmse_ratio} x global mean ({base:.4f})"
        )

    # ------------------------------------------------------------------ new users, item vectors
    def test_fold_in_new_user(self, fitted: Recommender, planted: KnownAnswerSplit) -> None:
        if type(fitted).fold_in_scores is Recommender.fold_in_scores:
            with pytest.raises(ConfigError):
                fitted.recommend_for_ratings({planted.train.items.ids[0]: 4.0}, k=5)
            pytest.skip(f"{self.model_name} does not support new users")
        k = self.ranking_k
        users = planted.target_users[: self.fold_in_users]
        csr = planted.train.csr()
        hits = 0
        for u in users:
            lo, hi = csr.indptr[u], csr.indptr[u + 1]
            ratings = dict(
                zip(
                    planted.train.items.lookup(csr.indices[lo:hi]).tolist(),
                    csr.data[lo:hi].tolist(),
                    strict=True,
                )
            )
            rec = fitted.recommend_for_ratings(ratings, k=k)
            assert len(rec) == k
            assert np.all(np.diff(rec.scores) <= 0) and np.isfinite(rec.scores).all()
            assert not set(ratings) & set(rec.item_ids.tolist()), "rated items recommended"
            hits += int(
                planted.train.items.ids[planted.target_item[u]] in set(rec.item_ids.tolist())
            )
        pred = fitted.predict_for_ratings(ratings, planted.train.items.ids[:5])
        assert np.isfinite(pred).all()
        if self.explicit:
            lo_r, hi_r = planted.train.rating_scale or (-np.inf, np.inf)
            assert pred.min() >= lo_r and pred.max() <= hi_r
        if self.check_ranking:
            chance = chance_hit_rate(planted, k)
            got = hits / len(users)
            assert got >= self.hit_rate_chance_factor * chance, (
                f"fold-in hit-rate@{k} {got:.3f} is not {self.hit_rate_chance_factor}x "
                f"chance ({chance:.3f})"
            )

    def test_similar_items(self, fitted: Recommender, planted: KnownAnswerSplit) -> None:
        item = planted.train.items.ids[0]
        try:
            rec = fitted.similar_items(item, k=5)
        except ConfigError:
            # Refusing is fine for a model without item vectors (and no similarity of its own).
            assert fitted.item_vectors() is None, "item_vectors() exist but similar_items refuses"
            return
        vecs = fitted.item_vectors()
        assert vecs is None or vecs.shape[0] == planted.train.n_items
        assert rec.user_id == item
        # A similar-items list says so: its frame names the item as similar_to, not user_id.
        assert rec.query == "item"
        assert list(rec.to_frame().columns[:3]) == ["similar_to", "rank", "item_id"]
        assert 0 < len(rec) <= 5 and item not in set(rec.item_ids.tolist())
        assert np.all(np.diff(rec.scores) <= 0)

    # ------------------------------------------------------------------ explanations
    def test_explanations_are_faithful(
        self, fitted: Recommender, planted: KnownAnswerSplit
    ) -> None:
        """Weights add up, and the top-3 explained history items matter more than 3 random ones.

        Scores are re-computed through the fold-in (the path explanations use) with the items
        removed; a model whose fold-in ignores the history (global mean, popularity) is skipped.
        """
        if type(fitted).fold_in_scores is Recommender.fold_in_scores:
            pytest.skip(f"{self.model_name} does not support new users, so it cannot explain")
        rng = np.random.default_rng(0)
        seen = fitted.seen_
        wins = trials = 0
        for uid in self.sample_users(planted, self.explain_users):
            u = int(fitted.users_.index_one(uid))
            lo, hi = int(seen.indptr[u]), int(seen.indptr[u + 1])
            if hi - lo < 6:
                continue
            order = np.argsort(fitted.seen_order_[lo:hi], kind="stable")
            idx = seen.indices[lo:hi][order].astype(np.int64)
            vals = np.asarray(fitted.seen_ratings_[lo:hi], dtype=np.float32)[order]
            item = fitted.recommend(uid, k=1)[0].item_ids[0]
            t = int(fitted.items_.index_one(item))
            exp = fitted.explain(uid, item, k=3)
            parts = sum(c.weight for c in exp.contributions) + exp.rest + exp.residual
            assert abs(parts - exp.raw_score) <= 1e-4 * max(1.0, abs(exp.raw_score))
            assert exp.contributions == tuple(sorted(exp.contributions, key=lambda c: -c.weight)), (
                "contributions are not sorted by weight"
            )
            new = fitted.explain(
                dict(zip(planted.train.items.lookup(idx).tolist(), vals.tolist(), strict=True)),
                item,
                k=3,
            )
            full = float(fitted.fold_in_scores(idx, vals)[t])
            assert abs(new.score - full) <= 1e-4 * max(1.0, abs(full)), (
                f"new-user explanation score {new.score} != fold-in score {full}"
            )
            weights = [c.weight for c in new.contributions]
            if max(abs(w) for w in weights) <= 1e-9:
                continue  # the history does not move this model's score (global mean, popularity)
            top = fitted.items_.index([c.item_id for c in new.contributions]).astype(np.int64)

            random3 = rng.choice(idx, size=3, replace=False)
            keep_top, keep_random = ~np.isin(idx, top), ~np.isin(idx, random3)
            drop_top = full - float(fitted.fold_in_scores(idx[keep_top], vals[keep_top])[t])
            drop_random = full - float(
                fitted.fold_in_scores(idx[keep_random], vals[keep_random])[t]
            )
            wins += int(drop_top > drop_random)
            trials += 1
        if not trials:
            pytest.skip(f"{self.model_name}: the history does not move its scores")
        assert wins / trials >= self.faithful_rate, (
            f"removing the top-3 explained items beat 3 random ones in {wins}/{trials} pairs"
        )
