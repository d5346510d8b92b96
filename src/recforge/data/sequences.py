"""Ordered per-user histories: the sequences view of :class:`~recforge.data.Interactions`.

Sequential recommenders (SASRec, GRU4Rec, BERT4Rec) read a user's history in the order it
happened. :class:`Sequences` is that view, built once from an ``Interactions``:

* **order**: by timestamp, ties by raw item id — exactly the timeline of the temporal split
  protocols (:mod:`recforge.data.split`) and of recency weighting, so "the last training event"
  means the same thing everywhere;
* **storage**: one flat ``int64`` array of item indices grouped by user in timeline order, plus
  CSR-style ``indptr`` offsets (``O(n_events)``, no per-user Python objects);
* **encoding of padded tensors**: item index ``+ 1`` (``0`` is padding), **left-padded**, so the
  most recent event is always in the last column whatever the length. Models therefore read the
  next-item state at position ``-1``, and a position embedding counts back from the present.

Everything is vectorised (one ``lexsort`` and a few ``repeat``/``cumsum`` offsets); no Python
loop runs per user or per event.

Training windows (:meth:`Sequences.windows`): a history longer than ``max_len`` is cut, from its
end, into consecutive non-overlapping windows of ``max_len`` targets, so every event is a target
exactly once per epoch (truncated back-propagation through time, as in SASRec's and GRU4Rec's
public code for long sessions). With ``shift=True`` (next-item models) the input at a cell is the
event just before its target — so the window's first input comes from the previous window — and
a user's very first event is never a target (there is nothing to predict it from). With
``shift=False`` (masked-item models) inputs and targets are the same events.

Example::

    seq = Sequences.from_interactions(train)
    last = seq.padded(np.arange(train.n_users), max_len=50)     # (n_users, 50), 0 = pad
    inputs, targets = seq.windows(max_len=50)                     # (n_windows, 50) each
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError

IntArray = npt.NDArray[np.int64]

#: Padding value of the padded index tensors (item ``i`` is stored as ``i + 1``).
PAD = 0

__all__ = ["PAD", "Sequences", "pad_left", "timeline_order"]


def timeline_order(data: Interactions) -> IntArray:
    """Event rows sorted by (user index, timestamp, raw item id): every user's timeline in turn.

    The tie rule (raw item id, or item index when ids are not orderable) is the one of
    :func:`recforge.data.split.temporal_user`, so sequences agree with the temporal splits.
    """
    from recforge.data.split import _id_rank

    tie = _id_rank(data.items)[data.item_idx]
    order: IntArray = np.lexsort((tie, data.timestamp, data.user_idx)).astype(np.int64)
    return order


def pad_left(
    values: npt.NDArray[np.integer[Any]],
    indptr: npt.NDArray[np.integer[Any]],
    rows: npt.NDArray[np.integer[Any]],
    max_len: int,
) -> IntArray:
    """The last ``max_len`` entries of each selected CSR-style row, ``+ 1``, left-padded with 0.

    Args:
        values: flat item indices, row after row.
        indptr: ``(n_rows + 1,)`` row offsets into ``values``.
        rows: which rows to pad, in output order (repeats allowed).
        max_len: width of the output.

    Returns:
        ``(len(rows), max_len)`` int64; row ``r``'s latest entry sits in column ``max_len - 1``.
    """
    if max_len < 1:
        raise ConfigError(f"max_len must be >= 1, got {max_len}")
    ptr = np.asarray(indptr, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    ends = ptr[rows + 1]
    take = np.minimum(ends - ptr[rows], max_len)
    out = np.zeros((len(rows), max_len), dtype=np.int64)
    total = int(take.sum())
    if total == 0:
        return out
    row_of = np.repeat(np.arange(len(rows)), take)
    within = np.arange(total) - np.repeat(np.cumsum(take) - take, take)
    src = np.repeat(ends - take, take) + within
    col = max_len - np.repeat(take, take) + within
    out[row_of, col] = np.asarray(values, dtype=np.int64)[src] + 1
    return out


@dataclass(frozen=True, eq=False)
class Sequences:
    """Every user's items in timeline order (see the module docstring).

    Attributes:
        items: ``(n_events,)`` int64 item indices, grouped by user, oldest first.
        indptr: ``(n_users + 1,)`` int64; user ``u``'s history is ``items[indptr[u]:indptr[u+1]]``.
        n_items: size of the item vocabulary (padded tensors use ``1..n_items``).
    """

    items: IntArray
    indptr: IntArray
    n_items: int

    def __post_init__(self) -> None:
        self.items.flags.writeable = False
        self.indptr.flags.writeable = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_interactions(
        cls, data: Interactions, keep: npt.NDArray[np.bool_] | None = None
    ) -> Sequences:
        """Build the view of ``data`` (only the events where ``keep`` is True, if given)."""
        order = timeline_order(data)
        if keep is not None:
            order = order[np.asarray(keep, dtype=bool)[order]]
        users = data.user_idx[order]
        counts = np.bincount(users, minlength=data.n_users).astype(np.int64)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(data.item_idx[order].astype(np.int64), indptr, data.n_items)

    @classmethod
    def from_lists(cls, histories: SequenceABC[npt.ArrayLike], n_items: int) -> Sequences:
        """From item-index lists, one per user, each already oldest first (new users, tests)."""
        arrays = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
        counts = np.asarray([len(a) for a in arrays], dtype=np.int64)
        flat = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
        if len(flat) and (flat.min() < 0 or flat.max() >= n_items):
            raise ConfigError(f"item indices must lie in [0, {n_items}); got {flat.min()}..")
        return cls(flat, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), n_items)

    # ------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        """Number of histories (users), including empty ones."""
        return len(self.indptr) - 1

    @property
    def lengths(self) -> IntArray:
        """Events per user."""
        out: IntArray = np.diff(self.indptr)
        return out

    def history(self, user: int) -> IntArray:
        """Item indices of one user, oldest first."""
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    # ------------------------------------------------------------------ padded tensors
    def padded(self, users: npt.ArrayLike, max_len: int) -> IntArray:
        """``(len(users), max_len)``: each user's last ``max_len`` items ``+ 1``, left-padded."""
        return pad_left(self.items, self.indptr, np.asarray(users, dtype=np.int64), max_len)

    def windows(self, max_len: int, *, shift: bool = True) -> tuple[IntArray, IntArray]:
        """Training windows ``(inputs, targets)``, each ``(n_windows, max_len)`` int64, 0 = pad.

        Each history is cut from its end into windows of ``max_len`` targets (module docstring).
        ``shift=True``: ``inputs[r, c]`` is the event just before ``targets[r, c]`` and users'
        first events are not targets; ``shift=False``: ``inputs == targets`` (every event).
        Windows are ordered by user, latest window first.
        """
        if max_len < 1:
            raise ConfigError(f"max_len must be >= 1, got {max_len}")
        lengths = self.lengths
        skip = 1 if shift else 0
        n_targets = np.maximum(lengths - skip, 0)
        n_win = -(-n_targets // max_len)  # ceil division
        first_row = np.concatenate([[0], np.cumsum(n_win)[:-1]]).astype(np.int64)
        total = int(n_targets.sum())
        inputs = np.zeros((int(n_win.sum()), max_len), dtype=np.int64)
        targets = np.zeros_like(inputs)
        if total == 0:
            return inputs, targets
        user_of = np.repeat(np.arange(self.n_users), n_targets)
        # Offset of each target inside its user's list of targets, then from the end of it.
        within = np.arange(total) - np.repeat(np.cumsum(n_targets) - n_targets, n_targets)
        from_end = n_targets[user_of] - 1 - within
        row = first_row[user_of] + from_end // max_len
        col = max_len - 1 - from_end % max_len
        src = self.indptr[user_of] + skip + within
        targets[row, col] = self.items[src] + 1
        inputs[row, col] = self.items[src - skip] + 1
        return inputs, targets

    def window_priors(self, max_len: int, *, shift: bool = True) -> IntArray:
        """Items each training window's user read **before** the window: ``(n_windows, P)``.

        Row ``r`` lists, once each (item index ``+ 1``, sorted, right-padded with 0), the
        distinct items of the events that precede the first input of window ``r`` of
        :meth:`windows` (same rows, same order). A user's earliest window has none; ``P`` is
        the largest count (at least 1). Memory is ``n_windows × P`` — ``P`` is bounded by
        the catalogue and by the longest history. Vectorised: one ``unique`` over the
        ``(window, item)`` pairs.
        """
        if max_len < 1:
            raise ConfigError(f"max_len must be >= 1, got {max_len}")
        n_targets = np.maximum(self.lengths - (1 if shift else 0), 0)
        n_win = -(-n_targets // max_len)
        user_of_row = np.repeat(np.arange(self.n_users), n_win)
        first_row = np.concatenate([[0], np.cumsum(n_win)[:-1]]).astype(np.int64)
        # Window k (0 = latest) starts at input event max(0, n_targets - (k + 1) max_len).
        k = np.arange(len(user_of_row)) - first_row[user_of_row]
        prior = np.maximum(n_targets[user_of_row] - (k + 1) * max_len, 0)
        rows = np.repeat(np.arange(len(prior)), prior)
        within = np.arange(int(prior.sum())) - np.repeat(np.cumsum(prior) - prior, prior)
        items = self.items[self.indptr[user_of_row][rows] + within]
        key = np.unique(rows * (self.n_items + 1) + items + 1)
        rows, codes = key // (self.n_items + 1), key % (self.n_items + 1)
        counts = np.bincount(rows, minlength=len(prior)).astype(np.int64)
        out = np.zeros((len(prior), max(1, int(counts.max(initial=0)))), dtype=np.int64)
        col = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        out[rows, col] = codes
        return out
