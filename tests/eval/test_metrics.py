"""Metric definitions (DESIGN §4): hand-computed cases, properties, and batch == pure agreement."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.errors import ConfigError
from recforge.eval import metrics as M

LOG2_3 = math.log2(3)
LOG2_5 = math.log2(5)

PURE = {
    "precision": M.precision_at_k,
    "recall": M.recall_at_k,
    "ndcg": M.ndcg_at_k,
    "hit_rate": M.hit_rate_at_k,
    "mrr": M.mrr_at_k,
    "map": M.average_precision_at_k,
}


# ============================================================ rating metrics
def test_rating_metrics_hand_computed() -> None:
    y = [4.0, 2.0, 5.0, 3.0]
    p = [3.0, 2.5, 5.0, 4.0]
    # errors: -1, +0.5, 0, +1 -> squared 1, .25, 0, 1 -> mean 2.25/4 = 0.5625 -> sqrt = 0.75
    assert M.rmse(y, p) == pytest.approx(0.75)
    # |errors| 1 + .5 + 0 + 1 = 2.5 -> /4 = 0.625
    assert M.mae(y, p) == pytest.approx(0.625)
    # like = > 3: true [T, F, T, F]; pred [F, F, T, T] -> agree on rows 2, 3 -> 2/4
    assert M.like_accuracy(y, p) == pytest.approx(0.5)
    # threshold 2: true [T, F, T, T]; pred [T, T, T, T] -> agree on 3 of 4
    assert M.like_accuracy(y, p, threshold=2.0) == pytest.approx(0.75)


def test_rating_metrics_empty_and_mismatch() -> None:
    assert math.isnan(M.rmse([], []))
    assert math.isnan(M.mae([], []))
    assert math.isnan(M.like_accuracy([], []))
    with pytest.raises(ConfigError, match="pair up"):
        M.rmse([1.0, 2.0], [1.0])


# ============================================================ ranking metrics, by hand
RANKED = ["a", "b", "c", "d", "e"]
RELEVANT = {"b", "e", "z"}  # "z" is relevant but never recommended


def test_precision_hand_computed() -> None:
    # top-3 = a b c -> one hit (b) -> 1/3
    assert M.precision_at_k(RANKED, RELEVANT, 3) == pytest.approx(1 / 3)
    # top-5 -> hits b, e -> 2/5
    assert M.precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 5)
    # k=10 but the list has 5 items: still divided by k -> 2/10
    assert M.precision_at_k(RANKED, RELEVANT, 10) == pytest.approx(0.2)


def test_recall_divides_by_min_k_and_relevant() -> None:
    # k=3: 1 hit / min(3, 3) = 1/3
    assert M.recall_at_k(RANKED, RELEVANT, 3) == pytest.approx(1 / 3)
    # k=5: 2 hits / min(5, 3) = 2/3
    assert M.recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    # k=1 with 3 relevant: list [b] -> 1 hit / min(1, 3) = 1 (a perfect top-1)
    assert M.recall_at_k(["b"], RELEVANT, 1) == pytest.approx(1.0)


def test_ndcg_hand_computed() -> None:
    # k=3: hit at rank 2 -> DCG = 1/log2(3); IDCG over min(3,3)=3 ranks = 1 + 1/log2(3) + 1/2
    assert M.ndcg_at_k(RANKED, RELEVANT, 3) == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3 + 0.5))
    # k=5: hits at ranks 2 and 5 -> DCG = 1/log2(3) + 1/log2(6); IDCG still over 3 ranks
    dcg = 1 / LOG2_3 + 1 / math.log2(6)
    assert M.ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(dcg / (1 + 1 / LOG2_3 + 0.5))
    # one relevant item at rank 1 -> 1; at rank 4 -> 1/log2(5) (IDCG over min(k,1)=1 rank = 1)
    assert M.ndcg_at_k(["x", "y"], {"x"}, 5) == pytest.approx(1.0)
    assert M.ndcg_at_k(["p", "q", "r", "x"], {"x"}, 5) == pytest.approx(1 / LOG2_5)


# Seven relevant items, more than any cut-off below: the denominators must use min(k, |R|) = k.
MANY_RELEVANT = {"a", "c", "d", "x", "y", "z", "w"}
MANY_RANKED = ["a", "b", "c", "d", "e", "f"]


def test_more_relevant_than_k_hand_computed() -> None:
    # k=3: hits at ranks 1 and 3.
    # NDCG: DCG = 1 + 1/log2(4) = 1.5; IDCG over min(3, 7) = 3 ranks = 1 + 1/log2(3) + 1/2
    # (over all 7 relevant items it would be larger, and NDCG smaller).
    assert M.ndcg_at_k(MANY_RANKED, MANY_RELEVANT, 3) == pytest.approx(1.5 / (1.5 + 1 / LOG2_3))
    # recall: 2 hits / min(3, 7) = 2/3 (not 2/7)
    assert M.recall_at_k(MANY_RANKED, MANY_RELEVANT, 3) == pytest.approx(2 / 3)
    # AP: precisions at the hits 1/1 and 2/3 -> (5/3) / min(3, 7) = 5/9
    assert M.average_precision_at_k(MANY_RANKED, MANY_RELEVANT, 3) == pytest.approx(5 / 9)
    # k=4: hits at ranks 1, 3, 4 -> DCG = 1 + 1/2 + 1/log2(5); IDCG = DCG + 1/log2(3)
    dcg4 = 1 + 0.5 + 1 / LOG2_5
    assert M.ndcg_at_k(MANY_RANKED, MANY_RELEVANT, 4) == pytest.approx(dcg4 / (dcg4 + 1 / LOG2_3))
    assert M.recall_at_k(MANY_RANKED, MANY_RELEVANT, 4) == pytest.approx(3 / 4)
    # AP@4: (1 + 2/3 + 3/4) / 4 = 29/48
    assert M.average_precision_at_k(MANY_RANKED, MANY_RELEVANT, 4) == pytest.approx(29 / 48)
    # A perfect top-3 scores exactly 1 on every one of them.
    for fn in (M.ndcg_at_k, M.recall_at_k, M.average_precision_at_k, M.precision_at_k):
        assert fn(["x", "y", "z", "b"], MANY_RELEVANT, 3) == pytest.approx(1.0)


def test_more_relevant_than_k_batch_agrees_by_hand() -> None:
    # The same case as index lists: items a..f = 0..5, x y z w = 6..9.
    top = np.array([[0, 1, 2, 3, 4, 5], [6, 7, 8, 1, -1, -1]])
    rel_items = [0, 2, 3, 6, 7, 8, 9]
    rel = sp.csr_matrix((np.ones(14), ([0] * 7 + [1] * 7, rel_items * 2)), shape=(2, 10))
    out = M.ranking_metrics_batch(top, rel, [3, 4])
    assert out["ndcg@3"][0] == pytest.approx(1.5 / (1.5 + 1 / LOG2_3))
    assert out["recall@3"][0] == pytest.approx(2 / 3)
    assert out["map@3"][0] == pytest.approx(5 / 9)
    assert out["map@4"][0] == pytest.approx(29 / 48)
    np.testing.assert_allclose([out[f"{m}@3"][1] for m in ("ndcg", "recall", "map")], 1.0)
    # user 1 @4: hits at 1-3, miss at 4 -> DCG = IDCG@3; IDCG@4 adds 1/log2(5)
    idcg3 = 1 + 1 / LOG2_3 + 0.5
    assert out["ndcg@4"][1] == pytest.approx(idcg3 / (idcg3 + 1 / LOG2_5))
    assert out["recall@4"][1] == pytest.approx(3 / 4)


def test_hit_rate_and_mrr_hand_computed() -> None:
    # first hit (b) at rank 2
    assert M.hit_rate_at_k(RANKED, RELEVANT, 1) == 0.0
    assert M.hit_rate_at_k(RANKED, RELEVANT, 2) == 1.0
    assert M.mrr_at_k(RANKED, RELEVANT, 1) == 0.0
    assert M.mrr_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.5)
    # first hit at rank 4 -> 1/4
    assert M.mrr_at_k(["p", "q", "r", "x"], {"x", "w"}, 4) == pytest.approx(0.25)


def test_average_precision_hand_computed() -> None:
    # k=5: hits at ranks 2, 5 -> precisions 1/2, 2/5 -> sum 0.9 / min(5, 3) = 0.3
    assert M.average_precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.3)
    # k=3: hit at rank 2 -> 1/2 / min(3, 3) = 1/6
    assert M.average_precision_at_k(RANKED, RELEVANT, 3) == pytest.approx(1 / 6)
    # [x, p, y] with rel {x, y}: precisions 1/1, 2/3 -> (1 + 2/3) / min(3, 2) = 5/6
    assert M.average_precision_at_k(["x", "p", "y"], {"x", "y"}, 3) == pytest.approx(5 / 6)


def test_no_relevant_is_nan_and_empty_list_is_zero() -> None:
    for fn in PURE.values():
        assert math.isnan(fn(RANKED, set(), 5))
        assert fn([], RELEVANT, 5) == 0.0
    assert math.isnan(M.auc(RANKED, set(), 10))
    assert M.auc([], RELEVANT, 10) == 0.0


def test_k_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="k must be"):
        M.precision_at_k(RANKED, RELEVANT, 0)


def test_numpy_inputs_accepted() -> None:
    # ids 1..5 with relevant {2, 5}: same arithmetic as precision@5 = 2/5
    assert M.precision_at_k(np.array([1, 2, 3, 4, 5]), np.array([2, 5]), 5) == pytest.approx(0.4)
    # a (1, n) row of an index matrix is read as the flat list it holds
    row = np.array([[1, 2, 3, 4, 5]])
    assert M.precision_at_k(row, np.array([[2, 5]]), 5) == pytest.approx(0.4)


# ============================================================ AUC
def test_auc_full_ranking_hand_computed() -> None:
    # 5 candidates, ranking a b c d e, relevant {b, d}: n_pos=2, n_neg=3.
    # b has 1 negative above (a) -> wins 2; d has 2 negatives above (a, c) -> wins 1 -> 3/6
    assert M.auc(["a", "b", "c", "d", "e"], {"b", "d"}, 5) == pytest.approx(0.5)
    # perfect and worst orders
    assert M.auc(["b", "d", "a", "c", "e"], {"b", "d"}, 5) == pytest.approx(1.0)
    assert M.auc(["a", "c", "e", "b", "d"], {"b", "d"}, 5) == pytest.approx(0.0)


def test_auc_truncated_list_ties_the_rest() -> None:
    # 10 candidates, list a b c d e, relevant {b, e, z}: n_pos=3, n_neg=7.
    # b: 1 negative above -> wins 6; e: 3 negatives above -> wins 4;
    # z missing: loses to the 3 listed negatives, ties with the 4 unlisted -> 0.5*4 = 2
    # -> (6 + 4 + 2) / 21
    assert M.auc(RANKED, RELEVANT, 10) == pytest.approx(12 / 21)


def test_auc_no_negatives_is_nan() -> None:
    assert math.isnan(M.auc(["a", "b"], {"a", "b"}, 2))


# ============================================================ catalogue metrics
def test_coverage_hand_computed() -> None:
    lists = [["a", "b", "c"], ["b", "d"], []]
    # distinct {a, b, c, d} / 10
    assert M.coverage_at_k(lists, 10) == pytest.approx(0.4)
    # k=1: {a, b} / 10
    assert M.coverage_at_k(lists, 10, k=1) == pytest.approx(0.2)
    # padded index matrix: -1 is not an item -> {0, 1, 3} / 4
    assert M.coverage_at_k(np.array([[0, 1], [3, -1]]), 4) == pytest.approx(0.75)
    assert M.coverage_batch(np.array([[0, 1], [3, -1]]), 4) == pytest.approx(0.75)


def test_novelty_hand_computed() -> None:
    pop = {"a": 8, "b": 2, "c": 1, "d": 0}
    # n_users 8: self-info a = -log2(8/8) = 0, b = -log2(2/8) = 2, c = 3, d floored to 1 -> 3
    # user 1 [a, b] -> mean 1; user 2 [c, d] -> 3; empty user ignored -> mean(1, 3) = 2
    assert M.novelty([["a", "b"], ["c", "d"], []], pop, 8) == pytest.approx(2.0)
    # k=1: user 1 -> 0, user 2 -> 3 -> 1.5
    assert M.novelty([["a", "b"], ["c", "d"]], pop, 8, k=1) == pytest.approx(1.5)
    # batch form on indices 0..3 with the same popularity
    per_user = M.novelty_batch(np.array([[0, 1], [2, 3], [-1, -1]]), [8, 2, 1, 0], 8)
    np.testing.assert_allclose(per_user, [1.0, 3.0, np.nan])


# ============================================================ batch forms, by hand
def test_batch_hand_computed() -> None:
    top = np.array([[1, 2, 3, 4, 5], [0, -1, -1, -1, -1], [7, 8, -1, -1, -1]])
    # user 0 relevant {2, 5, 9}; user 1 {0}; user 2 nothing
    rel = sp.csr_matrix((np.ones(4), ([0, 0, 0, 1], [2, 5, 9, 0])), shape=(3, 10))
    out = M.ranking_metrics_batch(top, rel, [3, 5])
    # user 0 @5 = the hand-computed RANKED/RELEVANT case above (same hit pattern)
    assert out["precision@5"][0] == pytest.approx(0.4)
    assert out["recall@5"][0] == pytest.approx(2 / 3)
    assert out["map@5"][0] == pytest.approx(0.3)
    # user 1: hit at rank 1 with |R| = 1 -> everything 1 except precision@5 = 1/5
    assert out["ndcg@5"][1] == pytest.approx(1.0)
    assert out["precision@5"][1] == pytest.approx(0.2)
    assert out["precision@3"][1] == pytest.approx(1 / 3)
    # user 2 has no relevant items -> NaN everywhere
    assert all(math.isnan(v[2]) for v in out.values())
    assert set(out) == {f"{m}@{k}" for m in M.RANKING_METRICS for k in (3, 5)}


def test_hit_matrix_rejects_shape_mismatch() -> None:
    rel = sp.csr_matrix((2, 4))
    with pytest.raises(ConfigError, match="one row per user"):
        M.hit_matrix(np.zeros((3, 2), np.int64), rel)
    with pytest.raises(ConfigError, match="columns"):
        M.hit_matrix(np.array([[5], [0]]), rel)


# ============================================================ properties
@st.composite
def ranking_case(draw: st.DrawFn) -> tuple[list[int], set[int], int, int]:
    n_items = draw(st.integers(1, 25))
    perm = draw(st.permutations(list(range(n_items))))
    length = draw(st.integers(0, n_items))
    relevant = draw(st.sets(st.integers(0, n_items - 1), max_size=n_items))
    k = draw(st.integers(1, 30))
    return list(perm[:length]), relevant, k, n_items


@settings(max_examples=200, deadline=None)
@given(ranking_case())
def test_metrics_in_unit_range_or_nan(case: tuple[list[int], set[int], int, int]) -> None:
    ranked, relevant, k, n_items = case
    for fn in PURE.values():
        v = fn(ranked, relevant, k)
        if not relevant:
            assert math.isnan(v)
        else:
            assert 0.0 <= v <= 1.0 + 1e-12
    a = M.auc(ranked, relevant, n_items)
    assert math.isnan(a) or 0.0 <= a <= 1.0


@settings(max_examples=200, deadline=None)
@given(ranking_case())
def test_perfect_ranking_scores_one(case: tuple[list[int], set[int], int, int]) -> None:
    _, relevant, k, n_items = case
    if not relevant:
        return
    others = [i for i in range(n_items) if i not in relevant]
    perfect = sorted(relevant) + others
    for name in ("recall", "ndcg", "hit_rate", "mrr", "map"):
        assert PURE[name](perfect, relevant, k) == pytest.approx(1.0), name
    # precision of a perfect list is min(k, |R|) / k
    assert M.precision_at_k(perfect, relevant, k) == pytest.approx(min(k, len(relevant)) / k)
    if others:
        assert M.auc(perfect, relevant, n_items) == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(ranking_case(), st.randoms(use_true_random=False))
def test_non_relevant_tail_permutation_invariance(
    case: tuple[list[int], set[int], int, int], rnd: object
) -> None:
    ranked, relevant, k, _ = case
    if not relevant:
        return
    # Shuffle the non-relevant items among themselves, keeping relevant items in place:
    # hit positions are unchanged, so every metric is unchanged.
    positions = [j for j, x in enumerate(ranked) if x not in relevant]
    values = [ranked[j] for j in positions]
    rnd.shuffle(values)  # type: ignore[attr-defined]
    shuffled = list(ranked)
    for j, v in zip(positions, values, strict=True):
        shuffled[j] = v
    for fn in PURE.values():
        assert fn(shuffled, relevant, k) == fn(ranked, relevant, k)
    # Permuting anything within the top k leaves precision, recall and hit rate unchanged.
    top = list(ranked[:k])
    rnd.shuffle(top)  # type: ignore[attr-defined]
    reordered = top + list(ranked[k:])
    for name in ("precision", "recall", "hit_rate"):
        assert PURE[name](reordered, relevant, k) == PURE[name](ranked, relevant, k)


@settings(max_examples=150, deadline=None)
@given(ranking_case())
def test_precision_monotone_in_hits(case: tuple[list[int], set[int], int, int]) -> None:
    ranked, relevant, k, _ = case
    if not relevant:
        return
    # Moving a relevant item to the front never lowers ndcg, mrr or map.
    r = next((x for x in relevant if x in ranked), None)
    if r is None:
        return
    moved = [r] + [x for x in ranked if x != r]
    for name in ("ndcg", "mrr", "map", "precision", "recall"):
        assert PURE[name](moved, relevant, k) >= PURE[name](ranked, relevant, k) - 1e-12


@st.composite
def batch_case(draw: st.DrawFn) -> tuple[np.ndarray, sp.csr_matrix, list[int], int]:
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(1, 20))
    width = draw(st.integers(0, n_items))
    top = np.full((n_users, width), -1, dtype=np.int64)
    rows, cols = [], []
    for u in range(n_users):
        perm = draw(st.permutations(list(range(n_items))))
        length = draw(st.integers(0, width))
        top[u, :length] = perm[:length]
        rel = draw(st.sets(st.integers(0, n_items - 1), max_size=n_items))
        rows += [u] * len(rel)
        cols += sorted(rel)
    relevant = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items)
    )
    ks = draw(st.lists(st.integers(1, 25), min_size=1, max_size=3, unique=True))
    return top, relevant, ks, n_items


@settings(max_examples=200, deadline=None)
@given(batch_case())
def test_batch_agrees_with_pure_functions(
    case: tuple[np.ndarray, sp.csr_matrix, list[int], int],
) -> None:
    top, relevant, ks, n_items = case
    out = M.ranking_metrics_batch(top, relevant, ks)
    aucs = M.auc_batch(top, relevant, n_items)
    for u in range(top.shape[0]):
        ranked = [int(x) for x in top[u] if x >= 0]
        rel = set(relevant[u].indices.tolist())
        for k in ks:
            for name, fn in PURE.items():
                expected = fn(ranked, rel, k)
                got = out[f"{name}@{k}"][u]
                np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(aucs[u], M.auc(ranked, rel, n_items), rtol=0, atol=1e-12)
    for k in ks:
        lists = [[int(x) for x in row if x >= 0] for row in top]
        assert M.coverage_batch(top, n_items, k) == pytest.approx(
            M.coverage_at_k(lists, n_items, k)
        )
    pop = np.arange(n_items) % 4
    np.testing.assert_allclose(
        np.nanmean(M.novelty_batch(top, pop, 5)) if (top >= 0).any() else np.nan,
        M.novelty([[int(x) for x in row if x >= 0] for row in top], pop, 5),
        rtol=1e-12,
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(1, 5), min_size=1, max_size=30), st.floats(-1, 1))
def test_rating_metric_properties(ratings: list[float], shift: float) -> None:
    y = np.asarray(ratings)
    # A constant shift gives RMSE = MAE = |shift|; identical predictions give 0 and accuracy 1.
    assert M.rmse(y, y + shift) == pytest.approx(abs(shift), abs=1e-9)
    assert M.mae(y, y + shift) == pytest.approx(abs(shift), abs=1e-9)
    assert M.rmse(y, y) == 0.0
    assert M.like_accuracy(y, y) == 1.0
    assert M.mae(y, y + shift) <= M.rmse(y, y + shift) + 1e-12


# ============================================================ edges found by mutation testing
# Each test below kills mutants that survived `make mutate` (docs/quality/mutation.md).
def test_rating_metrics_flatten_any_shape() -> None:
    # A column of ratings pairs with a flat list: both sides are flattened.
    assert M.rmse([[4.0], [2.0]], [3.0, 2.0]) == pytest.approx(math.sqrt(0.5))
    assert M.mae([4.0, 2.0], [[3.0], [2.0]]) == pytest.approx(0.5)


def test_empty_inputs_are_nan_without_numpy_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # np.mean([]) would warn: the guard must come first
        assert math.isnan(M.rmse([], []))
        assert math.isnan(M.mae([], []))
        assert math.isnan(M.like_accuracy([], []))
        assert math.isnan(M.novelty([[], []], {"a": 1}, 8))
        assert math.isnan(M.auc([], set(), 5))  # no relevant item: NaN, even for an empty list


def test_auc_of_a_one_item_list() -> None:
    # 3 candidates, list [b] with b relevant: b beats both non-relevant items -> 1
    assert M.auc(["b"], {"b"}, 3) == pytest.approx(1.0)
    # list [a] with b relevant and missing: b loses to a, ties with c -> 0.5 / 2
    assert M.auc(["a"], {"b"}, 3) == pytest.approx(0.25)


def test_catalogue_sizes_must_be_positive() -> None:
    lists = [["a"]]
    for call in (
        lambda: M.coverage_at_k(lists, 0),
        lambda: M.coverage_batch(np.array([[0]]), 0),
    ):
        with pytest.raises(ConfigError, match="n_items must be >= 1, got 0"):
            call()
    for call in (
        lambda: M.novelty(lists, {"a": 1}, 0),
        lambda: M.novelty_batch(np.array([[0]]), [1], 0),
    ):
        with pytest.raises(ConfigError, match="n_users must be >= 1, got 0"):
            call()
    # One user is a valid population: an item everybody saw carries no information.
    assert M.novelty([["a"]], {"a": 1}, 1) == 0.0
    np.testing.assert_allclose(M.novelty_batch(np.array([[0]]), [1], 1), [0.0])


def test_novelty_batch_cut_off() -> None:
    top = np.array([[0, 1], [2, 3]])
    pop = [8, 2, 1, 0]  # self-information 0, 2, 3, 3 with 8 users
    np.testing.assert_allclose(M.novelty_batch(top, pop, 8, k=1), [0.0, 3.0])
    np.testing.assert_allclose(M.novelty_batch(top, pop, 8), [1.0, 3.0])


def test_hit_matrix_refuses_an_index_past_the_catalogue() -> None:
    rel = sp.csr_matrix((np.ones(1), ([0], [1])), shape=(1, 4))
    with pytest.raises(ConfigError, match="item index 4 but relevant has 4 columns"):
        M.hit_matrix(np.array([[1, 4]]), rel)
    assert M.hit_matrix(np.array([[1, 3]]), rel).tolist() == [[True, False]]
    with pytest.raises(ConfigError, match="relevant has 1 rows; they need one row per user"):
        M.hit_matrix(np.array([[1], [2]]), rel)


def test_ranking_batch_checks_its_cut_offs_and_uses_given_hits() -> None:
    top = np.array([[0, 1]])
    rel = sp.csr_matrix((np.ones(1), ([0], [0])), shape=(1, 3))
    for ks in ([], [0], [5, 0]):
        with pytest.raises(ConfigError, match=r"ks must be a non-empty list of cut-offs >= 1, got"):
            M.ranking_metrics_batch(top, rel, ks)
    # A precomputed hit matrix is used as given (not recomputed from topk_idx).
    none = np.zeros((1, 2), dtype=bool)
    assert M.ranking_metrics_batch(top, rel, [2], hits=none)["hit_rate@2"][0] == 0.0
    assert M.ranking_metrics_batch(top, rel, [2])["hit_rate@2"][0] == 1.0
    np.testing.assert_allclose(M.auc_batch(top, rel, 3, hits=none), [0.0])
    np.testing.assert_allclose(M.auc_batch(top, rel, 3), [1.0])
