"""The page's "Because you rated ..." lines and its 1★/5★ difference, in headless Chromium.

The model is EASE (the demo's default): on ML-100k when RECFORGE_DATA_DIR is set, else on
synthetic data whose items carry titles. Runs only where Debian's chromium is installed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import TITLES
from .test_web import CHROMIUM, FLAGS, _serve

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Debian chromium is not installed (apt-get install chromium)",
    ),
]


def _ml100k() -> bool:
    data_dir = os.environ.get("RECFORGE_DATA_DIR")
    return bool(data_dir) and (Path(data_dir or ".") / "ml-100k").is_dir()


@pytest.fixture(scope="module")
def ease_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("web-ease") / "run"
    if _ml100k():
        from recforge.pipeline import train_run

        train_run("ease", "ml-100k", split="random:0.2", out=out)
        return out
    import dataclasses

    import pandas as pd

    from recforge.data.synthetic import make_interactions
    from recforge.models.ease import EASE

    data = make_interactions(150, 60, density=0.1, seed=3).interactions
    ids = data.items.ids.tolist()
    meta = pd.DataFrame(
        {"title": [TITLES.get(int(i), f"Movie {i}") for i in ids]},
        index=pd.Index(ids, name="item_id"),
    )
    EASE(reg=20.0).fit(dataclasses.replace(data, item_meta=meta)).save(out)
    return out


@pytest.fixture(scope="module")
def page(ease_run: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="recforge-chromium-")
    try:
        with _serve(ease_run) as base, sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, args=FLAGS
            )
            pg = context.new_page()
            pg.goto(base + "/")
            pg.wait_for_selector("body[data-ready='1']", timeout=10_000)
            yield pg
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _recs(page: Any) -> list[str]:
    out: list[str] = page.eval_on_selector_all(
        "#recs li[data-item-id]", "els => els.map(e => e.dataset.itemId)"
    )
    return out


def _find_and_rate(page: Any, query: str, stars: int) -> str:
    page.fill("#search", query)
    page.click("#search-form button")
    page.wait_for_function(
        "q => document.querySelector('#results li .title')?.textContent.toLowerCase().includes(q)",
        arg=query,
    )
    item = str(page.get_attribute("#results li >> nth=0", "data-item-id"))
    before = _recs(page)
    page.click(f"#results li >> nth=0 >> .star[data-value='{stars}']")
    page.wait_for_function(
        "before => { const now = [...document.querySelectorAll('#recs li[data-item-id]')]"
        ".map(e => e.dataset.itemId); return now.length && now.join() !== before.join(); }",
        arg=before,
    )
    page.wait_for_load_state("networkidle")
    return item


def test_recommendations_say_because_you_rated(page: Any) -> None:
    query = "star wars" if _ml100k() else "toy story"
    _find_and_rate(page, query, 5)
    lines = page.eval_on_selector_all("#recs li .because", "els => els.map(e => e.textContent)")
    assert len(lines) == 10
    title = "Star Wars" if _ml100k() else "Toy Story"
    assert all(line.startswith(f"Because you rated {title}") for line in lines), lines
    assert page.is_hidden("#error")
    # The page's "similar" works for EASE (through its weights).
    page.click("#recs li >> nth=0 >> .similar-btn")
    page.wait_for_function("() => document.querySelectorAll('#similar li[data-item-id]').length")
    assert page.is_hidden("#error")


def test_one_star_and_five_stars_give_different_lists(page: Any) -> None:
    page.click("#clear")
    query = "titanic" if _ml100k() else "golden"
    item = _find_and_rate(page, query, 5)
    loved = _recs(page)
    page.click(f"#results li[data-item-id='{item}'] >> .star[data-value='1']")
    page.wait_for_function(
        "before => [...document.querySelectorAll('#recs li[data-item-id]')]"
        ".map(e => e.dataset.itemId).join() !== before.join()",
        arg=loved,
    )
    page.wait_for_load_state("networkidle")
    hated = _recs(page)
    assert len(hated) == 10 and hated != loved and item not in hated
    # 1★ is no evidence for EASE, so no "because" line names it.
    assert not page.eval_on_selector_all("#recs li .because", "els => els.length")


def test_a_list_without_because_says_what_the_model_read(page: Any) -> None:
    """A sequential model may find no rated item that raised an item (occlusion: leaving any
    one out raises the score); its answer then carries only ``attention``, and the page says
    which of the person's items the model read most instead of showing no reason at all."""
    page.click("#clear")
    answer = {
        "user_id": None,
        "model_version": "seq",
        "source": "fold_in",
        "items": [
            {
                "item_id": "7",
                "title": "Seven",
                "rank": 1,
                "score": 2.5,
                "because": [],
                "attention": [
                    {"item_id": "1", "title": "Alpha", "weight": 0.6},
                    {"item_id": "2", "title": "Beta", "weight": 0.3},
                    {"item_id": "3", "title": None, "weight": 0.1},
                ],
            },
            {"item_id": "8", "title": "Eight", "rank": 2, "score": 2.0, "because": []},
        ],
    }

    def fulfil(route: Any) -> None:
        if route.request.method == "POST":
            route.fulfill(status=200, content_type="application/json", json=answer)
        else:
            route.continue_()

    page.route("**/recommendations*", fulfil)
    try:
        _find_and_rate(page, "star wars" if _ml100k() else "toy story", 5)
        lines = page.eval_on_selector_all(
            "#recs li .because", "els => els.map(e => [e.textContent, e.title])"
        )
    finally:
        page.unroute("**/recommendations*")
    # Only the item with attention gets a line; one with neither stays without.
    assert lines == [
        [
            "Following Alpha and Beta in your list",
            "Alpha: attention 0.600\nBeta: attention 0.300\n3: attention 0.100",
        ]
    ]
