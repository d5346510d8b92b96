"""Embedding analysis: PCA of learned item/user vectors, the items at each end of a component,
and the PNG maps and error histogram of the run report.

The analysis follows the collaborative-filtering lesson of fast.ai (Howard and Gugger, "Deep
Learning for Coders with fastai and PyTorch", 2020, ch. 8): take the item factors of the most
rated movies, project them on their first principal components and read each component through
the titles at its two ends (the lesson's "seriousness axis").

**Which items enter the PCA** (:func:`popular_items`): rarely rated items have embeddings that
barely moved from their random initialisation, and they would crowd the extremes with noise.
fastai keeps the 1000 most rated movies; we keep items with at least ``min_count`` training
interactions (default 20), the ``max_items`` (default 1000) most rated of them. When fewer than
``min_items`` (default 20) items pass, the ``min_items`` most rated items are used instead, so small
catalogues still get a map. Items outside the selection are neither fitted nor drawn.

PCA is plain SVD of the centred matrix (numpy); component signs are fixed so that the largest
absolute score on each component is positive, which makes reports reproducible.

Plots are drawn on explicit Agg canvases (see :mod:`recforge.viz.plots`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from recforge._atomic import atomic_path
from recforge.errors import DataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FloatMatrix = npt.NDArray[np.float64]

#: Default popularity rule for the item PCA (module docstring).
MIN_ITEM_COUNT = 20
MAX_ITEMS = 1000
MIN_ITEMS = 20
#: Genres drawn in their own colour on the item map; the rest share grey "other".
MAX_GENRE_COLOURS = 10
#: Labelled items at each end of PC1 and of PC2 on the item map.
MAP_LABELS_PER_END = 3
_TITLE_CHARS = 32


@dataclass(frozen=True)
class PCAResult:
    """Principal components of a set of row vectors.

    Attributes:
        scores: ``(n_rows, n_components)`` coordinates of the rows on the components.
        components: ``(n_components, d)`` unit directions.
        explained: fraction of the total variance each component explains.
    """

    scores: FloatMatrix
    components: FloatMatrix
    explained: FloatMatrix


def pca(x: npt.ArrayLike, n_components: int = 3) -> PCAResult:
    """PCA of the rows of ``x`` by SVD of the centred matrix (deterministic signs).

    Args:
        x: ``(n, d)`` array, at least two rows.
        n_components: how many components; capped at ``min(n, d)``.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise DataError(f"pca needs a 2-D array with at least 2 rows, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError("pca: the embeddings contain NaN or infinite values")
    centred = arr - arr.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = max(1, min(n_components, len(s)))
    # svd_flip: the row with the largest |score| on each component gets a positive score.
    pivot = np.argmax(np.abs(u[:, :k]), axis=0)
    signs = np.sign(u[pivot, np.arange(k)])
    signs[signs == 0] = 1.0
    scores = u[:, :k] * s[:k] * signs
    total = float((s**2).sum())
    explained = (s[:k] ** 2) / total if total > 0 else np.zeros(k)
    return PCAResult(scores, vt[:k] * signs[:, None], explained)


def popular_items(
    counts: npt.ArrayLike,
    *,
    min_count: int = MIN_ITEM_COUNT,
    max_items: int = MAX_ITEMS,
    min_items: int = MIN_ITEMS,
) -> npt.NDArray[np.int64]:
    """Indices of the items that enter the PCA, most rated first (rule in the module docstring).

    Ties in count are broken by the lower index, so the selection is deterministic.
    """
    c = np.asarray(counts, dtype=np.int64)
    order = np.lexsort((np.arange(len(c)), -c))
    n_pass = int((c >= min_count).sum())
    n = min(max(n_pass, min(min_items, len(c))), max_items, len(c))
    out: npt.NDArray[np.int64] = order[:n].astype(np.int64)
    return out


def item_labels(meta: pd.DataFrame | None, item_ids: npt.ArrayLike) -> pd.DataFrame:
    """``title``, ``genres`` (comma-joined) and ``main_genre`` (the first) of raw item ids.

    Items without metadata get their id as title and empty genres; ``main_genre`` is then
    ``"(none)"``. A ``year`` column, when present, is appended to the title as ``"Title (1995)"``.
    """
    ids = pd.Index(np.asarray(item_ids))
    titles = [str(i) for i in ids]
    genres: list[list[str]] = [[] for _ in range(len(ids))]
    if meta is not None and len(meta):
        rows = meta.reindex(ids)
        if "title" in rows.columns:
            years = rows["year"] if "year" in rows.columns else pd.Series(pd.NA, index=rows.index)
            titles = [
                titles[k] if pd.isna(t) else (str(t) if pd.isna(y) else f"{t} ({int(y)})")
                for k, (t, y) in enumerate(zip(rows["title"], years, strict=True))
            ]
        if "genres" in rows.columns:
            genres = [_as_list(g) for g in rows["genres"]]
    main = [g[0] if g else "(none)" for g in genres]
    return pd.DataFrame(
        {
            "item_id": np.asarray(ids),
            "title": titles,
            "genres": [", ".join(g) for g in genres],
            "main_genre": main,
        }
    )


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v) for v in value]
    if isinstance(value, str) and value:
        return [g for g in value.split("|") if g]
    return []


