"""Resumable training: the checkpoint file format and the context that switches it on.

Checkpoints are an *operational* concern (where to write, how often, whether to resume), not a
hyper-parameter, so they do not live in the model's config: the caller (``pipeline.train_run``)
opens a :func:`training_context` and every :class:`~recforge.train.Trainer` run inside it picks the
policy up. Models never see paths.

Layout of a checkpoint directory (``runs/x.ckpt/`` beside the run directory ``runs/x``)::

    run.json               what rebuilds the run: model, config, data, split, ks, out (pipeline)
    fit-000.safetensors    state of the first Trainer.fit of the run
    fit-001.safetensors    ... of the second (NeuMF pre-trains GMF and MLP, then trains NeuMF)

One file per ``Trainer.fit`` call, numbered in call order, so a model that trains several networks
resumes each one. Each file is written atomically (temp file, fsync, rename) and holds:

* tensors (safetensors): ``module.*`` (the network), ``best.*`` (early stopping's best weights),
  ``opt{j}.{param}.{name}`` (optimizer ``j``'s per-parameter state, e.g. Adam's ``exp_avg``),
  ``rng.torch`` / ``rng.cuda`` / ``rng.perm`` (torch's global CPU/CUDA generator states and the
  permutation generator's, all ``uint8``);
* JSON in the safetensors header metadata (key ``recforge.checkpoint``): format version, epochs
  done, global step, history rows, early-stopping bookkeeping, the optimizers' param groups and
  plain per-parameter values, the objective's random state (negative samplers' numpy
  generators) and a fingerprint of the run (config, data shape) that a resume must match.

No pickle is involved anywhere: loading a checkpoint reads numbers and JSON, never code.

When a fit finishes, its file is rewritten with ``complete = true`` and the final (best) weights,
so a run killed *after* training (during evaluation or saving) resumes without training again.
The directory is deleted once the run directory has been saved.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from recforge._atomic import atomic_path
from recforge.errors import ConfigError, DataError

#: Version of the checkpoint file layout; a newer one is refused with a clear message.
CHECKPOINT_FORMAT = 1
_META_KEY = "recforge.checkpoint"
#: Config fields that may change between the interrupted and the resumed run.
_VOLATILE_FIELDS = frozenset({"verbose", "num_threads", "device"})


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where and how often the Trainer checkpoints.

    Args:
        directory: folder for the ``fit-NNN.safetensors`` files (created on first write).
        every_epochs: write after every N-th completed epoch (None: not by epoch count).
        every_minutes: write at the end of the first epoch that finishes at least M minutes after
            the previous write (or the start). Checkpoints are taken at epoch boundaries only, so
            an epoch is the finest granularity.
        resume: load an existing checkpoint instead of starting from epoch 0.
    """

    directory: Path
    every_epochs: int | None = None
    every_minutes: float | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if self.every_epochs is not None and self.every_epochs < 1:
            raise ConfigError(f"checkpoint every_epochs must be >= 1, got {self.every_epochs}")
        if self.every_minutes is not None and not (
            math.isfinite(self.every_minutes) and self.every_minutes > 0
        ):
            raise ConfigError(f"checkpoint every_minutes must be > 0, got {self.every_minutes}")


@dataclass
class TrainContext:
    """Run-wide settings every Trainer inside :func:`training_context` reads.

    Attributes:
        checkpoints: the checkpoint policy, or None.
        distributed: a :class:`recforge.train.distributed.DistInfo` when running under torchrun.
        fits: how many ``Trainer.fit`` calls have started in this context (numbers the files).
    """

    checkpoints: CheckpointPolicy | None = None
    distributed: Any = None
    fits: int = field(default=0)

    def next_fit(self) -> int:
        """Number of the fit about to start (0-based); advances the counter."""
        n = self.fits
        self.fits += 1
        return n


_CONTEXT: ContextVar[TrainContext | None] = ContextVar("recforge_train_context", default=None)


@contextmanager
def training_context(
    *, checkpoints: CheckpointPolicy | None = None, distributed: Any = None
) -> Iterator[TrainContext]:
    """Make ``checkpoints`` / ``distributed`` apply to every Trainer run inside the block."""
    ctx = TrainContext(checkpoints=checkpoints, distributed=distributed)
    token = _CONTEXT.set(ctx)
    try:
        yield ctx
    finally:
        _CONTEXT.reset(token)


