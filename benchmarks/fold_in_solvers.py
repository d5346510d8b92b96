"""Gauss-Newton against L-BFGS for the squared-error fold-in of the gradient families.

NCF, the embedding net and the two-tower are fitted on ML-100k (``random:0.2``, 3 epochs, the
configs of ``benchmarks/explain_serve.py``; reused from ``--runs`` when there). For 20 known
users (their training histories, every 20th user) and 20 new users (10 random ratings of the
first 300 items, seed 0), one-thread CPU time of :meth:`NeuralRecommender.solve_least_squares`
is measured with ``fold_in_optimizer`` ``lbfgs`` (20 iterations) and ``gauss_newton`` (the
default stops, and with the gain stop at 1e-3 and 1e-10 of the loss instead of LOSS_TOL), and each
solution is compared with a reference: Gauss-Newton run to convergence (60 iterations, no
promised-decrease stop). Reports the mean milliseconds and Jacobian evaluations, the loss above
the reference relative to it (mean and max), and the share of the reference's top-10 items.

Command (writes docs/benchmarks/fold_in_solvers.{json,md}):

    RECFORGE_DATA_DIR=<data> .venv/bin/python benchmarks/fold_in_solvers.py \
        --runs /tmp/fold-in-runs --out docs/benchmarks/fold_in_solvers
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recforge.artifacts import load_run
from recforge.models import neural
from recforge.pipeline import train_run
from recforge.train import gauss_newton

FAMILIES = ("ncf", "embedding_net", "two_tower")


def _histories(model: Any, rng: np.random.Generator) -> list[tuple[str, sp.csr_matrix]]:
    """(kind, one-row CSR) of the known and new users measured."""
    seen = model.seen_.tocsr()
    out = []
    for u in range(0, 400, 20):
        lo, hi = int(seen.indptr[u]), int(seen.indptr[u + 1])
        vals = np.asarray(model.seen_ratings_[lo:hi], dtype=np.float32)
        out.append(("known", _row(model, seen.indices[lo:hi], vals)))
    for _ in range(20):
        idx = rng.choice(300, 10, replace=False)
        out.append(("new", _row(model, idx, rng.integers(1, 6, 10).astype(np.float32))))
    return out


def _row(model: Any, idx: np.ndarray, vals: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix((vals, idx, [0, len(idx)]), shape=(1, model.n_items))


#: The solvers compared: the fold-in optimizer and, for Gauss-Newton, the gain stop.
SOLVERS = (
    ("lbfgs", "lbfgs", None),
    ("gauss_newton", "gauss_newton", gauss_newton.LOSS_TOL),
    ("gauss_newton, gain stop 1e-3", "gauss_newton", 1e-3),
    ("gauss_newton, gain stop 1e-10", "gauss_newton", 1e-10),
)


def _solve(
    model: Any, ls: Any, optimizer: str, loss_tol: float | None
) -> tuple[np.ndarray, float, int]:
    """The solution, its one-thread CPU seconds and its Jacobian evaluations (Gauss-Newton)."""
    model.config = model.config.model_copy(update={"fold_in_optimizer": optimizer})
    calls = [0]
    jacobian: gauss_newton.RowJacobian = ls.problem.jacobian

    def counted(theta: gauss_newton.FloatArray) -> tuple[np.ndarray, np.ndarray]:
        calls[0] += 1
        return jacobian(theta)

    problem = dataclasses.replace(ls.problem, jacobian=counted)
    t0 = time.process_time()
    if loss_tol is None:
        theta = model.solve_least_squares(dataclasses.replace(ls, problem=problem))
    else:
        steps = model.fold_in_steps()
        theta = gauss_newton.gauss_newton_rows(problem, ls.start, steps, loss_tol=loss_tol)
    return theta, time.process_time() - t0, calls[0]


def _loss(ls: Any, theta: np.ndarray) -> float:
    f, _ = ls.problem.jacobian(theta)
    return float(ls.problem.loss(theta, f)[0])


def _top10(ls: Any, theta: np.ndarray) -> set[int]:
    with torch.no_grad():
        scores = ls.all_scores(torch.from_numpy(theta))[0]
    return set(torch.topk(scores, 10).indices.tolist())


def measure(model: Any) -> dict[str, Any]:
    rows: dict[str, dict[str, list[float]]] = {}
    for kind, row in _histories(model, np.random.default_rng(0)):
        items, target, mask = neural._padded(row, torch.device("cpu"))
        ls = model.least_squares_rows(items, target.double(), mask)
        converged = gauss_newton.gauss_newton_rows(
            ls.problem, ls.start, 60, pred_tol=0.0, loss_tol=1e-10
        )
        ref, ref_top = _loss(ls, converged), _top10(ls, converged)
        for label, optimizer, loss_tol in SOLVERS:
            theta, seconds, evals = _solve(model, ls, optimizer, loss_tol)
            cell = rows.setdefault(
                f"{kind}/{label}", {"ms": [], "excess": [], "evals": [], "top10": []}
            )
            cell["ms"].append(seconds * 1e3)
            cell["excess"].append((_loss(ls, theta) - ref) / ref)
            cell["evals"].append(evals)
            cell["top10"].append(len(_top10(ls, theta) & ref_top) / 10)
    return {
        key: {
            "users": len(v["ms"]),
            "mean_ms": float(np.mean(v["ms"])),
            "evaluations_mean": float(np.mean(v["evals"])) if v["evals"][0] else None,
            "loss_excess_mean": float(np.mean(v["excess"])),
            "loss_excess_max": float(np.max(v["excess"])),
            "top10_overlap_mean": float(np.mean(v["top10"])),
        }
        for key, v in rows.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="Runs folder (trained if absent).")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/fold_in_solvers"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "command": "RECFORGE_DATA_DIR=<data> .venv/bin/python benchmarks/fold_in_solvers.py "
        f"--runs {args.runs} --out {args.out}",
        "data": "ML-100k random:0.2, models fitted on the train part, 3 epochs",
        "families": {},
    }
    for name in FAMILIES:
        run = args.runs / name
        if not (run / "manifest.json").exists():
            train_run(name, "ml-100k", split="random:0.2", config={"epochs": 3}, out=run)
        result["families"][name] = measure(load_run(run).model)
        print(name, json.dumps(result["families"][name]), flush=True)
    result["load"] = [list(load_before), list(os.getloadavg())]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    lines = [
        "# Fold-in solvers: Gauss-Newton against L-BFGS (squared error)",
        "",
        f"Command: `{result['command']}`",
        "",
        f"{result['data']}; one torch thread; load average before / after "
        f"{result['load'][0]} / {result['load'][1]}. Loss excess: the solution's loss above a "
        "Gauss-Newton reference run to convergence (60 iterations, no promised-decrease stop, "
        "gain stop 1e-10), relative to it; top-10 overlap: the share of the solution's top-10 "
        "items in the reference's; evaluations: of the outputs and their Jacobian.",
        "",
        "| family | users | optimizer | mean ms | evaluations | loss excess mean | max "
        "| top-10 overlap |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, cells in result["families"].items():
        for key, c in cells.items():
            kind, optimizer = key.split("/")
            evals = "—" if c["evaluations_mean"] is None else f"{c['evaluations_mean']:.1f}"
            lines.append(
                f"| {name} | {kind} | {optimizer} | {c['mean_ms']:.1f} | {evals} | "
                f"{c['loss_excess_mean']:.1e} | {c['loss_excess_max']:.1e} | "
                f"{c['top10_overlap_mean']:.3f} |"
            )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", "utf-8")


if __name__ == "__main__":
    main()
