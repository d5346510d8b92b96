"""CLI: ``train --protocol``, ``evaluate --protocol`` (refusing leaks) and ``benchmark``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recforge.artifacts import read_manifest
from recforge.cli import main
from recforge.data.synthetic import make_interactions


@pytest.fixture()
def ratings_csv(tmp_path: Path) -> Path:
    """Synthetic explicit ratings in recforge's canonical columns."""
    data = make_interactions(n_users=60, n_items=40, density=0.2, seed=3).interactions
    data.to_frame().to_csv(tmp_path / "ratings.csv", index=False)
    return tmp_path / "ratings.csv"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``recforge ARGS`` run in-process."""
    code = main(list(args))
    return (code, *capsys.readouterr())


def test_train_and_evaluate_on_protocol(
    capsys: pytest.CaptureFixture[str], ratings_csv: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    code, out, err = run_cli(
        capsys, "train", "-m", "biases", "-d", str(ratings_csv), "--protocol", "random-80-20",
        "--out", str(run), "--json",
    )  # fmt: skip
    assert code == 0, err
    trained = json.loads(out)
    recorded = read_manifest(run)["protocol"]
    assert recorded["name"] == "random-80-20" and recorded["fold"] == "seed=42"

    code, out, err = run_cli(capsys, "evaluate", str(run), "--protocol", "random-80-20", "--json")
    assert code == 0, err
    scored = json.loads(out)
    assert scored["metrics"]["rmse"] == pytest.approx(trained["metrics"]["rmse"])
    assert scored["trained_on"]["matches_protocol_train"] is True
    # Without --protocol, a protocol run is scored on its recorded protocol.
    code, out, _ = run_cli(capsys, "evaluate", str(run))
    assert code == 0 and "random-80-20 (sampled)" not in out and "rmse" in out

    # The seed-43 test set overlaps the seed-42 training part: a leak, refused in one line.
    code, _, err = run_cli(
        capsys, "evaluate", str(run), "--protocol", "random-80-20", "--fold", "seed=43"
    )
    assert code == 2
    assert err.count("\n") == 1 and "test events in training" in err


def test_evaluate_refuses_run_trained_with_other_split(
    capsys: pytest.CaptureFixture[str], ratings_csv: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", "-m", "popularity", "-d", str(ratings_csv), "--split",
        "random:0.2:seed=7", "--out", str(run), "--json",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(capsys, "evaluate", str(run), "--protocol", "temporal-user-80-20")
    assert code == 2
    assert err.startswith("recforge: error:") and err.count("\n") == 1
    assert "recforge train --protocol temporal-user-80-20 --fold 0" in err


def test_train_protocol_refuses_wrong_kind(
    capsys: pytest.CaptureFixture[str], ratings_csv: Path
) -> None:
    code, _, err = run_cli(
        capsys, "train", "-m", "popularity", "-d", str(ratings_csv), "--protocol", "random-80-20"
    )
    assert code == 2 and "does not predict ratings" in err


def test_train_protocol_refuses_checkpoint_options(
    capsys: pytest.CaptureFixture[str], ratings_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", "-m", "biases", "-d", str(ratings_csv), "--protocol", "random-80-20",
        "--checkpoint-every", "1", "--out", str(out),
    )  # fmt: skip
    assert code == 2 and "--protocol does not combine" in err and not out.exists()


def test_benchmark_writes_md_and_json(
    capsys: pytest.CaptureFixture[str], ratings_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    code, stdout, err = run_cli(
        capsys, "benchmark", "--suite", "rating", "--data", str(ratings_csv),
        "--models", "global_mean,biases", "--folds", "2", "--no-peers", "--defaults",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    payload = json.loads((out / "benchmark.json").read_text(encoding="utf-8"))
    assert payload["command"] == (
        f"recforge benchmark --suite rating --data {ratings_csv} --models global_mean,biases "
        "--folds 2 --no-peers --defaults"
    )
    assert [r["label"] for r in payload["rows"]] == ["global_mean", "biases"]
    assert all(r["summary"]["rmse"]["n"] == 2 for r in payload["rows"])
    md = (out / "benchmark.md").read_text(encoding="utf-8")
    assert "±" in md and "## random-80-20" in md
    assert "random-80-20 on ratings" in stdout and "ml100k-folds not run" in stdout


def test_benchmark_bad_protocol_is_one_line(
    capsys: pytest.CaptureFixture[str], ratings_csv: Path, tmp_path: Path
) -> None:
    code, _, err = run_cli(
        capsys, "benchmark", "--data", str(ratings_csv), "--protocols", "loo",
        "--out", str(tmp_path / "b"),
    )  # fmt: skip
    assert code == 2 and "unknown protocol 'loo'" in err and err.count("\n") == 1
