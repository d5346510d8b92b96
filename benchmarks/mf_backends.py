"""biased_mf on one dataset with the compiled (numba) and the torch backend: fit time and RMSE.

Usage: ``python benchmarks/mf_backends.py ml-1m-ratings`` (random-80-20, seed 0, one thread).
Both backends run the same algorithm (recforge.train.fused_mf); the RMSEs must agree.
"""

from __future__ import annotations

import os
import sys
import time

from recforge.bench.speed import _all_threads
from recforge.data.sources import load_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create


def main(dataset: str) -> None:
    proto = get_protocol("random-80-20")
    ps = proto.split(load_dataset(dataset))
    for backend in ("numba", "torch"):
        with _all_threads(1):
            model = create("biased_mf", seed=0, num_threads=1, verbose=False, backend=backend)
            t0 = time.perf_counter()
            model.fit(ps.train)
            seconds = time.perf_counter() - t0
        rmse = proto.evaluate(model, ps)["metrics"]["rmse"]
        load = [round(x, 1) for x in os.getloadavg()]
        print(f"{backend}: fit {seconds:.1f} s, rmse {rmse:.6f}, load average {load}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ml-100k")
