"""mf loss=bpr with dense vs lazy Adam(W) (``lazy_adam``): paired fit times and NDCG@10.

Usage: ``python benchmarks/bpr_lazy_adam.py DATASET EPOCHS REPS [THREADS [PROTOCOL]]``
(DATASET: a MovieLens name or a speed-suite synthetic log, e.g. ``synthetic-2m``; PROTOCOL's
training part, temporal-user-80-20 by default; 64 factors, seed 0; REPS interleaved
repetitions, the arms' order reversed on odd ones, the first dropped as a warm-up when
REPS > 2). Arms: ``lazy_adam`` False (dense), "auto" (lazy on the sides a batch touches little
of), True (both sides lazy). Prints per arm the median wall and process CPU seconds, the paired
ratios against dense, NDCG@10 of the last fit of each arm, and the load.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from recforge.bench.speed import _all_threads, load_speed_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create


def main(dataset: str, epochs: int, reps: int, threads: int, protocol_name: str) -> None:
    protocol = get_protocol(protocol_name)
    ps = protocol.split(load_speed_dataset(dataset))
    print(
        f"{dataset} ({protocol_name}): {epochs} epochs, {threads} thread(s), load {os.getloadavg()}"
    )
    arms: list[bool | str] = [False, "auto", True]
    times: dict[bool | str, list[tuple[float, float]]] = {arm: [] for arm in arms}
    ndcg: dict[bool | str, float] = {}
    for rep in range(reps):
        for lazy in arms if rep % 2 == 0 else arms[::-1]:
            with _all_threads(threads):
                model = create(
                    "mf", loss="bpr", n_factors=64, epochs=epochs, seed=0, num_threads=threads,
                    verbose=False, lazy_adam=lazy,
                )  # fmt: skip
                w0, c0 = time.perf_counter(), time.process_time()
                model.fit(ps.train)
                times[lazy].append((time.perf_counter() - w0, time.process_time() - c0))
            if rep == reps - 1:
                ndcg[lazy] = float(protocol.evaluate(model, ps)["metrics"]["ndcg@10"])
    skip = 1 if reps > 2 else 0
    for lazy, rows in times.items():
        wall, cpu = (statistics.median(r[i] for r in rows[skip:]) for i in range(2))
        pairs = list(zip(rows[skip:], times[False][skip:], strict=True))
        walls = [round(a[0] / b[0], 2) for a, b in pairs]
        cpus = [round(a[1] / b[1], 2) for a, b in pairs]
        print(f"lazy_adam={lazy}: wall {wall:.3f} s, CPU {cpu:.3f} s, ndcg@10 {ndcg[lazy]:.4f}; "
              f"paired vs dense: wall {walls}, CPU {cpus}")  # fmt: skip
    print(f"load at end {os.getloadavg()}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        args[0] if args else "ml-latest-small",
        int(args[1]) if len(args) > 1 else 20,
        int(args[2]) if len(args) > 2 else 5,
        int(args[3]) if len(args) > 3 else 1,
        args[4] if len(args) > 4 else "temporal-user-80-20",
    )
