"""Learning-rate schedules as pure functions of the optimisation step.

A :class:`Schedule` maps the global batch counter ``step`` (0-based) to a learning rate; the
:class:`~recforge.train.Trainer` writes that rate into every optimizer parameter group before each
batch. Keeping the schedule a pure function (instead of a stateful ``torch.optim.lr_scheduler``)
makes it trivial to test, to plot and to resume, and lets one object serve several optimizers
(the sparse + dense pair used with ``sparse_adam``).

With ``η`` the base rate (``TrainConfig.lr``), ``S`` steps per epoch, ``E`` epochs, ``T = S·E``
and ``t = step / S`` (fractional epochs):

``constant``
    ``η``.
``step``
    ``η · γ^⌊epoch / step_size⌋`` — changes only at epoch boundaries.
``sgdr`` (Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017)
    Cycle ``c`` lasts ``T_c = t0 · mult^c`` epochs; inside a cycle at position ``t_cur``:
    ``η_min + ½ (η − η_min)(1 + cos(π t_cur / T_c))``, restarting at ``η`` at each cycle start.
``one_cycle`` (Smith, "Super-Convergence", 2018; the fastai/PyTorch cosine variant)
    Cosine warm-up from ``η / 25`` to ``η`` over the first ``pct_start · T`` steps, then cosine
    annealing to ``η / (25 · 10⁴)`` at the last step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from recforge.config import ScheduleName, TrainConfig
from recforge.errors import ConfigError

#: one_cycle starts at lr / ONE_CYCLE_DIV and ends at lr / (ONE_CYCLE_DIV * ONE_CYCLE_FINAL_DIV).
ONE_CYCLE_DIV = 25.0
ONE_CYCLE_FINAL_DIV = 1e4


def _cos_interp(start: float, end: float, frac: float) -> float:
    """Cosine interpolation from ``start`` (frac=0) to ``end`` (frac=1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * frac))


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule over ``steps_per_epoch × epochs`` optimisation steps.

    Args:
        kind: ``"constant"``, ``"step"``, ``"sgdr"`` or ``"one_cycle"`` (see the module doc).
        lr: base (peak) learning rate ``η``.
        steps_per_epoch: batches per epoch ``S`` (>= 1).
        epochs: number of epochs ``E`` (>= 1).
        step_size, step_gamma: ``step`` schedule parameters.
        sgdr_t0, sgdr_mult, min_lr: ``sgdr`` parameters (first cycle length in epochs, cycle
            growth factor, floor of each cycle).
        pct_start: ``one_cycle`` warm-up fraction.
    """

    kind: ScheduleName
    lr: float
    steps_per_epoch: int
    epochs: int
    step_size: int = 5
    step_gamma: float = 0.5
    sgdr_t0: int = 1
    sgdr_mult: int = 2
    min_lr: float = 0.0
    pct_start: float = 0.25

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1 or self.epochs < 1:
            raise ConfigError(
                f"schedule needs steps_per_epoch >= 1 and epochs >= 1, "
                f"got {self.steps_per_epoch} and {self.epochs}"
            )
        if self.kind not in ("constant", "sgdr", "one_cycle", "step"):
            raise ConfigError(
                f"schedule: unknown kind {self.kind!r}; use constant, sgdr, one_cycle or step"
            )

    @classmethod
    def from_config(cls, config: TrainConfig, steps_per_epoch: int) -> Schedule:
        """The schedule described by ``config`` for ``steps_per_epoch`` batches per epoch."""
        return cls(
            kind=config.schedule,
            lr=config.lr,
            steps_per_epoch=steps_per_epoch,
            epochs=config.epochs,
            step_size=config.step_size,
            step_gamma=config.step_gamma,
            sgdr_t0=config.sgdr_t0,
            sgdr_mult=config.sgdr_mult,
            min_lr=config.min_lr,
            pct_start=config.pct_start,
        )

    @property
    def total_steps(self) -> int:
        """Number of optimisation steps the schedule covers (``S · E``)."""
        return self.steps_per_epoch * self.epochs

    def __call__(self, step: int) -> float:
        """Learning rate of 0-based global batch ``step`` (later steps keep the last rate)."""
        step = min(max(step, 0), self.total_steps - 1)
        if self.kind == "constant":
            return self.lr
        if self.kind == "step":
            return self.lr * self.step_gamma ** ((step // self.steps_per_epoch) // self.step_size)
        if self.kind == "sgdr":
            return self._sgdr(step / self.steps_per_epoch)
        return self._one_cycle(step)

    def _sgdr(self, t: float) -> float:
        length = float(self.sgdr_t0)
        start = 0.0
        # Walk cycles until t falls inside one; the number of cycles grows only logarithmically
        # when mult > 1 and is bounded by epochs / t0 otherwise.
        while t >= start + length:
            start += length
            length *= self.sgdr_mult
        return _cos_interp(self.lr, self.min_lr, (t - start) / length)

    def _one_cycle(self, step: int) -> float:
        total = self.total_steps
        warm = max(1, round(self.pct_start * total))
        lo = self.lr / ONE_CYCLE_DIV
        if step < warm:
            return _cos_interp(lo, self.lr, step / warm)
        rest = max(1, total - 1 - warm)
        return _cos_interp(self.lr, lo / ONE_CYCLE_FINAL_DIV, min(1.0, (step - warm) / rest))

    def rates(self, start: int, count: int) -> npt.NDArray[np.float64]:
        """The rates of steps ``start … start + count − 1``: ``[self(s) for s in …]``, as an array.

        A compiled epoch takes its batches' rates at once. With one rating a batch (``funk_svd``)
        an epoch has millions of steps, so the constant schedule is filled without a Python call
        per step; the others keep the scalar formula (the same floats to the last bit), at a few
        hundred nanoseconds a step.
        """
        if self.kind == "constant":
            return np.full(count, self.lr, dtype=np.float64)
        return np.fromiter((self(s) for s in range(start, start + count)), np.float64, count)

    def apply(self, optimizers: list[torch.optim.Optimizer], step: int) -> float:
        """Write the rate for ``step`` into every parameter group of ``optimizers``; return it."""
        lr = self(step)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        return lr
