"""The pause a full garbage collection costs a served model, and what ``gc.freeze`` leaves.

Builds the service of a run in this process (``create_app`` and its start-up, as ``recforge
serve`` does), then counts the objects the collector tracks and times ``gc.collect()`` (best of
3), before and after ``recforge.serve.app.settle_heap`` (collect once, then ``gc.freeze``).
The run is ``--run``, trained on ML-100k (``random:0.2``, biased MF, 5 epochs) when absent.

Command (writes docs/benchmarks/serve_gc_pause.{json,md}):

    RECFORGE_DATA_DIR=<data> .venv/bin/python benchmarks/serve_gc_pause.py \
        --run /tmp/gc-run --out docs/benchmarks/serve_gc_pause
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

from recforge.pipeline import train_run
from recforge.serve import Settings, create_app
from recforge.serve.app import settle_heap


def _start(run: Path) -> Any:
    """The app of ``run`` after its lifespan start-up (the model loaded)."""
    app = create_app(Settings(run=str(run)))

    async def startup() -> None:
        queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        await queue.put({"type": "lifespan.startup"})
        done: list[Any] = []

        async def send(message: Any) -> None:
            done.append(message)

        task = asyncio.create_task(app({"type": "lifespan"}, queue.get, send))
        while not done:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(startup())
    return app


def _full_collection_ms() -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        gc.collect()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="Run folder (trained if absent).")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/serve_gc_pause"))
    args = ap.parse_args()
    if not (args.run / "manifest.json").exists():
        train_run("biased_mf", "ml-100k", split="random:0.2", config={"epochs": 5}, out=args.run)
    app = _start(args.run)
    before = {"tracked": len(gc.get_objects()), "full_collection_ms": _full_collection_ms()}
    settle_heap()
    after = {
        "tracked": len(gc.get_objects()),
        "frozen": gc.get_freeze_count(),
        "full_collection_ms": _full_collection_ms(),
    }
    gc.unfreeze()
    del app
    result = {
        "command": "RECFORGE_DATA_DIR=<data> .venv/bin/python benchmarks/serve_gc_pause.py "
        f"--run {args.run} --out {args.out}",
        "run": "ML-100k random:0.2, biased_mf 5 epochs, loaded by the service's start-up",
        "load": list(os.getloadavg()),
        "before_freeze": before,
        "after_freeze": after,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    lines = [
        "# A full garbage collection in a served process, before and after gc.freeze",
        "",
        f"Command: `{result['command']}`",
        "",
        f"{result['run']}; load average {result['load']}. Full collection: best of 3.",
        "",
        "| | objects the collector tracks | full collection ms |",
        "|---|---:|---:|",
        f"| loaded | {before['tracked']} | {before['full_collection_ms']:.1f} |",
        f"| after settle_heap ({after['frozen']} frozen) | {after['tracked']} | "
        f"{after['full_collection_ms']:.1f} |",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", "utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
