"""One factor-model fit on the speed suite's 10M-event training part: wall and CPU seconds, and
a number that shows two trees fitted the same model.

A kernel change's before/after: run it with two source trees in turn, interleaved, e.g.
``for t in old new new old; do PYTHONPATH=/path/to/$t/src python benchmarks/mf_fit_time.py
biased_mf 2 1; done``. Models, as the speed suite pairs them:

* ``biased_mf``: ``biased_mf`` at its defaults but the epochs, on ``random-80-20``; prints the
  test RMSE. Session 16: a 2-epoch fit at 1 thread took 34.0-38.8 s before lazy Adam stepped
  its rows from a list, 19.9-22.4 s after, RMSE 0.690914 both. Session 17, the same hour:
  34.8 / 32.4 / 41.3 s for session 16's tree, 27.1 / 33.5 / 25.7 s once ``_touch`` listed the
  touched rows (this machine's times drift by 1.5x over a day: compare interleaved runs only).
* ``bpr``: ``mf`` loss=bpr with 64 factors, on ``temporal-user-80-20``; prints the sum of the
  item vectors' absolute values. Session 16, 2 epochs at 2 threads, before / after: 54.8 /
  41.1 s, then 58.7 / 57.6 s, the same sum.
* ``mf_mse`` (``mf``, MSE, 50 factors: ``biased_mf`` without its bias tables), ``biased_mf_32``,
  ``biased_mf_64``: what the ``biased_mf`` fit is bound by. Session 17, 2 epochs, 1 thread,
  interleaved: ``mf_mse`` 20.3 / 17.3 s against ``biased_mf`` 23.5 / 21.2 s; ``biased_mf_32``
  19.1 s, ``biased_mf_64`` 21.4 s.

The fit runs after an untimed warm-up on 3,000 events (compiled kernels loaded), at THREADS
threads (torch and BLAS too).

Usage: ``python benchmarks/mf_fit_time.py [MODEL [EPOCHS [THREADS [DATASET]]]]`` (defaults
biased_mf, 2, 1, synthetic-10m). Prints one line: ``RESULT wall=… cpu=… <check>=…``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from recforge.bench.speed import _all_threads, load_speed_dataset
from recforge.eval.protocols import ProtocolSplit, get_protocol
from recforge.models.base import Recommender
from recforge.models.registry import create

#: model -> (protocol, registry name, its options besides epochs and threads)
MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "biased_mf": ("random-80-20", "biased_mf", {}),
    "bpr": ("temporal-user-80-20", "mf", {"loss": "bpr", "n_factors": 64}),
    # What the biased_mf fit is bound by (docs/benchmarks/speed_biased_mf_10m.md): the same fit
    # without the four bias tables, and at other widths.
    "mf_mse": ("random-80-20", "mf", {"loss": "mse", "n_factors": 50}),
    "biased_mf_32": ("random-80-20", "biased_mf", {"n_factors": 32}),
    "biased_mf_64": ("random-80-20", "biased_mf", {"n_factors": 64}),
    # Surprise's SVD algorithm (per-rating SGD, 100 factors), the speed suite's funk_svd pair.
    "funk_svd": ("random-80-20", "funk_svd", {}),
}


def _check(name: str, model: Recommender, ps: ProtocolSplit) -> str:
    """``rmse=…`` on the test part's known pairs (the MSE models), or ``sum=…`` of |item
    vectors| (bpr)."""
    if name != "bpr":
        test = ps.split.test
        # Pairs of users and items the training part knows (all of them on the synthetic log).
        known = (test.user_idx < ps.train.n_users) & (test.item_idx < ps.train.n_items)
        pred = model.predict_idx(test.user_idx[known], test.item_idx[known])
        return f"rmse={float(np.sqrt(np.mean((pred - test.rating[known]) ** 2))):.6f}"
    vectors = model.item_vectors()
    assert vectors is not None
    return f"sum={float(np.abs(vectors).sum()):.4f}"


def main(name: str, epochs: int, threads: int, dataset: str) -> str:
    protocol, registered, options = MODELS[name]
    ps = get_protocol(protocol).split(load_speed_dataset(dataset))
    with _all_threads(threads):
        warm = ps.train.subset(np.arange(3000)).compact()
        create(registered, epochs=1, num_threads=threads, verbose=False, **options).fit(warm)
        model = create(
            registered, epochs=epochs, num_threads=threads, verbose=False, seed=0, **options
        )
        c0, t0 = time.process_time(), time.perf_counter()
        model.fit(ps.train)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return f"RESULT wall={wall:.2f} cpu={cpu:.2f} {_check(name, model, ps)}"


if __name__ == "__main__":
    args = sys.argv[1:]
    print(
        main(
            args[0] if args else "biased_mf",
            int(args[1]) if len(args) > 1 else 2,
            int(args[2]) if len(args) > 2 else 1,
            args[3] if len(args) > 3 else "synthetic-10m",
        )
    )
