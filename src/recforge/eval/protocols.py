"""Named evaluation protocols: the split, relevance, candidates and metrics behind every figure.

A protocol is one fixed recipe, named so that every number it produces can say where it came
from (issue #5, ``docs/protocols.md``):

=======================  ==========================================================================
``ml100k-folds``         GroupLens' ML-100k ``u1..u5`` base/test files; RMSE, MAE (mean over folds
                         and u1 alone).
``random-80-20``         row-level random 80/20 (seed 42); RMSE, MAE, like-accuracy (rating > 3).
``ml1m-90-10``           ML-1M, random 90/10 of ratings, seeds 42..46; RMSE, MAE, like-accuracy
                         (mean ± sd over seeds; the AutoRec / GLocal-K protocol).
``ml1m-5fold``           ML-1M, 5-fold CV of ratings (seed 42; Surprise's table); RMSE, MAE.
``temporal-user-80-20``  each user's last 20 % in time (ceil, >= 1; ties by item id; users with < 5
                         events stay in train); every rating a positive; full ranking over train
                         items minus the user's own; Recall/NDCG@10/20, HR/Prec/MRR/coverage@10.
``loo-latest``           leave-latest-out with full ranking: each user's last event is test, the one
                         before it validation (carved from train); NDCG/HR/MRR@10, NDCG/HR@20.
``ncf-loo``              leave-latest-out; the held-out item ranked among 99 sampled negatives;
                         HR@10 and NDCG@10, labelled "sampled" wherever printed.
``heldout-users``        Liang et al. 2018: positives = ratings >= 4; 10 % validation users, 10 %
                         test users; 80 % of each held-out user's history folded in; Recall@20/50,
                         NDCG@100 on the rest.
=======================  ==========================================================================

The API used by the benchmark runner, ``recforge train/evaluate --protocol`` and tuning::

    proto = get_protocol("temporal-user-80-20")        # available_protocols() lists the names
    for ps in proto.splits(data):                      # ProtocolSplit per fold / seed
        inner = proto.validation_split(ps)             # same rules on ps.train only (tuning)
        model.fit(ps.train)
        result = proto.evaluate(model, ps)             # {"metrics": {...}, "record": {...}, ...}
    proto.primary_metric, proto.higher_is_better       # "ndcg@10", True

Splits reuse :mod:`recforge.data.split` (which leak-checks every split) and evaluation reuses
:mod:`recforge.eval.evaluate` and :mod:`recforge.eval.foldin`; this module only fixes their
parameters and names the result. :func:`evaluate_run` scores a saved run and refuses a run that
saw the protocol's test data in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from recforge.data.datasource import DataSource
from recforge.data.interactions import Interactions
from recforge.data.split import HeldOutSplit, Split
from recforge.errors import ConfigError
from recforge.models.base import Recommender

if TYPE_CHECKING:
    from recforge.eval.evaluate import EvalReport

Part = Literal["test", "valid"]

__all__ = [
    "Protocol",
    "ProtocolSplit",
    "available_protocols",
    "describe_protocols",
    "evaluate_run",
    "get_protocol",
    "leaked_test_events",
]


# ---------------------------------------------------------------------------------- split holder
@dataclass(frozen=True, eq=False)
class ProtocolSplit:
    """One fold (or seed) of a named protocol.

    Attributes:
        protocol: the protocol's registry name (e.g. ``"ml100k-folds"``).
        fold: the fold's label: ``"u1"``..``"u5"``, ``"seed=42"``, or ``"0"`` for a protocol with a
            single deterministic split; validation carves get a ``"/valid"`` suffix.
        split: the underlying :class:`~recforge.data.split.Split` or
            :class:`~recforge.data.split.HeldOutSplit`.
        part: which held-out part :meth:`Protocol.evaluate` scores: ``"test"``, or ``"valid"`` for
            ``heldout-users`` validation users (other protocols carve validation as a new split
            whose ``test`` is the validation part, so their part stays ``"test"``).
    """

    protocol: str
    fold: str
    split: Split | HeldOutSplit
    part: Part = "test"

    @property
    def train(self) -> Interactions:
        """The events a model may be fitted on."""
        return self.split.train

    def record(self) -> dict[str, Any]:
        """JSON-able description stored in run manifests and benchmark rows."""
        return {
            "name": self.protocol,
            "fold": self.fold,
            "part": self.part,
            "split": self.split.protocol.describe(),
            "n_train": len(self.split.train),
            "train_fingerprint": self.split.train.fingerprint(),
        }

    def __repr__(self) -> str:
        return f"ProtocolSplit({self.protocol} fold {self.fold} [{self.part}]: {self.split!r})"


# ------------------------------------------------------------------------------------ protocols
class Protocol:
    """Base of the named protocols. Subclasses fix the split and the evaluation.

    Attributes:
        name: registry name.
        description: one paragraph (also written into benchmark reports).
        metrics: the summary keys this protocol reports, in display order.
        primary_metric: the key tuning optimises and tables sort by.
        higher_is_better: direction of ``primary_metric``.
        kind: ``"rating"`` (needs a model that predicts ratings) or ``"ranking"``.
        sampled: True for sampled-negative metrics (labelled "sampled" wherever printed).
        default_folds: how many folds/seeds :meth:`splits` gives by default.
        max_folds: how many distinct folds/seeds exist (None: any number of seeds).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    kind: ClassVar[Literal["rating", "ranking"]]
    sampled: ClassVar[bool] = False
    default_folds: ClassVar[int] = 1
    max_folds: ClassVar[int | None] = 1

    # ----------------------------------------------------------------- naming
    @property
    def label(self) -> str:
        """The name as printed: ``ncf-loo (sampled)`` for sampled protocols."""
        return f"{self.name} (sampled)" if self.sampled else self.name

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (for benchmark.json and docs)."""
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "kind": self.kind,
            "sampled": self.sampled,
            "metrics": list(self.metrics),
            "primary_metric": self.primary_metric,
            "higher_is_better": self.higher_is_better,
            "default_folds": self.default_folds,
        }

    def __repr__(self) -> str:
        return f"<protocol {self.label}>"

    # ----------------------------------------------------------------- checks
    def applicable(self, data: Interactions) -> str | None:
        """None when the protocol can split ``data``; otherwise why not (one line)."""
        if self.kind == "rating" and data.rating_scale is None:
            return f"{self.name} needs explicit ratings; {data.source} is implicit feedback"
        return None

    def model_problem(self, model: Recommender) -> str | None:
        """None when ``model`` can be scored by this protocol; otherwise why not (one line)."""
        if self.kind == "rating" and not model.predicts_ratings:
            return f"{model.name} does not predict ratings (this config ranks items only)"
        return None

    # ----------------------------------------------------------------- splits
    def fold_labels(self, n: int | None = None) -> list[str]:
        """Labels of the first ``n`` folds/seeds (default :attr:`default_folds`)."""
        n = self.default_folds if n is None else int(n)
        if n < 1:
            raise ConfigError(f"{self.name}: the number of folds must be >= 1, got {n}")
        if self.max_folds is not None:
            n = min(n, self.max_folds)
        return [self._label(i) for i in range(n)]

    #: First seed of a seeded protocol (folds are seeds ``seed, seed + 1, ...``); None otherwise.
    seed: ClassVar[int | None] = None

    def _label(self, i: int) -> str:
        return str(i) if self.seed is None else f"seed={self.seed + i}"

    @staticmethod
    def _seed_of(label: str) -> int:
        return int(label.removeprefix("seed="))

    def _resolve_fold(self, fold: int | str) -> str:
        text = str(fold).strip()
        if text.isdigit():
            i = int(text)
            if self.max_folds is not None and i >= self.max_folds:
                raise ConfigError(
                    f"{self.name}: fold {i} out of range; valid: "
                    f"0..{self.max_folds - 1} ({', '.join(self.fold_labels(self.max_folds))})"
                )
            return self._label(i)
        valid = self.fold_labels(self.max_folds or max(self.default_folds, 1))
        if text in valid or (self.max_folds is None and text.startswith("seed=")):
            return text
        raise ConfigError(f"{self.name}: unknown fold {fold!r}; valid: {', '.join(valid)}")

    def split(self, data: Interactions, fold: int | str = 0) -> ProtocolSplit:
        """One fold: by index (``0``, ``1``...) or by label (``"u1"``, ``"seed=43"``)."""
        problem = self.applicable(data)
        if problem:
            raise ConfigError(problem)
        label = self._resolve_fold(fold)
        return ProtocolSplit(self.name, label, self._make(data, label))

    def splits(self, data: Interactions, n: int | None = None) -> list[ProtocolSplit]:
        """The protocol's folds/seeds (the first ``n``; default :attr:`default_folds`)."""
        return [self.split(data, label) for label in self.fold_labels(n)]

    def _make(self, data: Interactions, label: str) -> Split | HeldOutSplit:
        raise NotImplementedError

    def validation_split(self, ps: ProtocolSplit) -> ProtocolSplit:
        """The same rules applied to ``ps.train`` only: what tuning fits and scores on.

        The result's ``train`` is a part of ``ps.train`` and its evaluated part is the rest of
        ``ps.train``, so the test part of ``ps`` is never touched.
        """
        from recforge.data.split import carve_validation

        if not isinstance(ps.split, Split):
            raise ConfigError(f"{self.name}: cannot carve validation from {ps.split!r}")
        return ProtocolSplit(self.name, f"{ps.fold}/valid", carve_validation(ps.split))

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, model: Recommender, ps: ProtocolSplit) -> dict[str, Any]:
        """Score a model fitted on ``ps.train``. Never trains.

        Returns:
            ``{"protocol": label, "protocol_name", "fold", "part", "metrics": {key: value for the
            protocol's metrics}, "record": {protocol description + split + evaluation details},
            "rating"|"ranking": the full EvalReport dict}``.
        """
        return self.evaluate_with_report(model, ps)[0]

    def evaluate_with_report(
        self, model: Recommender, ps: ProtocolSplit
    ) -> tuple[dict[str, Any], EvalReport]:
        """:meth:`evaluate`'s dict plus the :class:`EvalReport` behind it.

        The report carries ``per_user`` (one row per test user), which the JSON-able dict leaves
        out; the benchmark keeps it for paired comparisons between rows.
        """
        if ps.protocol != self.name:
            raise ConfigError(f"split of protocol {ps.protocol} given to protocol {self.name}")
        problem = self.model_problem(model)
        if problem:
            raise ConfigError(f"{self.name}: {problem}")
        report = self._evaluate(model, ps)
        summary = report.summary
        metrics = {m: _float(summary.get(m)) for m in self.metrics}
        record = {
            **self.to_dict(),
            "fold": ps.fold,
            "part": ps.part,
            "split": ps.split.protocol.to_dict(),
            "split_description": ps.split.protocol.describe(),
            "evaluation": report.protocol,
        }
        used = report.protocol
        shown = []
        if "like_threshold" in used:
            shown.append(f"like > {used['like_threshold']:g}")
        if "relevance_threshold" in used:
            rel = used["relevance_threshold"]
            shown.append("every test event relevant" if rel is None else f"relevant >= {rel:g}")
        return {
            "protocol": f"{self.label} fold {ps.fold}",
            "threshold_text": ", ".join(shown),
            "protocol_name": self.name,
            "fold": ps.fold,
            "part": ps.part,
            "metrics": metrics,
            "record": record,
            ("rating" if self.kind == "rating" else "ranking"): report.to_dict(),
        }, report

    def _evaluate(self, model: Recommender, ps: ProtocolSplit) -> Any:
        raise NotImplementedError


