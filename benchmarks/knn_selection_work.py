"""How many candidates the item-kNN kernel's top-k selection handles, before and after the
histogram (docs/benchmarks/speed_knn.md).

Usage: ``RECFORGE_DATA_DIR=/work/shared/data python benchmarks/knn_selection_work.py
ml-latest-small`` (the binary item × user matrix of the temporal-user-80-20 training part, k=40).

Counts, over all rows: accumulated products; touched rows (nonzero co-count, self excluded);
the candidates the previous kernel sifted through its size-k heap (those passing its reject test
``num ≥ worst kept · den`` once the heap is full, in first-meeting order); and the candidates the
histogram selection offers (those in the highest buckets holding k). Counts, not times: they do
not depend on the machine's load.
"""

from __future__ import annotations

import sys

import numpy as np

from recforge.bench.speed import load_speed_dataset
from recforge.eval.protocols import get_protocol
from recforge.models._knn_kernels import _BUCKETS, _bucket, _offer
from recforge.train._mf_kernels import _jit


@_jit
def _counts(indptr, indices, t_indptr, t_indices, norms, k):  # type: ignore[no-untyped-def]
    n = indptr.shape[0] - 1
    support = np.zeros(n, dtype=np.int64)
    touched = np.empty(n, dtype=np.int64)
    sims = np.empty(n, dtype=np.float64)
    hist = np.zeros(_BUCKETS, dtype=np.int64)
    heap_v = np.empty(k, dtype=np.float64)
    heap_i = np.empty(k, dtype=np.int64)
    products = n_touched = sifted = offered = 0
    for a in range(n):
        nt = 0
        for p in range(indptr[a], indptr[a + 1]):
            c = indices[p]
            for q in range(t_indptr[c], t_indptr[c + 1]):
                b = t_indices[q]
                products += 1
                if support[b] == 0 and b != a:
                    touched[nt] = b
                    nt += 1
                support[b] += 1
        n_touched += nt
        size = 0  # the previous kernel: reject test, then the heap
        for t in range(nt):
            b = touched[t]
            num = float(support[b])
            den = norms[a] * norms[b]
            sims[t] = num / den
            if size == k and num < heap_v[0] * den * (1.0 - 1e-12):
                continue
            sifted += 1
            size = _offer(heap_v, heap_i, size, k, sims[t], b)
        for t in range(nt):  # the histogram: candidates in the highest buckets holding k
            hist[_bucket(sims[t])] += 1
        cut, count = _BUCKETS - 1, 0
        while cut > 0:
            count += hist[cut]
            if count >= k:
                break
            cut -= 1
        for t in range(nt):
            offered += _bucket(sims[t]) >= cut
            support[touched[t]] = 0
        support[a] = 0
        hist[:] = 0
    return products, n_touched, sifted, offered


def main(dataset: str) -> None:
    train = get_protocol("temporal-user-80-20").split(load_speed_dataset(dataset)).train
    x = train.csr("binary").T.tocsr().astype(np.float64)
    x.sort_indices()
    t = x.T.tocsr()
    norms = np.sqrt(np.diff(x.indptr).astype(np.float64))
    products, touched, sifted, offered = _counts(
        x.indptr.astype(np.int64), x.indices.astype(np.int64),
        t.indptr.astype(np.int64), t.indices.astype(np.int64), norms, 40,
    )  # fmt: skip
    print(
        f"{dataset}: {products:,} products, {touched:,} touched rows; sifted through the heap by "
        f"the previous kernel {sifted:,}, offered by the histogram {offered:,}"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ml-latest-small")
