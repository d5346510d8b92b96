"""The web page, end to end in headless Chromium (Debian's package, driven by Playwright).

The service runs as a real ``recforge serve`` process on loopback. With RECFORGE_DATA_DIR set
(as in CI) the model is a small biased_mf trained on ML-100k; otherwise a synthetic model whose
items carry titles ("Toy Story" among them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import fit_run

CHROMIUM = "/usr/bin/chromium"
_CLI = (sys.executable, "-m", "recforge.cli")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# docs/screenshot-web.png comes from:
#   RECFORGE_WEB_SCREENSHOT=docs/screenshot-web.png RECFORGE_DATA_DIR=../shared/data \
#   .venv/bin/pytest tests/serve/test_web.py
SCREENSHOT_ENV = "RECFORGE_WEB_SCREENSHOT"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Debian chromium is not installed (apt-get install chromium)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def web_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("web") / "run"
    data_dir = os.environ.get("RECFORGE_DATA_DIR")
    if data_dir and (Path(data_dir) / "ml-100k").is_dir():
        from recforge.pipeline import train_run

        train_run("biased_mf", "ml-100k", split="random:0.2", config={"epochs": 5}, out=out)
        return out
    return fit_run(out, epochs=3)


@pytest.fixture(scope="module")
def server(web_run: Path) -> Iterator[str]:
    """``recforge serve RUN`` on a free loopback port (exercises the CLI command too)."""
    with _serve(web_run) as base:
        yield base


@contextlib.contextmanager
def _serve(run: Path, **extra_env: str) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECFORGE_")} | extra_env
    proc = subprocess.Popen(
        [*_CLI, "serve", str(run), "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"recforge serve did not start:\n{out}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="recforge-chromium-")
    try:
        with sync_playwright() as pw:
            # A fresh profile directory per run (Playwright passes it as --user-data-dir).
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=FLAGS,
                viewport={"width": 1280, "height": 1000},
            )
            pg = context.new_page()
            pg.goto(server + "/")
            yield pg
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_page_loads_and_shows_the_model(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    assert "biased_mf" in page.inner_text("#status")
    assert page.is_hidden("#error")


def test_search_rate_three_and_get_ten_recommendations(page) -> None:  # type: ignore[no-untyped-def]
    page.fill("#search", "toy story")
    page.click("#search-form button")
    page.wait_for_selector("#results li[data-item-id]")
    assert "Toy Story" in page.inner_text("#results li >> nth=0")
    rated = [page.get_attribute("#results li >> nth=0", "data-item-id")]
    page.click("#results li >> nth=0 >> .star[data-value='5']")
    for query in ("golden", "four rooms"):
        page.fill("#search", query)
        page.click("#search-form button")
        page.wait_for_function(
            "q => document.querySelector('#results li .title')?.textContent.toLowerCase()"
            ".includes(q)",
            arg=query.split()[0],
        )
        rated.append(page.get_attribute("#results li >> nth=0", "data-item-id"))
        page.click("#results li >> nth=0 >> .star[data-value='4']")
    page.wait_for_function(
        "() => document.querySelectorAll('#rated li[data-item-id]').length === 3"
    )
    page.wait_for_function(
        "() => document.querySelectorAll('#recs li[data-item-id]').length === 10"
    )
    # The last POST answers for all three ratings; wait for it to settle, then check.
    page.wait_for_load_state("networkidle")
    recs = page.eval_on_selector_all(
        "#recs li[data-item-id]", "els => els.map(e => e.dataset.itemId)"
    )
    assert len(recs) == 10 and len(set(recs)) == 10
    assert not set(recs) & set(rated)
    # Similar movies open from any listed item.
    page.click("#recs li >> nth=0 >> .similar-btn")
    page.wait_for_function("() => document.querySelectorAll('#similar li[data-item-id]').length")
    assert page.is_hidden("#error")


def test_existing_user_and_unknown_id_error(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.fill("#user-id", "1")
    page.click("#user-go")
    page.wait_for_function("() => document.querySelectorAll('#user-recs li[data-item-id]').length")
    page.wait_for_function("() => document.querySelectorAll('#history li[data-item-id]').length")
    shot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "web.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.fill("#user-id", "no-such-user-42")
    page.click("#user-go")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == "unknown user: no-such-user-42"


def test_page_with_api_key_asks_for_it_and_sends_it(web_run: Path, page: Any) -> None:
    key = "k3y-for-the-web-page-test"
    # A second tab of the module's browser (one Playwright per thread); another port is another
    # origin, so it starts without a stored key.
    with _serve(web_run, RECFORGE_API_KEY=key) as base:
        pg = page.context.new_page()
        pg.goto(base + "/")
        asked: list[str] = []

        def answer(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.accept(key)

        pg.on("dialog", answer)
        pg.wait_for_selector("body[data-ready='1']", timeout=10_000)  # /health needs no key
        assert httpx.get(base + "/items?query=toy").status_code == 401
        pg.fill("#search", "toy story")
        pg.click("#search-form button")
        pg.wait_for_selector("#results li[data-item-id]")
        assert asked == ["This service needs an API key:"]
        # Asked once: later calls carry the key from sessionStorage.
        pg.click("#results li >> nth=0 >> .star[data-value='5']")
        pg.wait_for_function("() => document.querySelectorAll('#recs li[data-item-id]').length")
        assert len(asked) == 1 and pg.is_hidden("#error")
        pg.close()


def test_page_speaks_the_data_domain_and_finds_ids(page: Any, web_run: Path) -> None:
    from recforge.artifacts import load_run
    from recforge.data.domain import nouns_for

    # "movies" for the ML-100k run, "items" for the synthetic one (its metadata names no domain).
    words = nouns_for(load_run(web_run).model.item_meta_)
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    assert page.inner_text("#find-h") == f"1. Find {words.items} you know"
    assert page.inner_text("#similar-h").startswith(f"Similar {words.items}")
    page.fill("#search", "2")
    page.click("#search-form button")
    page.wait_for_function(
        "() => document.querySelector('#results li[data-item-id]')?.dataset.itemId === '2'"
    )
    assert page.is_hidden("#error")
