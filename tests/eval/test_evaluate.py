"""End-to-end evaluation on a hand-made split with a fixed-score model (hand-computed summaries)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.data.synthetic import make_interactions
from recforge.data.vocab import IdVocab
from recforge.errors import ConfigError, NotFittedError
from recforge.eval import metrics as M
from recforge.eval.evaluate import (
    EvalReport,
    _sample_negatives,
    evaluate,
    evaluate_ranking,
    evaluate_ratings,
    sampled_ranking,
)
from recforge.models.base import Recommender

LOG2_3 = math.log2(3)


class FixedScores(Recommender):
    """Test-only model: ``score_items`` reads a fixed (n_users, n_items) matrix."""

    name = "fixed_scores"

    def __init__(self, matrix: npt.ArrayLike) -> None:
        super().__init__()
        self.matrix = np.asarray(matrix, dtype=np.float32)

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        assert self.matrix.shape == (train.n_users, train.n_items)
        self.scores_ = self.matrix

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.float32]:
        return self.scores_[np.asarray(user_idx)]


# Users 10, 20, 30; items 100..106 (106 is in the vocabulary but has no training interaction).
TRAIN = pd.DataFrame(
    {
        "user_id": [10, 10, 20, 30, 30, 30, 30],
        "item_id": [100, 101, 102, 100, 103, 104, 105],
        "rating": [4.0, 3.0, 5.0, 2.0, 3.0, 2.0, 2.0],  # mean exactly 3.0
    }
)
# (30, 999): unknown item; (40, 100): unknown user.
TEST = pd.DataFrame(
    {
        "user_id": [10, 10, 20, 30, 40],
        "item_id": [102, 105, 100, 999, 100],
        "rating": [5.0, 2.0, 3.0, 5.0, 4.0],
    }
)
#                  100  101  102  103  104  105  106
SCORES = np.array(
    [
        [9.0, 8.0, 1.0, 7.0, 6.0, 5.0, 10.0],  # user 10
        [3.0, 2.0, 9.0, 1.0, 0.0, 4.0, 0.0],  # user 20
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # user 30
    ]
)


def make_split(test: pd.DataFrame = TEST) -> tuple[Interactions, Interactions]:
    items = IdVocab([100, 101, 102, 103, 104, 105, 106], name="item")
    train = Interactions.from_frame(TRAIN, items=items, rating_scale=(1.0, 5.0), source="toy")
    test_i = Interactions.from_frame(
        test, users=train.users, items=train.items, unknown="extend", rating_scale=(1.0, 5.0)
    )
    return train, test_i


@pytest.fixture
def fitted() -> tuple[FixedScores, tuple[Interactions, Interactions]]:
    split = make_split()
    model = FixedScores(SCORES).fit(split[0])

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluation must never train")

    # Spy: any call to fit/_fit during evaluation fails the test.
    model.fit = no_training  # type: ignore[method-assign]
    model._fit = no_training  # type: ignore[method-assign]
    return model, split


# ============================================================ full ranking
def test_ranking_hand_computed(fitted: tuple[FixedScores, Any]) -> None:
    model, split = fitted
    rep = evaluate_ranking(model, split, ks=(2, 4))
    s = rep.summary
    # User 10: seen {100, 101} excluded, 106 not a train item -> ranking 103, 104, 105, 102;
    #   relevant {102, 105}. @2: no hit. @4: hits at ranks 3, 4:
    #   P = 2/4, R = 2/min(4,2) = 1, NDCG = (1/log2 4 + 1/log2 5) / (1 + 1/log2 3),
    #   MRR = 1/3, AP = (1/3 + 2/4) / 2.
    # User 20: seen {102} -> ranking 105, 100, 101, 103; relevant {100}: hit at rank 2:
    #   @2: P = 1/2, R = 1, NDCG = 1/log2 3, MRR = 1/2, AP = 1/2. @4: P = 1/4, rest the same.
    # User 30: only test item (999) is unknown -> no relevant item -> skipped.
    ndcg10_4 = (0.5 + 1 / math.log2(5)) / (1 + 1 / LOG2_3)
    assert s["precision@2"] == pytest.approx((0 + 0.5) / 2)
    assert s["recall@2"] == pytest.approx((0 + 1) / 2)
    assert s["ndcg@2"] == pytest.approx((0 + 1 / LOG2_3) / 2)
    assert s["hit_rate@2"] == pytest.approx(0.5)
    assert s["mrr@2"] == pytest.approx(0.25)
    assert s["map@2"] == pytest.approx(0.25)
    assert s["precision@4"] == pytest.approx((0.5 + 0.25) / 2)
    assert s["recall@4"] == pytest.approx(1.0)
    assert s["ndcg@4"] == pytest.approx((ndcg10_4 + 1 / LOG2_3) / 2)
    assert s["hit_rate@4"] == pytest.approx(1.0)
    assert s["mrr@4"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert s["map@4"] == pytest.approx(((1 / 3 + 2 / 4) / 2 + 0.5) / 2)
    # Coverage: @2 {103, 104} | {105, 100} = 4 of 6 candidates; @4 every candidate.
    assert s["coverage@2"] == pytest.approx(4 / 6)
    assert s["coverage@4"] == pytest.approx(1.0)
    # Novelty @2 (3 train users; pop 100 = 2, others 1):
    #   user 10 {103, 104} -> log2 3; user 20 {105, 100} -> (log2 3 + log2 1.5) / 2
    per = rep.per_user.set_index("user_id")
    assert per.loc[10, "novelty@2"] == pytest.approx(LOG2_3)
    assert per.loc[20, "novelty@2"] == pytest.approx((LOG2_3 + math.log2(1.5)) / 2)
    assert s["novelty@2"] == pytest.approx((LOG2_3 + (LOG2_3 + math.log2(1.5)) / 2) / 2)
    # Counts: user 40 unknown, user 30 no relevant item, (30, 999) dropped as an unknown item.
    assert s["n_users_evaluated"] == 2
    assert s["n_users_unknown"] == 1
    assert s["n_users_no_relevant"] == 1
    assert s["n_users_skipped"] == 2
    assert s["n_relevant_pairs"] == 3
    assert s["n_relevant_dropped_unknown_item"] == 1
    assert s["n_candidate_items"] == 6
    # Per-user table: raw ids; the skipped known user is a NaN row; the unknown user is absent.
    assert list(rep.per_user["user_id"]) == [10, 20, 30]
    assert per.loc[10, "precision@4"] == pytest.approx(0.5)
    assert per.loc[30, "n_relevant"] == 0 and math.isnan(per.loc[30, "ndcg@2"])


def test_ranking_relevance_threshold(fitted: tuple[FixedScores, Any]) -> None:
    model, split = fitted
    rep = evaluate_ranking(model, split, ks=4, relevance_threshold=4.0)
    # Only (10, 102, rating 5) is relevant: ranking 103, 104, 105, 102 -> hit at rank 4.
    # P = 1/4, R = 1/min(4,1) = 1, NDCG = 1/log2 5, MRR = 1/4, AP = (1/4)/1.
    assert rep.summary["precision@4"] == pytest.approx(0.25)
    assert rep.summary["recall@4"] == pytest.approx(1.0)
    assert rep.summary["ndcg@4"] == pytest.approx(1 / math.log2(5))
    assert rep.summary["mrr@4"] == pytest.approx(0.25)
    assert rep.summary["map@4"] == pytest.approx(0.25)
    assert rep.summary["n_users_evaluated"] == 1
    assert rep.summary["n_users_no_relevant"] == 2  # user 20 (rating 3) and user 30
    assert rep.protocol["relevance"] == "test rating >= 4"


def test_ranking_candidates_all_includes_untrained_item(fitted: tuple[FixedScores, Any]) -> None:
    model, split = fitted
    rep = evaluate_ranking(model, split, ks=2, candidates="all")
    # Item 106 (score 10) now tops user 10's list: @2 {106, 103} | {105, 100} -> 4 of 7.
    assert rep.summary["n_candidate_items"] == 7
    assert rep.summary["coverage@2"] == pytest.approx(4 / 7)
    rep_ids = evaluate_ranking(model, split, ks=2, candidates=[102, 103, 105])
    # User 10: ranking 103, 105, 102 -> @2 hit at rank 2 (105); user 20: relevant 100 is not
    # a candidate -> dropped -> no relevant -> skipped.
    assert rep_ids.summary["n_relevant_dropped_not_candidate"] == 1
    assert rep_ids.summary["n_users_evaluated"] == 1
    assert rep_ids.summary["precision@2"] == pytest.approx(0.5)


def test_ranking_excludes_seen_items(fitted: tuple[FixedScores, Any]) -> None:
    model, split = fitted
    # Without exclusion user 10's top-4 is 100, 101, 103, 104 (two seen items, no hit) and user
    # 20's is 102, 105, 100, 101 (hit at rank 3); with exclusion see test_ranking_hand_computed.
    rep = evaluate_ranking(model, split, ks=4, exclude_seen=False)
    per = rep.per_user.set_index("user_id")
    assert per.loc[10, "precision@4"] == 0.0
    assert per.loc[20, "mrr@4"] == pytest.approx(1 / 3)
    # A test item the user already has in training cannot be recommended: dropped and counted.
    leaky = pd.concat([TEST, pd.DataFrame({"user_id": [20], "item_id": [102], "rating": [5.0]})])
    rep2 = evaluate_ranking(model, make_split(leaky), ks=4)
    assert rep2.summary["n_relevant_dropped_seen"] == 1
    assert rep2.summary["precision@4"] == pytest.approx((0.5 + 0.25) / 2)


def test_ranking_auc(fitted: tuple[FixedScores, Any]) -> None:
    model, split = fitted
    rep = evaluate_ranking(model, split, ks=2, auc=True)
    # User 10: 4 candidates (103, 104, 105, 102), relevant {105, 102} both below both negatives
    #   -> 0/4. User 20: 5 candidates, ranking 105, 100, ...: 100 has 1 negative above -> 3/4.
    per = rep.per_user.set_index("user_id")
    assert per.loc[10, "auc"] == pytest.approx(0.0)
    assert per.loc[20, "auc"] == pytest.approx(0.75)
    assert rep.summary["auc"] == pytest.approx(0.375)


def test_ranking_matches_per_user_reference_on_synthetic_data() -> None:
    # Many users, several chunks: the vectorised path equals a plain per-user loop over the
    # public API (recommend + pure metric functions).
    data = make_interactions(60, 40, seed=3).interactions
    rng = np.random.default_rng(0)
    is_test = rng.random(len(data)) < 0.25
    train = data.subset(~is_test)
    test = data.subset(is_test)
    model = FixedScores(rng.normal(size=(train.n_users, train.n_items))).fit(train)
    rep = evaluate_ranking(model, (train, test), ks=(3, 7), chunk_size=7)
    known_train_items = set(train.items.lookup(np.unique(train.item_idx)).tolist())
    per = rep.per_user.set_index("user_id")
    test_df = test.to_frame()
    seen_users = 0
    for uid, grp in test_df.groupby("user_id"):
        rel = set(grp["item_id"]) & known_train_items
        if not rel:
            assert math.isnan(per.loc[uid, "precision@3"])
            continue
        seen_users += 1
        rec = model.recommend([uid], 7, candidates=sorted(known_train_items))[0]
        for k in (3, 7):
            for name, fn in (
                ("precision", M.precision_at_k),
                ("recall", M.recall_at_k),
                ("ndcg", M.ndcg_at_k),
                ("mrr", M.mrr_at_k),
                ("map", M.average_precision_at_k),
            ):
                assert per.loc[uid, f"{name}@{k}"] == pytest.approx(fn(rec.item_ids, rel, k))
    assert rep.summary["n_users_evaluated"] == seen_users > 10


# ============================================================ rating protocol
def test_ratings_hand_computed(fitted: tuple[FixedScores, Any]) -> None:
    model, split = fitted
    rep = evaluate_ratings(model, split)
    # predictions (clipped to 1..5): (10,102) 1, (10,105) 5, (20,100) 3,
    # (30,999) and (40,100) unknown -> global train mean 3.
    # errors -4, 3, 0, -2, -1 -> squared sum 30 -> RMSE sqrt(6); |e| sum 10 -> MAE 2
    # like (> 3): truth T F F T T vs pred F T F F F -> agree only on row 3 -> 1/5
    s = rep.summary
    assert s["rmse"] == pytest.approx(math.sqrt(6))
    assert s["mae"] == pytest.approx(2.0)
    assert s["like_accuracy"] == pytest.approx(0.2)
    assert s["n_fallback"] == 2
    assert s["n_rows_unknown_user"] == 1
    assert s["n_rows_unknown_item"] == 1
    assert s["n_ratings"] == 5
    per = rep.per_user.set_index("user_id")
    assert per.loc[10, "rmse"] == pytest.approx(math.sqrt((16 + 9) / 2))
    assert per.loc[10, "mae"] == pytest.approx(3.5)
    assert per.loc[20, "rmse"] == pytest.approx(0.0)
    assert per.loc[40, "n_ratings"] == 1
    assert rep.protocol["evaluation"] == "rating"


def test_ratings_fallback_policies(fitted: tuple[FixedScores, Any]) -> None:
    model, split = fitted
    dropped = evaluate_ratings(model, split[1], fallback="drop")
    # rows 1-3 only: squared 16 + 9 + 0 = 25 over 3; |e| 7 over 3
    assert dropped.summary["rmse"] == pytest.approx(math.sqrt(25 / 3))
    assert dropped.summary["mae"] == pytest.approx(7 / 3)
    assert dropped.summary["n_ratings"] == 3
    assert dropped.summary["n_fallback"] == 2
    fixed = evaluate_ratings(model, split, fallback=2.5)
    # unknown rows predicted 2.5: errors -2.5 (truth 5), -1.5 (truth 4)
    # squared 16 + 9 + 0 + 6.25 + 2.25 = 33.5 over 5
    assert fixed.summary["rmse"] == pytest.approx(math.sqrt(33.5 / 5))
    with pytest.raises(ConfigError, match="fallback"):
        evaluate_ratings(model, split, fallback="median")  # type: ignore[arg-type]


# ============================================================ sampled protocol
def test_sampled_ranking_hand_computed(fitted: tuple[FixedScores, Any]) -> None:
    model, split = fitted
    rep = sampled_ranking(model, split, n_negatives=4, ks=(1, 2), seed=1)
    # User 10 has interacted with 100, 101, 102, 105 -> only 2 allowed negatives < 4: its two
    # positives are skipped. User 20 (positive 100, score 3) gets exactly 101, 103, 104, 105
    # (scores 2, 1, 0, 4): one negative scores higher -> rank 1 -> HR@1 0, HR@2 1,
    # NDCG@2 = 1/log2(3).
    s = rep.summary
    assert s["n_positives_dropped_too_few_negatives"] == 2
    assert s["n_positives_dropped_unknown_item"] == 1  # (30, 999)
    assert s["n_users_unknown"] == 1  # user 40
    assert s["n_positives"] == 1
    assert s["sampled_hit_rate@1"] == 0.0
    assert s["sampled_hit_rate@2"] == 1.0
    assert s["sampled_ndcg@2"] == pytest.approx(1 / LOG2_3)
    assert "sampled" in rep.protocol["evaluation"]
    assert not any(k.startswith(("hit_rate", "ndcg")) for k in s)  # never mixed with full ranking
    # With 2 negatives user 10's are forced to {103, 104} (scores 7, 6): both positives rank 2.
    rep2 = sampled_ranking(model, split, n_negatives=2, ks=3, seed=0)
    per = rep2.per_user.set_index("user_id")
    assert per.loc[10, "sampled_hit_rate@3"] == 1.0
    assert per.loc[10, "sampled_ndcg@3"] == pytest.approx(0.5)  # 1/log2(2 + 2)
    # Threshold 5: positives (10, 102) and the unknown-item row (30, 999) only.
    rep3 = sampled_ranking(model, split, n_negatives=2, ks=3, relevance_threshold=5.0)
    assert rep3.summary["n_positives"] == 1
    assert rep3.summary["n_positives_dropped_unknown_item"] == 1
    rep4 = sampled_ranking(model, split, n_negatives=2, ks=3, relevance_threshold=5.5)
    assert rep4.summary["n_positives"] == 0
    assert rep4.summary["n_positives_dropped_unknown_item"] == 0
    assert math.isnan(rep4.summary["sampled_hit_rate@3"])


def test_sampled_ties_count_against_positive() -> None:
    data = make_interactions(30, 150, seed=1).interactions
    rng = np.random.default_rng(1)
    is_test = rng.random(len(data)) < 0.2
    train, test = data.subset(~is_test), data.subset(is_test)
    constant = FixedScores(np.zeros((train.n_users, train.n_items))).fit(train)
    rep = sampled_ranking(constant, (train, test), n_negatives=99, ks=10, seed=3)
    assert rep.summary["n_positives"] > 0
    assert rep.summary["sampled_hit_rate@10"] == 0.0
    again = sampled_ranking(constant, (train, test), n_negatives=99, ks=10, seed=3)
    pd.testing.assert_frame_equal(rep.per_user, again.per_user)


def test_sampled_ranking_independent_of_scoring_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import recforge.eval.evaluate as E

    data = make_interactions(40, 120, seed=2).interactions
    rng = np.random.default_rng(2)
    is_test = rng.random(len(data)) < 0.2
    train, test = data.subset(~is_test), data.subset(is_test)
    model = FixedScores(rng.normal(size=(train.n_users, train.n_items))).fit(train)
    ref = sampled_ranking(model, (train, test), n_negatives=20, ks=(1, 5), seed=9)
    monkeypatch.setattr(E, "DEFAULT_SCORE_CHUNK", 3)
    got = sampled_ranking(model, (train, test), n_negatives=20, ks=(1, 5), seed=9)
    pd.testing.assert_frame_equal(ref.per_user, got.per_user)
    assert 0 < ref.summary["sampled_hit_rate@5"] < 1  # random scores: some hits, some misses
    other = sampled_ranking(model, (train, test), n_negatives=20, ks=(1, 5), seed=10)
    assert not ref.per_user.equals(other.per_user)  # the seed drives the negatives


def test_with_a_real_split_object() -> None:
    from recforge.data.split import random_holdout

    data = make_interactions(50, 60, seed=4).interactions
    split = random_holdout(data, test_ratio=0.2, seed=3)
    rng = np.random.default_rng(4)
    model = FixedScores(rng.normal(size=(split.train.n_users, split.train.n_items)))
    model.fit(split.train)
    rep = evaluate(model, split, metrics="all", ks=5)
    assert rep.protocol["split"]["name"] == split.protocol.name
    assert rep.protocol["split"]["params"]["seed"] == 3
    assert rep.summary["n_ratings"] == len(split.test)
    assert rep.summary["n_users_evaluated"] > 0
    assert np.isfinite(rep.summary["ndcg@5"]) and np.isfinite(rep.summary["rmse"])


def test_negative_sampler_excludes_interactions_and_repeats() -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    n_users, n_items = 50, 30
    dense = rng.random((n_users, n_items)) < 0.5
    dense[0, :] = True
    dense[0, :6] = False  # user 0 has exactly 6 allowed items: forces the exact fallback
    inter = sp.csr_matrix(dense.astype(np.float32))
    users = np.repeat(np.arange(n_users), 2)
    neg = _sample_negatives(inter, users, np.arange(n_items), 6, np.random.default_rng(5))
    assert neg.shape == (100, 6)
    assert not dense[users[:, None], neg].any()
    assert all(len(set(row)) == 6 for row in neg.tolist())
    assert set(neg[0].tolist()) == set(range(6))
    # max_rounds=0 sends every row to the exact per-row fallback: same guarantees.
    exact = _sample_negatives(
        inter, users, np.arange(n_items), 6, np.random.default_rng(5), max_rounds=0
    )
    assert not dense[users[:, None], exact].any()
    assert all(len(set(row)) == 6 for row in exact.tolist())


# ============================================================ dispatcher, report, errors
def test_evaluate_dispatch_and_never_fits(fitted: tuple[FixedScores, Any]) -> None:
    model, split = fitted
    proto = SimpleNamespace(
        name="random_holdout",
        params={"test_ratio": 0.2, "seed": 7},
        describe=lambda: "random hold-out 20% (seed 7)",
    )
    duck = SimpleNamespace(train=split[0], test=split[1], valid=None, protocol=proto)
    auto = evaluate(model, duck)
    assert auto.protocol["evaluation"] == "rating"  # rating model on explicit data
    assert auto.summary["rmse"] == pytest.approx(math.sqrt(6))
    ranking = evaluate(model, duck, metrics="ranking", ks=(2, 4))
    assert ranking.summary["precision@4"] == pytest.approx(0.375)
    both = evaluate(model, duck, metrics="all", ks=4)
    assert both.summary["rmse"] == pytest.approx(math.sqrt(6))
    assert both.summary["precision@4"] == pytest.approx(0.375)
    assert both.protocol["evaluation"] == "rating+full_ranking"
    assert set(both.per_user.columns) >= {"user_id", "rmse", "precision@4"}
    assert ranking.protocol["split"] == {
        "name": "random_holdout",
        "params": {"test_ratio": 0.2, "seed": 7},
        "description": "random hold-out 20% (seed 7)",
    }
    assert ranking.protocol["dataset"] == "toy"
    text = ranking.format()
    assert "random_holdout" in text and "test_ratio=0.2" in text
    # one line per summary number, each naming the protocol
    lines = text.splitlines()[1:]
    assert len(lines) == len(ranking.summary)
    assert all("full_ranking" in line and "random_holdout" in line for line in lines)
    with pytest.raises(ConfigError, match="metrics"):
        evaluate(model, duck, metrics="bogus")  # type: ignore[arg-type]


def test_auto_on_implicit_data_is_ranking(fitted: tuple[FixedScores, Any]) -> None:
    model, (train, test) = fitted
    implicit = test.with_ratings(np.ones(len(test)), implicit=True)
    rep = evaluate(model, (train, implicit), ks=2)
    assert rep.protocol["evaluation"] == "full_ranking"


class FixedRanks(FixedScores):
    """Same scores, but declared as an item scorer (like popularity): no rating metrics."""

    name = "fixed_ranks"
    predicts_ratings = False


def test_rating_metrics_refused_for_non_rating_models() -> None:
    split = make_split()
    model = FixedRanks(SCORES).fit(split[0])
    with pytest.raises(ConfigError, match="does not predict ratings"):
        evaluate_ratings(model, split)
    with pytest.raises(ConfigError, match="does not predict ratings"):
        evaluate(model, split, metrics="rating")
    # "auto" and "all" fall back to the protocol that applies
    assert evaluate(model, split, ks=4).protocol["evaluation"] == "full_ranking"
    both = evaluate(model, split, metrics="all", ks=4)
    assert both.protocol["evaluation"] == "full_ranking"
    assert both.summary["precision@4"] == pytest.approx(0.375)


def test_report_to_dict_is_json_safe(fitted: tuple[FixedScores, Any]) -> None:
    model, split = fitted
    rep = evaluate_ranking(model, split, ks=2)
    d = rep.to_dict(per_user=True)
    text = json.dumps(d, allow_nan=False)  # raises if a NaN or numpy type slipped through
    back = json.loads(text)
    assert back["summary"]["n_users_evaluated"] == 2
    assert back["per_user"][2]["ndcg@2"] is None  # user 30's NaN row
    assert set(back) == {"protocol", "summary", "timings", "per_user"}
    assert back["timings"]["total_s"] >= 0
    assert isinstance(rep, EvalReport)


def test_errors() -> None:
    split = make_split()
    with pytest.raises(NotFittedError):
        evaluate(FixedScores(SCORES), split)
    model = FixedScores(SCORES).fit(split[0])
    with pytest.raises(ConfigError, match="ks"):
        evaluate_ranking(model, split, ks=(0,))
    with pytest.raises(ConfigError, match="candidates"):
        evaluate_ranking(model, split, candidates="popular")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="empty"):
        evaluate_ranking(model, split, candidates=[12345])
    with pytest.raises(ConfigError, match="Split"):
        evaluate_ranking(model, object())
    with pytest.raises(ConfigError, match="pair"):
        evaluate_ranking(model, (split[0], split[1], split[1]))
