"""Mini-batches of sparse rows for models that read whole rows (autoencoders).

Id-pair models train on ``(user, item, rating)`` triples; row models (AutoRec, Mult-VAE/DAE)
train on whole rows of the user × item matrix (or of its transpose). With the
:class:`~recforge.train.Trainer` they use the training data ``{"row": arange(n_rows)}`` and their
:class:`~recforge.train.losses.Objective` turns the batch of row indices into a dense
``(B, n_cols)`` tensor with :meth:`CSRRows.dense`. Only the batch is ever dense: the whole
matrix stays in CSR form (three tensors on the training device), so memory is
``O(nnz + batch_size · n_cols)`` instead of ``O(n_rows · n_cols)``.

:func:`csr_to_state` / :func:`csr_from_state` store such a matrix as plain arrays in a model's
safetensors state (models that must re-read their training rows at scoring time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch

from recforge.errors import DataError


class CSRRows:
    """A CSR matrix held as torch tensors, giving dense batches of its rows.

    Args:
        matrix: a scipy CSR matrix (copied as float32 with sorted, summed indices).
        device: where the tensors live (default CPU).

    Attributes:
        indptr: ``(n_rows + 1,)`` int64 row pointers.
        indices: ``(nnz,)`` int64 column indices.
        values: ``(nnz,)`` float32 stored values.
        shape: ``(n_rows, n_cols)``.
    """

    def __init__(self, matrix: sp.csr_matrix, device: torch.device | None = None) -> None:
        # astype copies, so the in-place clean-up below never touches the caller's matrix.
        csr = sp.csr_matrix(matrix.astype(np.float32))
        csr.sum_duplicates()
        csr.sort_indices()
        dev = device or torch.device("cpu")
        self.shape: tuple[int, int] = (int(csr.shape[0]), int(csr.shape[1]))
        self.indptr = torch.from_numpy(csr.indptr.astype(np.int64)).to(dev)
        self.indices = torch.from_numpy(csr.indices.astype(np.int64)).to(dev)
        self.values = torch.from_numpy(csr.data.astype(np.float32)).to(dev)

    @property
    def device(self) -> torch.device:
        """The device of the tensors."""
        return self.values.device

    def to(self, device: torch.device) -> CSRRows:
        """Move the tensors to ``device`` in place; returns self."""
        self.indptr = self.indptr.to(device)
        self.indices = self.indices.to(device)
        self.values = self.values.to(device)
        return self

    def entries(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stored entries of ``rows`` as ``(batch position, column, value)`` tensors.

        Vectorised: each row's slice ``indptr[r]:indptr[r+1]`` is expanded with one
        ``repeat_interleave`` instead of a Python loop over rows.
        """
        rows = rows.to(self.indptr.device, torch.int64)
        start = self.indptr[rows]
        counts = self.indptr[rows + 1] - start
        pos = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts)
        # Offset of each entry inside its row: global rank minus the rank of the row's first entry.
        first = torch.cumsum(counts, 0) - counts
        offset = torch.arange(int(counts.sum()), device=rows.device) - first[pos]
        flat = start[pos] + offset
        return pos, self.indices[flat], self.values[flat]

    def dense(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense values and observed mask of ``rows``: two ``(len(rows), n_cols)`` tensors.

        Unstored entries are 0 in the values and False in the mask (a stored 0 is observed).
        """
        if rows.numel() == 1:
            # One row (a served request): its slice directly, the same tensors in 5 ops
            # instead of the ~12 of the batched expansion (~0.1 ms of a ~1 ms request).
            r = int(rows.reshape(-1)[0])
            lo, hi = int(self.indptr[r]), int(self.indptr[r + 1])
            cols1 = self.indices[lo:hi]
            one = torch.zeros(1, self.shape[1], device=self.values.device)
            seen = torch.zeros(1, self.shape[1], dtype=torch.bool, device=self.values.device)
            one[0, cols1] = self.values[lo:hi]
            seen[0, cols1] = True
            return one, seen
        pos, cols, vals = self.entries(rows)
        out = torch.zeros(len(rows), self.shape[1], device=self.values.device)
        mask = torch.zeros(len(rows), self.shape[1], dtype=torch.bool, device=self.values.device)
        out[pos, cols] = vals
        mask[pos, cols] = True
        return out, mask


def csr_to_state(prefix: str, matrix: sp.csr_matrix) -> dict[str, npt.NDArray[Any]]:
    """``{prefix.indptr, prefix.indices, prefix.data, prefix.shape}`` arrays of a CSR matrix."""
    csr = sp.csr_matrix(matrix)
    return {
        f"{prefix}.indptr": csr.indptr.astype(np.int64),
        f"{prefix}.indices": csr.indices.astype(np.int32),
        f"{prefix}.data": csr.data.astype(np.float32),
        f"{prefix}.shape": np.asarray(csr.shape, dtype=np.int64),
    }


def csr_from_state(prefix: str, state: Mapping[str, npt.NDArray[Any]]) -> sp.csr_matrix:
    """The CSR matrix stored by :func:`csr_to_state` (KeyError when a part is missing)."""
    shape = tuple(int(x) for x in state[f"{prefix}.shape"])
    indptr = np.asarray(state[f"{prefix}.indptr"])
    indices = np.asarray(state[f"{prefix}.indices"])
    data = np.asarray(state[f"{prefix}.data"], dtype=np.float32)
    if len(shape) != 2 or len(indptr) != shape[0] + 1 or len(indices) != len(data):
        raise DataError(f"stored matrix {prefix!r} is inconsistent (shape {shape})")
    return sp.csr_matrix((data, indices, indptr), shape=(shape[0], shape[1]))
