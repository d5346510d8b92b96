"""Mixed precision for the Trainer's forward pass (``config.precision``).

``"bf16"`` autocasts the forward pass and the loss to bfloat16 where torch deems it safe; the
weights, gradients and optimizer state stay float32, so no loss scaling is needed (bf16 keeps
float32's exponent range). ``"fp32"`` returns a disabled autocast context: a no-op, so float32
results are bit-identical to training without it.
"""

from __future__ import annotations

import torch

from recforge.errors import ConfigError

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context of one training step on ``device`` for ``precision``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: unknown {precision!r}; use one of {', '.join(PRECISIONS)}")
    return torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")