class _RatingProtocol(Protocol):
    """Rating prediction: RMSE/MAE (like: rating > mid-scale, 3 on 1-5) on every test rating."""

    primary_metric = "rmse"
    higher_is_better = False
    kind = "rating"

    def _evaluate(self, model: Recommender, ps: ProtocolSplit) -> Any:
        from recforge.eval.evaluate import evaluate_ratings
        from recforge.eval.thresholds import thresholds_for

        like = thresholds_for(ps.split.train).like
        return evaluate_ratings(model, ps.split, like_threshold=3.0 if like is None else like)


class ML100kFolds(_RatingProtocol):
    """GroupLens' canonical ML-100k folds (``u1.base``/``u1.test`` .. ``u5``)."""

    name = "ml100k-folds"
    description = (
        "MovieLens 100k, the five canonical GroupLens folds u1..u5 (u{n}.base for training, "
        "u{n}.test for testing; disjoint 80/20 test sets). Every test rating is predicted; test "
        "rows whose user or item is absent from the base file get the model's global mean and "
        "are counted. RMSE and MAE over all test rows, reported as mean ± sd over the folds and "
        "for u1 alone."
    )
    metrics = ("rmse", "mae")
    default_folds = 5
    max_folds = 5

    def _label(self, i: int) -> str:
        return f"u{i + 1}"

    def applicable(self, data: Interactions) -> str | None:
        if data.source != "ml-100k":
            return f"{self.name} uses the ML-100k fold files; run it with --data ml-100k"
        return super().applicable(data)

    def _make(self, data: Interactions, label: str) -> Split:
        from recforge.pipeline import resolve_split

        out: Split = resolve_split(data, f"ml100k:{label}")
        return out


