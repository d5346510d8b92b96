"""Named protocols: hand-checked split membership, evaluation records, validation carves, leaks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.artifacts import save_run
from recforge.data.interactions import Interactions
from recforge.data.split import HeldOutSplit, Split, random_holdout
from recforge.data.synthetic import make_interactions
from recforge.errors import ConfigError
from recforge.eval.protocols import (
    available_protocols,
    evaluate_run,
    get_protocol,
    leaked_test_events,
    train_protocol_run,
)
from recforge.models.registry import create


def _pairs(part: Interactions) -> set[tuple[int, int]]:
    frame = part.to_frame()
    return set(zip(frame["user_id"].tolist(), frame["item_id"].tolist(), strict=True))


@pytest.fixture(scope="module")
def tiny() -> Interactions:
    """Hand-made timelines (user, item, rating, timestamp).

    user 1: 5 events; items 8 and 9 tie at the last timestamp -> item 9 (higher id) is last,
            ceil(0.2 * 5) = 1 test event: {9}.
    user 2: 7 events -> ceil(1.4) = 2 test events: the two latest, items 6 and 1.
    user 3: 4 events (< 5) -> stays wholly in train.
    """
    rows = [
        (1, 4, 5, 1),
        (1, 6, 3, 2),
        (1, 2, 4, 3),
        (1, 9, 2, 4),
        (1, 8, 5, 4),
        (2, 1, 4, 70),
        (2, 2, 3, 10),
        (2, 3, 5, 20),
        (2, 4, 1, 30),
        (2, 5, 4, 40),
        (2, 6, 2, 60),
        (2, 7, 4, 50),
        (3, 1, 5, 1),
        (3, 2, 4, 2),
        (3, 3, 3, 3),
        (3, 4, 2, 4),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return Interactions.from_frame(frame, rating_scale=(1.0, 5.0), source="tiny")


@pytest.fixture(scope="module")
def synth() -> Interactions:
    return make_interactions(n_users=80, n_items=160, density=0.12, seed=5).interactions


def test_registry_names_and_lookup() -> None:
    assert available_protocols() == [
        "ml100k-folds",
        "random-80-20",
        "ml1m-90-10",
        "ml1m-5fold",
        "temporal-user-80-20",
        "loo-latest",
        "ncf-loo",
        "heldout-users",
    ]
    assert get_protocol("ncf-loo (sampled)").label == "ncf-loo (sampled)"
    assert get_protocol("ncf-loo").sampled and not get_protocol("random-80-20").sampled
    assert get_protocol("random-80-20").primary_metric == "rmse"
    assert not get_protocol("ml100k-folds").higher_is_better
    assert get_protocol("temporal-user-80-20").primary_metric == "ndcg@10"
    with pytest.raises(ConfigError, match="available: ml100k-folds"):
        get_protocol("random")


def test_temporal_user_membership_by_hand(tiny: Interactions) -> None:
    proto = get_protocol("temporal-user-80-20")
    (ps,) = proto.splits(tiny)
    assert ps.fold == "0" and ps.protocol == "temporal-user-80-20"
    assert isinstance(ps.split, Split)
    assert _pairs(ps.split.test) == {(1, 9), (2, 6), (2, 1)}
    assert len(ps.train) == len(tiny) - 3
    assert {u for u, _ in _pairs(ps.train)} == {1, 2, 3}


def test_temporal_validation_uses_train_only(tiny: Interactions) -> None:
    proto = get_protocol("temporal-user-80-20")
    ps = proto.split(tiny)
    inner = proto.validation_split(ps)
    assert inner.fold == "0/valid"
    test_pairs = _pairs(ps.split.test)
    inner_split = inner.split
    assert isinstance(inner_split, Split)
    assert not (_pairs(inner.train) | _pairs(inner_split.test)) & test_pairs
    # Same rules on train: user 1 keeps 4 events (< 5, stays); user 2's 5 train events lose the
    # latest (ceil(0.2 * 5) = 1): item 7 at t=50.
    assert _pairs(inner_split.test) == {(2, 7)}


def test_random_80_20_is_seed_42_and_more_seeds(synth: Interactions) -> None:
    proto = get_protocol("random-80-20")
    first, second = proto.splits(synth, 2)
    assert (first.fold, second.fold) == ("seed=42", "seed=43")
    ref = random_holdout(synth, 0.2, seed=42)
    assert isinstance(first.split, Split)
    assert _pairs(first.split.test) == _pairs(ref.test)
    assert len(first.split.test) == round(0.2 * len(synth))
    assert isinstance(second.split, Split)
    assert _pairs(second.split.test) != _pairs(first.split.test)
    assert proto.split(synth, "seed=43").fold == "seed=43"


def test_ncf_loo_holds_out_each_users_latest(tiny: Interactions) -> None:
    ps = get_protocol("ncf-loo").split(tiny)
    assert isinstance(ps.split, Split)
    assert _pairs(ps.split.test) == {(1, 9), (2, 1), (3, 4)}


def test_heldout_users_positives_and_parts(synth: Interactions) -> None:
    proto = get_protocol("heldout-users")
    ps = proto.split(synth)
    split = ps.split
    assert isinstance(split, HeldOutSplit)
    for part in (split.train, split.test_foldin, split.test_target, split.valid_foldin):
        assert part is not None and (part.rating >= 4).all()
    n_users = int((synth.subset(synth.rating >= 4).user_counts() > 0).sum())
    assert split.test_foldin.n_users == round(0.1 * n_users)
    train_users = set(split.train.users.ids.tolist())
    test_users = set(split.test_foldin.users.ids.tolist())
    assert split.valid_foldin is not None
    valid_users = set(split.valid_foldin.users.ids.tolist())
    assert not train_users & test_users and not valid_users & test_users
    # Fold-in is 80% of each held-out user's history: targets are ceil(20%).
    n_fold = np.bincount(split.test_foldin.user_idx)
    n_tgt = np.bincount(split.test_target.user_idx, minlength=len(n_fold))
    assert np.array_equal(n_tgt, np.ceil(0.2 * (n_fold + n_tgt) - 1e-9).astype(int))
    inner = proto.validation_split(ps)
    assert inner.part == "valid" and inner.split is split


def test_evaluate_returns_protocol_metrics_and_record(synth: Interactions) -> None:
    for name, model_name in (
        ("random-80-20", "biases"),
        ("temporal-user-80-20", "popularity"),
        ("ncf-loo", "popularity"),
        ("heldout-users", "ease"),
    ):
        proto = get_protocol(name)
        ps = proto.split(synth)
        model = create(model_name).fit(ps.train)
        result = proto.evaluate(model, ps)
        assert list(result["metrics"]) == list(proto.metrics)
        assert all(np.isfinite(v) for v in result["metrics"].values()), name
        assert result["record"]["name"] == name
        assert result["protocol"].startswith(proto.label)
        assert result["record"]["split_description"] == ps.split.protocol.describe()
    assert "sampled" in get_protocol("ncf-loo").label


def test_rating_protocol_refuses_ranking_model(synth: Interactions) -> None:
    proto = get_protocol("random-80-20")
    ps = proto.split(synth)
    model = create("popularity").fit(ps.train)
    assert proto.model_problem(model) is not None
    with pytest.raises(ConfigError, match="does not predict ratings"):
        proto.evaluate(model, ps)


def test_ml100k_folds_needs_ml100k(synth: Interactions) -> None:
    proto = get_protocol("ml100k-folds")
    assert proto.fold_labels() == ["u1", "u2", "u3", "u4", "u5"]
    assert proto.fold_labels(2) == ["u1", "u2"]
    with pytest.raises(ConfigError, match="--data ml-100k"):
        proto.splits(synth)
    with pytest.raises(ConfigError, match="unknown fold"):
        proto._resolve_fold("u9")


def _as_source(data: Interactions, source: str) -> Interactions:
    return Interactions.from_frame(data.to_frame(), rating_scale=data.rating_scale, source=source)


def test_ml1m_90_10_seeds_and_source_check(synth: Interactions) -> None:
    proto = get_protocol("ml1m-90-10")
    with pytest.raises(ConfigError, match="--data ml-1m-ratings"):
        proto.splits(synth)
    data = _as_source(synth, "ml-1m-ratings")
    splits = proto.splits(data)
    assert [ps.fold for ps in splits] == [f"seed={s}" for s in range(42, 47)]
    for ps in splits:
        assert isinstance(ps.split, Split)
        ref = random_holdout(data, 0.1, seed=int(ps.fold.removeprefix("seed=")))
        assert _pairs(ps.split.test) == _pairs(ref.test)
        assert len(ps.split.test) == round(0.1 * len(data))
    assert proto.metrics == ("rmse", "mae", "like_accuracy") and proto.kind == "rating"


def test_ml1m_5fold_partitions_every_rating_once(synth: Interactions) -> None:
    proto = get_protocol("ml1m-5fold")
    data = _as_source(synth, "ml-1m")
    splits = proto.splits(data)
    assert [ps.fold for ps in splits] == ["0", "1", "2", "3", "4"]
    tests = [_pairs(ps.split.test) for ps in splits]
    assert set().union(*tests) == _pairs(data)
    assert sum(len(t) for t in tests) == len(data)  # disjoint: each rating tested once
    for ps, test in zip(splits, tests, strict=True):
        assert not _pairs(ps.train) & test
        assert len(ps.train) + len(test) == len(data)
    with pytest.raises(ConfigError, match="out of range"):
        proto.split(data, 5)


def test_leak_count(synth: Interactions) -> None:
    proto = get_protocol("temporal-user-80-20")
    ps = proto.split(synth)
    assert isinstance(ps.split, Split)
    clean = create("popularity").fit(ps.train)
    assert leaked_test_events(clean, ps) == 0
    leaky = create("popularity").fit(synth)
    assert leaked_test_events(leaky, ps) == len(ps.split.test)
    held = get_protocol("heldout-users")
    hps = held.split(synth)
    assert leaked_test_events(create("ease").fit(hps.train), hps) == 0
    assert leaked_test_events(create("ease").fit(synth), hps) > 0


def test_evaluate_run_accepts_protocol_run_and_refuses_leak(
    synth: Interactions, tmp_path: Path
) -> None:
    good = train_protocol_run("biases", synth, "random-80-20", fold=0, out=tmp_path / "good")
    assert good.run_dir is not None
    result = evaluate_run(good.run_dir, "random-80-20", data=synth)
    assert result["trained_on"]["matches_protocol_train"] is True
    assert result["metrics"]["rmse"] == pytest.approx(good.metrics["metrics"]["rmse"])
    # Trained on everything: it has seen every test rating of every protocol.
    leaky = create("biases").fit(synth)
    save_run(tmp_path / "leaky", leaky, extra={"data": "memory"})
    with pytest.raises(ConfigError, match=r"saw \d+ of random-80-20 fold seed=42's test events"):
        evaluate_run(tmp_path / "leaky", "random-80-20", data=synth)
    # A different seed's test set overlaps the seed-42 training part: refused too.
    with pytest.raises(ConfigError, match="recforge train --protocol random-80-20"):
        evaluate_run(good.run_dir, "random-80-20", fold="seed=43", data=synth)


@pytest.mark.movielens
def test_ml100k_folds_are_the_grouplens_files(data_dir: Path) -> None:
    from recforge.data.movielens import load_movielens

    data = load_movielens("ml-100k", data_dir=data_dir, download=False)
    (ps,) = get_protocol("ml100k-folds").splits(data, 1)
    assert ps.fold == "u1"
    test = pd.read_csv(
        data_dir / "ml-100k" / "u1.test", sep="\t", names=["u", "i", "r", "t"], header=None
    )
    assert isinstance(ps.split, Split)
    assert len(ps.train) == 80_000 and len(ps.split.test) == len(test) == 20_000
    assert _pairs(ps.split.test) == set(zip(test["u"], test["i"], strict=True))


def test_time_protocols_refuse_data_without_timestamps(synth: Interactions) -> None:
    frame = synth.to_frame().drop(columns="timestamp")
    timeless = Interactions.from_frame(frame, rating_scale=synth.rating_scale, source="timeless")
    assert not timeless.has_timestamps
    for name in ("temporal-user-80-20", "ncf-loo"):
        with pytest.raises(ConfigError, match=r"has no timestamps.*--time-col"):
            get_protocol(name).split(timeless)
    assert get_protocol("random-80-20").split(timeless).fold == "seed=42"
