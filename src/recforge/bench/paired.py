"""Paired comparison of two benchmark rows over the same test users (``per_user.parquet``).

Two rows of one benchmark are scored on the very same split objects, so each test user has a
value under both. The per-user differences carry far less noise than the two means compared
separately (the users' own difficulty cancels), which is what makes a small gap on a protocol
such as ``loo-latest`` (one test event per user) judgeable at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from recforge.errors import ConfigError

#: Columns identifying a value (see :data:`recforge.bench.runner.PER_USER_KEYS`).
_KEYS = ("dataset", "protocol", "fold", "row", "user_id")
#: Bound on the resample index matrix drawn at once (elements): 2M int64 = 16 MB.
_CHUNK_ELEMENTS = 2_000_000
CONFIDENCE = 0.95


def metric_columns(per_user: pd.DataFrame) -> list[str]:
    """The metric columns of a per-user frame (every column but the keys)."""
    return [c for c in per_user.columns if c not in _KEYS]


def row_labels(per_user: pd.DataFrame) -> list[str]:
    """The row labels in the frame, in order of appearance."""
    return [str(r) for r in pd.unique(per_user["row"].astype(str))]


def read_per_user(directories: Sequence[Path], file_name: str) -> pd.DataFrame:
    """The ``file_name`` (``per_user.parquet``) frames of several benchmark folders, as one.

    A row present in two folders with the same values for the same users (a deterministic
    reference such as EASE run beside each batch of seeds) is kept once; the same row with
    different values is a ConfigError (two different models under one label).
    """
    frames = []
    for directory in directories:
        path = Path(directory) / file_name
        if not path.is_file():
            raise ConfigError(
                f"{path} not found: this benchmark folder keeps no per-user values (older "
                "recforge versions did not write them); rerun recforge benchmark into it"
            )
        frames.append(pd.read_parquet(path))
    per_user = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    keys = list(_KEYS)
    once = per_user.drop_duplicates()
    clash = once.duplicated(subset=keys, keep=False)
    if clash.any():
        row = once.loc[clash, "row"].iloc[0]
        raise ConfigError(
            f"row {row!r} appears in several folders with different per-user values; "
            "give the folders one row each under that label (rename a config), or compare "
            "them one folder at a time"
        )
    return once.reset_index(drop=True)


def seed_mean_row(per_user: pd.DataFrame, rows: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """``per_user`` with one more row: each user's mean over ``rows`` (a config's seeds).

    Only users every one of ``rows`` scored are kept (per dataset, protocol and fold), so the
    mean is over the same seeds for everyone. One row: returned unchanged with its own label.
    Comparing the seed mean user by user takes the seeds' noise down with the users' before
    the bootstrap, which then resamples users only (:func:`paired_comparison`).
    """
    if len(rows) == 1:
        return per_user, rows[0]
    label = "mean(" + ", ".join(rows) + ")"
    part = per_user[per_user["row"].astype(str).isin(rows)]
    groups = ["dataset", "protocol", "fold", "user_id"]
    metrics = metric_columns(per_user)
    grouped = part.groupby(groups, sort=False, observed=True)
    mean = grouped[metrics].mean()
    mean = mean[grouped.size() == len(set(rows))].reset_index()
    mean["row"] = label
    return pd.concat([per_user, mean[per_user.columns]], ignore_index=True), label


def paired_comparison(
    per_user: pd.DataFrame,
    a: str | Sequence[str],
    b: str | Sequence[str],
    metric: str,
    *,
    n_boot: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare rows ``a`` and ``b`` on ``metric`` user by user, with a paired bootstrap.

    ``a`` (or ``b``) may list several rows, the seeds of one config: each user's value is then
    their mean over those rows (:func:`seed_mean_row`), labelled ``mean(row, row, ...)``.

    Per (dataset, protocol, fold), A's and B's users are inner-joined on ``user_id`` and users
    where either value is NaN are dropped, leaving ``n`` paired differences
    ``d_u = metric_A(u) - metric_B(u)``. The reported difference is their mean
    ``d̄ = (1/n) Σ_u d_u`` (equal to mean A - mean B over those users).

    The 95% interval is the percentile bootstrap of ``d̄`` (Efron & Tibshirani 1993, *An
    Introduction to the Bootstrap*, ch. 13): ``n_boot`` times, draw ``n`` users with replacement,
    keeping each user's *pair* of values together, and take the mean difference; the 2.5% and
    97.5% quantiles of those means bound the interval. It reads: were the test users drawn
    afresh from the same population, the mean difference would fall in this range about 95% of
    the time; an interval excluding 0 says the gap is not explained by which users happened to
    be tested. It says nothing about variation from retraining (seeds) or other splits. Paired
    tests over topics/users are the recommended practice in IR evaluation (Sakai 2014,
    "Statistical reform in information retrieval?", SIGIR Forum 48(1)). ``p_a_gt_b`` is the
    share of resampled mean differences above 0: a bootstrap measure of how consistently A
    beats B, not a p-value.

    The pooled result treats every (fold, user) pair as an independent unit and resamples them
    all together; where folds share users (seeds of one protocol) that is an approximation which
    makes the interval somewhat too narrow.

    Args:
        per_user: ``per_user.parquet`` as read (``dataset, protocol, fold, row, user_id`` and
            metric columns).
        a: row label of model A; ``b``: row label of model B.
        metric: a metric column.
        n_boot: bootstrap resamples.
        seed: seed of the resampling (each fold and the pooled set start from it afresh, so a
            fold's interval does not depend on which other folds are in the file).

    Returns:
        ``{"a", "b", "metric", "n_boot", "seed", "confidence", "results": [{"dataset",
        "protocol", "folds": [stats], "pooled": stats}]}`` where stats is ``{"fold",
        "n_users", "mean_a", "mean_b", "difference", "ci_low", "ci_high", "p_a_gt_b"}``;
        datasets/protocols where A and B share no user with values are left out.

    Raises:
        ConfigError: unknown row or metric (listing the valid ones), no common users at all.
    """
    a_rows, b_rows = (
        ([a] if isinstance(a, str) else list(a)),
        ([b] if isinstance(b, str) else list(b)),
    )
    _check(per_user, [*a_rows, *b_rows], metric)
    per_user, a = seed_mean_row(per_user, a_rows)
    per_user, b = seed_mean_row(per_user, b_rows)
    if n_boot < 1:
        raise ConfigError(f"n_boot must be at least 1, got {n_boot}")
    results = []
    for (dataset, protocol), group in per_user.groupby(
        ["dataset", "protocol"], sort=False, observed=True
    ):
        found = _compare_folds(group, a, b, metric, n_boot, seed)
        if found is not None:
            results.append({"dataset": str(dataset), "protocol": str(protocol), **found})
    if not results:
        raise ConfigError(f"rows {a!r} and {b!r} have no test user with a {metric} value in common")
    return {
        "a": a,
        "b": b,
        "metric": metric,
        "n_boot": n_boot,
        "seed": seed,
        "confidence": CONFIDENCE,
        "results": results,
    }


