"""numba kernel of the top-k cosine neighbours (:func:`recforge.models.knn.neighbour_similarities`).

The scipy path computes each block of rows against every row as a dense ``(c, n)`` array (a
sparse product, a division, a copy, a top-k over all ``n`` columns). Most of those ``n`` entries
are zero: a row only meets the rows it shares a column with. This kernel walks exactly those
(row ``a`` → its columns → their rows ``b``: a sparse accumulator, as implicit's and LensKit's
item-kNN do), so the work is ``Σ_columns (column count)²`` instead of ``n²``, and selects the
top ``k`` among the touched rows only. Same formula, same summation order, same selection rule
(the ``k`` largest similarities above ``min_similarity``, self excluded, ties to the lower
index), so the similarity matrix is the scipy path's.

Deterministic; one call computes a range of rows with the GIL released, so the caller runs
ranges in threads (the result does not depend on the split); compiled with ``cache=True``
(uncached when no cache directory is writable, see :func:`recforge.train._mf_kernels._jit`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recforge.train._mf_kernels import _jit


@_jit
def _worse(v1: float, i1: int, v2: float, i2: int) -> bool:
    """Whether candidate 1 ranks below candidate 2 (lower value; on a tie, higher index)."""
    return v1 < v2 or (v1 == v2 and i1 > i2)


@_jit
def _sift_down(hv: Any, hi: Any, size: int, pos: int) -> None:
    """Restore the min-heap (worst candidate at the root) below ``pos``."""
    while True:
        left = 2 * pos + 1
        if left >= size:
            return
        child = left
        right = left + 1
        if right < size and _worse(hv[right], hi[right], hv[left], hi[left]):
            child = right
        if _worse(hv[child], hi[child], hv[pos], hi[pos]):
            hv[pos], hv[child] = hv[child], hv[pos]
            hi[pos], hi[child] = hi[child], hi[pos]
            pos = child
        else:
            return


@_jit
def _offer(hv: Any, hi: Any, size: int, k: int, v: float, i: int) -> int:
    """Offer candidate ``(v, i)`` to the size-``k`` min-heap of the best so far (worst at the
    root; ties to the lower index); returns the new size."""
    if size < k:
        c = size
        hv[c], hi[c] = v, i
        while c > 0:  # sift up
            parent = (c - 1) >> 1
            if _worse(hv[c], hi[c], hv[parent], hi[parent]):
                hv[c], hv[parent] = hv[parent], hv[c]
                hi[c], hi[parent] = hi[parent], hi[c]
                c = parent
            else:
                break
        return size + 1
    if _worse(hv[0], hi[0], v, i):
        hv[0], hi[0] = v, i
        _sift_down(hv, hi, size, 0)
    return size


@_jit
def _accumulate_row(
    a: int, indptr: Any, indices: Any, data: Any, t_indptr: Any, t_indices: Any, t_data: Any,
    binary: bool, need_support: bool, acc: Any, support: Any,
) -> None:  # fmt: skip
    """Row ``a``'s products with every row into ``acc`` (co-counts into ``support``)."""
    for p in range(indptr[a], indptr[a + 1]):
        c = indices[p]
        if binary:
            for q in range(t_indptr[c], t_indptr[c + 1]):
                support[t_indices[q]] += 1
        else:
            va = data[p]
            for q in range(t_indptr[c], t_indptr[c + 1]):
                b = t_indices[q]
                acc[b] += va * t_data[q]
                if need_support:
                    support[b] += 1


@_jit
def _accumulate_binary(
    a: int, indptr: Any, indices: Any, t_indptr: Any, t_indices: Any, support: Any, out: Any
) -> int:  # fmt: skip
    """Binary rows: row ``a``'s co-counts into ``support``, and the rows it meets into ``out``;
    returns their count.

    A row meeting fewer products than there are rows lists them by a branch-free conditional
    append in first-meeting order (a co-count only grows, so a row is listed exactly once, when
    its count leaves 0): the work is the products alone. A row with more products than rows (a
    popular item) instead only counts, then lists the rows by one scan of ``support``: the
    append's store and dependent counter cost more than the scan there (docs/benchmarks/
    speed_knn.md: the whole change took the ml-latest-small fit to 0.77-0.84x its time).
    """
    n = support.shape[0]
    products = 0
    for p in range(indptr[a], indptr[a + 1]):
        c = indices[p]
        products += t_indptr[c + 1] - t_indptr[c]
    nt = 0
    if products <= n:
        for p in range(indptr[a], indptr[a + 1]):
            c = indices[p]
            for q in range(t_indptr[c], t_indptr[c + 1]):
                b = t_indices[q]
                out[nt] = b
                nt += support[b] == 0
                support[b] += 1
        return nt
    for p in range(indptr[a], indptr[a + 1]):
        c = indices[p]
        for q in range(t_indptr[c], t_indptr[c + 1]):
            support[t_indices[q]] += 1
    return int(_touched(True, support, support, out))  # (acc unused for binary rows)


