"""Run-time thread choice (``recforge.threads.picked_threads``): 2 threads vs 1, paired, per model.

For each model and repetition, three arms fit the same training part (``temporal-user-80-20``)
in one process, in an order that rotates with the repetition:

- ``1``: one thread (``--threads 1``);
- ``2 picked``: two threads, each parallel region on 1 or 2 threads as the picker measured
  faster (the default);
- ``2 forced``: two threads, every picked region forced onto both (what a static threshold of
  0 ms would do; on a quiet machine the picker should match it, on a busy one beat it).

Every arm's fit must be the same to the last bit (asserted). Reported per model: median wall
and process-CPU seconds per fit, the paired wall ratios ``2 picked / 1`` and ``2 forced / 1``
(median [min-max]), and the picker's choices. Each measurement repeats its fit until the fits
last ``--min-seconds`` together and takes the mean, so sub-second fits are not read off one
scheduler slice.

Usage (from the repository root):
    PYTHONPATH=src RECFORGE_DATA_DIR=/work/shared/data nice -n 10 \\
        python benchmarks/threads_picker.py --data ml-100k,ml-latest-small --reps 5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from recforge import threads as th
from recforge.bench.speed import _all_threads, load_speed_dataset
from recforge.eval.protocols import get_protocol
from recforge.models import als as als_mod
from recforge.models import knn as knn_mod
from recforge.models.registry import create

MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "als": ("als", {"n_factors": 64, "iterations": 15}),
    "als-torch": ("als", {"n_factors": 64, "iterations": 15, "backend": "torch"}),
    "item_knn": ("item_knn", {"k_neighbors": 40, "feedback": "implicit"}),
}


@contextlib.contextmanager
def _forced_all() -> Iterator[None]:
    """Every picked region on the fit's full thread count."""
    real = th.picked_threads

    @contextlib.contextmanager
    def everything(
        kernel: str, work_ms: float, requested: int | None = None, **_: Any
    ) -> Iterator[int]:
        import torch

        yield torch.get_num_threads() if requested is None else requested

    als_mod.picked_threads = everything  # type: ignore[assignment]
    knn_mod.picked_threads = everything  # type: ignore[assignment]
    try:
        yield
    finally:
        als_mod.picked_threads = real  # type: ignore[assignment]
        knn_mod.picked_threads = real  # type: ignore[assignment]


def _measure(name: str, cfg: dict[str, Any], train: Any, arm: str, min_s: float) -> Any:
    threads = 1 if arm == "1" else 2
    forced = _forced_all() if arm == "2 forced" else contextlib.nullcontext()
    with _all_threads(threads), forced:
        w0, c0, n = time.perf_counter(), time.process_time(), 0
        while True:
            model = create(name, seed=0, num_threads=threads, **cfg)
            model.fit(train)
            n += 1
            if time.perf_counter() - w0 >= min_s or n >= 20:
                break
        return (time.perf_counter() - w0) / n, (time.process_time() - c0) / n, model


def _state(model: Any) -> list[np.ndarray]:
    if hasattr(model, "user_factors_"):
        return [model.user_factors_, model.item_factors_]
    sim = model.similarity_
    return [sim.indptr, sim.indices, sim.data]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-100k,ml-latest-small")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    args = parser.parse_args()
    arms = ["1", "2 picked", "2 forced"]
    print(f"load average at start {[round(x, 2) for x in os.getloadavg()]}")
    for dataset in args.data.split(","):
        train = get_protocol("temporal-user-80-20").split(load_speed_dataset(dataset)).train
        for key in args.models.split(","):
            name, cfg = MODELS[key]
            _measure(name, cfg, train, "1", 0.0)  # warm-up: numba loads its compiled kernels
            times: dict[str, list[tuple[float, float]]] = {a: [] for a in arms}
            ref: list[np.ndarray] | None = None
            for rep in range(args.reps):
                shift = rep % len(arms)
                for arm in arms[shift:] + arms[:shift]:
                    wall, cpu, model = _measure(name, cfg, train, arm, args.min_seconds)
                    times[arm].append((wall, cpu))
                    state = _state(model)
                    if ref is None:
                        ref = state
                    assert all(np.array_equal(a, b) for a, b in zip(ref, state, strict=True))
            line = [f"{dataset} {key}:"]
            for arm in arms:
                wall = statistics.median(t[0] for t in times[arm])
                cpu = statistics.median(t[1] for t in times[arm])
                line.append(f"{arm}: {wall:.3f} s (CPU {cpu:.3f} s);")
            for arm in arms[1:]:
                r = sorted(a[0] / b[0] for a, b in zip(times[arm], times["1"], strict=True))
                line.append(f"{arm} / 1 = {statistics.median(r):.2f} [{r[0]:.2f}-{r[-1]:.2f}];")
            print(" ".join(line))
    for (kernel, n, size), picker in sorted(th._thread_pickers.items()):
        if len(picker.engines) > 1:
            pace = {k: f"{v * 1e3:.3f}" for k, v in picker.pace.items()}
            print(
                f"picker {kernel} (up to {n} threads, ~2^{size} ms): calls {picker.calls}, "
                f"runs {picker.seen}, ms per work-ms {pace}, best {picker.best()}"
            )
    print(
        f"same fit to the last bit in every arm: yes; load average at end "
        f"{[round(x, 2) for x in os.getloadavg()]}"
    )


if __name__ == "__main__":
    main()
