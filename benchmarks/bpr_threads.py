"""mf loss=bpr at 2 threads with and without the threaded fused epoch: paired fit times, CPU.

Usage: ``python benchmarks/bpr_threads.py ml-latest-small 7`` (temporal-user-80-20 train part,
64 factors, 20 epochs, seed 0; 7 interleaved repetitions, the first dropped as a warm-up).

Arm ``on``: the default (recforge.train.fused_mf's EnginePicker may run the threaded kernel).
Arm ``off``: the serial kernel only (as before the threaded kernel existed). Arm ``forced``: the
threaded kernel for every call (what the picker picks on a machine with a free second core).
All fits are the same to the last bit (asserted here), so only time differs. Reported per arm:
median wall and process CPU seconds, the main thread's CPU seconds (the critical path: about
the wall time on a machine with a free core for the other threads), the paired wall ratios
on/off and forced/off, and the load.
On a shared machine the wall ratio mostly measures the load; the main thread's CPU does not.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

from recforge.bench.speed import _all_threads, load_speed_dataset
from recforge.eval.protocols import get_protocol
from recforge.models.registry import create
from recforge.train import fused_mf


def main(dataset: str, reps: int) -> None:
    ps = get_protocol("temporal-user-80-20").split(load_speed_dataset(dataset))
    usable, pick = fused_mf.threaded_engine_usable, fused_mf.EnginePicker.pick
    times: dict[str, list[tuple[float, float, float]]] = {"on": [], "off": [], "forced": []}
    states: dict[str, dict[str, np.ndarray]] = {}
    print(f"{dataset}: load average at start {[round(x, 2) for x in os.getloadavg()]}")
    for rep in range(reps):
        for arm in ("on", "off", "forced") if rep % 2 == 0 else ("forced", "off", "on"):
            fused_mf.threaded_engine_usable = usable if arm != "off" else (lambda: False)  # type: ignore[assignment]
            fused_mf.EnginePicker.pick = pick if arm != "forced" else _threaded  # type: ignore[method-assign]
            with _all_threads(2):
                model = create(
                    "mf", loss="bpr", n_factors=64, epochs=20, seed=0, num_threads=2, verbose=False
                )
                w0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
                model.fit(ps.train)
                times[arm].append(
                    (
                        time.perf_counter() - w0,
                        time.process_time() - c0,
                        time.thread_time() - m0,
                    )
                )
            states[arm] = model.get_state()  # type: ignore[attr-defined]
    fused_mf.threaded_engine_usable = usable
    fused_mf.EnginePicker.pick = pick  # type: ignore[method-assign]
    for key, value in states["on"].items():
        assert np.array_equal(value, states["off"][key]), key
        assert np.array_equal(value, states["forced"][key]), key
    for arm, rows in times.items():
        wall, cpu, main_cpu = (statistics.median(r[i] for r in rows[1:]) for i in range(3))
        print(
            f"{arm}: wall {wall:.3f} s, process CPU {cpu:.3f} s, main-thread CPU {main_cpu:.3f} s"
        )
    for arm in ("on", "forced"):
        pairs = zip(times[arm][1:], times["off"][1:], strict=True)
        ratios = sorted(a[0] / b[0] for a, b in pairs)
        shown = [round(r, 2) for r in ratios]
        print(f"paired wall {arm}/off: median {statistics.median(ratios):.3f}, all {shown}")
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"same fit to the last bit: yes; load average at end {load}")


def _threaded(self: fused_mf.EnginePicker) -> str:
    self.calls += 1
    return "threaded" if "threaded" in self.engines else self.engines[0]


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else "ml-latest-small",
        int(sys.argv[2]) if len(sys.argv) > 2 else 7,
    )