def current_context() -> TrainContext | None:
    """The innermost active :class:`TrainContext`, or None."""
    return _CONTEXT.get()


# ====================================================================== state
@dataclass
class TrainState:
    """Everything :class:`~recforge.train.Trainer` needs to continue a fit exactly.

    Attributes:
        epoch: epochs completed.
        step: global optimisation step (drives the learning-rate schedule).
        rows: history rows so far.
        best_score, best_epoch, stale: early-stopping bookkeeping.
        train_seconds: training time accumulated before the checkpoint.
        complete: True once the fit has finished (``module`` then holds the final weights).
        stopped_early: the finished fit stopped on patience.
        module: the network's ``state_dict``.
        best_state: early stopping's best weights (None when not tracked).
        optimizers: each optimizer's ``state_dict`` (torch layout).
        rng: ``{"torch", "perm"[, "cuda"]}`` generator states as uint8 tensors.
        objective: the objective's JSON-serialisable random state.
        fingerprint: what the resumed fit must match (config, data shape, world size).
    """

    epoch: int
    step: int
    rows: list[dict[str, float]]
    best_score: float | None
    best_epoch: int
    stale: int
    train_seconds: float
    complete: bool
    stopped_early: bool
    module: dict[str, torch.Tensor]
    best_state: dict[str, torch.Tensor] | None
    optimizers: list[dict[str, Any]]
    rng: dict[str, torch.Tensor]
    objective: dict[str, Any]
    fingerprint: dict[str, Any]


def fingerprint(
    config: Any, data: Mapping[str, torch.Tensor], steps_per_epoch: int, world_size: int = 1
) -> dict[str, Any]:
    """What identifies a fit: its config (minus run-time knobs) and the shape of its data."""
    cfg = {k: v for k, v in config.model_dump(mode="json").items() if k not in _VOLATILE_FIELDS}
    return {
        "config": cfg,
        "rows": int(next(iter(data.values())).shape[0]),
        "tensors": {k: [str(v.dtype), list(v.shape[1:])] for k, v in sorted(data.items())},
        "steps_per_epoch": int(steps_per_epoch),
        "world_size": int(world_size),
    }


