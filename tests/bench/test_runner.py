"""Benchmark runner: model specs, tuned-config lookup, mean ± sd rows, reports, peer rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from recforge.bench import runner
from recforge.bench.report_md import mean_sd, metric_title, table_cells
from recforge.bench.runner import (
    ModelSpec,
    parse_model_spec,
    resolve_config,
    run_benchmark,
)
from recforge.data.interactions import Interactions
from recforge.data.split import random_holdout
from recforge.data.synthetic import make_interactions
from recforge.errors import ConfigError
from recforge.eval.evaluate import evaluate_ratings
from recforge.models.registry import create


@pytest.fixture(scope="module")
def synth() -> Interactions:
    return make_interactions(n_users=60, n_items=40, density=0.2, seed=3).interactions


def test_parse_model_spec_forms() -> None:
    assert parse_model_spec("ease") == ModelSpec("ease", "ease", {})
    spec = parse_model_spec('mf:loss="bce",epochs=20,hidden=[1,2]')
    assert spec.name == "mf" and spec.overrides == {"loss": "bce", "epochs": 20, "hidden": [1, 2]}
    assert spec.slug == "mf-loss-bce-epochs-20-hidden-1-2"
    assert parse_model_spec('als:{"n_factors": 8, "reg": 2.0}').overrides == {
        "n_factors": 8,
        "reg": 2.0,
    }
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_model_spec("mf:epochs")
    with pytest.raises(ConfigError, match="invalid JSON"):
        parse_model_spec("mf:{bad")


def test_resolve_config_precedence(tmp_path: Path) -> None:
    root = tmp_path / "configs"
    (root / "ds" / "random-80-20").mkdir(parents=True)
    (root / "ds" / "mf.toml").write_text('model = "mf"\nepochs = 3\n', encoding="utf-8")
    (root / "ds" / "random-80-20" / "mf.toml").write_text("epochs = 7\n", encoding="utf-8")
    (root / "ds" / "gmf.toml").write_text('model = "ncf"\nvariant = "gmf"\n', encoding="utf-8")

    name, cfg, source = resolve_config(parse_model_spec("mf"), "ds", "temporal-user-80-20", root)
    assert (name, cfg) == ("mf", {"epochs": 3}) and source.endswith("ds/mf.toml")
    # Inline overrides start from the defaults: a file tuned for bare ``mf`` is not applied ...
    name, cfg, source = resolve_config(parse_model_spec("mf:lr=0.1"), "ds", "random-80-20", root)
    assert (name, cfg, source) == ("mf", {"lr": 0.1}, "inline")
    # ... but a file named after the exact spec is, with the overrides on top.
    spec = parse_model_spec("mf:lr=0.1")
    (root / "ds" / "random-80-20" / f"{spec.slug}.toml").write_text("epochs = 7\n", "utf-8")
    name, cfg, source = resolve_config(spec, "ds", "random-80-20", root)
    assert cfg == {"epochs": 7, "lr": 0.1} and source.endswith(f"{spec.slug}.toml + inline")
    name, cfg, _ = resolve_config(parse_model_spec("gmf"), "ds", "random-80-20", root)
    assert (name, cfg) == ("ncf", {"variant": "gmf"})
    assert resolve_config(parse_model_spec("mf"), "ds", "x", None) == ("mf", {}, "defaults")
    (root / "ds" / "ease.toml").write_text('model = "als"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="model = 'als'"):
        resolve_config(parse_model_spec("ease"), "ds", "x", root)


def test_mean_sd_formatting() -> None:
    assert mean_sd({"mean": 0.91234, "sd": 0.00411, "n": 3.0}) == "0.9123 ± 0.0041"
    assert mean_sd({"mean": 0.5, "sd": math.nan, "n": 1.0}) == "0.5000"
    assert mean_sd({"mean": math.nan, "sd": math.nan, "n": 0.0}) == "–"
    assert metric_title("sampled_ndcg@10") == "NDCG@10 (sampled)"


def test_benchmark_rows_mean_sd_and_reports(synth: Interactions, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = run_benchmark(
        synth,
        dataset="synthetic",
        suite="rating",
        models=["global_mean", "biases", "popularity"],
        folds=2,
        peers=False,
        configs_dir=None,
        command="recforge benchmark --test",
        out=out,
    )
    # ml100k-folds cannot split synthetic data: reported as skipped, not silently dropped.
    assert "ml100k-folds" in result.skipped_protocols
    rows = {r.label: r for r in result.rows}
    assert set(rows) == {"global_mean", "biases", "popularity"}
    assert rows["popularity"].status == "n/a" and not rows["popularity"].cells

    # Hand-check one row against a direct evaluation on the same seeds.
    rmses = []
    for seed in (42, 43):
        split = random_holdout(synth, 0.2, seed=seed)
        rmses.append(evaluate_ratings(create("biases").fit(split.train), split).summary["rmse"])
    stat = rows["biases"].summary()["rmse"]
    assert stat["n"] == 2
    assert stat["mean"] == pytest.approx(sum(rmses) / 2)
    assert stat["sd"] == pytest.approx(abs(rmses[0] - rmses[1]) / math.sqrt(2))
    for cell in rows["biases"].cells:
        assert cell.fit_seconds >= 0 and cell.peak_rss_mib > 0

    payload = json.loads((out / "benchmark.json").read_text(encoding="utf-8"))
    assert payload["command"] == "recforge benchmark --test"
    assert payload["protocols"]["random-80-20"]["folds"] == ["seed=42", "seed=43"]
    assert "description" in payload["protocols"]["random-80-20"]
    assert payload["environment"]["load_average_start"] is not None
    row = next(r for r in payload["rows"] if r["label"] == "biases")
    assert row["config"] == create("biases").config.model_dump()
    md = (out / "benchmark.md").read_text(encoding="utf-8")
    assert "## random-80-20" in md and "recforge benchmark --test" in md
    assert f"{stat['mean']:.4f} ± {stat['sd']:.4f}" in md
    assert "n/a: popularity does not predict ratings" in md
    assert "Protocol `ml100k-folds` not run" in md
    header, cells = table_cells(payload, "random-80-20")
    assert header[2] == "RMSE (mean ± sd)" and len(cells) == 3


def test_peer_rows_never_dropped(
    synth: Interactions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FakePeers:
        @staticmethod
        def peer_names() -> list[str]:
            return ["surprise-svd", "implicit-als"]

        @staticmethod
        def peer_status() -> dict[str, str]:
            return {"surprise-svd": "cannot import surprise", "implicit-als": "ok"}

        @staticmethod
        def peer_task(name: str) -> str:
            return "rating" if name.startswith("surprise") else "ranking"

    monkeypatch.setattr(runner, "_peers_module", lambda: FakePeers)
    result = run_benchmark(
        synth,
        dataset="synthetic",
        suite="rating",
        protocols=["random-80-20"],
        models=["biases"],
        peers=True,
        out=None,
    )
    peer = next(r for r in result.rows if r.label == "surprise-svd")
    assert peer.status == "unavailable" and peer.reason == "cannot import surprise"
    assert all(r.label != "implicit-als" for r in result.rows)  # ranking peer, rating protocol

    monkeypatch.setattr(runner, "_peers_module", lambda: None)
    result = run_benchmark(
        synth, dataset="synthetic", suite="rating", protocols=["random-80-20"], models=["biases"]
    )
    assert any(
        r.status == "unavailable" and "not available" in (r.reason or "") for r in result.rows
    )


def test_failing_model_is_reported(synth: Interactions, monkeypatch: pytest.MonkeyPatch) -> None:
    real_create = runner._create

    def flaky(name: str, config: dict[str, object], peer: bool) -> object:
        model = real_create(name, config, peer)
        if name == "biases":

            def boom(*args: object, **kwargs: object) -> None:
                raise RuntimeError("diverged")

            monkeypatch.setattr(model, "fit", boom)
        return model

    monkeypatch.setattr(runner, "_create", flaky)
    result = run_benchmark(
        synth,
        dataset="synthetic",
        suite="rating",
        protocols=["random-80-20"],
        models=["global_mean", "biases"],
        folds=2,
        peers=False,
    )
    rows = {r.label: r for r in result.rows}
    assert rows["global_mean"].status == "ok"
    assert rows["biases"].status == "error"
    assert rows["biases"].reason == "fold seed=42: RuntimeError: diverged"
    assert len(rows["biases"].cells) == 1  # later folds are not attempted


def test_unknown_suite_and_model(synth: Interactions) -> None:
    with pytest.raises(ConfigError, match="unknown suite"):
        run_benchmark(synth, dataset="s", suite="speed")
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        run_benchmark(synth, dataset="s", suite="ranking", models=["nope"], peers=False)


def test_model_list_option_keeps_inline_configs() -> None:
    from recforge.cli.benchmark import _split_list

    assert _split_list('ease,mf:loss="bce",epochs=20,als:{"reg": 1, "alpha": 2},popularity') == [
        "ease",
        'mf:loss="bce",epochs=20',
        'als:{"reg": 1, "alpha": 2}',
        "popularity",
    ]
    assert _split_list(None) is None and _split_list(" ") is None


@pytest.mark.movielens
def test_ml100k_folds_row_has_u1_column(data_dir: Path) -> None:
    from recforge.data.movielens import load_movielens

    data = load_movielens("ml-100k", data_dir=data_dir, download=False)
    result = run_benchmark(
        data,
        dataset="ml-100k",
        protocols=["ml100k-folds"],
        models=["global_mean"],
        folds=2,
        peers=False,
    )
    (row,) = result.rows
    assert [c.fold for c in row.cells] == ["u1", "u2"]
    u1 = row.fold("u1")
    assert u1 is not None and u1.metrics["rmse"] == pytest.approx(1.1537, abs=1e-4)
    header, cells = table_cells(result.to_dict(), "ml100k-folds")
    assert "RMSE u1" in header and cells[0][header.index("RMSE u1")] == "1.1537"