def component_extremes(
    scores: FloatMatrix, labels: pd.DataFrame, n: int = 10
) -> list[dict[str, pd.DataFrame]]:
    """For each component, the ``n`` rows with the highest and lowest score.

    Args:
        scores: ``(n_rows, k)`` PCA scores.
        labels: one row per score row (``item_id``, ``title``, ``genres``...), same order.
        n: rows at each end (capped at half the rows, so the ends never overlap).

    Returns:
        One ``{"high": frame, "low": frame}`` per component; each frame holds the label columns
        plus ``score``, sorted from the most extreme inwards.
    """
    if len(labels) != len(scores):
        raise DataError(f"component_extremes: {len(scores)} score rows but {len(labels)} labels")
    m = max(1, min(n, len(scores) // 2))
    out: list[dict[str, pd.DataFrame]] = []
    for c in range(scores.shape[1]):
        s = scores[:, c]
        order = np.lexsort((np.arange(len(s)), -s))
        ends = {"high": order[:m], "low": order[::-1][:m]}
        out.append(
            {
                side: labels.iloc[idx].assign(score=s[idx]).reset_index(drop=True)
                for side, idx in ends.items()
            }
        )
    return out


# ---------------------------------------------------------------------------- plots
def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    return target


def _short(text: str) -> str:
    return text if len(text) <= _TITLE_CHARS else text[: _TITLE_CHARS - 1] + "…"


def item_map(
    result: PCAResult,
    labels: pd.DataFrame,
    path: str | Path,
    *,
    title: str = "Item embeddings (PCA)",
    per_end: int = MAP_LABELS_PER_END,
    items: str = "items",
    category: str = "genre",
) -> Path:
    """Scatter of items on PC1 × PC2 coloured by main genre, extremes annotated with titles.

    Args:
        result: PCA of the selected items (at least two components are drawn; one is padded).
        labels: :func:`item_labels` rows in the same order as ``result.scores``.
        path: PNG to write.
        per_end: items labelled at each end of PC1 and PC2.
        items, category: the domain's words (:mod:`recforge.data.domain`), e.g. "products"
            and "category"; the ``main_genre`` label column holds the first category.
    """
    scores = _two_columns(result.scores)
    fig = _figure(11, 8)
    ax = fig.add_subplot(1, 1, 1)
    genres = labels["main_genre"].astype(str).to_numpy()
    counts = pd.Series(genres).value_counts()
    shown = [g for g in counts.index[:MAX_GENRE_COLOURS] if g != "(none)"]
    from matplotlib import colormaps

    # tab10 without its grey (index 7), which would read as "other".
    palette = [colormaps["tab10"](k) for k in (0, 1, 2, 3, 4, 5, 6, 8, 9)] + ["#393b79"]
    is_other = ~np.isin(genres, shown)
    if is_other.any():
        ax.scatter(
            scores[is_other, 0], scores[is_other, 1], s=14, c="#bbbbbb", alpha=0.6, label="other"
        )
    for k, g in enumerate(shown):
        sel = genres == g
        ax.scatter(scores[sel, 0], scores[sel, 1], s=16, color=palette[k], alpha=0.8, label=str(g))
    marked: list[int] = []
    for c in range(2):
        order = np.lexsort((np.arange(len(scores)), -scores[:, c]))
        for idx in [*order[:per_end], *order[::-1][:per_end]]:
            if int(idx) not in marked:
                marked.append(int(idx))
    titles = labels["title"].astype(str).to_numpy()
    for idx, dy in zip(marked, _label_offsets(scores[marked]), strict=True):
        x, y = scores[idx]
        ax.annotate(
            _short(titles[idx]),
            (x, y),
            xytext=(4, dy),
            textcoords="offset points",
            arrowprops={"arrowstyle": "-", "color": "#888888", "lw": 0.6} if dy != 4 else None,
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
        )
        ax.scatter([x], [y], s=40, facecolors="none", edgecolors="black", linewidths=0.8)
    ax.set_xlabel(_axis_label(result, 0))
    ax.set_ylabel(_axis_label(result, 1))
    ax.set_title(f"{title}: {len(scores)} {items}, coloured by main {category}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8, title=f"main {category}", markerscale=1.2, framealpha=0.8)
    fig.tight_layout()
    return _save(fig, path)


def user_map(
    result: PCAResult,
    colour: npt.ArrayLike,
    path: str | Path,
    *,
    colour_label: str,
    title: str = "User embeddings (PCA)",
) -> Path:
    """Scatter of users on PC1 × PC2 coloured by a per-user value (mean rating, activity).

    Args:
        result: PCA of the user embeddings.
        colour: one value per row of ``result.scores``; NaN is drawn grey.
        path: PNG to write.
        colour_label: colour-bar label.
    """
    scores = _two_columns(result.scores)
    values = np.asarray(colour, dtype=np.float64)
    fig = _figure(9, 7)
    ax = fig.add_subplot(1, 1, 1)
    nan = ~np.isfinite(values)
    if nan.any():
        ax.scatter(scores[nan, 0], scores[nan, 1], s=8, c="#bbbbbb", alpha=0.5, label="no value")
        ax.legend(loc="best", fontsize=8)
    points = ax.scatter(
        scores[~nan, 0], scores[~nan, 1], s=10, c=values[~nan], cmap="viridis", alpha=0.75
    )
    fig.colorbar(points, ax=ax, label=colour_label)
    ax.set_xlabel(_axis_label(result, 0))
    ax.set_ylabel(_axis_label(result, 1))
    ax.set_title(f"{title}: {len(scores)} users, coloured by {colour_label}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def error_histogram(
    errors: npt.ArrayLike,
    truth: npt.ArrayLike,
    path: str | Path,
    *,
    title: str = "Rating errors on the test split",
) -> Path:
    """Histogram of ``prediction − truth`` and, beside it, predictions grouped by true rating.

    Args:
        errors: prediction minus true rating per test pair (finite values only).
        truth: the true ratings, same order.
        path: PNG to write.
    """
    err = np.asarray(errors, dtype=np.float64)
    true = np.asarray(truth, dtype=np.float64)
    if len(err) == 0 or len(err) != len(true):
        raise DataError(
            f"error_histogram: need matching non-empty arrays, got {len(err)} and {len(true)}"
        )
    fig = _figure(12, 4.5)
    ax = fig.add_subplot(1, 2, 1)
    ax.hist(err, bins=60, color="#4c72b0", alpha=0.85)
    rmse = float(np.sqrt(np.mean(err**2)))
    ax.axvline(0.0, color="black", lw=1)
    ax.axvline(float(err.mean()), color="#dd8452", ls="--", lw=1.2, label=f"mean {err.mean():+.3f}")
    ax.set_xlabel("prediction − true rating")
    ax.set_ylabel("test pairs")
    ax.set_title(f"{title} (n={len(err)}, RMSE {rmse:.3f})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax2 = fig.add_subplot(1, 2, 2)
    levels = np.unique(true)
    groups: Sequence[npt.NDArray[np.float64]] = [err[true == v] + v for v in levels]
    if len(levels) <= 12:
        ax2.boxplot(groups, positions=np.arange(len(levels)), showfliers=False)
        ax2.set_xticks(np.arange(len(levels)), [f"{v:g}" for v in levels])
        ax2.plot(np.arange(len(levels)), levels, "o", color="#c44e52", label="true rating")
        ax2.legend(fontsize=8)
    else:  # continuous ratings: a plain scatter reads better than dozens of boxes
        ax2.scatter(true, err + true, s=3, alpha=0.3)
    ax2.set_xlabel("true rating")
    ax2.set_ylabel("predicted rating")
    ax2.set_title("predictions by true rating (boxes: quartiles)", fontsize=10)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _label_offsets(points: FloatMatrix) -> list[float]:
    """Vertical label offsets (points) that keep labels of nearby items from overlapping.

    Greedy: a label moves one line at a time (up in the lower half of the plot, down in the
    upper half, so it stays inside the axes) while it sits on an earlier label (within 25% of the
    x range and one line of height; a line is ~3% of the y range).
    """
    if len(points) == 0:
        return []
    span = np.ptp(points, axis=0)
    span[span == 0] = 1.0
    frac = (points - points.min(axis=0)) / span
    line_pts, line_frac = 11.0, 0.03
    placed: list[tuple[float, float]] = []
    out: list[float] = []
    for fx, fy in frac:
        dy = 4.0
        y = float(fy)
        step = 1.0 if fy < 0.5 else -1.0
        while any(abs(fx - px) < 0.25 and abs(y - py) < line_frac for px, py in placed):
            dy += step * line_pts
            y += step * line_frac
        placed.append((float(fx), y))
        out.append(dy)
    return out


def _two_columns(scores: FloatMatrix) -> FloatMatrix:
    if scores.shape[1] >= 2:
        return scores[:, :2]
    return np.hstack([scores, np.zeros((len(scores), 1))])


def _axis_label(result: PCAResult, c: int) -> str:
    if c >= len(result.explained):
        return f"PC{c + 1} (absent)"
    return f"PC{c + 1} ({result.explained[c]:.1%} of variance)"
