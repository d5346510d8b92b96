"""``recforge report``: the HTML report of a saved run, checked by parsing what it wrote."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.artifacts import load_run
from recforge.cli import main
from recforge.data.interactions import Interactions
from recforge.data.synthetic import make_interactions
from recforge.errors import ArtifactError
from recforge.eval.evaluate import protocol_label
from recforge.pipeline import train_run
from recforge.viz import embeddings as emb
from recforge.viz.report import FIGURES, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Markup in every title: the report must escape it (no tag may appear in the parsed page).
TITLE = '<i>Film</i> {j} & "co"'


class Page(HTMLParser):
    """Collects image sources, start tags, and every table as (caption, rows of cell texts)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tags: list[str] = []
        self.tables: list[tuple[str, list[list[str]]]] = []
        self.text: list[str] = []
        self._caption: str | None = None
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._in_caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        elif tag == "table":
            self._caption, self._rows = "", []
        elif tag == "caption":
            self._in_caption = True
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._rows is not None:
            self.tables.append((self._caption or "", self._rows))
            self._rows = None
        elif tag == "caption":
            self._in_caption = False
        elif tag in ("td", "th") and self._cell is not None and self._rows:
            self._rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_caption:
            self._caption = (self._caption or "") + data
        elif self._cell is not None:
            self._cell.append(data)

    def table(self, caption: str) -> list[list[str]]:
        found = [rows for cap, rows in self.tables if cap == caption]
        assert len(found) == 1, f"expected one table captioned {caption!r}, got {len(found)}"
        return found[0]


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def check_images(page: Page, folder: Path) -> None:
    """Every referenced image is a relative file next to the HTML and a readable PNG."""
    import matplotlib.image as mpimg

    for src in page.images:
        assert "/" not in src and ":" not in src, f"{src}: not a relative file name"
        path = folder / src
        assert path.is_file(), f"{src} is referenced but missing"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        arr = mpimg.imread(path)
        assert arr.ndim == 3 and arr.shape[2] in (3, 4)
        assert arr.shape[0] > 200 and arr.shape[1] > 300


@pytest.fixture(scope="module")
def data() -> Interactions:
    inter = make_interactions(n_users=150, n_items=90, density=0.12, seed=5).interactions
    assert inter.item_meta is not None
    meta = inter.item_meta.copy()
    meta["title"] = [TITLE.format(j=j) for j in meta.index]
    return Interactions.from_frame(
        inter.to_frame(), item_meta=meta, rating_scale=inter.rating_scale, source="planted"
    )


