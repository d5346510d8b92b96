"""Static plots written as PNG files.

Matplotlib is imported inside each function (``import recforge`` stays fast) and figures are
drawn on an explicit Agg canvas, so nothing depends on, or changes, the global pyplot backend —
plotting works on headless machines and inside servers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recforge._atomic import atomic_path
from recforge.errors import DataError

_LOSS_COLUMNS = ("train_loss", "valid_loss")


def learning_curve(history: pd.DataFrame, path: str | Path, *, title: str | None = None) -> Path:
    """Write the learning curve of a training history to a PNG file.

    Left panel: train and validation loss per epoch. Right panel: the other validation metrics
    (columns starting with ``valid_``, e.g. ``valid_rmse``) and, on a second axis, the learning
    rate. Columns that are absent or all-NaN are skipped.

    Args:
        history: the per-epoch frame of :class:`recforge.train.TrainResult` (or ``history.csv``):
            ``epoch``, ``train_loss`` and optionally ``valid_loss``, ``valid_*``, ``lr``.
        path: where to write the PNG (parent folders are created; written atomically).
        title: figure title.

    Returns:
        ``path`` as a Path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    missing = [c for c in ("epoch", "train_loss") if c not in history.columns]
    if missing:
        raise DataError(
            f"learning_curve: history lacks column(s) {missing}; pass a Trainer history"
        )
    if len(history) == 0:
        raise DataError("learning_curve: the history is empty (no epoch finished)")
    epochs = history["epoch"].to_numpy()
    metrics = [
        c
        for c in history.columns
        if c.startswith("valid_") and c not in _LOSS_COLUMNS and history[c].notna().any()
    ]
    n_panels = 2 if metrics or "lr" in history.columns else 1
    fig = Figure(figsize=(11 if n_panels == 2 else 6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, n_panels, 1)
    for col in _LOSS_COLUMNS:
        if col in history.columns and history[col].notna().any():
            ax.plot(epochs, history[col].to_numpy(), marker="o", ms=3, label=col)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if n_panels == 2:
        ax2 = fig.add_subplot(1, 2, 2)
        for col in metrics:
            ax2.plot(epochs, history[col].to_numpy(), marker="o", ms=3, label=col)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("validation metric" if metrics else "")
        ax2.grid(alpha=0.3)
        if "lr" in history.columns and history["lr"].notna().any():
            lr_ax = ax2.twinx()
            lr_ax.plot(epochs, history["lr"].to_numpy(), color="grey", ls="--", label="lr")
            lr_ax.set_ylabel("learning rate")
            lr_vals = history["lr"].dropna()
            if len(lr_vals) and lr_vals.min() > 0 and lr_vals.max() / lr_vals.min() > 100:
                lr_ax.set_yscale("log")
            handles, labels = ax2.get_legend_handles_labels()
            h2, l2 = lr_ax.get_legend_handles_labels()
            ax2.legend(handles + h2, labels + l2)
        elif metrics:
            ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    return target
