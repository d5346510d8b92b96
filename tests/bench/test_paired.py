"""Paired comparison of benchmark rows: per_user.parquet, the bootstrap and ``compare-rows``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.bench.paired import (
    bootstrap_means,
    paired_comparison,
    read_per_user,
    seed_mean_row,
)
from recforge.bench.runner import PER_USER_FILE, run_benchmark, write_per_user
from recforge.cli import main
from recforge.data.synthetic import make_interactions
from recforge.errors import ConfigError


def _frame(values: dict[str, np.ndarray], folds: int = 1) -> pd.DataFrame:
    """A per-user frame: each row label's ``ndcg@10`` per user, the same users in every fold."""
    parts = []
    for f in range(folds):
        for row, vals in values.items():
            n = len(vals)
            parts.append(
                pd.DataFrame(
                    {
                        "dataset": "d",
                        "protocol": "loo-latest",
                        "fold": str(f),
                        "row": row,
                        "user_id": [f"u{i}" for i in range(n)],
                        "ndcg@10": np.asarray(vals, dtype=np.float32),
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def test_identical_rows_differ_by_zero() -> None:
    vals = np.random.default_rng(1).random(200)
    res = paired_comparison(_frame({"a": vals, "b": vals}), "a", "b", "ndcg@10", n_boot=500)
    (group,) = res["results"]
    for s in [*group["folds"], group["pooled"]]:
        assert s["difference"] == 0.0
        assert s["ci_low"] <= 0.0 <= s["ci_high"]
        assert s["p_a_gt_b"] == 0.0 and s["n_users"] == 200


def test_constant_gap_gives_a_point_interval() -> None:
    b = np.random.default_rng(2).random(150) * 0.5
    a = b + 0.1
    res = paired_comparison(_frame({"A": a, "B": b}, folds=2), "A", "B", "ndcg@10", n_boot=300)
    (group,) = res["results"]
    assert [s["fold"] for s in group["folds"]] == ["0", "1"]
    assert group["pooled"]["n_users"] == 300  # users of both folds pooled as separate units
    for s in [*group["folds"], group["pooled"]]:
        # float32 storage: the gap is 0.1 to about 1e-7 per user.
        assert s["difference"] == pytest.approx(0.1, abs=1e-6)
        assert s["ci_low"] == pytest.approx(0.1, abs=1e-6)
        assert s["ci_high"] == pytest.approx(0.1, abs=1e-6)
        assert s["p_a_gt_b"] == 1.0
        assert s["mean_a"] - s["mean_b"] == pytest.approx(s["difference"])


def test_only_common_users_with_values_are_paired() -> None:
    frame = _frame({"a": np.array([0.5, 0.4, np.nan, 0.9]), "b": np.array([0.1, 0.2, 0.3, 0.4])})
    frame = frame[~((frame["row"] == "b") & (frame["user_id"] == "u3"))]  # u3 only in A
    res = paired_comparison(frame, "a", "b", "ndcg@10", n_boot=100)
    stats = res["results"][0]["folds"][0]
    assert stats["n_users"] == 2  # u0, u1: u2 is NaN in A, u3 has no B value
    assert stats["difference"] == pytest.approx(((0.5 - 0.1) + (0.4 - 0.2)) / 2, abs=1e-6)


def test_unknown_row_or_metric_lists_the_choices() -> None:
    frame = _frame({"a": np.ones(3), "b": np.zeros(3)})
    with pytest.raises(ConfigError, match=r"unknown row 'c'; rows: a, b"):
        paired_comparison(frame, "a", "c", "ndcg@10")
    with pytest.raises(ConfigError, match=r"unknown metric 'mrr@10'; metrics: ndcg@10"):
        paired_comparison(frame, "a", "b", "mrr@10")


def test_bootstrap_is_seeded_and_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(3).normal(size=50)
    first = bootstrap_means(values, 1000, seed=7)
    assert np.array_equal(first, bootstrap_means(values, 1000, seed=7))
    monkeypatch.setattr("recforge.bench.paired._CHUNK_ELEMENTS", 120)  # 2 resamples a chunk
    chunked = bootstrap_means(values, 1001, seed=7)
    assert len(chunked) == 1001 and np.isfinite(chunked).all()
    # The mean of the resampled means approaches the sample mean.
    assert chunked.mean() == pytest.approx(values.mean(), abs=0.05)


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real benchmark (popularity vs ease on loo-latest) with its per_user.parquet."""
    data = make_interactions(n_users=60, n_items=40, density=0.2, seed=3).interactions
    out = tmp_path_factory.mktemp("bench")
    run_benchmark(
        data,
        dataset="synthetic",
        suite="ranking",
        protocols=["loo-latest"],
        models=["popularity", "ease"],
        peers=False,
        out=out,
    )
    return out


def test_per_user_means_equal_the_reported_means(bench_dir: Path) -> None:
    per_user = pd.read_parquet(bench_dir / PER_USER_FILE)
    assert list(per_user.columns[:5]) == ["dataset", "protocol", "fold", "row", "user_id"]
    assert all(per_user[c].dtype == np.float32 for c in per_user.columns[5:])
    assert set(per_user["row"].astype(str)) == {"popularity", "ease"}
    payload = json.loads((bench_dir / "benchmark.json").read_text(encoding="utf-8"))
    checked = 0
    for row in payload["rows"]:
        for cell in row["cells"]:
            part = per_user[(per_user["row"] == row["label"]) & (per_user["fold"] == cell["fold"])]
            assert part["user_id"].is_unique and len(part) > 0
            for metric, value in cell["metrics"].items():
                if metric in per_user.columns:  # coverage@10 is not a per-user value
                    assert float(part[metric].astype(np.float64).mean()) == pytest.approx(
                        value, abs=1e-6
                    )
                    checked += 1
    assert checked == 2 * 5  # two rows x ndcg@10, hit_rate@10, mrr@10, ndcg@20, hit_rate@20


def test_no_frames_removes_a_stale_file(tmp_path: Path) -> None:
    (tmp_path / PER_USER_FILE).write_bytes(b"old run")
    assert write_per_user([], tmp_path) is None
    assert not (tmp_path / PER_USER_FILE).exists()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``recforge ARGS`` run in-process."""
    code = main(list(args))
    return (code, *capsys.readouterr())


def test_compare_rows_prints_the_table(capsys: pytest.CaptureFixture[str], bench_dir: Path) -> None:
    code, out, err = run_cli(
        capsys, "compare-rows", str(bench_dir), "--a", "ease", "--b", "popularity",
        "--boot", "500",
    )  # fmt: skip
    assert code == 0, err
    assert "ndcg@10, loo-latest on synthetic: A = ease, B = popularity" in out
    for header in ("users", "mean A", "mean B", "A − B", "95% CI", "P(A > B)"):
        assert header in out
    code, out, err = run_cli(
        capsys, "compare-rows", str(bench_dir), "--a", "ease", "--b", "popularity",
        "--metric", "mrr@10", "--boot", "200", "--json",
    )  # fmt: skip
    assert code == 0, err
    res = json.loads(out)
    assert res["metric"] == "mrr@10" and res["results"][0]["folds"][0]["n_users"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--a", "ease", "--b", "nope"], "unknown row 'nope'; rows: popularity, ease"),
        (["--a", "ease", "--b", "popularity", "--metric", "rmse"], "unknown metric 'rmse'"),
    ],
)
def test_compare_rows_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], bench_dir: Path, args: list[str], message: str
) -> None:
    code, _, err = run_cli(capsys, "compare-rows", str(bench_dir), *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_compare_rows_without_per_user_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "benchmark.json").write_text("{}", encoding="utf-8")
    code, _, err = run_cli(capsys, "compare-rows", str(tmp_path), "--a", "x", "--b", "y")
    assert code == 2 and err.count("\n") == 1
    assert "keeps no per-user values (older recforge versions did not write them)" in err


