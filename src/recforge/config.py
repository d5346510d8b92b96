"""Typed, frozen configuration objects (pydantic) and their TOML/JSON round-trip.

Every hyper-parameter of every model lives in a ``ModelConfig`` subclass: fields are range-checked
at construction, unknown keys are rejected, and configs are immutable so a fitted model's
``config`` always describes how it was trained.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recforge.errors import ConfigError


class FrozenConfig(BaseModel):
    """Base of all configs: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class ModelConfig(FrozenConfig):
    """Hyper-parameters shared by every model."""

    seed: int = Field(42, ge=0, description="Seed for every random choice the model makes.")


OptimizerName = Literal["adam", "adamw", "rmsprop", "sgd", "sparse_adam", "adagrad"]
ScheduleName = Literal["constant", "sgdr", "one_cycle", "step"]


class TrainConfig(ModelConfig):
    """Hyper-parameters of the shared neural training loop (:class:`recforge.train.Trainer`).

    Every neural model's config subclasses this, so each field is also a model config key.
    Schedules are stepped per batch (``sgdr``, ``one_cycle``) or per epoch (``step``); see
    :mod:`recforge.train.schedules` for the exact formulas.
    """

    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(1024, ge=1, le=10_000_000)
    lr: float = Field(1e-2, gt=0, le=10, description="Peak / base learning rate.")
    optimizer: OptimizerName = "adam"
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum / RMSprop momentum.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam/AdamW/SparseAdam betas.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled (adamw) or L2 (others).")
    schedule: ScheduleName = "constant"
    sgdr_t0: int = Field(1, ge=1, description="SGDR: epochs in the first cycle.")
    sgdr_mult: int = Field(2, ge=1, description="SGDR: cycle length multiplier.")
    min_lr: float = Field(0.0, ge=0, description="SGDR: learning rate at the bottom of each cycle.")
    pct_start: float = Field(0.25, gt=0, lt=1, description="one_cycle: warm-up fraction of steps.")
    step_size: int = Field(5, ge=1, description="step: epochs between decays.")
    step_gamma: float = Field(0.5, gt=0, le=1, description="step: decay factor.")
    grad_clip: float | None = Field(None, gt=0, description="Max global gradient norm.")
    patience: int | None = Field(None, ge=1, description="Early-stopping patience in epochs.")
    monitor: str = Field("valid_loss", description="History column early stopping watches.")
    monitor_mode: Literal["min", "max"] = Field("min", description="Is lower or higher better?")
    min_delta: float = Field(0.0, ge=0, description="Smallest monitor change that counts.")
    eval_batch_size: int = Field(65_536, ge=1, description="Rows per validation chunk.")
    device: str = Field("auto", description='"auto" (CUDA if available), "cpu", "cuda[:N]".')
    num_threads: int | None = Field(None, ge=1, description="Torch CPU threads while training.")
    verbose: bool = Field(True, description="Show a progress bar when attached to a terminal.")

    @model_validator(mode="after")
    def _check_sparse(self) -> TrainConfig:
        # SparseAdam has no weight decay; silently dropping it would change the model trained.
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must both be in [0, 1), got {self.betas}")
        if self.optimizer == "sparse_adam" and self.weight_decay > 0:
            raise ValueError(
                "optimizer 'sparse_adam' cannot use weight_decay; set weight_decay = 0 (use reg)"
            )
        return self


def config_from_mapping(
    cls: type[ModelConfig], values: dict[str, Any], *, where: str = "config"
) -> ModelConfig:
    """Validate ``values`` into ``cls``, turning pydantic errors into one-line ConfigErrors."""
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(cls.model_fields))
            msg = f"unknown key; valid keys are: {allowed}"
        raise ConfigError(f"{where}: {loc}: {msg}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a plain dict."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror})") from None
    try:
        obj = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: not valid {p.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{p}: top level must be a table/object")
    return obj


def dump_toml(values: dict[str, Any]) -> str:
    """Serialise a flat-or-nested dict of scalars/lists to TOML (enough for our configs)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, val in values.items():
        if isinstance(val, dict):
            tables.append((key, val))
        elif val is not None:
            lines.append(f"{key} = {_toml_value(val)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None)
    return "\n".join(lines) + "\n"


def _toml_value(val: Any) -> str:
    if isinstance(val, bool):
        return "true" if val else "false"
    if isinstance(val, int | float):
        return repr(val)
    if isinstance(val, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in val) + "]"
    return json.dumps(str(val))