@_jit
def _touched(binary: bool, acc: Any, support: Any, out: Any) -> int:
    """Rows with a nonzero product into ``out``; returns their count. No data-dependent branch
    per row: one here was mispredicted about as often as taken and cost more than the
    products themselves."""
    nt = 0
    if binary:
        for b in range(support.shape[0]):
            out[nt] = b
            nt += support[b] != 0
    else:
        for b in range(acc.shape[0]):
            out[nt] = b
            nt += acc[b] != 0.0
    return nt


#: Buckets of the similarity histogram of :func:`_row_topk`, over ``[-1, 1]``.
_BUCKETS = 2048


@_jit
def _bucket(s: float) -> int:
    """The histogram bucket of similarity ``s``: monotone in ``s`` (clipped to ``[-1, 1]``)."""
    j = int((min(max(s, -1.0), 1.0) + 1.0) * (_BUCKETS // 2))
    return min(j, _BUCKETS - 1)


@_jit
def _row_topk(
    a: int, touched: Any, nt: int, binary: bool, acc: Any, support: Any, norms: Any, k: int,
    shrinkage: float, min_support: int, min_similarity: float, heap_v: Any, heap_i: Any,
    sims: Any, buckets: Any, hist: Any,
) -> int:  # fmt: skip
    """Similarities of row ``a`` to its touched rows into the top-``k`` heap (resetting the
    accumulators); returns the heap size.

    Two passes instead of offering every candidate to the heap (on ml-latest-small 2.2M of
    17.6M touched rows passed the heap's reject test and sifted through it; the histogram offers
    0.85M: benchmarks/knn_selection_work.py): the first computes each similarity into ``sims``
    and counts the candidates per histogram bucket (``hist``: :data:`_BUCKETS` zeros, zero
    again on return); the buckets are monotone in the similarity, so the highest buckets that
    together hold ``k`` candidates hold the top ``k`` (ties included), and only their
    candidates are offered. The same selection as offering all, whatever the offer order.
    """
    na = norms[a]
    top = 0
    for t in range(nt):
        b = touched[t]
        if binary:
            sup = support[b]
            num = float(sup)
        else:
            num = acc[b]
            acc[b] = 0.0
            sup = support[b]
        support[b] = 0
        den = na * norms[b]
        sim = num / den if den > 0 else 0.0
        if shrinkage > 0:
            shrunk = max(sup - 1.0, 0.0)
            sim *= shrunk / (shrunk + shrinkage)
        if min_support > 1 and sup < min_support:
            sim = 0.0
        sims[t] = sim
        candidate = (sim > min_similarity) & (b != a)
        j = _bucket(sim) if candidate else -1
        buckets[t] = j
        hist[max(j, 0)] += candidate
        top = max(top, j)
    cut, count = top, 0
    while cut > 0:
        count += hist[cut]
        if count >= k:
            break
        cut -= 1
    size = 0
    for t in range(nt):
        j = buckets[t]
        if j >= 0:
            hist[j] = 0
            if j >= cut:
                size = _offer(heap_v, heap_i, size, k, sims[t], touched[t])
    hist[0] = 0
    return size


@_jit
def cosine_topk(
    indptr: Any, indices: Any, data: Any, t_indptr: Any, t_indices: Any, t_data: Any,
    norms: Any, k: int, shrinkage: float, min_support: int, min_similarity: float, binary: bool,
    support: Any, lo: int, hi: int,
) -> tuple[Any, Any, Any]:  # fmt: skip
    """Top-``k`` cosine neighbours of every row of the ``(n, m)`` CSR ``(indptr, indices, data)``.

    ``t_*`` is its transpose (CSR of ``(m, n)``), ``norms`` the rows' Euclidean norms, ``binary``
    says every stored value is 1 (the products are then co-counts, kept as exact integers).
    ``support``: a zeroed integer work array of ``n`` co-counts, wide enough for ``m`` (int16
    when ``m < 2¹⁵``: the whole array then stays in the L1 cache).
    ``s = v_a·v_b / (‖v_a‖‖v_b‖)``, shrunk by ``(c − 1)/(c − 1 + λ)`` with ``c`` the co-count,
    zeroed below ``min_support`` co-counts, kept when ``> min_similarity``; self excluded.
    Only rows ``lo ≤ a < hi`` are computed (rows are independent: threads may each take a
    range, with their own ``support``, and the concatenated results are the serial ones).
    Returns ``(counts (hi − lo,), indices, float32 values)`` of those CSR rows, indices ascending.

    Per row: accumulate into dense per-row arrays (no branch per product), collect the touched
    rows, then select the top ``k`` of them by a similarity histogram (:func:`_row_topk`),
    resetting the arrays.
    """
    n = indptr.shape[0] - 1
    need_support = shrinkage > 0 or min_support > 1
    acc = np.zeros(n if not binary else 1, dtype=np.float64)
    touched = np.empty(n + 1, dtype=np.int64)  # +1: the binary append writes one ahead
    sims = np.empty(n, dtype=np.float64)
    buckets = np.empty(n, dtype=np.int32)
    hist = np.zeros(_BUCKETS, dtype=np.int64)
    counts = np.zeros(hi - lo, dtype=np.int64)
    out_idx = np.empty((hi - lo) * min(k, n), dtype=np.int64)
    out_val = np.empty((hi - lo) * min(k, n), dtype=np.float32)
    heap_v = np.empty(max(k, 1), dtype=np.float64)
    heap_i = np.empty(max(k, 1), dtype=np.int64)
    pos = 0
    for a in range(lo, hi):
        if binary:
            nt = _accumulate_binary(a, indptr, indices, t_indptr, t_indices, support, touched)
        else:
            _accumulate_row(
                a, indptr, indices, data, t_indptr, t_indices, t_data, binary, need_support, acc,
                support,
            )  # fmt: skip
            nt = _touched(binary, acc, support, touched)
        size = _row_topk(
            a, touched, nt, binary, acc, support, norms, k, shrinkage, min_support,
            min_similarity, heap_v, heap_i, sims, buckets, hist,
        )  # fmt: skip
        if not binary and need_support:
            support[:] = 0  # co-counts of rows whose products summed to exactly 0
        order = np.argsort(heap_i[:size])
        for t in range(size):
            out_idx[pos + t] = heap_i[order[t]]
            out_val[pos + t] = np.float32(heap_v[order[t]])
        counts[a - lo] = size
        pos += size
    return counts, out_idx[:pos].copy(), out_val[:pos].copy()


@_jit
def history_sums(indptr: Any, indices: Any, data: Any, hist: Any, vals: Any, acc: Any) -> None:
    """One user's item-kNN sums over the neighbour rows of their history items ``hist``, into
    ``acc`` (``(n, 3)``: ``acc[i] += (vals[a]·s_ji, s_ji, 1)``), history in order, entries in
    row order — the order in which scipy's ``csr_matmat`` adds them, so the float64 sums are
    the batched path's, bit for bit. The three sums of an item share a cache line (three
    separate arrays: ~1.2x the time on ML-100k)."""
    for a in range(hist.shape[0]):
        j = hist[a]
        v = vals[a]
        for p in range(indptr[j], indptr[j + 1]):
            c = indices[p]
            s = data[p]
            acc[c, 0] += v * s
            acc[c, 1] += s
            acc[c, 2] += 1.0


@_jit
def gather_block(
    indptr: Any, indices: Any, data: Any, rows: Any, cols: Any, scratch: Any, vals: Any,
    stored: Any,
) -> None:  # fmt: skip
    """``vals[r, m] = M[rows[r], cols[m]]`` of the CSR ``M = (indptr, indices, data)``, and
    ``stored[r]``: how many of those cells are stored entries (a repeated column counts each time).

    The values of ``M[rows].toarray()[:, cols]`` (for a column stored twice in a row, its last
    entry, as numpy's fancy assignment keeps), reading only the ``rows``' entries and ``cols``:
    each row is scattered into ``scratch`` (``(n_cols_of_M, 2)`` zeros: value, stored mark),
    read at ``cols``, and zeroed again, so ``scratch`` is zero on return."""
    n_cols = cols.shape[0]
    for r in range(rows.shape[0]):
        i = rows[r]
        for p in range(indptr[i], indptr[i + 1]):
            scratch[indices[p], 0] = data[p]
            scratch[indices[p], 1] = 1.0
        count = 0
        for m in range(n_cols):
            c = cols[m]
            vals[r, m] = scratch[c, 0]
            count += scratch[c, 1] != 0.0
        stored[r] = count
        for p in range(indptr[i], indptr[i + 1]):
            scratch[indices[p], 0] = 0.0
            scratch[indices[p], 1] = 0.0