class Random8020(_RatingProtocol):
    """Row-level random 80/20, seed 42 (the split of the reference material)."""

    name = "random-80-20"
    description = (
        "Row-level random hold-out: a permutation seeded with 42 puts round(0.2·n) ratings in "
        "test and the rest in train (further seeds 43, 44... when several are asked for). Every "
        "test rating is predicted (global-mean fallback for unknown users/items, counted). RMSE, "
        "MAE and like-accuracy: the share of test ratings where (prediction > 3) equals "
        "(rating > 3)."
    )
    metrics = ("rmse", "mae", "like_accuracy")
    max_folds = None
    seed = 42

    def _make(self, data: Interactions, label: str) -> Split:
        from recforge.data.split import random_holdout

        return random_holdout(data, 0.2, seed=self._seed_of(label))


_ML1M_SOURCES = ("ml-1m", "ml-1m-ratings")


class _ML1MRatingProtocol(_RatingProtocol):
    """A rating protocol defined on MovieLens 1M only (``ml-1m`` or ``ml-1m-ratings``)."""

    def applicable(self, data: Interactions) -> str | None:
        if data.source not in _ML1M_SOURCES:
            return (
                f"{self.name} is defined on MovieLens 1M; run it with --data ml-1m-ratings "
                f"(or ml-1m), not {data.source}"
            )
        return super().applicable(data)


