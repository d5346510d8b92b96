"""End-to-end tests of the ``recforge`` command line (run in-process through ``main``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.cli import main
from recforge.data.synthetic import make_interactions


@pytest.fixture()
def ratings_csv(tmp_path: Path) -> Path:
    frame = make_interactions(n_users=60, n_items=40, density=0.2, seed=3).interactions.to_frame()
    path = tmp_path / "ratings.csv"
    frame.rename(columns={"user_id": "userId", "item_id": "movieId"}).to_csv(path, index=False)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_is_fast_and_imports_no_torch() -> None:
    code = (
        "import sys; from recforge.cli import main; rc = main(['--help']); "
        "assert rc == 0; assert 'torch' not in sys.modules, 'help imported torch'; "
        "assert 'pandas' not in sys.modules, 'help imported pandas'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "train" in proc.stdout


def test_describe_csv_text_and_json(capsys: pytest.CaptureFixture[str], ratings_csv: Path) -> None:
    expected = pd.read_csv(ratings_csv)
    code, out, _ = run_cli(capsys, "data", "describe", str(ratings_csv), "--json")
    assert code == 0
    stats = json.loads(out)
    assert stats["n_users"] == expected["userId"].nunique()
    assert stats["n_items"] == expected["movieId"].nunique()
    assert stats["n_ratings"] == len(expected)
    assert sum(stats["rating_histogram"].values()) == len(expected)
    code, out, _ = run_cli(capsys, "data", "describe", str(ratings_csv))
    assert code == 0
    assert f"users    {expected['userId'].nunique()}" in out


def test_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating\n1,2,4\n1,3,five\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "data", "describe", str(bad))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "bad.csv" in lines[0] and "rating" in lines[0]
    assert "Traceback" not in err


def test_missing_file_and_unknown_model_exit_2(
    capsys: pytest.CaptureFixture[str], ratings_csv: Path
) -> None:
    code, _, err = run_cli(capsys, "data", "describe", "no/such/file.csv")
    assert code == 2 and "no/such/file.csv" in err
    code, _, err = run_cli(capsys, "train", "--model", "nope", "--data", str(ratings_csv))
    assert code == 2 and "unknown model 'nope'" in err and "biases" in err
    code, _, err = run_cli(
        capsys, "train", "--model", "biases", "--data", str(ratings_csv), "--set", "reg_u=-1"
    )
    assert code == 2 and "reg_u" in err


def test_subprocess_exit_code_has_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "recforge.cli", "data", "describe", str(tmp_path / "missing.csv")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_split_writes_parts(
    capsys: pytest.CaptureFixture[str], ratings_csv: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "split"
    code, out, err = run_cli(
        capsys,
        "data",
        "split",
        str(ratings_csv),
        "--out",
        str(out_dir),
        "-p",
        "random:0.2",
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    train = pd.read_csv(out_dir / "train.csv")
    test = pd.read_csv(out_dir / "test.csv")
    total = len(pd.read_csv(ratings_csv))
    assert len(train) + len(test) == total
    assert summary["n_test"] == len(test)
    assert abs(len(test) - 0.2 * total) <= 1
    pairs = set(zip(train.user_id, train.item_id, strict=True))
    assert not any((u, i) in pairs for u, i in zip(test.user_id, test.item_id, strict=True))
    assert not list(out_dir.glob(".*tmp"))


def test_train_recommend_similar_roundtrip(
    capsys: pytest.CaptureFixture[str], ratings_csv: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        capsys,
        "train",
        "--model",
        "biases",
        "--data",
        str(ratings_csv),
        "--out",
        str(run_dir),
        "--json",
    )
    assert code == 0, err
    metrics = json.loads(out)
    assert "random" in metrics["protocol"]
    rmse = metrics["rating"]["summary"]["rmse"]
    assert 0.3 < rmse < 1.5
    assert (run_dir / "manifest.json").is_file() and (run_dir / "weights.safetensors").is_file()

    train = pd.read_csv(ratings_csv)
    user = int(train["userId"].iloc[0])
    code, out, err = run_cli(
        capsys, "recommend", str(run_dir), "--user", str(user), "-k", "5", "--json"
    )
    assert code == 0, err
    recs = json.loads(out)
    assert recs[0]["user_id"] == user
    scores = [item["score"] for item in recs[0]["items"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)

    code, out, err = run_cli(capsys, "recommend", str(run_dir), "--user", "999999")
    assert code == 2 and "999999" in err

    code, out, err = run_cli(capsys, "evaluate", str(run_dir), "--json")
    assert code == 0, err
    again = json.loads(out)
    assert np.isclose(again["rating"]["summary"]["rmse"], rmse)


BAD_INPUTS = {
    # A file without a rating column is an implicit log, so the item column is the one to drop.
    "missing_column.csv": (b"userId,rating\n1,4\n", "item"),
    "words.csv": (b"userId,movieId,rating\n1,2,4\n1,3,five\n", "rating"),
    "empty_cell.csv": (b"userId,movieId,rating\n1,2,4\n1,,3\n", "movieId"),
    "empty.csv": (b"", "empty"),
    "header_only.csv": (b"userId,movieId,rating\n", "no data"),
    "latin1.csv": ("userId,movieId,rating\nJosé,2,4\n".encode("latin-1"), "encoding"),
    "garbage.csv": (bytes(range(256)) * 8, "bad.csv"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_each_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    content, needle = BAD_INPUTS[name]
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run_cli(capsys, "data", "describe", str(path))
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert name in lines[0]
    assert needle.lower() in lines[0].lower() or needle == "bad.csv", lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("where", ["command", "global"])
def test_train_threads_flag_sets_the_fit_threads(
    capsys: pytest.CaptureFixture[str],
    ratings_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    # `recforge train --threads N` (as a user reading `train --help` types it) and
    # `recforge --threads N train` both run the fit on N threads, over the config's count.
    import torch

    from recforge.models.als import ALS
    from recforge.threads import set_forced_threads

    seen: list[int] = []
    original = ALS._fit

    def spy(self: ALS, train: object, valid: object) -> None:
        seen.append(torch.get_num_threads())
        original(self, train, valid)  # type: ignore[arg-type]

    monkeypatch.setattr(ALS, "_fit", spy)
    try:
        for n in (1, 2):
            flag = ["--threads", str(n)]
            args = ["train", "-m", "als", "--set", "num_threads=3", "--set", "iterations=1"]
            args += ["--data", str(ratings_csv), "--out", str(tmp_path / f"run{n}")]
            code, _, err = run_cli(capsys, *(args + flag if where == "command" else flag + args))
            assert code == 0, err
    finally:
        set_forced_threads(None)
    assert seen == [1, 2]
