"""Typed, frozen configuration objects (pydantic) and their TOML/JSON round-trip.

Every hyper-parameter of every model lives in a ``ModelConfig`` subclass: fields are range-checked
at construction, unknown keys are rejected, and configs are immutable so a fitted model's
``config`` always describes how it was trained.

Range checks: every numeric field carries a pydantic bound (``ge``/``gt``/``le``/``lt``; a
test walks every registered model's config to keep it so), floats must be finite (``inf`` and
``nan`` are refused everywhere), and choices are ``Literal``. Impossible combinations (a rating
metric monitored while training on implicit feedback, a monitor mode that contradicts the metric,
...) are refused by validators at construction, so a ConfigError comes before any data is read.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recforge.errors import ConfigError


class FrozenConfig(BaseModel):
    """Base of all configs: immutable, unknown keys rejected."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", protected_namespaces=(), allow_inf_nan=False
    )


class ModelConfig(FrozenConfig):
    """Hyper-parameters shared by every model."""

    seed: int = Field(
        42, ge=0, le=2**63 - 1, description="Seed for every random choice the model makes."
    )


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
    weight_decay: float = Field(0.0, ge=0, le=1e6, description="Decoupled (adamw) or L2 (others).")
    schedule: ScheduleName = "constant"
    sgdr_t0: int = Field(1, ge=1, le=10_000, description="SGDR: epochs in the first cycle.")
    sgdr_mult: int = Field(2, ge=1, le=100, description="SGDR: cycle length multiplier.")
    min_lr: float = Field(
        0.0, ge=0, le=10, description="SGDR: learning rate at the bottom of each cycle."
    )
    pct_start: float = Field(0.25, gt=0, lt=1, description="one_cycle: warm-up fraction of steps.")
    step_size: int = Field(5, ge=1, le=10_000, description="step: epochs between decays.")
    step_gamma: float = Field(0.5, gt=0, le=1, description="step: decay factor.")
    grad_clip: float | None = Field(None, gt=0, le=1e6, description="Max global gradient norm.")
    patience: int | None = Field(
        None, ge=1, le=10_000, description="Early-stopping patience in epochs."
    )
    monitor: str = Field(
        "valid_loss",
        pattern=r"^(train|valid)_[\w@.\-]+$",
        description="History column early stopping watches (train_* or valid_*).",
    )
    monitor_mode: Literal["min", "max"] = Field("min", description="Is lower or higher better?")
    min_delta: float = Field(0.0, ge=0, le=1e6, description="Smallest monitor change that counts.")
    eval_batch_size: int = Field(
        65_536, ge=1, le=100_000_000, description="Rows per validation chunk."
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|mps|cuda(:\d{1,3})?)$",
        description='"auto" (CUDA if available), "cpu", "cuda[:N]", "mps".',
    )
    num_threads: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Torch CPU threads while training (None: the CPUs available to the process, "
        "see recforge.threads; `recforge --threads N` overrides).",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description='"bf16": bfloat16 autocast of the training forward pass (CUDA, or CPUs with '
        'bf16 support); weights and optimizer state stay fp32. "fp32": no autocast.',
    )
    verbose: bool = Field(True, description="Show a progress bar when attached to a terminal.")

    #: True for models that only learn from implicit feedback (no rating metric ever exists).
    implicit_only: ClassVar[bool] = False

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

    @model_validator(mode="after")
    def _check_monitor(self) -> TrainConfig:
        # "valid_ndcg@10" -> "ndcg@10": the metric decides which direction is better.
        metric = self.monitor.lower().split("_", 1)[-1]
        lower = metric.startswith(_LOWER_IS_BETTER)
        higher = metric.startswith(_HIGHER_IS_BETTER)
        if (lower and self.monitor_mode == "max") or (higher and self.monitor_mode == "min"):
            want = "min" if lower else "max"
            raise ValueError(
                f"monitor {self.monitor!r} improves when it gets {'lower' if lower else 'higher'}"
                f"; set monitor_mode = {want!r}"
            )
        loss = getattr(self, "loss", None)
        if metric.startswith(_RATING_METRICS) and (self.implicit_only or loss in _IMPLICIT_LOSSES):
            how = (
                "this model learns from implicit feedback"
                if self.implicit_only
                else (f"loss={loss!r} trains on implicit feedback")
            )
            raise ValueError(
                f"monitor {self.monitor!r} is a rating metric, but {how} and predicts no "
                "ratings; monitor 'valid_loss' or a ranking metric such as 'valid_ndcg@10'"
            )
        return self


_RATING_METRICS = ("rmse", "mae")
_IMPLICIT_LOSSES = ("bce", "bpr", "softmax")  # losses over sampled negatives: no ratings learnt
_LOWER_IS_BETTER = ("loss", "rmse", "mae")
_HIGHER_IS_BETTER = ("ndcg", "recall", "precision", "hit", "mrr", "map", "auc", "accuracy")


def config_from_mapping(
    cls: type[ModelConfig], values: dict[str, Any], *, where: str = "config"
) -> ModelConfig:
    """Validate ``values`` into ``cls``, turning pydantic errors into one-line ConfigErrors."""
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a whole-config validator: its message names the fields itself
            raise ConfigError(f"{where}: {msg}") from None
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