class ML1M9010(_ML1MRatingProtocol):
    """MovieLens 1M, random 90/10 of ratings over 5 seeds (AutoRec / GLocal-K's protocol)."""

    name = "ml1m-90-10"
    description = (
        "MovieLens 1M (ml-1m-ratings or ml-1m), row-level random hold-out: a permutation seeded "
        "with 42, 43, 44, 45, 46 (one split per seed) puts round(0.1·n) ratings in test and the "
        "rest in train, the protocol of AutoRec (Sedhain et al. 2015) and GLocal-K (Han et al. "
        "2021). Every test rating is predicted (global-mean fallback for unknown users/items, "
        "counted). RMSE, MAE and like-accuracy (rating > 3), reported as mean ± sd over seeds."
    )
    metrics = ("rmse", "mae", "like_accuracy")
    default_folds = 5
    max_folds = None
    seed = 42

    def _make(self, data: Interactions, label: str) -> Split:
        from recforge.data.split import random_holdout

        return random_holdout(data, 0.1, seed=self._seed_of(label))


class ML1M5Fold(_ML1MRatingProtocol):
    """MovieLens 1M, Surprise's 5-fold cross-validation of ratings."""

    name = "ml1m-5fold"
    description = (
        "MovieLens 1M (ml-1m-ratings or ml-1m), row-level 5-fold cross-validation as in "
        "Surprise's benchmark table: one permutation seeded with 42 cut into 5 folds of equal "
        "size (± 1 row); fold f tests on its rows and trains on the other four. Every test "
        "rating is predicted (global-mean fallback, counted). RMSE, MAE and like-accuracy "
        "(rating > 3), mean ± sd over the folds."
    )
    metrics = ("rmse", "mae", "like_accuracy")
    default_folds = 5
    max_folds = 5
    kfold_seed = 42

    def _make(self, data: Interactions, label: str) -> Split:
        from recforge.data.split import kfold_fold

        return kfold_fold(data, 5, int(label), seed=self.kfold_seed)


class _TimeOrderedProtocol(Protocol):
    """A protocol whose split follows time: refused on data without timestamps."""

    def applicable(self, data: Interactions) -> str | None:
        if not data.has_timestamps:
            return (
                f"{self.name} splits by time, and {data.source} has no timestamps (map a time "
                "column with --time-col, or pick a random protocol)"
            )
        return super().applicable(data)


