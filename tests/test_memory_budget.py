"""Scoring, evaluation and export in user chunks sized from a memory budget.

chunk rows = budget // (n_items × 4 bytes × SCORE_OVERHEAD); results must not depend on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from recforge.batch import (
    SCORE_OVERHEAD,
    chunk_size_for,
    parse_memory_budget,
    recommend_all,
    recommend_all_frame,
)
from recforge.data.interactions import Interactions
from recforge.data.synthetic import make_interactions
from recforge.errors import ConfigError
from recforge.eval.evaluate import evaluate_ranking
from recforge.export import export_model
from recforge.models.base import Recommender
from recforge.store import open_store

N_ITEMS = 50


class Planted(Recommender):
    """Test-only model scoring with fixed planted factors; logs the users per score call."""

    name = "planted_scores"

    def __init__(self, matrix: npt.NDArray[np.float32]) -> None:
        super().__init__()
        self.matrix = matrix
        self.calls: list[int] = []

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        self.scores_ = self.matrix

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.float32]:
        self.calls.append(len(user_idx))
        return self.scores_[np.asarray(user_idx)]


@pytest.fixture(scope="module")
def setup() -> tuple[Interactions, Interactions, npt.NDArray[np.float32]]:
    data = make_interactions(90, N_ITEMS, density=0.15, seed=4)
    x = data.interactions
    rng = np.random.default_rng(0)
    test_mask = rng.random(len(x)) < 0.25
    aff = data.true_affinity(np.arange(x.n_users)).astype(np.float32)
    return x.subset(~test_mask), x.subset(test_mask), aff


def _model(setup: Any) -> Planted:
    train, _, aff = setup
    return Planted(aff).fit(train)  # type: ignore[return-value]


def test_parse_memory_budget() -> None:
    assert parse_memory_budget("4GB") == 4_000_000_000
    assert parse_memory_budget("512MB") == 512_000_000
    assert parse_memory_budget("1GiB") == 1024**3
    assert parse_memory_budget(" 2.5 kB ") == 2500
    assert parse_memory_budget(1234) == 1234
    assert parse_memory_budget(None) is None
    for bad in ("lots", "4 parsecs", "0", "0GB", "-1GB"):
        with pytest.raises(ConfigError, match="memory-budget"):
            parse_memory_budget(bad)


def test_chunk_size_follows_the_budget(setup: Any) -> None:
    per_user = N_ITEMS * 4 * SCORE_OVERHEAD
    assert chunk_size_for(N_ITEMS, 7 * per_user) == 7
    assert chunk_size_for(N_ITEMS, 14 * per_user) == 14
    assert chunk_size_for(N_ITEMS, 7 * per_user - 1) == 6
    assert chunk_size_for(N_ITEMS, 1) == 1
    model = _model(setup)
    n_items = model.n_items
    for users_per_chunk in (1, 7, 40):
        model.calls.clear()
        budget = users_per_chunk * n_items * 4 * SCORE_OVERHEAD
        sizes = [len(c[0]) for c in recommend_all(model, k=5, memory_budget_bytes=budget)]
        assert sizes[:-1] == [users_per_chunk] * (len(sizes) - 1)
        assert sum(sizes) == model.n_users
        assert max(model.calls) == users_per_chunk  # the score matrix itself is chunked


def test_recommendations_identical_for_tiny_and_large_budgets(setup: Any) -> None:
    model = _model(setup)
    tiny = recommend_all_frame(model, k=10, memory_budget_bytes=1)
    large = recommend_all_frame(model, k=10, memory_budget_bytes=parse_memory_budget("4GB"))
    pd.testing.assert_frame_equal(tiny, large)
    assert len(tiny) == 10 * model.n_users


def test_evaluation_identical_for_tiny_and_large_budgets(setup: Any) -> None:
    train, test, _ = setup
    model = _model(setup)
    reports = [
        evaluate_ranking(model, (train, test), ks=(5, 10), memory_budget_bytes=b)
        for b in (1, 3 * N_ITEMS * 16, parse_memory_budget("4GB"))
    ]
    for rep in reports[1:]:
        pd.testing.assert_frame_equal(rep.per_user, reports[0].per_user)
        assert rep.summary == reports[0].summary
    # planted scores rank the held-out items well above chance
    assert reports[0].summary["recall@10"] > 2 * 10 / N_ITEMS


def test_export_identical_for_tiny_and_large_budgets(setup: Any, tmp_path: Path) -> None:
    model = _model(setup)
    rows = []
    for name, budget in (("tiny", 1), ("large", parse_memory_budget("4GB"))):
        with open_store(f"sqlite:///{tmp_path / name}.db") as store:
            model.calls.clear()
            res = export_model(model, store, "v1", k=7, memory_budget_bytes=budget)
            assert res.rows == 7 * model.n_users
            if name == "tiny":
                assert max(model.calls) == 1
            rows.append(pd.read_sql("SELECT * FROM recommendations", store.engine))
    sort = ["user_id", "rank"]
    pd.testing.assert_frame_equal(
        rows[0].sort_values(sort).reset_index(drop=True),
        rows[1].sort_values(sort).reset_index(drop=True),
    )


def test_cli_memory_budget_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import json

    from recforge.cli import main

    ratings = tmp_path / "ratings.csv"
    make_interactions(40, 30, density=0.2, seed=3).interactions.to_frame().to_csv(
        ratings, index=False
    )
    run_dir = tmp_path / "run"
    assert main(["train", "--model", "biases", "--data", str(ratings), "--out", str(run_dir)]) == 0
    capsys.readouterr()
    results = []
    for budget in ("1KB", "4GB"):
        assert main(["evaluate", str(run_dir), "--memory-budget", budget, "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["ranking"]["summary"] == results[1]["ranking"]["summary"]
    db = f"sqlite:///{tmp_path / 'recs.db'}"
    assert main(["export", str(run_dir), "--db", db, "--memory-budget", "1KB", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["export"]["users"] == 40
    for cmd in (["evaluate", str(run_dir)], ["export", str(run_dir), "--db", db]):
        assert main([*cmd, "--memory-budget", "lots"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "memory-budget" in err[0] and "4GB" in err[0]
