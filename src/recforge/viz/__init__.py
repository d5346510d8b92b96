"""Plots of training runs and models (matplotlib, imported lazily; PNG via the Agg canvas)."""

from recforge.viz.plots import learning_curve

__all__ = ["learning_curve"]