class _TimeOrderedRanking(_TimeOrderedProtocol):
    """Full ranking after a time-ordered split: every test event relevant, train items ranked."""

    primary_metric = "ndcg@10"
    higher_is_better = True
    kind = "ranking"

    def _evaluate(self, model: Recommender, ps: ProtocolSplit) -> Any:
        from recforge.eval.evaluate import evaluate_ranking

        return evaluate_ranking(
            model,
            ps.split,
            ks=(10, 20),
            relevance_threshold=None,
            candidates="train_items",
            exclude_seen=True,
        )


class TemporalUser8020(_TimeOrderedRanking):
    """Per-user temporal 80/20, full ranking."""

    name = "temporal-user-80-20"
    description = (
        "Every rating is a positive interaction. Each user's interactions are sorted by "
        "timestamp (ties by item id) and the last 20% go to test (ceil, at least 1, at least one "
        "kept in train); users with fewer than 5 interactions stay wholly in train. Candidates "
        "are every item present in train minus the user's own train items (full ranking, no "
        "sampling). Recall@k = hits / min(k, |test|); NDCG@k with binary gains and ideal DCG "
        "over min(k, |test|); HR@10, Precision@10 (hits / 10), MRR@10; coverage@10 = share of "
        "candidate items that appear in some top-10. Means over test users."
    )
    metrics = (
        "recall@10",
        "recall@20",
        "ndcg@10",
        "ndcg@20",
        "hit_rate@10",
        "precision@10",
        "mrr@10",
        "coverage@10",
    )

    def _make(self, data: Interactions, label: str) -> Split:
        from recforge.data.split import temporal_user

        return temporal_user(data, 0.2, min_events=5)


class LooLatest(_TimeOrderedRanking):
    """Leave-latest-out with full ranking (the sequential-recommendation protocol)."""

    name = "loo-latest"
    description = (
        "Leave-latest-out, full ranking: every rating is a positive; each user's events are "
        "sorted by timestamp (ties by item id) and the latest one is the test item; users with "
        "a single event stay wholly in train. The validation carve (tuning) applies the same "
        "rule to train, so the event before the test one is the validation item and the test "
        "part is never touched. The model is fitted on everything before the test event. "
        "Candidates are every item present in train minus the user's own train items (no "
        "sampling). With one relevant item, HR@k = Recall@k; NDCG@k = 1/log2(1 + rank) if the "
        "item is in the top k; MRR@10; coverage@10. Means over test users."
    )
    metrics = ("ndcg@10", "hit_rate@10", "mrr@10", "ndcg@20", "hit_rate@20", "coverage@10")

    def _make(self, data: Interactions, label: str) -> Split:
        from recforge.data.split import leave_latest_out

        return leave_latest_out(data, n=1)


class NcfLoo(_TimeOrderedProtocol):
    """He et al. 2017's leave-one-out with 99 sampled negatives."""

    name = "ncf-loo"
    description = (
        "SAMPLED metrics (He et al. 2017, NCF): each user's latest interaction (by timestamp, "
        "ties by item id) is the test item; users with a single interaction stay in train. Every "
        "rating is a positive. The test item is ranked among 99 items drawn uniformly (seed 42) "
        "from the train items the user never interacted with; ties count against it. HR@10 and "
        "NDCG@10 averaged over users. Much higher than, and not comparable with, full-ranking "
        "figures."
    )
    metrics = ("sampled_hit_rate@10", "sampled_ndcg@10")
    primary_metric = "sampled_ndcg@10"
    higher_is_better = True
    kind = "ranking"
    sampled = True
    negatives_seed = 42

    def _make(self, data: Interactions, label: str) -> Split:
        from recforge.data.split import leave_latest_out

        return leave_latest_out(data, n=1)

    def _evaluate(self, model: Recommender, ps: ProtocolSplit) -> Any:
        from recforge.eval.evaluate import sampled_ranking

        return sampled_ranking(model, ps.split, n_negatives=99, ks=(10,), seed=self.negatives_seed)