def flatten_optimizer(
    state: Mapping[str, Any], prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into named tensors and a JSON-serialisable rest.

    Tensors become ``{prefix}.{param}.{name}``; plain per-parameter values (e.g. a Python int
    step) and the param groups go to the JSON part.
    """
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{pid}.{name}"] = value
            else:
                plain.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "plain": plain}


def unflatten_optimizer(
    tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], prefix: str
) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`: a ``state_dict`` for ``Optimizer.load_state_dict``."""
    per_param: dict[int, dict[str, Any]] = {}
    head = prefix + "."
    for key, value in tensors.items():
        if key.startswith(head):
            pid, _, name = key[len(head) :].partition(".")
            per_param.setdefault(int(pid), {})[name] = value
    for pid, values in meta["plain"].items():
        per_param.setdefault(int(pid), {}).update(values)
    return {"state": per_param, "param_groups": meta["param_groups"]}


def _restore_group_types(loaded: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> None:
    # JSON turns tuples (Adam's betas) into lists; give the optimizer back what it was built with.
    for new, ref in zip(loaded, fresh, strict=False):
        for key, value in ref.items():
            if isinstance(value, tuple) and isinstance(new.get(key), list):
                new[key] = tuple(new[key])


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``opt.load_state_dict(state)`` after restoring tuple-valued group options."""
    _restore_group_types(state["param_groups"], opt.state_dict()["param_groups"])
    opt.load_state_dict(state)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    # safetensors needs dense, contiguous tensors with their own storage (tied weights share one).
    return t.detach().to("cpu").contiguous().clone()


def save_train_state(path: str | Path, state: TrainState) -> None:
    """Write ``state`` to ``path`` atomically (safetensors tensors + JSON header metadata)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {f"module.{k}": v for k, v in state.module.items()}
    if state.best_state is not None:
        tensors.update({f"best.{k}": v for k, v in state.best_state.items()})
    opt_meta: list[dict[str, Any]] = []
    for j, sd in enumerate(state.optimizers):
        t, m = flatten_optimizer(sd, f"opt{j}")
        tensors.update(t)
        opt_meta.append(m)
    tensors.update({f"rng.{k}": v for k, v in state.rng.items()})
    meta = {
        "format": CHECKPOINT_FORMAT,
        "epoch": state.epoch,
        "step": state.step,
        "rows": state.rows,
        "best_score": state.best_score,
        "best_epoch": state.best_epoch,
        "stale": state.stale,
        "train_seconds": state.train_seconds,
        "complete": state.complete,
        "stopped_early": state.stopped_early,
        "has_best": state.best_state is not None,
        "optimizers": opt_meta,
        "objective": state.objective,
        "fingerprint": state.fingerprint,
        "written_at": time.time(),
    }
    with atomic_path(path) as tmp:
        save_file(
            {k: _cpu(v) for k, v in tensors.items()},
            str(tmp),
            metadata={_META_KEY: json.dumps(meta)},
        )


def load_train_state(path: str | Path) -> TrainState:
    """Read a file written by :func:`save_train_state`.

    Raises:
        DataError: the file is unreadable, truncated, not a recforge checkpoint, or newer.
    """
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    try:
        with safe_open(str(p), framework="pt") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(
            f"{p}: unreadable checkpoint ({exc}); delete it to restart training"
        ) from None
    try:
        meta = json.loads(header[_META_KEY])
    except (KeyError, json.JSONDecodeError):
        raise DataError(f"{p}: not a recforge checkpoint (no {_META_KEY} metadata)") from None
    if int(meta.get("format", 0)) > CHECKPOINT_FORMAT:
        raise DataError(
            f"{p}: checkpoint format {meta['format']} is newer than this recforge "
            f"({CHECKPOINT_FORMAT}); upgrade recforge"
        )

    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    optimizers = [
        unflatten_optimizer(tensors, m, f"opt{j}") for j, m in enumerate(meta["optimizers"])
    ]
    return TrainState(
        epoch=int(meta["epoch"]),
        step=int(meta["step"]),
        rows=[dict(r) for r in meta["rows"]],
        best_score=meta["best_score"],
        best_epoch=int(meta["best_epoch"]),
        stale=int(meta["stale"]),
        train_seconds=float(meta["train_seconds"]),
        complete=bool(meta["complete"]),
        stopped_early=bool(meta["stopped_early"]),
        module=group("module."),
        best_state=group("best.") if meta["has_best"] else None,
        optimizers=optimizers,
        rng=group("rng."),
        objective=dict(meta["objective"]),
        fingerprint=dict(meta["fingerprint"]),
    )


class FitCheckpointer:
    """Checkpoint bookkeeping of one ``Trainer.fit`` call (file name, due times, resume check).

    Args:
        policy: the active policy.
        index: the fit's number within the run (names ``fit-NNN.safetensors``).
        print_: the fingerprint this fit must share with a checkpoint it resumes.
    """

    def __init__(self, policy: CheckpointPolicy, index: int, print_: dict[str, Any]) -> None:
        self.policy = policy
        self.path = Path(policy.directory) / f"fit-{index:03d}.safetensors"
        self.fingerprint = print_
        self._last = time.monotonic()

    def load(self) -> TrainState | None:
        """The saved state to resume from, or None (not resuming, or no file yet).

        Raises:
            ConfigError: the checkpoint belongs to a different run (config or data differ).
        """
        if not self.policy.resume or not self.path.exists():
            return None
        state = load_train_state(self.path)
        if state.fingerprint != self.fingerprint:
            diff = sorted(
                k
                for k in set(state.fingerprint) | set(self.fingerprint)
                if state.fingerprint.get(k) != self.fingerprint.get(k)
            )
            raise ConfigError(
                f"{self.path}: checkpoint was written by a different run ({', '.join(diff)} "
                "differ); resume with the same settings or delete the checkpoint directory"
            )
        return state

    def due(self, epochs_done: int) -> bool:
        """Should a checkpoint be written after ``epochs_done`` epochs?"""
        p = self.policy
        if p.every_epochs is not None and epochs_done % p.every_epochs == 0:
            return True
        return p.every_minutes is not None and time.monotonic() - self._last >= 60 * p.every_minutes

    def save(self, state: TrainState) -> None:
        """Write ``state`` atomically and restart the minutes clock."""
        save_train_state(self.path, state)
        self._last = time.monotonic()
