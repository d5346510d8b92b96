"""Summary statistics of an interaction dataset (what ``recforge data describe`` prints)."""

from __future__ import annotations

from typing import Any

import numpy as np

from recforge.data.interactions import Interactions


def describe(data: Interactions) -> dict[str, Any]:
    """Users, items, events, density, rating histogram and per-user/item count quantiles."""
    user_counts = data.user_counts()
    item_counts = data.item_counts()
    values, counts = np.unique(data.rating, return_counts=True)
    qs = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)

    def quantiles(arr: np.ndarray[Any, Any]) -> dict[str, float]:
        if len(arr) == 0:
            return {}
        return {f"q{int(q * 100)}": float(np.quantile(arr, q)) for q in qs} | {
            "mean": float(arr.mean())
        }

    ts = data.timestamp[data.timestamp > 0]
    return {
        "source": data.source,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_ratings": len(data),
        "density": data.density,
        "explicit": data.is_explicit,
        "rating_scale": list(data.rating_scale) if data.rating_scale else None,
        "rating_mean": data.global_mean,
        "rating_histogram": {f"{v:g}": int(c) for v, c in zip(values, counts, strict=True)},
        "ratings_per_user": quantiles(user_counts),
        "ratings_per_item": quantiles(item_counts),
        "timestamp_range": [int(ts.min()), int(ts.max())] if len(ts) else None,
        "has_item_metadata": data.item_meta is not None,
        "has_user_metadata": data.user_meta is not None,
    }
