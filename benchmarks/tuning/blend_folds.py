"""Choose the members of a ``blend`` on a validation carve of one protocol fold (never on test).

``--data``/``--protocol``/``--fold`` name the fold (default ``ml-100k`` ``ml100k-folds`` u1; e.g.
``--data ml-1m-ratings --protocol ml1m-90-10 --fold 0`` is seed 42); its training part is
carved by the protocol's own tuning rule (``Protocol.validation_split``). For ``ml100k-folds``
the training file ``uN.base`` is carved with
``recforge.data.split.carve_validation`` (the same rule the benchmark's tuning uses for the
predefined folds: a random 20% hold-out, seed 42) into T (inner training) and V (validation).
Each candidate member is then handled exactly as :class:`recforge.models.blend.Blend` would
handle it when fitted on T: fitted on T minus the blend's own carve C
(``random_holdout(T, valid_ratio, seed=42)``) to predict C (for the weights), and refitted on
all of T to predict V. With ``--cv-folds K`` the blend's ``cv_folds = K`` is reproduced instead:
C is all of T, each of its K folds (``kfold(T, K, seed=42)``) predicted by a fit on the others.
Member predictions are cached (``--cache``), so every subset of members
and every ridge value is scored on V without refitting. The test file is never read.

Command (one thread; the machine is shared)::

    RECFORGE_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
      .venv/bin/python benchmarks/tuning/blend_folds.py --fold u1 \\
      --members autorec biased_mf 'item_knn:{"similarity": "pearson_baseline"}' ...

Prints each member's validation RMSE and the best subsets; appends JSON lines to ``--log``.

``--meta`` also scores feature-weighted linear stacking (the blend's ``meta_features``; Sill et
al. 2009) on the ``--fwls-top`` best plain subsets: meta-features of C come from T∖C and those
of V from T, standardised with C's mean and sd, exactly as the blend computes them.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.data.interactions import Interactions
from recforge.data.movielens import load_movielens_fold
from recforge.data.sources import load_dataset
from recforge.data.split import Split, carve_validation, kfold, random_holdout
from recforge.eval.protocols import get_protocol
from recforge.models.blend import BlendConfig, fit_residual_trees, ridge_blend_weights
from recforge.models.blend_boost import boost_inputs
from recforge.models.blend_meta import META_FEATURES, fwls_design, side_tables
from recforge.models.registry import create


def _predict(model: Any, part: Interactions, fallback: float) -> np.ndarray:
    frame = part.to_frame()
    p = model.predict(frame["user_id"].to_numpy(), frame["item_id"].to_numpy())
    return np.where(np.isfinite(p), p, fallback).astype(np.float64)


def inner_and_valid(data: str, protocol: str, fold: str) -> tuple[Interactions, Interactions]:
    """T and V: the fold's training part carved by the protocol's own tuning rule."""
    if data == "ml-100k" and protocol == "ml100k-folds":
        # The predefined files, carved as before (the cached predictions' keys stay valid).
        data_dir = os.environ.get("RECFORGE_DATA_DIR")
        base_df, _ = load_movielens_fold("ml-100k", fold, data_dir=data_dir, download=False)
        base = Interactions.from_frame(base_df, rating_scale=(1.0, 5.0), source=f"ml-100k/{fold}")
        outer = carve_validation(base)
        return outer.train, outer.test
    proto = get_protocol(protocol)
    ps = proto.validation_split(
        proto.split(load_dataset(data), int(fold) if fold.isdigit() else fold)
    )
    assert isinstance(ps.split, Split)
    return ps.split.train, ps.split.test


def blend_carves(inner: Interactions, valid_ratio: float, cv_folds: int) -> list[Split]:
    """The (members' training part, held-out part) pairs a blend fitted on ``inner`` uses."""
    if cv_folds >= 2:
        return kfold(inner, k=cv_folds, seed=42)
    return [random_holdout(inner, test_ratio=valid_ratio, seed=42)]


def carve_tag(valid_ratio: float, cv_folds: int) -> str:
    """Cache-key part naming C (0.1 without cross-fitting keeps the old keys)."""
    if cv_folds >= 2:
        return f"|cv={cv_folds}"
    return "" if valid_ratio == 0.1 else f"|vr={valid_ratio}"


def member_predictions(
    spec: str,
    inner: Interactions,
    carves: list[Split],
    valid: Interactions,
    cache: Path,
    tag: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """(predictions on C from fits without it, predictions on V from a fit on T), cached."""
    raw_key = spec + tag + inner.fingerprint() + valid.fingerprint()
    key = hashlib.sha1(raw_key.encode()).hexdigest()[:16]
    path = cache / f"{key}.npz"
    if path.exists():
        z = np.load(path)
        return z["c"], z["v"]
    name, _, raw = spec.partition(":")
    cfg = json.loads(raw) if raw else {}
    t0 = time.perf_counter()
    pc = np.concatenate(
        [_predict(create(name, cfg).fit(c.train), c.test, c.train.global_mean) for c in carves]
    )
    m2 = create(name, cfg).fit(inner)
    pv = _predict(m2, valid, inner.global_mean)
    np.savez(path, c=pc, v=pv)
    print(f"  fitted {spec} {len(carves) + 1} times in {time.perf_counter() - t0:.1f}s", flush=True)
    return pc, pv


def meta_features(
    names: tuple[str, ...], carves: list[Split], inner: Interactions, valid: Interactions
) -> tuple[np.ndarray, np.ndarray]:
    """Standardised meta-features of C (from T∖C) and of V (from T), as the blend makes them."""
    names = tuple(n for n in names if n.startswith("user_")) + tuple(
        n for n in names if n.startswith("item_")
    )

    def raw(fit_on: Interactions, rows: Interactions) -> np.ndarray:
        u, i = side_tables(
            fit_on.user_idx,
            fit_on.item_idx,
            fit_on.rating,
            fit_on.n_users,
            fit_on.n_items,
            names,
        )
        # V may hold ids T lacks (its own vocabularies): they get the row of no ratings
        # (log support 0, the global mean, sd 0), appended as index -1.
        ru = fit_on.users.index(rows.users.lookup(rows.user_idx), missing="negative")
        ri = fit_on.items.index(rows.items.lookup(rows.item_idx), missing="negative")
        mean0 = float(np.mean(fit_on.rating))

        def empty(side: str) -> np.ndarray:
            cols = [n for n in names if n.startswith(side + "_")]
            return np.array([[mean0 if n.endswith("_mean") else 0.0 for n in cols]])

        u, i = np.vstack([u, empty("user")]), np.vstack([i, empty("item")])
        return np.column_stack([u[ru], i[ri]])

    fc, fv = np.vstack([raw(c.train, c.test) for c in carves]), raw(inner, valid)
    mu, sd = fc.mean(axis=0), fc.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return (fc - mu) / sd, (fv - mu) / sd


def boosted_rows(
    rows: list[dict[str, Any]],
    preds: dict[str, tuple[np.ndarray, np.ndarray]],
    carves: list[Split],
    inner: Interactions,
    valid: Interactions,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """Each FWLS row again with the blend's boosted trees on its residuals (``boost_rounds``),
    fitted exactly as :class:`recforge.models.blend.Blend` fits them (its defaults of the other
    ``boost_*`` options and seed); best first."""
    lo, hi = inner.rating_scale or (1.0, 5.0)
    yc = np.concatenate([c.test.rating for c in carves]).astype(np.float64)
    yv = valid.rating.astype(np.float64)
    cfg = BlendConfig(boost_rounds=args.boost_rounds)  # the blend's own boost_* defaults
    out = []
    for r in rows:
        subset, names = r["members"], tuple(r["meta_features"])
        fc, fv = meta_features(names, carves, inner, valid)
        pc = np.column_stack([preds[s][0] for s in subset])
        pv = np.column_stack([preds[s][1] for s in subset])
        xc, xv = fwls_design(pc, fc), fwls_design(pv, fv)
        pen = np.r_[
            np.full(len(subset), r["ridge"]), np.full(xc.shape[1] - len(subset), r["meta_ridge"])
        ]
        w0, w = ridge_blend_weights(xc, yc, pen)
        trees = fit_residual_trees(cfg, np.clip(pc, lo, hi), fc, yc - (w0 + xc @ w))
        boost = trees.predict(boost_inputs(list(np.clip(pv, lo, hi).T), fv))
        rmse = float(np.sqrt(np.mean((np.clip(w0 + xv @ w + boost, lo, hi) - yv) ** 2)))
        out.append(
            {
                **r,
                "boost_rounds": args.boost_rounds,
                "boost_trees": trees.n_trees,
                "fwls_valid_rmse": r["valid_rmse"],
                "valid_rmse": rmse,
            }
        )
    return sorted(out, key=lambda r: r["valid_rmse"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-100k")
    parser.add_argument("--protocol", default="ml100k-folds")
    parser.add_argument("--fold", default="u1", help="fold label or index (u1, 0 = seed 42)")
    parser.add_argument("--members", nargs="+", required=True, help="name[:json config]")
    parser.add_argument("--valid-ratio", type=float, default=0.1, help="the blend's own carve")
    parser.add_argument("--cv-folds", type=int, default=0, help="the blend's cv_folds (K >= 2)")
    parser.add_argument("--ridges", default="0,0.001,0.01")
    parser.add_argument("--max-size", type=int, default=6)
    parser.add_argument("--cache", default="/tmp/recforge_blend_cache")
    parser.add_argument("--log", default="docs/benchmarks/tuning_blend.jsonl")
    parser.add_argument(
        "--meta", nargs="*", default=[], help="FWLS meta-feature sets: 'a,b,...' or 'all'"
    )
    parser.add_argument("--meta-ridges", default="0.001,0.01,0.1")
    parser.add_argument("--fwls-top", type=int, default=200, help="plain subsets given FWLS")
    parser.add_argument(
        "--boost-rounds", type=int, default=0, help="boosted trees on the best FWLS rows' residuals"
    )
    parser.add_argument("--boost-top", type=int, default=5, help="FWLS rows given boosting")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    inner, valid = inner_and_valid(args.data, args.protocol, args.fold)
    carves = blend_carves(inner, args.valid_ratio, args.cv_folds)
    tag = carve_tag(args.valid_ratio, args.cv_folds)
    lo, hi = inner.rating_scale or (1.0, 5.0)
    yc = np.concatenate([c.test.rating for c in carves]).astype(np.float64)
    yv = valid.rating.astype(np.float64)
    preds = {s: member_predictions(s, inner, carves, valid, cache, tag) for s in args.members}
    carve_info: dict[str, Any] = (
        {"cv_folds": args.cv_folds} if args.cv_folds >= 2 else {"valid_ratio": args.valid_ratio}
    )
    rows: list[dict[str, Any]] = []
    for spec, (_, pv) in preds.items():
        rmse = float(np.sqrt(np.mean((np.clip(pv, lo, hi) - yv) ** 2)))
        rows.append({"members": [spec], "ridge": None, "valid_rmse": rmse})
    specs = list(preds)
    for size in range(2, min(args.max_size, len(specs)) + 1):
        for subset in itertools.combinations(specs, size):
            pc = np.column_stack([preds[s][0] for s in subset])
            pv = np.column_stack([preds[s][1] for s in subset])
            for ridge in (float(r) for r in args.ridges.split(",")):
                w0, w = ridge_blend_weights(pc, yc, ridge)
                rmse = float(np.sqrt(np.mean((np.clip(w0 + pv @ w, lo, hi) - yv) ** 2)))
                rows.append(
                    {
                        "members": list(subset),
                        "ridge": ridge,
                        **carve_info,
                        "valid_rmse": rmse,
                        "weights": [round(w0, 4), *np.round(w, 4).tolist()],
                    }
                )
    rows.sort(key=lambda r: r["valid_rmse"])
    singles = [r for r in rows if r["ridge"] is None]
    fwls_rows: list[dict[str, Any]] = []
    top = [r for r in rows if r["ridge"] is not None][: args.fwls_top]
    for meta in args.meta:
        names = META_FEATURES if meta == "all" else tuple(meta.split(","))
        fc, fv = meta_features(names, carves, inner, valid)
        for r in top:
            subset, ridge = r["members"], float(r["ridge"])
            pc = np.column_stack([preds[s][0] for s in subset])
            pv = np.column_stack([preds[s][1] for s in subset])
            xc, xv = fwls_design(pc, fc), fwls_design(pv, fv)
            for meta_ridge in (float(x) for x in args.meta_ridges.split(",")):
                pen = np.r_[
                    np.full(len(subset), ridge), np.full(xc.shape[1] - len(subset), meta_ridge)
                ]
                w0, w = ridge_blend_weights(xc, yc, pen)
                rmse = float(np.sqrt(np.mean((np.clip(w0 + xv @ w, lo, hi) - yv) ** 2)))
                fwls_rows.append(
                    {
                        "members": list(subset),
                        "ridge": ridge,
                        "meta_features": list(names),
                        "meta_ridge": meta_ridge,
                        **carve_info,
                        "valid_rmse": rmse,
                        "plain_valid_rmse": r["valid_rmse"],
                    }
                )
    fwls_rows.sort(key=lambda r: r["valid_rmse"])
    if args.boost_rounds:
        fwls_rows = boosted_rows(fwls_rows[: args.boost_top], preds, carves, inner, valid, args)
    with Path(args.log).open("a", encoding="utf-8") as fh:
        for r in singles + rows[:15] + fwls_rows[:25]:
            r = {
                "data": args.data,
                "protocol": args.protocol,
                "fold": args.fold,
                "on": "valid",
                **r,
            }
            print(json.dumps(r), flush=True)
            fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
