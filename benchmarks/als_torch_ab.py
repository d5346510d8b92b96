"""ALS ``backend="torch"``: this checkout's ``als.py`` against another one's, paired, one process.

Loads a reference copy of ``recforge/models/als.py`` (e.g. the main checkout's, before the row
blocks) beside this checkout's and fits both (64 factors, 15 iterations, seed 0,
``temporal-user-80-20`` train part) in alternating order, 3 fits a measurement, 8 repetitions;
prints the paired wall and process-CPU ratios new / reference.

Usage (from the repository root):
    PYTHONPATH=src RECFORGE_DATA_DIR=/work/shared/data nice -n 10 \\
        python benchmarks/als_torch_ab.py /work/main/src/recforge/models/als.py ml-100k 1
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import time

from recforge.bench.speed import _all_threads, load_speed_dataset
from recforge.eval.protocols import get_protocol
from recforge.models import als as new


def main(reference: str, dataset: str, threads: int) -> None:
    spec = importlib.util.spec_from_file_location("recforge.models.als_reference", reference)
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old
    spec.loader.exec_module(old)
    train = get_protocol("temporal-user-80-20").split(load_speed_dataset(dataset)).train
    print(f"load average at start {[round(x, 2) for x in os.getloadavg()]}")
    runs: dict[str, list[tuple[float, float]]] = {"new": [], "reference": []}
    with _all_threads(threads):
        for module in (new, old):  # warm-up
            module.ALS(n_factors=64, iterations=15, seed=0, backend="torch").fit(train)
        for rep in range(8):
            for arm in ("new", "reference") if rep % 2 == 0 else ("reference", "new"):
                module = new if arm == "new" else old
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(3):
                    module.ALS(n_factors=64, iterations=15, seed=0, backend="torch").fit(train)
                runs[arm].append(((time.perf_counter() - w0) / 3, (time.process_time() - c0) / 3))
    for i, what in ((0, "wall"), (1, "CPU")):
        pairs = zip(runs["new"], runs["reference"], strict=True)
        ratios = sorted(a[i] / b[i] for a, b in pairs)
        print(
            f"{dataset}, {threads} thread(s): new / reference {what} median "
            f"{statistics.median(ratios):.3f} [{ratios[0]:.2f}-{ratios[-1]:.2f}]"
        )
    print(f"load average at end {[round(x, 2) for x in os.getloadavg()]}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
