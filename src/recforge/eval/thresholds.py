"""Like and relevance thresholds derived from a rating scale (the one place they are decided).

On a scale ``[low, high]`` a rating *is liked* when ``rating > low + 0.5 · (high − low)`` and *is
relevant* (counts as a hit in ranking metrics) when ``rating ≥ low + 0.75 · (high − low)``:

==========  =========  =============
scale        like >     relevant ≥
==========  =========  =============
1–5          3          4            (MovieLens convention, as before)
1–10         5.5        7.75
0.5–5        2.75       3.875        (so 4 and above, as on 1–5)
==========  =========  =============

Implicit data (no scale) has no like threshold, and every held-out event is relevant.
Either threshold can be overridden (``--like-threshold``, ``--relevance-threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Fraction of the scale's span above its low end that "like" must exceed.
LIKE_FRACTION = 0.5
#: Fraction of the scale's span above its low end that "relevant" must reach.
RELEVANCE_FRACTION = 0.75


@dataclass(frozen=True)
class Thresholds:
    """``like``: rating > like counts as liked; ``relevance``: rating ≥ it is relevant.

    None means: no like-accuracy (implicit data) / every test event is relevant.
    """

    like: float | None
    relevance: float | None
    rating_scale: tuple[float, float] | None = None

    def describe(self) -> str:
        """Text ending every protocol line: ``scale 1..10: like > 5.5, relevant >= 7.75``."""
        if self.rating_scale is None and self.like is None and self.relevance is None:
            return "implicit: every held-out event is relevant"
        parts = []
        if self.rating_scale is not None:
            lo, hi = self.rating_scale
            parts.append(f"scale {lo:g}..{hi:g}:")
        like = f"like > {self.like:g}" if self.like is not None else "no like threshold"
        rel = (
            f"relevant >= {self.relevance:g}"
            if self.relevance is not None
            else "every test event relevant"
        )
        parts.append(f"{like}, {rel}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored with metrics)."""
        return {
            "like_threshold": self.like,
            "relevance_threshold": self.relevance,
            "rating_scale": list(self.rating_scale) if self.rating_scale else None,
        }


def scale_thresholds(
    rating_scale: tuple[float, float] | None,
    *,
    like: float | None = None,
    relevance: float | None = None,
) -> Thresholds:
    """Thresholds for ``rating_scale`` (proportional), with optional overrides.

    Args:
        rating_scale: ``(low, high)`` of explicit ratings, or None for implicit data.
        like: override of the like threshold.
        relevance: override of the relevance threshold.
    """
    if rating_scale is None:
        return Thresholds(like, relevance, None)
    lo, hi = float(rating_scale[0]), float(rating_scale[1])
    span = hi - lo
    return Thresholds(
        like if like is not None else lo + LIKE_FRACTION * span,
        relevance if relevance is not None else lo + RELEVANCE_FRACTION * span,
        (lo, hi),
    )


def thresholds_for(
    data: Any, *, like: float | None = None, relevance: float | None = None
) -> Thresholds:
    """Thresholds for Interactions (or anything with ``rating_scale``), with overrides."""
    return scale_thresholds(getattr(data, "rating_scale", None), like=like, relevance=relevance)
