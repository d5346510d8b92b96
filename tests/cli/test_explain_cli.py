"""``recforge explain`` and ``recforge recommend --explain`` (in-process, a tiny EASE run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recforge.cli import main
from recforge.data.synthetic import make_interactions
from recforge.models.ease import EASE


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = make_interactions(n_users=40, n_items=30, density=0.3, seed=5).interactions
    return EASE(reg=5.0).fit(data).save(tmp_path_factory.mktemp("explain") / "run")


def test_recommend_explain_json_adds_exact_explanations(
    capsys: pytest.CaptureFixture[str], run_dir: Path
) -> None:
    code = main(["recommend", str(run_dir), "--user", "1", "-k", "3", "--explain", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    items = out[0]["items"]
    assert len(items) == 3
    for item in items:
        exp = item["explanation"]
        assert exp["item_id"] == item["item_id"] and exp["method"] == "exact"
        total = sum(c["weight"] for c in exp["contributions"]) + exp["rest"] + exp["residual"]
        assert total == pytest.approx(item["score"], abs=1e-4)


def test_recommend_explain_text_and_explain_command(
    capsys: pytest.CaptureFixture[str], run_dir: Path
) -> None:
    assert main(["recommend", str(run_dir), "--user", "1", "-k", "2", "--explain"]) == 0
    assert "Because you rated" in capsys.readouterr().out
    assert main(["explain", str(run_dir), "--user", "1", "--item", "7", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "residual" in out and "Why item 7 for user 1" in out
    assert main(["explain", str(run_dir), "--user", "999", "--item", "7"]) == 2
    assert "unknown" in capsys.readouterr().err


def test_a_click_log_is_explained_by_its_history_not_by_ratings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # No rating column: the data are clicks, and a click is not a rating.
    frame = make_interactions(n_users=40, n_items=30, density=0.3, seed=5).interactions.to_frame()
    clicks = tmp_path / "clicks.csv"
    frame[["user_id", "item_id"]].rename(columns={"user_id": "shopper", "item_id": "sku"}).to_csv(
        clicks, index=False
    )
    run = tmp_path / "run"
    args = ["train", "-m", "ease", "--data", str(clicks), "--user-col", "shopper"]
    assert main([*args, "--item-col", "sku", "--out", str(run)]) == 0
    capsys.readouterr()
    user = str(frame["user_id"].iloc[0])
    assert main(["recommend", str(run), "--user", user, "-k", "3", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "Because of " in out and " in your history" in out and "you rated" not in out


def test_the_sentence_says_rated_only_for_ratings() -> None:
    import dataclasses

    from recforge.explain import Contribution, Explanation

    exp = Explanation(
        user_id=1,
        item_id=7,
        score=1.0,
        contributions=(Contribution(3, 0.5, 1.0, "Heat"), Contribution(4, 0.2, 1.0, None)),
        rest=0.0,
        residual=0.3,
        method="exact",
    )
    assert exp.sentence() == "Because you rated Heat and 4"
    clicks = dataclasses.replace(exp, rated=False)
    assert clicks.sentence() == "Because of Heat and 4 in your history"
    assert clicks.sentence(1) == "Because of Heat in your history"
