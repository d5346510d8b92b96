"""The speed suite: interleaved pairs, paired ratios and the report (tiny synthetic data)."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.bench import speed
from recforge.data.synthetic import make_interactions
from recforge.errors import ConfigError
from recforge.models.registry import create


def _data():  # type: ignore[no-untyped-def]
    return make_interactions(n_users=80, n_items=50, density=0.2, seed=3).interactions


def test_run_speed_pairs_times_and_ratios() -> None:
    result = speed.run_speed(
        [("tiny", _data())], threads=[1, 2], reps=2, pairs=["ease"], command="recforge x"
    )
    (row,) = result["rows"]
    assert row["pair"] == "ease" and row["metric"] == "ndcg@10"
    for t in ("1", "2"):
        cell = row["by_threads"][t]
        ours, peer = cell["ours"], cell["peer"]
        assert len(ours["seconds"]) == len(peer["seconds"]) == 2
        ratios = [a / b for a, b in zip(ours["seconds"], peer["seconds"], strict=True)]
        assert cell["ratio_median"] == pytest.approx(float(np.median(ratios)))
        assert cell["ratio_min"] <= cell["ratio_median"] <= cell["ratio_max"]
        # Same model in closed form: the float32 reference ranks like recforge's EASE.
        assert ours["metric_median"] == pytest.approx(peer["metric_median"], abs=1e-3)
    assert set(row["ours_threads_ratio"]) == {"2"}
    md = speed.speed_markdown(result)
    assert "Command: `recforge x`" in md and "| ease: recforge ease" in md
    assert "load average" in md and "2 thr / 1 thr" in md


def test_numpy_reference_equals_ease_weights() -> None:
    data = _data()
    ref = speed.NumpyCholeskyEASE().fit(data)
    ours = create("ease", reg=300.0, weighting="binary", dtype="float64").fit(data)
    np.testing.assert_allclose(ref.weights_, ours.weights_, atol=1e-5)


def test_unknown_pair_and_bad_reps_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown speed pair"):
        speed.run_speed([("tiny", _data())], threads=[1], pairs=["warp"])
    with pytest.raises(ConfigError, match="reps"):
        speed.run_speed([("tiny", _data())], threads=[1], reps=0)


def test_implicit_cosine_scores_are_x_times_similarity() -> None:
    pytest.importorskip("implicit")
    data = _data()
    model = speed.ImplicitCosine(K=10).fit(data)
    x = data.csr("binary").toarray()
    users = np.arange(5)
    np.testing.assert_allclose(
        model.score_items(users), x[users] @ model.similarity_.toarray(), rtol=1e-5
    )
