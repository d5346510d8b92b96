"""One biased_mf fit on the speed suite's 10M-event training part: wall and CPU seconds, RMSE.

A kernel change's before/after: run it with two source trees in turn, interleaved, e.g.
``for t in old new old new; do PYTHONPATH=/path/to/$t/src python benchmarks/biased_mf_fit_time.py 2;
done`` (session 16: a 2-epoch fit at 1 thread took 34.0-38.8 s before lazy Adam stepped its rows
from a list, 19.9-22.4 s after, RMSE 0.690914 both). The fit runs at one thread after an untimed
warm-up on 3,000 events (compiled kernels loaded); the log is the suite's ``synthetic-10m`` with
``random-80-20`` (see ``recforge benchmark --suite speed``).

Usage: ``python benchmarks/biased_mf_fit_time.py [EPOCHS [DATASET]]`` (defaults 2, synthetic-10m).
Prints one line: ``RESULT wall=… cpu=… rmse=…``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from recforge.bench.speed import _all_threads, load_speed_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create


def main(epochs: int, dataset: str) -> str:
    ps = get_protocol("random-80-20").split(load_speed_dataset(dataset))
    with _all_threads(1):
        warm = ps.train.subset(np.arange(3000)).compact()
        create("biased_mf", epochs=1, num_threads=1, verbose=False).fit(warm)
        model = create("biased_mf", epochs=epochs, num_threads=1, verbose=False, seed=0)
        c0, t0 = time.process_time(), time.perf_counter()
        model.fit(ps.train)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    test = ps.split.test
    pred = model.predict_idx(test.user_idx, test.item_idx)
    rmse = float(np.sqrt(np.mean((pred - test.rating) ** 2)))
    return f"RESULT wall={wall:.2f} cpu={cpu:.2f} rmse={rmse:.6f}"


if __name__ == "__main__":
    args = sys.argv[1:]
    print(main(int(args[0]) if args else 2, args[1] if len(args) > 1 else "synthetic-10m"))
