"""Resolve a data *spec* (a MovieLens release name or a file path) into Interactions.

The CLI and the pipeline accept either form, e.g. ``ml-100k`` or ``~/logs/ratings.parquet``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recforge.data.interactions import Interactions
from recforge.errors import DataError


def is_movielens_name(spec: str) -> bool:
    """True when ``spec`` names a registered MovieLens release (e.g. ``ml-100k``)."""
    from recforge.data.movielens import MOVIELENS

    return spec in MOVIELENS


def load_dataset(spec: str | Path, **read_kwargs: Any) -> Interactions:
    """Load a MovieLens release by name, or a ratings file by path, as Interactions.

    Args:
        spec: ``ml-100k``-style release name, or a path to CSV/TSV/.dat/Parquet(/.gz).
        **read_kwargs: passed to :func:`recforge.data.io.read_ratings` for files
            (``rating_scale``, ``columns``, ``sep``, ``duplicates``...).
    """
    text = str(spec)
    if is_movielens_name(text):
        from recforge.data.movielens import load_movielens

        return load_movielens(text)
    path = Path(text).expanduser()
    if not path.exists():
        from recforge.data.movielens import MOVIELENS

        raise DataError(
            f"{text}: no such file, and not a MovieLens release name "
            f"(known: {', '.join(sorted(MOVIELENS))})"
        )
    from recforge.data.io import read_ratings

    frame = read_ratings(path, **read_kwargs)
    scale = read_kwargs.get("rating_scale")
    implicit = bool(read_kwargs.get("implicit", False))
    if scale is None and not implicit and len(frame):
        scale = (float(frame["rating"].min()), float(frame["rating"].max()))
        if scale[0] == scale[1]:  # a log of 1.0s is implicit feedback, not a rating scale
            scale = None
    return Interactions.from_frame(frame, rating_scale=scale, source=path.name)