def _check(per_user: pd.DataFrame, labels: Sequence[str], metric: str) -> None:
    """ConfigError naming the valid choices for an unknown row or metric."""
    rows = row_labels(per_user)
    for label in labels:
        if label not in rows:
            raise ConfigError(f"unknown row {label!r}; rows: {', '.join(rows)}")
    metrics = metric_columns(per_user)
    if metric not in metrics:
        raise ConfigError(f"unknown metric {metric!r}; metrics: {', '.join(metrics)}")


def _compare_folds(
    group: pd.DataFrame, a: str, b: str, metric: str, n_boot: int, seed: int
) -> dict[str, Any] | None:
    """``{"folds": [stats], "pooled": stats}`` of one dataset/protocol; None without pairs."""
    folds, pooled = [], []
    for fold, part in group.groupby("fold", sort=False, observed=True):
        va, vb = _paired_values(part, a, b, metric)
        if len(va):
            folds.append(_stats(str(fold), va, vb, n_boot, seed))
            pooled.append((va, vb))
    if not folds:
        return None
    va = np.concatenate([p[0] for p in pooled])
    vb = np.concatenate([p[1] for p in pooled])
    return {"folds": folds, "pooled": _stats("pooled", va, vb, n_boot, seed)}


def _paired_values(
    part: pd.DataFrame, a: str, b: str, metric: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A's and B's values of the users both have a (finite) value for, aligned by user."""
    rows = part["row"].astype(str)
    left = part.loc[rows == a, ["user_id", metric]]
    right = part.loc[rows == b, ["user_id", metric]]
    # one_to_one: a user listed twice for one row would silently weigh double in the mean.
    both = left.merge(right, on="user_id", suffixes=("_a", "_b"), validate="one_to_one")
    va = both[f"{metric}_a"].to_numpy(dtype=np.float64)
    vb = both[f"{metric}_b"].to_numpy(dtype=np.float64)
    keep = np.isfinite(va) & np.isfinite(vb)
    return va[keep], vb[keep]


def _stats(
    fold: str,
    va: npt.NDArray[np.float64],
    vb: npt.NDArray[np.float64],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    diff = va - vb
    means = bootstrap_means(diff, n_boot, seed)
    tail = (1.0 - CONFIDENCE) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return {
        "fold": fold,
        "n_users": len(diff),
        "mean_a": float(va.mean()),
        "mean_b": float(vb.mean()),
        "difference": float(diff.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_a_gt_b": float((means > 0).mean()),
    }


def bootstrap_means(
    values: npt.NDArray[np.float64], n_boot: int, seed: int
) -> npt.NDArray[np.float64]:
    """Means of ``n_boot`` resamples (with replacement, same size) of ``values``.

    Vectorised: each chunk draws a (resamples x n) index matrix at once, bounded by
    :data:`_CHUNK_ELEMENTS` so a large user set does not allocate n_boot x n indices.
    """
    rng = np.random.default_rng(seed)
    n = len(values)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, per_chunk):
        stop = min(n_boot, start + per_chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out