@pytest.fixture(scope="module")
def mf_run(data: Interactions, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A validation carve, so the learning curve has both train and validation loss.
    out = tmp_path_factory.mktemp("runs") / "bmf"
    cfg = {"epochs": 4, "n_factors": 8}
    train_run("biased_mf", data, split="random:0.2", config=cfg, out=out)
    return out


@pytest.fixture(scope="module")
def mf_report(mf_run: Path, data: Interactions) -> tuple[Path, Page, list[str]]:
    result = write_report(mf_run, data=data, n_extremes=5)
    return result.html, parse(result.html), result.notes


def test_report_parses_and_every_image_is_a_valid_png(
    mf_report: tuple[Path, Page, list[str]], mf_run: Path
) -> None:
    html, page, notes = mf_report
    assert html == mf_run / "report" / "report.html"
    assert sorted(page.images) == sorted(FIGURES.values())
    check_images(page, html.parent)
    # Self-contained: no scripts and nothing fetched from elsewhere.
    assert "script" not in page.tags and "link" not in page.tags
    assert not any(n.startswith("rating errors") for n in notes)


def test_metric_tables_name_their_protocol(
    mf_report: tuple[Path, Page, list[str]], mf_run: Path
) -> None:
    _, page, _ = mf_report
    metrics = load_run(mf_run).metrics
    for part in ("rating", "ranking"):
        caption = f"protocol: {protocol_label(metrics[part]['protocol'])}"
        rows = page.table(caption)
        shown = {r[0]: float(r[1]) for r in rows[1:]}
        expected = {
            k: v
            for k, v in metrics[part]["summary"].items()
            if isinstance(v, float) and not k.startswith("n_")
        }
        assert shown.keys() == expected.keys()
        for name, value in expected.items():
            assert shown[name] == pytest.approx(value, abs=6e-5)


def test_extremes_tables_list_titles_of_the_component_ends(
    mf_report: tuple[Path, Page, list[str]], mf_run: Path
) -> None:
    _, page, _ = mf_report
    model = load_run(mf_run).model
    vecs = model.item_embeddings()
    assert vecs is not None
    counts = model.seen_.getnnz(axis=0)
    chosen = emb.popular_items(counts)
    scores = emb.pca(vecs[chosen], 3).scores
    ids = model.items_.lookup(chosen)
    for c in range(3):
        order = np.argsort(-scores[:, c], kind="stable")
        for side, picks in (("high", order[:5]), ("low", order[::-1][:5])):
            rows = page.table(f"PC{c + 1} {side}est")
            # Not MovieLens: the report speaks of categories, not genres.
            assert rows[0] == ["score", "title", "categories", "ratings"]
            # Escaped markup round-trips: the parser sees the raw title text, not tags.
            assert [r[1] for r in rows[1:]] == [TITLE.format(j=i) for i in ids[picks]]
            assert all(r[2] for r in rows[1:]), "every synthetic item has a genre"
    assert "i" not in page.tags


def test_report_on_non_movie_data_speaks_of_items_and_categories(
    mf_report: tuple[Path, Page, list[str]],
) -> None:
    html, page, _ = mf_report
    text = " ".join(page.text).lower()
    assert "movie" not in text and "genre" not in text
    assert "item embeddings" in text and "main category: the first category listed" in text
    source = html.read_text(encoding="utf-8")
    assert 'alt="Item embedding map (PCA), coloured by main category"' in source
    assert "movie" not in source.lower() and "genre" not in source.lower()


def test_user_map_uses_mean_rating_when_the_split_is_rebuilt(
    mf_report: tuple[Path, Page, list[str]],
) -> None:
    _, page, _ = mf_report
    assert "coloured by mean training rating" in "".join(page.text)


def test_error_table_matches_the_models_predictions(
    mf_report: tuple[Path, Page, list[str]], mf_run: Path, data: Interactions
) -> None:
    from recforge.pipeline import resolve_split

    _, page, _ = mf_report
    model = load_run(mf_run).model
    test = resolve_split(data, "random:0.2").test.to_frame()
    err = model.predict(test["user_id"], test["item_id"]) - test["rating"].to_numpy()
    err = err[np.isfinite(err)]
    shown = dict(page.table("Errors"))
    assert float(shown["RMSE"]) == pytest.approx(np.sqrt(np.mean(err**2)), abs=1e-4)
    assert float(shown["MAE"]) == pytest.approx(np.mean(np.abs(err)), abs=1e-4)


def test_without_loadable_data_the_report_says_why(mf_run: Path, tmp_path: Path) -> None:
    # The run's data ("planted") is an in-memory source: the split cannot be rebuilt.
    out = tmp_path / "shared"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    result = write_report(mf_run, out)
    page = parse(result.html)
    check_images(page, result.html.parent)
    assert FIGURES["errors"] not in page.images
    assert any("could not be loaded" in n for n in result.notes)
    text = "".join(page.text)
    assert "pass --data" in text
    assert "coloured by log10 training interactions" in text
    # Only the report's own files are written; the folder is not replaced.
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_model_without_embeddings_still_gets_a_report(data: Interactions, tmp_path: Path) -> None:
    run = train_run("popularity", data, split="random:0.2", out=tmp_path / "pop").run_dir
    assert run is not None
    result = write_report(run, data=data)
    page = parse(result.html)
    check_images(page, result.html.parent)
    assert page.images == []  # no history, not a rating model, no embeddings
    text = " ".join(page.text)
    assert "this model (popularity) has no embeddings" in text
    assert "Not applicable" in text
    metrics = load_run(run).metrics
    page.table(f"protocol: {protocol_label(metrics['ranking']['protocol'])}")


def test_cli_report_with_data_file(
    mf_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --data rebuilds the split from a ratings file; a different dataset is flagged.
    other = make_interactions(n_users=150, n_items=90, density=0.12, seed=6).interactions
    ratings = tmp_path / "other.csv"
    other.to_frame().to_csv(ratings, index=False)
    out = tmp_path / "cli"
    code = main(["report", str(mf_run), "-o", str(out), "--data", str(ratings), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["html"] == str(out / "report.html")
    assert {Path(p).name for p in summary["images"]} == set(FIGURES.values())
    assert any("fingerprint mismatch" in n for n in summary["notes"])
    check_images(parse(out / "report.html"), out)


def test_cli_report_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory" in err
    with pytest.raises(ArtifactError):
        write_report(tmp_path / "nope")


@pytest.mark.movielens
def test_ml100k_biased_mf_report(data_dir: Path, tmp_path: Path) -> None:
    run = train_run("biased_mf", "ml-100k", split="ml100k:u1", out=tmp_path / "run").run_dir
    assert run is not None
    result = write_report(run)
    page = parse(result.html)
    assert sorted(page.images) == sorted(FIGURES.values())
    check_images(page, result.html.parent)
    metrics = load_run(run).metrics
    shown = dict(page.table("Errors"))
    # The table also scores the 32 unknown-item pairs with the global mean; these skip them.
    assert float(shown["RMSE"]) == pytest.approx(metrics["rating"]["summary"]["rmse"], abs=0.01)
    extremes = page.table("PC1 highest")[1:] + page.table("PC1 lowest")[1:]
    # Titles with years come from the MovieLens metadata, and only popular items are listed.
    assert all(r[1].endswith(")") for r in extremes)
    assert all(int(r[3]) >= emb.MIN_ITEM_COUNT for r in extremes)
    # MovieLens metadata names its domain: movies and genres.
    assert page.table("PC1 highest")[0] == ["score", "title", "genres", "ratings"]
    assert "Movie embeddings" in " ".join(page.text)
    assert "coloured by main genre" in result.html.read_text(encoding="utf-8")


def test_frame_helpers_do_not_need_pandas_index_names() -> None:
    meta = pd.DataFrame({"title": ["A"], "genres": [["X", "Y"]]}, index=[7])
    labels = emb.item_labels(meta, [7, 8])
    assert labels["title"].tolist() == ["A", "8"]
    assert labels["main_genre"].tolist() == ["X", "(none)"]