class HeldOutUsers(Protocol):
    """Liang et al. 2018's strong generalisation."""

    name = "heldout-users"
    description = (
        "Strong generalisation (Liang et al. 2018, Mult-VAE): positives are ratings >= 4 (every "
        "event for implicit data), other ratings are dropped. Among users with >= 5 positives, "
        "a permutation seeded with 42 picks 10% of all users as test users and 10% as validation "
        "users; train holds every event of the other users. Held-out events on items absent "
        "from train are dropped. Each held-out user's events are split at random: 80% fold-in "
        "(given to the model at evaluation time, no retraining), ceil(20%) targets. Full ranking "
        "over train items minus the fold-in items; Recall@k = hits / min(k, |targets|) at 20 and "
        "50, NDCG@100. Validation users score tuning; test users are touched once."
    )
    metrics = ("recall@20", "recall@50", "ndcg@100")
    primary_metric = "ndcg@100"
    higher_is_better = True
    kind = "ranking"
    max_folds = None
    seed = 42
    positive_threshold = 4.0

    def positives(self, data: Interactions) -> Interactions:
        """Ratings >= 4 on explicit data; every event on implicit data."""
        if data.rating_scale is None:
            return data
        return data.subset(data.rating >= self.positive_threshold)

    def _make(self, data: Interactions, label: str) -> HeldOutSplit:
        from recforge.data.split import heldout_users

        return heldout_users(
            self.positives(data),
            valid_users=0.1,
            test_users=0.1,
            foldin_ratio=0.8,
            seed=self._seed_of(label),
            min_events=5,
        )

    def validation_split(self, ps: ProtocolSplit) -> ProtocolSplit:
        """The validation users of the same split (disjoint from train and test users)."""
        if not isinstance(ps.split, HeldOutSplit) or ps.split.valid_foldin is None:
            raise ConfigError(f"{self.name}: the split has no validation users")
        return ProtocolSplit(self.name, f"{ps.fold}/valid", ps.split, part="valid")

    def _evaluate(self, model: Recommender, ps: ProtocolSplit) -> Any:
        from recforge.eval.foldin import evaluate_foldin

        return evaluate_foldin(model, ps.split, part=ps.part, ks=(20, 50, 100))


_REGISTRY: dict[str, Protocol] = {
    p.name: p
    for p in (
        ML100kFolds(),
        Random8020(),
        ML1M9010(),
        ML1M5Fold(),
        TemporalUser8020(),
        LooLatest(),
        NcfLoo(),
        HeldOutUsers(),
    )
}


def available_protocols() -> list[str]:
    """Names of the registered protocols, in documentation order."""
    return list(_REGISTRY)


def get_protocol(name: str) -> Protocol:
    """The protocol registered under ``name`` (ConfigError listing the valid names otherwise)."""
    key = name.strip().lower().removesuffix(" (sampled)")
    try:
        return _REGISTRY[key]
    except KeyError:
        raise ConfigError(
            f"unknown protocol {name!r}; available: {', '.join(available_protocols())}"
        ) from None


def describe_protocols() -> dict[str, dict[str, Any]]:
    """``name -> Protocol.to_dict()`` for every protocol."""
    return {name: p.to_dict() for name, p in _REGISTRY.items()}


# ------------------------------------------------------------------------------------ leak check
def leaked_test_events(model: Recommender, ps: ProtocolSplit) -> int:
    """How many of the evaluated part's events the model saw in training (0 = no leak).

    For row splits: test (user, item) pairs present in the model's training interactions
    (``model.seen_``), compared by raw id. For held-out users: the evaluated users' events, when
    the model was trained on any of those users (a fold-in protocol assumes it never saw them).
    """
    model.check_fitted()
    split = ps.split
    if isinstance(split, HeldOutSplit):
        foldin = split.test_foldin if ps.part == "test" else split.valid_foldin
        target = split.test_target if ps.part == "test" else split.valid_target
        assert foldin is not None and target is not None
        known = model.users_.index(foldin.users.ids, missing="negative") >= 0
        return int(known[foldin.user_idx].sum() + known[target.user_idx].sum())
    test = split.test
    u = model.users_.index(test.users.ids, missing="negative")[test.user_idx]
    i = model.items_.index(test.items.ids, missing="negative")[test.item_idx]
    ok = (u >= 0) & (i >= 0)
    seen = model.seen_.tocsr()
    seen_keys = (
        np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr)) * seen.shape[1]
        + seen.indices
    )
    keys = u[ok].astype(np.int64) * seen.shape[1] + i[ok]
    return int(np.isin(keys, seen_keys).sum())


