"""Cost of one numba ``prange`` parallel region on 2 threads (the threaded BPR epoch runs three a
batch, ~4,700 a fit on ml-latest-small), with recforge's default ``OMP_WAIT_POLICY=PASSIVE``.

Usage: ``PYTHONPATH=src nice -n 10 python benchmarks/numba_region_cost.py`` (set
``GOMP_SPINCOUNT=N`` in the environment to compare a spinning wait).
"""

from __future__ import annotations

import os
import time

import numba
import numpy as np

import recforge  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE before OpenMP loads)


@numba.njit(parallel=True, nogil=True)  # type: ignore[misc]
def _regions(a: np.ndarray, reps: int) -> None:  # pragma: no cover - compiled
    for _ in range(reps):
        for c in numba.prange(2):
            a[c] += 1.0


def main() -> None:
    a = np.zeros(2)
    numba.set_num_threads(2)
    _regions(a, 10)
    print(
        f"layer {numba.threading_layer()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}, load {os.getloadavg()}"
    )
    for _ in range(3):
        w0, c0 = time.perf_counter(), time.process_time()
        _regions(a, 5000)
        wall = (time.perf_counter() - w0) / 5000 * 1e6
        cpu = (time.process_time() - c0) / 5000 * 1e6
        print(f"per region {wall:.1f} us wall, {cpu:.1f} us process CPU")


if __name__ == "__main__":
    main()
