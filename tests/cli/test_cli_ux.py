"""The small things a user hits: python -m recforge, --version, serve errors, progress lines,
the models table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import recforge
from recforge.cli import main
from recforge.data.synthetic import make_interactions
from recforge.models import registry
from recforge.progress import Ticker, cli_lines

SRC = str(Path(recforge.__file__).resolve().parents[1])


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def ratings_csv(tmp_path: Path) -> Path:
    frame = make_interactions(n_users=60, n_items=40, density=0.2, seed=3).interactions.to_frame()
    path = tmp_path / "ratings.csv"
    frame.to_csv(path, index=False)
    return path


def test_python_dash_m_recforge_and_version_alone() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "recforge", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"recforge {recforge.__version__}\n"
    proc = subprocess.run(
        [sys.executable, "-m", "recforge", "models", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert {r["name"] for r in json.loads(proc.stdout)} == set(registry.available())


def test_version_wins_over_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--version", "models")
    assert (code, out, err) == (0, f"recforge {recforge.__version__}\n", "")


@pytest.mark.parametrize("kind", ["missing", "not_a_run", "bad_store"])
def test_serve_with_a_bad_run_is_one_line_exit_2(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "missing":
        args = ["serve", str(tmp_path / "nope")]
        expected = "not a run directory"
    elif kind == "not_a_run":
        (tmp_path / "folder").mkdir()
        args = ["serve", str(tmp_path / "folder")]
        expected = "no manifest.json"
    else:
        args = ["serve", "--store", f"sqlite:///{tmp_path / 'none.db'}"]
        expected = "no recforge store here"
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("recforge: error: ") and expected in err


def test_models_table_shows_feedback_and_description(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    header, *rows = out.strip().splitlines()
    assert header.split() == ["model", "feedback", "description"]
    assert len(rows) == len(registry.available())
    by_name = {r.split()[0]: r.split(maxsplit=2) for r in rows}
    assert by_name["ease"][1] == "implicit"
    assert by_name["biases"][1] == "explicit"
    assert by_name["als"][1] == "both"
    assert "Steck" in by_name["ease"][2]
    code, out, _ = run_cli(capsys, "models", "--json")
    rows_json = json.loads(out)
    assert all(r["feedback"] in {"explicit", "implicit", "both"} for r in rows_json)
    assert all(len(r["description"]) > 10 for r in rows_json)


def test_models_registered_elsewhere_fall_back_to_their_docstring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(registry._MODELS, "plugin_mean", "recforge.models.baselines:GlobalMean")
    info = registry.describe("plugin_mean")
    assert info["feedback"] == "explicit"
    assert info["description"].startswith("Predicts the mean training rating")


def test_train_and_export_print_progress_lines_off_a_terminal(
    ratings_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    args = ["train", "-m", "biased_mf", "-d", str(ratings_csv), "--epochs", "3", "-o", str(run)]
    code, out, err = run_cli(capsys, *[*args, "--json"])
    assert code == 0, err
    json.loads(out)  # stdout stays pure JSON
    lines = err.strip().splitlines()
    assert all(line.startswith("recforge: ") for line in lines)
    epochs = [line for line in lines if line.startswith("recforge: biased_mf ")]
    assert [e.split()[2] for e in epochs] == ["1/3", "2/3", "3/3"]  # one line per epoch
    assert any("fitting biased_mf" in line for line in lines)
    assert any("evaluating on" in line for line in lines)
    code, out, err = run_cli(capsys, "export", str(run), "--db", f"sqlite:///{tmp_path / 'r.db'}")
    assert code == 0, err
    assert err.strip().splitlines()[-1].startswith("recforge: export: users scored 60/60 (100%")


def test_library_training_stays_silent_unless_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_interactions(n_users=30, n_items=20, density=0.3, seed=1).interactions
    recforge.create("biased_mf", epochs=2, seed=0).fit(data)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RECFORGE_PROGRESS", "lines")
    recforge.create("biased_mf", epochs=2, seed=0).fit(data)
    assert capsys.readouterr().err.count("recforge: biased_mf ") == 2


def test_ticker_prints_a_bounded_number_of_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with cli_lines():
        ticker = Ticker(1000, "work", step=0.1)
        for _ in range(143):
            ticker.tick(7)
        ticker.tick(1000)  # past the end: reported once
    lines = capsys.readouterr().err.strip().splitlines()
    assert 10 <= len(lines) <= 11
    assert lines[0].startswith("recforge: work 105/1000 (10%")
    assert lines[-1].startswith("recforge: work 1001/1000") or "1000/1000" in lines[-1]
    with cli_lines():
        Ticker(10, "off", verbose=False).tick(10)
    assert capsys.readouterr().err == ""
