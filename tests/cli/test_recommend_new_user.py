"""``recforge recommend --item/--rating``: a new user's list from the command line, by fold-in
(in-process, tiny synthetic runs: an EASE and a SASRec)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recforge.artifacts import load_run
from recforge.cli import main
from recforge.data.synthetic import make_interactions
from recforge.models.base import Recommender
from recforge.models.ease import EASE
from recforge.models.registry import create


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = make_interactions(n_users=40, n_items=30, density=0.3, seed=5).interactions
    return EASE(reg=5.0).fit(data).save(tmp_path_factory.mktemp("newuser") / "run")


@pytest.fixture(scope="module")
def model(run_dir: Path) -> Recommender:
    return load_run(run_dir).model


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _json_ids(out: str) -> list[int]:
    return [it["item_id"] for it in json.loads(out)[0]["items"]]


def test_items_form_equals_recommend_for_items(
    capsys: pytest.CaptureFixture[str], run_dir: Path, model: Recommender
) -> None:
    code, out, err = _cli(capsys, "recommend", str(run_dir), "-i", "3", "-i", "7", "-i", "11")
    assert code == 0 and err == ""
    assert "Top 10 for a new user (3 items)" in out
    want = model.recommend_for_items([3, 7, 11], 10)
    code, out, _ = _cli(
        capsys, "recommend", str(run_dir), "-i", "3", "-i", "7", "-i", "11", "--json"
    )
    assert code == 0 and _json_ids(out) == want.item_ids.tolist()
    assert not {3, 7, 11} & set(_json_ids(out))


def test_ratings_form_equals_recommend_for_ratings(
    capsys: pytest.CaptureFixture[str], run_dir: Path, model: Recommender
) -> None:
    # Likes only (above the 1-5 scale's midpoint): EASE learns from events, and the CLI, as the
    # service, drops ratings that are no positive evidence before the fold-in.
    args = ["recommend", str(run_dir), "--rating", "4=5", "--rating", "9=4", "-k", "6", "--json"]
    code, out, _ = _cli(capsys, *args)
    want = model.recommend_for_ratings({4: 5.0, 9: 4.0}, 6)
    entry = json.loads(out)[0]
    assert code == 0 and _json_ids(out) == want.item_ids.tolist()
    assert [it["score"] for it in entry["items"]] == pytest.approx(want.scores.tolist())
    assert entry["user_id"] is None and entry["history"] == [4, 9]
    assert entry["ignored"] == [] and entry["source"] == "fold_in"


def test_include_seen_keeps_the_given_items(
    capsys: pytest.CaptureFixture[str], run_dir: Path, model: Recommender
) -> None:
    args = ["recommend", str(run_dir), "-i", "3", "-i", "7", "--include-seen", "--json", "-k", "30"]
    code, out, _ = _cli(capsys, *args)
    want = model.recommend_for_items([3, 7], 30, exclude_rated=False)
    assert code == 0 and _json_ids(out) == want.item_ids.tolist() and {3, 7} <= set(want.item_ids)


def test_explain_prints_a_because_line_per_item(
    capsys: pytest.CaptureFixture[str], run_dir: Path
) -> None:
    code, out, _ = _cli(
        capsys, "recommend", str(run_dir), "-r", "3=5", "-r", "7=4", "-k", "3", "--explain"
    )
    lines = [line for line in out.splitlines() if "Because" in line]
    assert code == 0 and len(lines) == 3
    assert all("Because you rated" in line for line in lines)
    # An item list holds no ratings: the sentence says "in your history", not "you rated".
    code, out, _ = _cli(
        capsys, "recommend", str(run_dir), "-i", "3", "-i", "7", "-k", "3", "--explain"
    )
    assert code == 0 and out.count(" in your history") == 3 and "you rated" not in out


def test_explain_json_carries_exact_explanations(
    capsys: pytest.CaptureFixture[str], run_dir: Path
) -> None:
    args = ["recommend", str(run_dir), "-i", "3", "-i", "7", "-k", "3", "--explain", "--json"]
    code, out, _ = _cli(capsys, *args)
    items = json.loads(out)[0]["items"]
    assert code == 0 and len(items) == 3
    for item in items:
        exp = item["explanation"]
        assert exp["user_id"] is None and exp["item_id"] == item["item_id"]
        assert {c["item_id"] for c in exp["contributions"]} <= {3, 7}
        total = sum(c["weight"] for c in exp["contributions"]) + exp["rest"] + exp["residual"]
        assert total == pytest.approx(item["score"], abs=1e-4)


def test_unknown_ids_are_ignored_with_a_note(
    capsys: pytest.CaptureFixture[str], run_dir: Path, model: Recommender
) -> None:
    args = ["recommend", str(run_dir), "-i", "3", "-i", "999", "-i", "x", "-i", "7", "--json"]
    code, out, err = _cli(capsys, *args)
    assert code == 0 and err.strip() == (
        "recforge: note: ignored 2 item ids the model does not know: 999, x"
    )
    assert _json_ids(out) == model.recommend_for_items([3, 7], 10).item_ids.tolist()
    assert json.loads(out)[0]["ignored"] == ["999", "x"]


def test_no_liked_rating_gives_the_popular_items_as_the_service_does(
    capsys: pytest.CaptureFixture[str], run_dir: Path, model: Recommender
) -> None:
    import numpy as np

    code, out, err = _cli(capsys, "recommend", str(run_dir), "-r", "3=1", "-r", "7=2", "--json")
    counts = np.asarray(model.seen_.sum(axis=0)).ravel()
    rated = model.items_.index([3, 7]).tolist()
    order = [i for i in np.argsort(-counts, kind="stable").tolist() if i not in rated]
    assert code == 0 and "no given rating is a like" in err
    assert json.loads(out)[0]["source"] == "popular"
    assert _json_ids(out) == model.items_.lookup(np.asarray(order[:10])).tolist()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of --user"),
        (["--user", "1", "-i", "3"], "got --user and --item"),
        (["-i", "3", "-r", "7=5"], "got --item and --rating"),
        (["-i", "999", "-i", "abc"], "none of the given items is known to the model (999, abc)"),
        (["-r", "3"], "--rating expects ID=VALUE"),
        (["-r", "3=nan"], "--rating expects ID=VALUE"),
    ],
)
def test_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], run_dir: Path, args: list[str], message: str
) -> None:
    code, out, err = _cli(capsys, "recommend", str(run_dir), *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("recforge: error: ") and message in err
    assert "Traceback" not in err


def test_a_model_without_fold_in_names_the_models_that_have_one(
    capsys: pytest.CaptureFixture[str], run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EASE, "fold_in_scores", Recommender.fold_in_scores)
    code, out, err = _cli(capsys, "recommend", str(run_dir), "-i", "3")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "model ease cannot recommend for a new user" in err
    assert "models that can: " in err and "als" in err and " ease," not in err


def test_sequential_model_reads_the_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = make_interactions(n_users=40, n_items=30, density=0.3, seed=5).interactions
    model = create("sasrec", epochs=2, hidden=8, max_len=5, n_heads=1, n_layers=1).fit(data)
    run = model.save(tmp_path / "sasrec")
    got = {}
    for order in ([3, 7, 11], [11, 7, 3]):
        items = [a for i in order for a in ("-i", str(i))]
        code, out, _ = _cli(capsys, "recommend", str(run), *items, "-k", "8", "--json")
        assert code == 0
        got[tuple(order)] = _json_ids(out)
        assert got[tuple(order)] == model.recommend_for_items(order, 8).item_ids.tolist()
    assert got[(3, 7, 11)] != got[(11, 7, 3)]
