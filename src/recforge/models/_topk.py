"""The selection step of :func:`recforge.models.base.topk_rows`: which ``k`` columns of each row.

``numpy.argpartition`` was the scoring bottleneck of exports and full-ranking evaluation: for a
1,024 × 27,000 float32 block and k = 100 it took ~1.1 s on one core (it negates a copy, returns
an int64 index matrix as large as the scores and is single-threaded), against ~0.2 s for
``torch.topk``, which selects in place per row over the torch threads and returns only ``k``
columns (measured on this 2-core machine, see docs/benchmarks/speed.md).

``torch.topk`` does not define which of several equal scores it keeps, while recforge's rankings
break ties by the lower item index. So ``k + 1`` columns are selected: where the ``k``-th and the
``(k+1)``-th values differ, the chosen set is the unique top-``k`` whatever torch's tie order
(ties *inside* it are ordered by index afterwards by the caller); rows where they are equal (a
tie straddling the cut, e.g. several ``-inf`` excluded items when fewer than ``k`` are allowed)
take the exact numpy path, which re-picks the lowest indices among the tied items.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["select_top"]


def _exact(scores: npt.NDArray[np.floating[Any]], k: int) -> npt.NDArray[np.int64]:
    """``argpartition`` selection with ties at the cut going to the lowest indices."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    # argpartition keeps an arbitrary subset of the items tied at the k-th score; re-pick the
    # lowest indices among them (only in rows where the tie straddles the cut).
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
    tied = scores == kth
    need = k - (scores > kth).sum(axis=1)
    rows = np.flatnonzero(tied.sum(axis=1) > need)
    if len(rows):
        t = tied[rows]
        first = np.cumsum(t, axis=1, dtype=np.int32) <= need[rows, None]
        keep = (scores[rows] > kth[rows]) | (t & first)
        part[rows] = np.nonzero(keep)[1].reshape(len(rows), k)
    return part.astype(np.int64, copy=False)


def select_top(scores: npt.NDArray[np.floating[Any]], k: int) -> npt.NDArray[np.int64]:
    """Column indices of each row's ``k`` largest scores (unordered), ``0 < k < n_columns``.

    Among equal scores at the cut, the lower indices are kept.
    """
    import torch

    block = np.ascontiguousarray(scores)
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float32)
    with warnings.catch_warnings():
        # A read-only block (a memory-mapped or cached score matrix) is only read here.
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.from_numpy(block)
    vals_t, idx_t = torch.topk(tensor, k + 1, dim=1, largest=True, sorted=True)
    vals, idx = vals_t.numpy(), idx_t.numpy()
    part = np.ascontiguousarray(idx[:, :k], dtype=np.int64)
    # NaN never equals itself: a NaN at the cut also goes to the exact path.
    straddle = ~(vals[:, k - 1] > vals[:, k])
    rows = np.flatnonzero(straddle)
    if len(rows):
        part[rows] = _exact(block[rows], k)
    return part
