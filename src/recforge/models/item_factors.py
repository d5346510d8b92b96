"""Item factors from a truncated SVD of the training interactions, to start item embeddings.

A sequential model learns its item embeddings from the order of events alone, and on a small
data set (ml-latest-small: 9,724 items, ~100 events each on average, most far fewer) those
tables start from noise and train slowly. The catalogue's co-occurrence already says which items
go together: the leading singular vectors of the cosine-normalised user × item matrix

    X̃ = D_u^{-1/2} X D_i^{-1/2},   X̃ ≈ U S Vᵀ (rank d),   item factors F = V S^{1/2}

place items that share users close together (the same matrix whose Gram matrix EASE and
item-kNN read). :func:`svd_item_factors` returns ``F`` rescaled to a given standard deviation,
which :class:`~recforge.models.sequential.SequentialRecommender` adds to the normal
initialisation of its item embeddings when ``item_init = "svd"`` (pre-trained embeddings: a
warm start, then trained as usual).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.linalg import svds

__all__ = ["svd_item_factors"]


def svd_item_factors(x: sp.csr_matrix, dim: int, scale: float) -> npt.NDArray[np.float32]:
    """``(n_items, dim)`` float32 item factors of the user × item matrix ``x``, std ``scale``.

    ``x``: binary (or weighted) interactions, users in rows. Rows and columns are divided by the
    square roots of their sums (empty ones left zero). The rank is ``min(dim, min(x.shape) − 1)``
    (ARPACK's limit); missing columns stay zero. Deterministic: ARPACK starts from a fixed vector.
    """
    n_users, n_items = x.shape
    out = np.zeros((n_items, dim), dtype=np.float32)
    rank = min(dim, min(n_users, n_items) - 1)
    if rank < 1 or x.nnz == 0:
        return out
    x = sp.csr_matrix(x, dtype=np.float64)
    row = np.sqrt(np.asarray(x.sum(axis=1)).ravel())
    col = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    inv_row = np.divide(1.0, row, out=np.zeros_like(row), where=row > 0)
    inv_col = np.divide(1.0, col, out=np.zeros_like(col), where=col > 0)
    normalised = sp.diags(inv_row) @ x @ sp.diags(inv_col)
    start = np.ones(min(n_users, n_items)) / np.sqrt(min(n_users, n_items))
    _, s, vt = svds(normalised, k=rank, v0=start)
    factors = vt.T * np.sqrt(np.maximum(s, 0.0))
    std = float(factors.std())
    if std > 0:
        factors *= scale / std
    out[:, :rank] = factors.astype(np.float32)
    return out
