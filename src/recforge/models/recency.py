"""Recency weighting of user histories for history-based models (EASE, Mult-VAE/DAE, item-kNN).

A user's history entry gets the weight ``exp(−p / τ)``, where ``p`` is its position from the end
of that user's timeline (``p = 0`` for the latest training interaction) and ``τ`` is the model's
``recency_tau``. Timelines are ordered exactly as :func:`recforge.data.split.temporal_user` orders
them: by timestamp, ties by raw item id. Positions are ranks, not seconds: on MovieLens many
ratings share a session, and rank-based decay worked better than decay in days on the validation
carves (docs/benchmarks/tuning_ranking.md).

The weights come only from the training :class:`~recforge.data.interactions.Interactions` given
to ``fit``; nothing from test or validation parts is used.

New users (fold-in) have no timestamps: the order in which their ratings are given is their
timeline, the last one being the most recent (``recommend_for_ratings`` keeps the insertion
order of its ``{item_id: rating}`` mapping; for ``fold_in_scores_batch`` each CSR row's stored
entry order is used, so rows built with sorted indices get item-id order).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recforge.data.interactions import Interactions

__all__ = [
    "recency_matrix",
    "recency_positions",
    "recency_weights",
    "row_sequence_weights",
    "sequence_weights",
]


def recency_positions(data: Interactions) -> npt.NDArray[np.int64]:
    """Per event: its position from the end of its user's timeline (0 = the user's latest).

    Timeline order is (timestamp, raw item id), the order of the temporal split protocols.
    """
    # The split module owns the one definition of "timeline order"; reuse it rather than copy it.
    from recforge.data.split import _per_user_position

    from_end, _ = _per_user_position(data, None)
    return from_end.astype(np.int64)


def recency_weights(data: Interactions, tau: float) -> npt.NDArray[np.float32]:
    """Per event weight ``exp(−position_from_end / tau)`` (1.0 for each user's latest event)."""
    return np.exp(-recency_positions(data) / float(tau)).astype(np.float32)


def recency_matrix(
    data: Interactions, tau: float | None, values: npt.NDArray[Any] | None = None
) -> sp.csr_matrix:
    """User × item CSR whose entries are ``values`` (default 1) times the recency weight.

    ``tau=None`` gives the unweighted matrix. Duplicate (user, item) events are summed.
    """
    vals = np.ones(len(data), np.float32) if values is None else np.asarray(values, np.float32)
    if tau is not None:
        vals = vals * recency_weights(data, tau)
    mat = sp.csr_matrix(
        (vals, (data.user_idx, data.item_idx)), shape=(data.n_users, data.n_items), dtype=np.float32
    )
    mat.sum_duplicates()
    mat.sort_indices()
    return mat


def sequence_weights(n: int, tau: float | None) -> npt.NDArray[np.float32]:
    """Weights of ``n`` entries given oldest first: ``exp(−(n − 1 − k) / tau)`` for entry ``k``.

    ``tau=None`` gives ones.
    """
    if tau is None:
        return np.ones(n, dtype=np.float32)
    return np.exp(-(n - 1 - np.arange(n)) / float(tau)).astype(np.float32)


def row_sequence_weights(
    indptr: npt.NDArray[np.integer[Any]], tau: float
) -> npt.NDArray[np.float32]:
    """:func:`sequence_weights` applied to every row of a CSR (stored entry order), vectorised."""
    ptr = np.asarray(indptr, dtype=np.int64)
    counts = np.diff(ptr)
    row_of = np.repeat(np.arange(len(counts)), counts)
    offset = np.arange(int(ptr[-1] - ptr[0])) - (ptr[:-1] - ptr[0])[row_of]
    from_end = counts[row_of] - 1 - offset
    out: npt.NDArray[np.float32] = np.exp(-from_end / float(tau)).astype(np.float32)
    return out