def train_protocol_run(
    model_name: str,
    data: str | Path | DataSource | Interactions,
    protocol: str,
    *,
    fold: int | str = 0,
    config: dict[str, Any] | None = None,
    out: str | Path | None = None,
) -> Any:
    """``recforge train --protocol P [--fold N]``: fit on the fold's training part, score, save.

    The run manifest records the protocol split (:meth:`ProtocolSplit.record`, with the training
    part's fingerprint) under ``"protocol"``, which :func:`evaluate_run` checks.

    Returns:
        A :class:`recforge.pipeline.TrainResult` whose metrics are :meth:`Protocol.evaluate`'s.
    """
    import time

    from recforge.data.sources import load_dataset
    from recforge.models.registry import create
    from recforge.pipeline import TrainResult, save_trained_run

    proto = get_protocol(protocol)
    model = create(model_name, dict(config or {}))  # validate before any work
    problem = proto.model_problem(model)
    if problem:
        raise ConfigError(f"{proto.name}: {problem}; pick a protocol of the right kind")
    t0 = time.perf_counter()
    inter = data if isinstance(data, Interactions) else load_dataset(data)
    ps = proto.split(inter, fold)
    timings = {"load_split_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    model.fit(ps.train)
    timings["fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = proto.evaluate(model, ps)
    timings["evaluate_s"] = time.perf_counter() - t0
    metrics["timings"] = timings
    history = getattr(model, "history_", None)
    run_dir = None
    if out is not None:
        run_dir = save_trained_run(
            out,
            model,
            metrics,
            data=data,
            inter=inter,
            extra={"split": ps.split.protocol.describe(), "protocol": ps.record()},
        )
    return TrainResult(model, ps.split, metrics, run_dir, history, timings)


def evaluate_run(
    run: str | Path,
    protocol: str,
    *,
    fold: int | str | None = None,
    data: str | DataSource | Interactions | None = None,
) -> dict[str, Any]:
    """Score a saved run on a named protocol, refusing a run that saw the test data.

    Args:
        run: run directory written by ``recforge train`` (ideally ``--protocol P``).
        protocol: protocol name.
        fold: fold index or label; default the run's recorded fold when it was trained on this
            protocol, else the first fold.
        data: dataset (name, path or Interactions); default the run's recorded data.

    Raises:
        ConfigError: unknown protocol/fold, no data to evaluate on, or the model was trained on
            events of the protocol's test part (a leak): train it with ``--protocol``.

    Returns:
        :meth:`Protocol.evaluate`'s dict plus ``"run"`` and ``"trained_on"`` (the run's recorded
        protocol split, and whether its training part is exactly this fold's).
    """
    from recforge.artifacts import load_run
    from recforge.data.sources import load_dataset

    proto = get_protocol(protocol)
    loaded = load_run(run)
    manifest = loaded.manifest
    recorded = manifest.get("protocol") if isinstance(manifest.get("protocol"), dict) else None
    if fold is None:
        fold = recorded["fold"] if recorded and recorded.get("name") == proto.name else 0
    data_spec = data if data is not None else DataSource.from_manifest(manifest)
    if data_spec is None:
        raise ConfigError(f"{run}: the run does not record its data; pass --data")
    inter = data_spec if isinstance(data_spec, Interactions) else load_dataset(data_spec)
    ps = proto.split(inter, fold)
    n_leak = leaked_test_events(loaded.model, ps)
    trained = (
        f"protocol {recorded['name']} fold {recorded['fold']}"
        if recorded
        else f"split {manifest.get('split', '?')}"
    )
    if n_leak:
        raise ConfigError(
            f"{run}: the model saw {n_leak} of {proto.label} fold {ps.fold}'s test events in "
            f"training (it was trained on {trained}); train it with `recforge train --protocol "
            f"{proto.name} --fold {ps.fold}`"
        )
    result = proto.evaluate(loaded.model, ps)
    same = recorded is not None and recorded.get("train_fingerprint") == ps.train.fingerprint()
    result["run"] = str(run)
    result["trained_on"] = {"recorded": recorded or trained, "matches_protocol_train": same}
    return result


def _float(value: Any) -> float:
    if value is None:
        return float("nan")
    out = float(value)
    return out if math.isfinite(out) else float("nan")
