"""The library functions behind ``recforge evaluate`` and ``recforge export`` (issue 19).

The CLI only parses options and prints; these check the steps it calls directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recforge.data.synthetic import make_interactions
from recforge.errors import ConfigError
from recforge.export import export_steps
from recforge.pipeline import evaluate_saved_run, train_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("steps")
    frame = make_interactions(n_users=60, n_items=40, density=0.2, seed=3).interactions.to_frame()
    csv = root / "ratings.csv"
    frame.to_csv(csv, index=False)
    out = root / "run"
    train_run("biases", str(csv), split="random:0.2", out=out, ks=(5, 10))
    return out


def test_evaluate_saved_run_reproduces_the_training_metrics(run_dir: Path) -> None:
    import json

    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    again = evaluate_saved_run(run_dir)  # the run's own data, split, cut-offs and thresholds
    assert again["protocol"] == saved["protocol"]
    for part in ("rating", "ranking"):
        assert again[part]["summary"] == saved[part]["summary"]
        assert again[part]["protocol"] == saved[part]["protocol"]
    assert {"precision@5", "ndcg@10"} <= set(again["ranking"]["summary"])


def test_evaluate_saved_run_overrides_cut_offs_and_split(run_dir: Path) -> None:
    other = evaluate_saved_run(run_dir, ks=(3,), split="random:0.3")
    assert "ndcg@3" in other["ranking"]["summary"]
    assert "ndcg@10" not in other["ranking"]["summary"]
    assert "0.3" in other["protocol"]


def test_evaluate_saved_run_refuses_protocol_with_split_or_fold_alone(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        evaluate_saved_run(run_dir, protocol="random-80-20", split="random:0.2")
    with pytest.raises(ConfigError, match="--fold needs --protocol"):
        evaluate_saved_run(run_dir, fold="1")


def test_export_steps_run_in_order_and_report_each(run_dir: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'recs.db'}"
    with pytest.raises(ConfigError, match="give a run directory"):
        export_steps(db)
    first = export_steps(db, run_dir, k=5, version="v1", list_versions=True)
    assert set(first) == {"export", "versions"}
    assert first["export"]["version"] == "v1" and first["export"]["k"] == 5
    assert first["export"]["rows"] == 5 * first["export"]["users"]
    assert [v["model_version"] for v in first["versions"]] == ["v1"]
    export_steps(db, run_dir, k=3, version="v2")
    # activate before keep: the newest-first pruning keeps the active v1 whatever its age
    after = export_steps(db, activate="v1", keep=0, list_versions=True)
    assert after["activated"] == "v1"
    assert after["pruned"] == ["v2"]
    assert [(v["model_version"], v["active"]) for v in after["versions"]] == [("v1", True)]
