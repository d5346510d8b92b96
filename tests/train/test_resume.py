"""`recforge train --resume`: SIGKILL a training subprocess mid-run, resume it, compare.

The reference is an uninterrupted run with the same options; on CPU the resumed run must give the
same metrics and bit-identical weights.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from recforge.cli import main
from recforge.data.synthetic import make_interactions
from recforge.train.checkpoint import load_train_state

EPOCHS = 10
TRAIN_ARGS = [
    "--model",
    "biased_mf",
    "--split",
    "random:0.2",
    "--epochs",
    str(EPOCHS),
    "--batch-size",
    "32",
    "--seed",
    "7",
    "--set",
    "schedule=one_cycle",
    "--set",
    "num_threads=1",
]


@pytest.fixture()
def ratings_csv(tmp_path: Path) -> Path:
    inter = make_interactions(n_users=200, n_items=120, density=0.12, seed=11).interactions
    path = tmp_path / "ratings.csv"
    inter.to_frame().rename(columns={"user_id": "userId", "item_id": "movieId"}).to_csv(
        path, index=False
    )
    return path


def _json_run(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    code = main(["train", *args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out: dict[str, object] = json.loads(captured.out)
    return out


def _without_timings(metrics: dict[str, object]) -> dict[str, object]:
    out = {k: v for k, v in metrics.items() if k not in ("timings", "run_dir")}
    for part in ("rating", "ranking"):
        if isinstance(out.get(part), dict):
            out[part] = {k: v for k, v in out[part].items() if "second" not in k and k != "timings"}  # type: ignore[union-attr]
    return out


def test_sigkill_mid_training_then_resume_equals_uninterrupted(
    tmp_path: Path, ratings_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = _json_run(
        capsys, *TRAIN_ARGS, "--data", str(ratings_csv), "--out", str(tmp_path / "ref")
    )

    run = tmp_path / "runs" / "x"
    ckpt = tmp_path / "runs" / "x.ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recforge.cli",
            "train",
            *TRAIN_ARGS,
            "--data",
            str(ratings_csv),
            "--out",
            str(run),
            "--checkpoint-every",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    first = ckpt / "fit-000.safetensors"
    deadline = time.monotonic() + 60
    while not first.exists():
        assert proc.poll() is None, f"training ended before its first checkpoint: {proc.stderr}"
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not run.exists()  # the run directory is only written, atomically, at the end
    state = load_train_state(first)
    assert not state.complete and 1 <= state.epoch < EPOCHS

    resumed = _json_run(capsys, "--resume", str(run))
    assert resumed["run_dir"] == str(run)
    assert _without_timings(resumed) == _without_timings(reference)
    weights = load_file(str(run / "weights.safetensors"))
    ref_weights = load_file(str(tmp_path / "ref" / "weights.safetensors"))
    assert weights.keys() == ref_weights.keys()
    for key, value in ref_weights.items():
        assert (weights[key] == value).all(), key
    assert not ckpt.exists()  # removed once the run directory is saved


def test_resume_without_checkpoint_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "--resume", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 2 and "no checkpoint to resume" in err


def test_resume_takes_no_other_training_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "--resume", str(tmp_path / "x"), "--epochs", "3"])
    assert code == 2 and "pass no other training options" in capsys.readouterr().err


def test_checkpoints_need_an_out_dir(ratings_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", *TRAIN_ARGS, "--data", str(ratings_csv), "--checkpoint-every", "1"])
    assert code == 2 and "--out" in capsys.readouterr().err
