"""Any domain: the API, the page and the CLI say "items" and "categories" unless the metadata
says movies; the search finds items by id as well as by title."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from recforge.artifacts import load_run, save_run
from recforge.cli import main
from recforge.data.domain import Nouns, nouns_for, with_item_noun
from recforge.data.synthetic import make_interactions
from recforge.models.registry import create
from recforge.serve.catalog import Catalog

from .conftest import client_for

WEB = Path(__file__).resolve().parents[2] / "src" / "recforge" / "serve" / "web"
PRODUCTS = ["Blue mug", "Green tea", "Teapot", "Mug rack", "Oolong tea"]


def product_run(path: Path, noun: str | None = None, with_meta: bool = True) -> Path:
    """A shop: items are products with titles and categories (no MovieLens anywhere)."""
    data = make_interactions(80, 30, density=0.15, seed=7).interactions
    ids = data.items.ids.tolist()
    meta = None
    if with_meta:
        meta = pd.DataFrame(
            {
                "title": [PRODUCTS[int(i) - 1] if int(i) <= 5 else f"Product {i}" for i in ids],
                "genres": [["Kitchen"] if int(i) % 2 else ["Tea", "Gifts"] for i in ids],
            },
            index=pd.Index(ids, name="item_id"),
        )
        if noun is not None:
            with_item_noun(meta, noun)
    data = dataclasses.replace(data, item_meta=meta)
    return save_run(path, create("biased_mf", epochs=2, seed=0).fit(data))


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return product_run(tmp_path_factory.mktemp("shop") / "run")


def test_nouns_default_to_items_and_follow_the_metadata() -> None:
    assert nouns_for(None) == Nouns("item", "items", "category", "categories")
    meta = pd.DataFrame({"title": ["x"]})
    assert nouns_for(with_item_noun(meta.copy(), "movie")).as_dict() == {
        "item": "movie",
        "items": "movies",
        "category": "genre",
        "categories": "genres",
    }
    assert nouns_for(with_item_noun(meta.copy(), "book", category="subject")) == Nouns(
        "book", "books", "subject", "subjects"
    )
    assert nouns_for(with_item_noun(meta.copy(), "dress")).items == "dresses"


def test_the_noun_survives_a_run_directory(tmp_path: Path) -> None:
    run = product_run(tmp_path / "run", noun="product")
    assert nouns_for(load_run(run).model.item_meta_).items == "products"
    assert Catalog.from_parquet(run / "items.parquet").nouns.items == "products"


def test_api_on_non_movie_data_says_items(shop_run: Path) -> None:
    with client_for(run=str(shop_run)) as client:
        health = client.get("/health").json()
        assert health["nouns"] == {
            "item": "item",
            "items": "items",
            "category": "category",
            "categories": "categories",
        }
        body = client.get("/users/1/recommendations?k=5").json()
        assert all("movie" not in str(it).lower() for it in body["items"])
        page = client.get("/").text.lower()
        assert "movie" not in page and "items" in page
        script = client.get("/static/app.js").text.lower()
        assert "movie" not in script and "data-noun" in page


def test_api_says_movies_when_the_metadata_does(tmp_path: Path) -> None:
    run = product_run(tmp_path / "run", noun="movie")
    with client_for(run=str(run)) as client:
        nouns = client.get("/health").json()["nouns"]
    assert (nouns["items"], nouns["categories"]) == ("movies", "genres")


def test_search_matches_ids_then_titles(shop_run: Path) -> None:
    with client_for(run=str(shop_run)) as client:
        hits = client.get("/items?query=3").json()["items"]
        assert hits[0] == {"item_id": "3", "title": "Teapot", "year": None, "genres": ["Kitchen"]}
        # "3" also appears in titles ("Product 13", "Product 23"...): listed after the id match.
        assert [h["item_id"] for h in hits[1:]] and all("3" in h["title"] for h in hits[1:])
        assert "3" not in [h["item_id"] for h in hits[1:]]
        titles = [h["title"] for h in client.get("/items?query=tea").json()["items"]]
        assert titles[0] == "Teapot"  # a title that starts with the query comes first
        assert set(titles) == {"Green tea", "Teapot", "Oolong tea"}
        assert client.get("/items?query=3&limit=1").json()["items"][0]["item_id"] == "3"
        assert client.get("/items?query=no-such-thing").json()["items"] == []


def test_search_by_id_without_any_metadata(tmp_path: Path) -> None:
    run = product_run(tmp_path / "bare", with_meta=False)
    with client_for(run=str(run)) as client:
        assert client.get("/items?query=7").json()["items"] == [
            {"item_id": "7", "title": None, "year": None, "genres": []}
        ]
        assert client.get("/items?query=999").json()["items"] == []
        assert client.get("/health").json()["nouns"]["items"] == "items"


def test_cli_tables_use_the_domain_words(
    shop_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recommend", str(shop_run), "--user", "1", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "categories" in out and "genres" not in out and "movie" not in out.lower()
    movies = product_run(tmp_path / "movies", noun="movie")
    assert main(["similar", str(movies), "--item", "1", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "Movies similar to 1" in out and "genres" in out


def test_page_words_are_all_noun_slots() -> None:
    """The static page has no domain word baked in: every "items" is a slot /health fills."""
    html = (WEB / "index.html").read_text(encoding="utf-8")
    assert "movie" not in html.lower()
    assert html.count('data-noun="items"') == 3
    assert "applyNouns(h.nouns)" in (WEB / "app.js").read_text(encoding="utf-8")
