"""Early stopping with best-weight restore, one of the parts :class:`~recforge.train.Trainer` calls.

After each epoch the Trainer hands the history row to :meth:`EarlyStopping.update`: the monitored
value (``config.monitor``, e.g. ``valid_loss``) either improves on the best so far by more than
``min_delta`` in the configured direction (the weights are copied aside) or counts one more stale
epoch; ``patience`` stale epochs in a row stop training. At the end :meth:`EarlyStopping.restore`
loads the best weights back. The whole state (best score, epoch, stale count, best weights) is
plain data, so a checkpoint saves it and a resumed fit continues the count exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.errors import ConfigError, ModelFitError


@dataclass
class EarlyStopping:
    """Patience-based early stopping on one history column.

    Attributes:
        monitor: history column to watch (e.g. ``valid_loss``, ``valid_rmse``).
        mode: ``"min"`` when lower is better, ``"max"`` otherwise.
        min_delta: smallest change that counts as an improvement.
        patience: stale epochs in a row that stop training.
        best_score, best_epoch: the best value so far and its (1-based) epoch (0: none yet).
        stale: epochs since the last improvement.
        best_state: a copy of the module's ``state_dict`` at ``best_epoch``.
    """

    monitor: str
    mode: Literal["min", "max"]
    min_delta: float
    patience: int
    best_score: float | None = None
    best_epoch: int = 0
    stale: int = 0
    best_state: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_config(cls, config: TrainConfig) -> EarlyStopping:
        """The early stopping ``config`` asks for (``config.patience`` must be set)."""
        if config.patience is None:
            raise ConfigError("early stopping needs patience; set patience to a number of epochs")
        return cls(config.monitor, config.monitor_mode, config.min_delta, config.patience)

    def score(self, row: Mapping[str, float]) -> float:
        """The monitored value of a history row (ConfigError if absent, ModelFitError if NaN)."""
        if self.monitor not in row:
            raise ConfigError(
                f"monitor: {self.monitor!r} is not a history column ({sorted(row)}); "
                "set monitor to one"
            )
        value = float(row[self.monitor])
        if math.isnan(value):
            raise ModelFitError(f"monitor {self.monitor!r} is NaN; check the validation data")
        return value

    def is_better(self, score: float, best: float) -> bool:
        """True when ``score`` improves on ``best`` by more than ``min_delta``."""
        if self.mode == "min":
            return score < best - self.min_delta
        return score > best + self.min_delta

    def update(self, epoch: int, row: Mapping[str, float], module: nn.Module) -> bool:
        """Record epoch ``epoch``'s ``row``; True when patience has run out (stop now)."""
        score = self.score(row)
        if self.best_score is None or self.is_better(score, self.best_score):
            self.best_score, self.best_epoch, self.stale = score, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            return False
        self.stale += 1
        return self.stale >= self.patience

    def restore(self, module: nn.Module) -> bool:
        """Load the best weights into ``module``; False when there are none to load."""
        if self.best_state is None:
            return False
        module.load_state_dict(self.best_state)
        return True
