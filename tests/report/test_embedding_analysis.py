"""PCA, the popular-item rule and component extremes of recforge.viz.embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.errors import DataError
from recforge.viz import embeddings as emb


def planted(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows spread 10x more along a known unit direction than along anything else."""
    rng = np.random.default_rng(seed)
    direction = np.array([3.0, 0.0, 4.0, 0.0, 0.0]) / 5.0
    t = rng.normal(0, 10, n)
    x = t[:, None] * direction + rng.normal(0, 1, (n, 5)) + 7.0  # offset: PCA must centre
    return x, direction


def test_pca_recovers_the_planted_direction() -> None:
    x, direction = planted()
    res = emb.pca(x, 3)
    assert res.scores.shape == (200, 3) and res.components.shape == (3, 5)
    assert abs(res.components[0] @ direction) == pytest.approx(1.0, abs=0.01)
    assert res.explained[0] > 0.9
    assert np.all(np.diff(res.explained) <= 0)
    # Scores are the centred rows projected on the components.
    centred = x - x.mean(0)
    np.testing.assert_allclose(res.scores, centred @ res.components.T, atol=1e-9)


def test_pca_signs_are_deterministic() -> None:
    x, _ = planted()
    a, b = emb.pca(x, 2), emb.pca(-x, 2)
    # Negating the data flips no reported sign: the largest |score| is always positive.
    for res in (a, b):
        for c in range(2):
            col = res.scores[:, c]
            assert col[np.argmax(np.abs(col))] > 0
    np.testing.assert_allclose(np.abs(a.scores), np.abs(b.scores), atol=1e-9)


def test_pca_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="at least 2 rows"):
        emb.pca(np.ones((1, 3)))
    with pytest.raises(DataError, match="NaN"):
        emb.pca(np.array([[1.0, np.nan], [0.0, 1.0]]))


def test_popular_items_rule() -> None:
    counts = np.array([5, 30, 25, 0, 25, 100])
    # Items with >= 20, most rated first, ties by lower index.
    assert emb.popular_items(counts, min_count=20, min_items=1).tolist() == [5, 1, 2, 4]
    assert emb.popular_items(counts, min_count=20, max_items=2, min_items=1).tolist() == [5, 1]
    # Too few pass: the min_items most rated instead.
    assert emb.popular_items(counts, min_count=50, min_items=3).tolist() == [5, 1, 2]
    assert len(emb.popular_items(counts, min_count=1000, min_items=20)) == len(counts)


def test_component_extremes_find_the_planted_ends() -> None:
    scores = np.array([[0.0, 5.0], [9.0, 0.0], [-8.0, 1.0], [1.0, -6.0], [2.0, 0.5]])
    labels = pd.DataFrame({"item_id": [10, 11, 12, 13, 14], "title": list("ABCDE")})
    ends = emb.component_extremes(scores, labels, n=2)
    assert ends[0]["high"]["title"].tolist() == ["B", "E"]
    assert ends[0]["low"]["title"].tolist() == ["C", "A"]
    assert ends[1]["high"]["title"].tolist() == ["A", "C"]
    assert ends[1]["low"]["title"].tolist() == ["D", "B"]
    assert ends[0]["high"]["score"].tolist() == [9.0, 2.0]
    with pytest.raises(DataError):
        emb.component_extremes(scores, labels.iloc[:3])


def test_item_labels_titles_years_genres() -> None:
    meta = pd.DataFrame(
        {
            "title": ["Toy Story", "Heat"],
            "year": pd.array([1995, pd.NA], dtype="Int64"),
            "genres": [["Animation", "Comedy"], []],
        },
        index=pd.Index([1, 2], name="item_id"),
    )
    labels = emb.item_labels(meta, [2, 1, 3])
    assert labels["title"].tolist() == ["Heat", "Toy Story (1995)", "3"]
    assert labels["genres"].tolist() == ["", "Animation, Comedy", ""]
    assert labels["main_genre"].tolist() == ["(none)", "Animation", "(none)"]
    assert emb.item_labels(None, ["x"])["title"].tolist() == ["x"]


def test_plots_write_pngs(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    x, _ = planted(60)
    res = emb.pca(x, 3)
    labels = pd.DataFrame(
        {
            "title": [f"T{j}" for j in range(60)],
            "main_genre": ["Drama", "Comedy", "(none)"] * 20,
        }
    )
    paths = [
        emb.item_map(res, labels, tmp_path / "items.png"),
        emb.user_map(res, np.linspace(1, 5, 60), tmp_path / "users.png", colour_label="mean"),
        emb.error_histogram(np.linspace(-1, 1, 60), np.repeat([1.0, 5.0], 30), tmp_path / "e.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert mpimg.imread(p).shape[2] in (3, 4)
    with pytest.raises(DataError):
        emb.error_histogram([], [], tmp_path / "empty.png")