def test_seed_rows_are_averaged_per_user_before_pairing() -> None:
    # Seeds s0, s1 of config A; user u2 lacks s1's value and leaves the comparison.
    frame = _frame({"s0": np.array([0.2, 0.4, 0.6]), "s1": np.array([0.4, 0.0, 0.6])})
    frame = frame[~((frame["row"] == "s1") & (frame["user_id"] == "u2"))]
    frame = pd.concat([frame, _frame({"b": np.array([0.1, 0.1, 0.1])})], ignore_index=True)
    with_mean, label = seed_mean_row(frame, ["s0", "s1"])
    assert label == "mean(s0, s1)"
    mean = with_mean[with_mean["row"] == label].set_index("user_id")["ndcg@10"]
    assert mean.to_dict() == pytest.approx({"u0": 0.3, "u1": 0.2})
    res = paired_comparison(frame, ["s0", "s1"], "b", "ndcg@10", n_boot=200)
    pooled = res["results"][0]["pooled"]
    assert res["a"] == label and pooled["n_users"] == 2
    assert pooled["difference"] == pytest.approx(0.25 - 0.1)
    # One row listed: the row itself, under its own label.
    assert paired_comparison(frame, ["s0"], "b", "ndcg@10", n_boot=50)["a"] == "s0"


def test_folders_are_read_as_one_set(tmp_path: Path) -> None:
    ref = _frame({"ease": np.array([0.5, 0.25])})
    for name, seed_vals in (("one", [0.0, 1.0]), ("two", [1.0, 1.0])):
        (tmp_path / name).mkdir()
        part = pd.concat([ref, _frame({f"m-{name}": np.array(seed_vals)})], ignore_index=True)
        part.to_parquet(tmp_path / name / PER_USER_FILE)
    both = read_per_user([tmp_path / "one", tmp_path / "two"], PER_USER_FILE)
    # The reference row run in both folders is kept once.
    assert sorted(both["row"].astype(str).unique()) == ["ease", "m-one", "m-two"]
    assert (both["row"] == "ease").sum() == 2
    res = paired_comparison(both, ["m-one", "m-two"], "ease", "ndcg@10", n_boot=50)
    assert res["results"][0]["pooled"]["difference"] == pytest.approx(0.75 - 0.375)
    # The same label with other values in another folder is refused, not silently merged.
    (tmp_path / "three").mkdir()
    _frame({"ease": np.array([0.0, 0.0])}).to_parquet(tmp_path / "three" / PER_USER_FILE)
    with pytest.raises(ConfigError, match="row 'ease' appears in several folders"):
        read_per_user([tmp_path / "one", tmp_path / "three"], PER_USER_FILE)


def test_compare_rows_takes_folders_and_seed_rows(
    capsys: pytest.CaptureFixture[str], bench_dir: Path
) -> None:
    code, out, err = run_cli(
        capsys, "compare-rows", str(bench_dir), str(bench_dir), "--a", "ease", "--a", "popularity",
        "--b", "popularity", "--boot", "200", "--json",
    )  # fmt: skip
    assert code == 0, err
    res = json.loads(out)
    assert res["a"] == "mean(ease, popularity)" and res["dir"] == [str(bench_dir)] * 2
