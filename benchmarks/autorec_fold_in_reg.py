"""Choose I-AutoRec's fold-in ridge pull ``fold_in_reg`` on a validation carve of u1.base.

The test part (u1.test) is never read. For each carve seed, ``--users`` users with at least 20
ratings in u1.base are left out of training; each one's u1.base ratings are shuffled, 80% are
folded in (``fold_in_scores``: closed-form ridge towards the average user) and the other 20% are
the target. The model (AutoRec defaults, item variant) is fitted on the remaining users' u1.base
ratings. Reported: RMSE on the targets (predictions clipped to 1..5) for each ``fold_in_reg``,
per seed and averaged.

Command (writes docs/benchmarks/autorec_fold_in_reg.{json,md}):

    RECFORGE_DATA_DIR=<data> nice -n 10 .venv/bin/python benchmarks/autorec_fold_in_reg.py \
        --out docs/benchmarks/autorec_fold_in_reg
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.data.movielens import load_movielens_fold
from recforge.models.registry import create

GRID = (1.0, 3.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0, 300.0)


def carve_rmse(seed: int, n_users: int, grid: tuple[float, ...]) -> dict[str, Any]:
    """RMSE of the held-out users' targets for each value in ``grid`` (one carve)."""
    base, _ = load_movielens_fold("ml-100k", "u1")  # u1.base only; the test frame is dropped
    rng = np.random.default_rng(seed)
    counts = base.groupby("user_id").size()
    candidates = np.sort(counts.index[counts >= 20].to_numpy())
    held = set(rng.choice(candidates, n_users, replace=False).tolist())
    train = base[~base["user_id"].isin(held)].reset_index(drop=True)
    t0 = time.perf_counter()
    model = create("autorec", {"verbose": False}).fit(
        Interactions.from_frame(train, rating_scale=(1.0, 5.0))
    )
    fit_s = time.perf_counter() - t0
    parts = []
    for user in sorted(held):
        rows = base[base["user_id"] == user]
        order = rng.permutation(len(rows))
        cut = round(0.8 * len(rows))
        fold_in, target = rows.iloc[order[:cut]], rows.iloc[order[cut:]]
        f_idx = model.items_.index(fold_in["item_id"].to_numpy(), missing="negative")
        t_idx = model.items_.index(target["item_id"].to_numpy(), missing="negative")
        keep_f, keep_t = f_idx >= 0, t_idx >= 0
        parts.append(
            (
                f_idx[keep_f],
                fold_in["rating"].to_numpy(np.float64)[keep_f],
                t_idx[keep_t],
                target["rating"].to_numpy(np.float64)[keep_t],
            )
        )
    out: dict[str, float] = {}
    for lam in grid:
        model.config = model.config.model_copy(update={"fold_in_reg": lam})
        err = np.concatenate(
            [np.clip(model.fold_in_scores(fi, fr)[ti], 1.0, 5.0) - tr for fi, fr, ti, tr in parts]
        )
        out[f"{lam:g}"] = float(np.sqrt(np.mean(err**2)))
    n_targets = int(sum(len(p[2]) for p in parts))
    return {"seed": seed, "rmse": out, "n_targets": n_targets, "fit_s": round(fit_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/autorec_fold_in_reg"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = [carve_rmse(seed, args.users, GRID) for seed in args.seeds]
    mean = {k: float(np.mean([r["rmse"][k] for r in runs])) for k in runs[0]["rmse"]}
    best = min(mean, key=lambda k: mean[k])
    result = {
        "command": "benchmarks/autorec_fold_in_reg.py "
        + " ".join(
            f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
        ),
        "protocol": "ml-100k u1.base only (u1.test unread); per seed, --users held-out users "
        "(>= 20 ratings), 80% of their u1.base ratings folded in, RMSE on the other 20%",
        "runs": runs,
        "mean_rmse": mean,
        "best": best,
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# AutoRec fold-in: choosing `fold_in_reg` on a validation carve of u1.base",
        "",
        "Command: `RECFORGE_DATA_DIR=<data> nice -n 10 .venv/bin/python "
        "benchmarks/autorec_fold_in_reg.py --out docs/benchmarks/autorec_fold_in_reg`",
        "",
        f"Protocol: {result['protocol']}. Model: `autorec` defaults (I-AutoRec). "
        f"Load average during the run: {', '.join(f'{x:.1f}' for x in result['load_average'])}.",
        "",
        "| fold_in_reg | " + " | ".join(f"seed {r['seed']}" for r in runs) + " | mean RMSE |",
        "|---:|" + "---:|" * (len(runs) + 1),
    ]
    for k in mean:
        cells = " | ".join(f"{r['rmse'][k]:.4f}" for r in runs)
        mark = " **(best)**" if k == best else ""
        lines.append(f"| {k} | {cells} | {mean[k]:.4f}{mark} |")
    lines += [
        "",
        f"Targets per seed: {', '.join(str(r['n_targets']) for r in runs)}; "
        f"fit seconds: {', '.join(str(r['fit_s']) for r in runs)}.",
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
