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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recforge.errors import ConfigError


class FrozenConfig(BaseModel):
    """Base of all configs: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class ModelConfig(FrozenConfig):
    """Hyper-parameters shared by every model."""

    seed: int = Field(42, ge=0, description="Seed for every random choice the model makes.")


class TrainConfig(ModelConfig):
    """Hyper-parameters of the shared neural training loop (:class:`recforge.train.Trainer`)."""

    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(1024, ge=1, le=10_000_000)
    lr: float = Field(1e-2, gt=0, le=10)
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd", "sparse_adam", "adagrad"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum / RMSprop momentum.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled (AdamW) or L2 (others) weight decay.")
    schedule: Literal["constant", "sgdr", "one_cycle", "step"] = "constant"
    sgdr_t0: int = Field(1, ge=1, description="SGDR: epochs in the first cycle.")
    sgdr_mult: int = Field(2, ge=1, description="SGDR: cycle length multiplier.")
    step_size: int = Field(5, ge=1, description="step: epochs between decays.")
    step_gamma: float = Field(0.5, gt=0, le=1, description="step: decay factor.")
    grad_clip: float | None = Field(None, gt=0, description="Max global gradient norm.")
    patience: int | None = Field(None, ge=1, description="Early stopping patience in epochs (needs valid).")
    device: str = Field("auto", description='"auto" (CUDA when available), "cpu", "cuda", "cuda:1"...')
    verbose: bool = Field(True, description="Show a progress bar when attached to a terminal.")


def config_from_mapping(cls: type[ModelConfig], values: dict[str, Any], *, where: str = "config") -> ModelConfig:
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
        if p.suffix.lower() == ".json":
            obj = json.loads(text)
        else:
            obj = tomllib.loads(text)
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
