"""Rating-to-label maps of our reference material, as small pure functions over numpy arrays.

* :func:`like`: a rating above the scale's midpoint is a "like" (``r > 3`` on 1..5 stars).
* :func:`tri_class`: dislike / neutral / like as -1 / 0 / +1 (``{1, 2} → -1, 3 → 0, {4, 5} → +1``).
* :func:`binarize`: relevance for ranking metrics and implicit models (``r >= 4``).

Half stars (0.5..5.0 in the later MovieLens releases): :func:`tri_class` is the sign of
``r - neutral``, so only an exact 3.0 is neutral; 2.5 and below is -1 and 3.5 and above is +1. This
keeps ``tri_class(r) == +1`` exactly when ``like(r)`` holds, and ``-1`` exactly when ``r < 3``, on
any scale. Combine with :meth:`recforge.data.Interactions.with_ratings` to relabel a dataset, e.g.
``data.with_ratings(binarize(data.rating), implicit=True)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from recforge.errors import DataError

__all__ = ["LABEL_MAPS", "binarize", "like", "tri_class"]


def like(r: npt.ArrayLike, threshold: float = 3.0) -> npt.NDArray[np.bool_]:
    """True where the rating is strictly above ``threshold`` (default: ``r > 3``).

    NaN ratings compare False (not liked).
    """
    out: npt.NDArray[np.bool_] = np.asarray(r, dtype=np.float64) > threshold
    return out


def tri_class(r: npt.ArrayLike, neutral: float = 3.0) -> npt.NDArray[np.int8]:
    """-1 below ``neutral``, 0 at it, +1 above (default: ``{1,2} → -1, 3 → 0, {4,5} → +1``).

    Half stars follow the sign rule: 2.5 → -1, 3.5 → +1 (see the module docstring).

    Raises:
        DataError: a rating is NaN or infinite (it has no class).
    """
    arr = np.asarray(r, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr.reshape(-1)))[0])
        raise DataError(
            f"tri_class: rating at position {bad} is {arr.reshape(-1)[bad]}; drop or fill "
            "non-finite ratings first"
        )
    out: npt.NDArray[np.int8] = np.sign(arr - neutral).astype(np.int8)
    return out


def binarize(r: npt.ArrayLike, threshold: float = 4.0) -> npt.NDArray[np.bool_]:
    """True where the rating is at least ``threshold`` (default: ``r >= 4``); NaN gives False."""
    out: npt.NDArray[np.bool_] = np.asarray(r, dtype=np.float64) >= threshold
    return out


#: The maps by name, for configs and the CLI.
LABEL_MAPS: dict[str, Callable[..., npt.NDArray[Any]]] = {
    "like": like,
    "tri_class": tri_class,
    "binarize": binarize,
}
