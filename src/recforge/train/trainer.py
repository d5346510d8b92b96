"""The one training loop every neural recforge model uses.

:class:`Trainer` owns everything that is *not* model-specific: device placement, seeding,
optimizer construction, the learning-rate schedule, batching by permuted index, gradient
clipping, validation, early stopping with best-weight restore, the per-epoch history and the
progress bar. A model family supplies three things:

1. an ``nn.Module`` (any; id-pair models map ``(user_idx (B,), item_idx (B,)) -> (B,)``),
2. its training rows as a dict of equally long tensors (``{"user", "item", "rating"}``,
   ``{"user"}`` for autoencoders over user rows, ...), kept in memory on the device,
3. an :class:`~recforge.train.losses.Objective` turning a batch (the same dict, sliced) into a
   scalar loss, and optionally a *validator* ``module -> {"valid_loss": ..., "valid_rmse": ...}``.

Example::

    trainer = Trainer(config)              # any TrainConfig (or a model config subclassing it)
    result = trainer.fit(module, {"user": u, "item": i, "rating": r}, RatingMSE(),
                         validate=rating_validator(vu, vi, vr, clip=(1, 5)))
    result.history    # epoch, train_loss, valid_loss, valid_rmse, valid_mae, lr, seconds

Structure: :meth:`Trainer.fit` is one epoch loop (batches → loss → step → validate → callbacks);
what varies lives in small parts it calls, each tested on its own (tests/train/test_loop_parts.py):
``_Epoch`` (row order, batches, one optimisation step), :class:`~recforge.train.early_stopping.
EarlyStopping`, :func:`~recforge.train.precision.autocast` (bf16), :class:`~recforge.train.
distributed.DataParallel` (single process or torchrun rank) and ``_Checkpoints`` (when to write,
who writes). tests/train/test_trainer_golden.py pins the CPU results bit for bit.

Speed: batches are slices of one ``torch.randperm`` per epoch applied to in-memory tensors (no
DataLoader, no per-row Python); the loss is accumulated on the device and synchronised once per
epoch; validation runs under ``torch.no_grad()`` in chunks of ``eval_batch_size`` rows.

Determinism: the permutation comes from a ``torch.Generator`` seeded with ``config.seed``, and the
loop runs inside ``torch.random.fork_rng`` seeded with the same value, so dropout draws are
reproducible without disturbing the caller's global RNG. On CPU two runs with the same seed give
bit-identical weights.

Checkpoints and data parallelism are switched on by the caller's
:func:`~recforge.train.checkpoint.training_context`, never by the model:

* with a checkpoint policy, the state of the loop (weights, optimizers, RNG states, step,
  history, early stopping) is written at epoch ends and a resumed fit continues bit-identically
  (:mod:`recforge.train.checkpoint`);
* with a :class:`~recforge.train.distributed.DistInfo` (under torchrun), the loss runs inside
  ``DistributedDataParallel``, each rank takes its ``DistributedSampler``-style shard of the rows
  every epoch, ``batch_size`` is the global batch, every rank validates the same data and rank 0's
  early-stopping/checkpoint decision is broadcast (:mod:`recforge.train.distributed`). Dropout
  and negative sampling are reseeded per (epoch, rank) there, so that ranks draw independently.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.errors import ConfigError, DataError, ModelFitError
from recforge.threads import capped
from recforge.threads import threads as threads  # re-exported: recforge.train.threads
from recforge.train.checkpoint import (
    FitCheckpointer,
    TrainState,
    current_context,
    fingerprint,
    load_optimizer_state,
)
from recforge.train.distributed import DataParallel, DistInfo
from recforge.train.early_stopping import EarlyStopping
from recforge.train.losses import Batch, Objective
from recforge.train.precision import autocast
from recforge.train.schedules import Schedule

#: ``module -> {metric name: value}``; called under ``eval()`` and ``torch.no_grad()``.
Validator = Callable[[nn.Module], Mapping[str, float]]


class FusedEpoch(Protocol):
    """A compiled replacement of one epoch's batch loop (e.g. :mod:`recforge.train.fused_mf`)."""

    def run(self, perm: torch.Tensor, batch_size: int, lrs: npt.NDArray[np.float64]) -> float:
        """Train on ``perm`` in batches at rates ``lrs``; the sum of batch loss × batch rows."""


#: ``(module, optimizers, objective, tensors, config) -> FusedEpoch | None`` (None: torch loop).
FusedFactory = Callable[
    [nn.Module, list[torch.optim.Optimizer], Objective, Mapping[str, torch.Tensor], TrainConfig],
    FusedEpoch | None,
]


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; other strings are passed to ``torch.device``."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(
            f"device: {spec!r} is not a torch device; use auto, cpu or cuda[:N]"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {spec!r} requested but CUDA is not available; use auto or cpu")
    return device


@contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run a block with torch's global RNG seeded to ``seed``; the caller's state is restored."""
    cuda = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


#: ``fn(epoch, history_row)`` called after each epoch's validation (see :func:`epoch_callback`).
EpochCallback = Callable[[int, Mapping[str, float]], None]
_EPOCH_CALLBACK: ContextVar[EpochCallback | None] = ContextVar("epoch_callback", default=None)


@contextmanager
def epoch_callback(fn: EpochCallback) -> Iterator[None]:
    """Within the block, every :meth:`Trainer.fit` calls ``fn(epoch, row)`` after each epoch.

    ``row`` is the epoch's history row (validation metrics included). Used by tuning to report
    learning curves and prune trials: an exception ``fn`` raises (e.g. ``optuna.TrialPruned``)
    propagates out of ``Trainer.fit`` and the model's ``fit``. A context variable, so models
    need no extra argument and concurrent fits in other threads/tasks are unaffected.
    """
    token = _EPOCH_CALLBACK.set(fn)
    try:
        yield
    finally:
        _EPOCH_CALLBACK.reset(token)


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        history: one row per epoch: ``epoch`` (1-based), ``train_loss``, ``valid_loss`` (NaN
            without validation), any other validator metrics, ``lr`` (rate of the epoch's last
            batch) and ``seconds`` (wall time of the epoch, validation included).
        best_epoch: epoch whose weights the module holds at the end (the last one unless early
            stopping restored an earlier one).
        best_score: value of ``config.monitor`` at ``best_epoch`` (None without validation).
        stopped_early: True when patience ran out before ``config.epochs``.
        train_seconds: time spent in training steps only (no validation).
        samples_per_second: training rows processed per second of ``train_seconds``.
    """

    history: pd.DataFrame
    best_epoch: int
    best_score: float | None
    stopped_early: bool
    train_seconds: float
    samples_per_second: float


def build_optimizers(module: nn.Module, config: TrainConfig) -> list[torch.optim.Optimizer]:
    """Optimizer(s) for ``module`` as configured.

    ``sparse_adam`` switches every ``nn.Embedding`` to sparse gradients and returns two
    optimizers: ``SparseAdam`` for the embedding tables and ``Adam`` for everything else (SparseAdam
    accepts only sparse gradients). Weight decay is L2 for adam/rmsprop/sgd/adagrad and decoupled
    for adamw.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the module has no trainable parameters")
    lr, wd = config.lr, config.weight_decay
    opt = config.optimizer
    if opt == "adam":
        return [torch.optim.Adam(params, lr=lr, betas=config.betas, weight_decay=wd)]
    if opt == "adamw":
        return [torch.optim.AdamW(params, lr=lr, betas=config.betas, weight_decay=wd)]
    if opt == "rmsprop":
        return [torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=wd)]
    if opt == "sgd":
        return [torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)]
    if opt == "adagrad":
        return [torch.optim.Adagrad(params, lr=lr, weight_decay=wd)]
    if opt == "sparse_adam":
        sparse: list[torch.Tensor] = []
        for m in module.modules():
            if isinstance(m, nn.Embedding) and m.weight.requires_grad:
                m.sparse = True
                sparse.append(m.weight)
        if not sparse:
            raise ConfigError("optimizer 'sparse_adam' needs nn.Embedding layers; use adam")
        ids = {id(p) for p in sparse}
        dense = [p for p in params if id(p) not in ids]
        out: list[torch.optim.Optimizer] = [
            torch.optim.SparseAdam(sparse, lr=lr, betas=config.betas)
        ]
        if dense:
            out.append(torch.optim.Adam(dense, lr=lr, betas=config.betas))
        return out
    raise ConfigError(f"optimizer: unknown {opt!r}")


class Trainer:
    """Runs epochs of mini-batch gradient descent for any ``nn.Module`` and :class:`Objective`.

    Args:
        config: training hyper-parameters (a model config that subclasses TrainConfig works).
        device: overrides ``config.device`` (a string or ``torch.device``).

    Attributes:
        device: the resolved torch device the module and data are moved to.
    """

    def __init__(self, config: TrainConfig, *, device: str | torch.device | None = None) -> None:
        self.config = config
        if isinstance(device, torch.device):
            self.device = device
        else:
            self.device = resolve_device(device if device is not None else config.device)

    # ------------------------------------------------------------------ public
    def fit(
        self,
        module: nn.Module,
        data: Mapping[str, torch.Tensor],
        objective: Objective,
        *,
        validate: Validator | None = None,
        description: str = "training",
        fused: FusedFactory | None = None,
    ) -> TrainResult:
        """Train ``module`` in place on ``data`` and return the history.

        The loop is: for each epoch, batches → loss → step (:class:`_Epoch`), then validate,
        then the callbacks (progress, :func:`epoch_callback`, :class:`EarlyStopping`, the
        checkpoint); :class:`DataParallel` and :func:`~recforge.train.precision.autocast` hide
        what differs under torchrun and bf16.

        Args:
            module: the network; moved to :attr:`device`.
            data: training rows, a dict of tensors sharing their first dimension; each batch is
                the same dict sliced by a random index set (``batch_size`` rows).
            objective: turns a batch into the scalar loss.
            validate: optional ``module -> metrics`` (e.g. :func:`rating_validator`); required
                for early stopping (``config.patience``).
            description: label of the progress bar.
            fused: optional factory of a compiled epoch (:class:`FusedEpoch`) used instead of
                the per-batch torch steps when it returns one (never under torchrun).

        Raises:
            DataError: ``data`` is empty or its tensors differ in length.
            ConfigError: ``config.monitor`` is not among the validator's metrics.
            ModelFitError: the training loss became NaN or infinite.
        """
        runner, early, ckpt = self._build(module, data, objective, validate, fused)
        resumed = ckpt.load()
        if resumed is not None and resumed.complete:
            return self._finished(module, resumed, runner.n_rows)

        cfg, loop = self.config, _LoopState()
        steps_per_epoch = runner.steps_per_epoch
        with (
            # None: keep the count the model's fit chose (recforge.threads' default or a hint).
            threads(cfg.num_threads) if cfg.num_threads is not None else contextlib.nullcontext(),
            # A fused epoch is one compiled call; torch's own ops around it (the epoch's
            # permutation, version bumps) touch ~n_rows values: threads only for large logs.
            capped(runner.n_rows * 1e-5) if runner.fused is not None else contextlib.nullcontext(),
            seeded(cfg.seed, self.device),
            _progress(
                runner.parallel.writes and cfg.verbose, cfg.epochs * steps_per_epoch, description
            ) as advance,
        ):
            if resumed is not None:
                # Inside ``seeded``: the restored RNG states replace the freshly seeded ones.
                loop = _resume(resumed, runner, early, self.device)
                advance(loop.first_epoch * steps_per_epoch)
            for epoch in range(loop.first_epoch, cfg.epochs):
                t0 = time.perf_counter()
                train_loss, lr = runner.run(epoch, loop, advance)
                loop.train_seconds += time.perf_counter() - t0
                _check_finite(train_loss, epoch, cfg.lr)
                row = self._epoch_row(epoch, train_loss, lr, t0, module, validate)
                loop.rows.append(row)
                advance(0, _describe(description, row, epoch + 1, cfg.epochs))
                if (on_epoch := _EPOCH_CALLBACK.get()) is not None:
                    on_epoch(epoch + 1, row)
                stop = early is not None and early.update(epoch + 1, row, module)
                stop, due = runner.parallel.agree(stop, ckpt.due(epoch + 1, cfg.epochs))
                if stop:
                    loop.stopped = epoch + 1 < cfg.epochs
                    break
                if due and ckpt.writes:
                    ckpt.save(loop.state(epoch + 1, early, runner, self.device, ckpt))
        return self._result(runner, early, loop, validate, ckpt)

    def _build(
        self,
        module: nn.Module,
        data: Mapping[str, torch.Tensor],
        objective: Objective,
        validate: Validator | None,
        fused: FusedFactory | None = None,
    ) -> tuple[_Epoch, EarlyStopping | None, _Checkpoints]:
        """Move everything to the device; build the epoch, early-stopping and checkpoint parts."""
        cfg = self.config
        ctx = current_context()
        parallel = DataParallel(ctx.distributed if ctx is not None else None, cfg.seed)
        if parallel.info is not None:
            self.device = parallel.info.device  # torchrun decides: cuda:LOCAL_RANK or cpu
        tensors = self._prepare(data)
        n = next(iter(tensors.values())).shape[0]
        # batch_size is the global batch: under torchrun each rank takes its share (module doc).
        batch_size = parallel.local_batch(min(cfg.batch_size, n))
        steps_per_epoch = math.ceil(parallel.rows_per_epoch(n) / batch_size)
        module.to(self.device)
        objective.to(self.device)
        optimizers = build_optimizers(module, cfg)
        runner = _Epoch(
            module, objective, optimizers, Schedule.from_config(cfg, steps_per_epoch), tensors,
            batch_size, steps_per_epoch, parallel, self.device, cfg,
            compute_loss=_loss_function(module, objective, parallel.info),
            generator=torch.Generator().manual_seed(cfg.seed),
        )  # fmt: skip
        if fused is not None and parallel.info is None:
            runner.fused = fused(module, optimizers, objective, tensors, cfg)
        early = self._early_stopping(validate)
        ckpt = _Checkpoints(_checkpointer(cfg, tensors, steps_per_epoch, parallel.info), parallel)
        return runner, early, ckpt

    def _early_stopping(self, validate: Validator | None) -> EarlyStopping | None:
        """The fit's early stopping, or None (no patience, or no validation data to watch)."""
        if self.config.patience is None:
            return None
        if validate is None:
            warnings.warn(
                "patience is set but no validation data was given; training all epochs",
                stacklevel=4,  # the caller of fit (fit -> _build -> here)
            )
            return None
        return EarlyStopping.from_config(self.config)

    def _epoch_row(
        self,
        epoch: int,
        train_loss: float,
        lr: float,
        t0: float,
        module: nn.Module,
        validate: Validator | None,
    ) -> dict[str, float]:
        """The epoch's history row, validation metrics included (``seconds`` counts them)."""
        row: dict[str, float] = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "valid_loss": math.nan,
        }
        if validate is not None:
            row.update(self._validate(module, validate))
        row["lr"] = lr
        row["seconds"] = time.perf_counter() - t0
        return row

    def _result(
        self,
        epoch_runner: _Epoch,
        early: EarlyStopping | None,
        loop: _LoopState,
        validate: Validator | None,
        ckpt: _Checkpoints,
    ) -> TrainResult:
        """Hand the module back for inference (best weights restored) and summarise the fit."""
        module = epoch_runner.module
        for opt in epoch_runner.optimizers:  # free gradient memory
            opt.zero_grad(set_to_none=True)
        if early is not None and early.restore(module):
            loop.best_epoch, loop.best_score = early.best_epoch, early.best_score
        else:
            loop.best_epoch = len(loop.rows)
            loop.best_score = early.best_score if early is not None else None
            if validate is not None and self.config.monitor in loop.rows[-1]:
                loop.best_score = float(loop.rows[-1][self.config.monitor])
        module.eval()
        if ckpt.writes:
            # The final weights, so that a crash after training resumes without training again.
            ckpt.save(loop.final_state(early, module, ckpt))
        secs = loop.train_seconds
        return TrainResult(
            history=_history_frame(loop.rows),
            best_epoch=loop.best_epoch,
            best_score=loop.best_score,
            stopped_early=loop.stopped,
            train_seconds=secs,
            samples_per_second=_rate(epoch_runner.n_rows * len(loop.rows), secs),
        )

    def _finished(self, module: nn.Module, state: TrainState, n: int) -> TrainResult:
        """The result of a fit whose completed checkpoint was found: load it, train nothing."""
        module.load_state_dict(state.module)
        module.eval()
        secs = state.train_seconds
        return TrainResult(
            history=_history_frame(state.rows),
            best_epoch=state.best_epoch,
            best_score=state.best_score,
            stopped_early=state.stopped_early,
            train_seconds=secs,
            samples_per_second=_rate(n * len(state.rows), secs),
        )

    # ------------------------------------------------------------------ helpers
    def _prepare(self, data: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not data:
            raise DataError("trainer: no training tensors given")
        lengths = {k: int(v.shape[0]) for k, v in data.items()}
        if len(set(lengths.values())) != 1:
            raise DataError(f"trainer: training tensors differ in length: {lengths}")
        if next(iter(lengths.values())) == 0:
            raise DataError("trainer: the training data is empty")
        return {k: v.to(self.device) for k, v in data.items()}

    def _validate(self, module: nn.Module, validate: Validator) -> dict[str, float]:
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                metrics = {k: float(v) for k, v in validate(module).items()}
        finally:
            module.train(was_training)
        return metrics


def _rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else math.inf


def _check_finite(train_loss: float, epoch: int, lr: float) -> None:
    if not math.isfinite(train_loss):
        raise ModelFitError(
            f"training diverged at epoch {epoch + 1} (loss {train_loss}); "
            f"lower lr (now {lr}) or set grad_clip"
        )


@dataclass
class _LoopState:
    """The bookkeeping of one fit that is not early stopping's: what a checkpoint adds to it."""

    rows: list[dict[str, float]] = field(default_factory=list)
    step: int = 0
    first_epoch: int = 0
    train_seconds: float = 0.0
    stopped: bool = False
    best_score: float | None = None
    best_epoch: int = 0

    def state(
        self,
        epoch: int,
        early: EarlyStopping | None,
        runner: _Epoch,
        device: torch.device,
        ckpt: _Checkpoints,
    ) -> TrainState:
        """A mid-training checkpoint after ``epoch`` epochs: enough to continue bit-identically."""
        return TrainState(
            epoch, self.step, self.rows,
            early.best_score if early is not None else None,
            early.best_epoch if early is not None else 0,
            early.stale if early is not None else 0,
            self.train_seconds, complete=False, stopped_early=False,
            module=dict(runner.module.state_dict()),
            best_state=early.best_state if early is not None else None,
            optimizers=[opt.state_dict() for opt in runner.optimizers],
            rng=_rng_states(runner.generator, device), objective=runner.objective.rng_state(),
            fingerprint=ckpt.fingerprint,
        )  # fmt: skip

    def final_state(
        self, early: EarlyStopping | None, module: nn.Module, ckpt: _Checkpoints
    ) -> TrainState:
        """The checkpoint of a finished fit: its final weights and result, nothing to resume."""
        return TrainState(
            len(self.rows), self.step, self.rows, self.best_score, self.best_epoch,
            early.stale if early is not None else 0, self.train_seconds,
            complete=True, stopped_early=self.stopped, module=dict(module.state_dict()),
            best_state=None, optimizers=[], rng={}, objective={}, fingerprint=ckpt.fingerprint,
        )  # fmt: skip


@dataclass
class _Epoch:
    """One epoch of mini-batch training: order the rows, then batch → loss → backward → step."""

    module: nn.Module
    objective: Objective
    optimizers: list[torch.optim.Optimizer]
    schedule: Schedule
    tensors: Mapping[str, torch.Tensor]
    batch_size: int
    steps_per_epoch: int
    parallel: DataParallel
    device: torch.device
    config: TrainConfig
    compute_loss: Callable[[Batch], torch.Tensor]
    generator: torch.Generator
    params: list[torch.Tensor] = field(init=False)
    #: A compiled epoch that replaces the batch loop (see :class:`FusedEpoch`), or None.
    fused: FusedEpoch | None = None

    def __post_init__(self) -> None:
        self.params = [p for p in self.module.parameters() if p.requires_grad]

    @property
    def n_rows(self) -> int:
        """Training rows (all of them, not this rank's shard)."""
        return int(next(iter(self.tensors.values())).shape[0])

    def run(
        self, epoch: int, loop: _LoopState, advance: Callable[..., None]
    ) -> tuple[float, float]:
        """Train one epoch (advancing ``loop.step``); returns its mean loss and last rate."""
        self.objective.start_epoch(epoch)
        self.module.train()
        perm = self.parallel.epoch_order(
            self.n_rows, epoch, self.generator, self.device, self.objective.reseed
        )
        if self.fused is not None:
            lrs = self.schedule.rates(loop.step, self.steps_per_epoch)
            fused_total = self.fused.run(perm, self.batch_size, lrs)
            loop.step += self.steps_per_epoch
            lr = self.schedule.apply(self.optimizers, loop.step - 1)
            advance(self.steps_per_epoch)
            return fused_total / len(perm), lr
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        lr = self.schedule(loop.step)
        for b in range(self.steps_per_epoch):
            idx = perm[b * self.batch_size : (b + 1) * self.batch_size]
            lr = self.schedule.apply(self.optimizers, loop.step)
            loss = self.step({k: v[idx] for k, v in self.tensors.items()})
            total += loss.detach() * len(idx)
            loop.step += 1
            advance(1)
        return self.parallel.mean_loss(total, len(perm)), lr

    def step(self, batch: Batch) -> torch.Tensor:
        """One optimisation step on ``batch``; returns its loss."""
        with autocast(self.device, self.config.precision):
            loss = self.compute_loss(batch)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        for opt in self.optimizers:
            opt.step()
        return loss


@dataclass
class _Checkpoints:
    """A fit's checkpointing: nothing without a policy, and only rank 0 writes."""

    inner: FitCheckpointer | None
    parallel: DataParallel

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.inner.fingerprint if self.inner is not None else {}

    def load(self) -> TrainState | None:
        """The checkpoint to resume from, if the policy asks for one."""
        return self.inner.load() if self.inner is not None else None

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether to checkpoint after ``epoch`` (never after the last: the final save follows)."""
        return self.inner is not None and epoch < epochs and self.inner.due(epoch)

    @property
    def writes(self) -> bool:
        """Whether this process writes checkpoints (a policy is set and it is rank 0)."""
        return self.inner is not None and self.parallel.writes

    def save(self, state: TrainState) -> None:
        if self.inner is not None and self.parallel.writes:
            self.inner.save(state)


def _resume(
    state: TrainState, runner: _Epoch, early: EarlyStopping | None, device: torch.device
) -> _LoopState:
    """Load a mid-training checkpoint into the fresh training objects; the loop state it held."""
    _restore(runner.module, runner.optimizers, runner.objective, runner.generator, state, device)
    if early is not None:
        early.best_score, early.best_epoch = state.best_score, state.best_epoch
        early.stale, early.best_state = state.stale, state.best_state
    return _LoopState(
        rows=state.rows, step=state.step, first_epoch=state.epoch, train_seconds=state.train_seconds
    )


def _checkpointer(
    config: TrainConfig,
    tensors: Mapping[str, torch.Tensor],
    steps_per_epoch: int,
    dinfo: DistInfo | None,
) -> FitCheckpointer | None:
    """The checkpoint bookkeeping of this fit when a :func:`training_context` asks for it."""
    ctx = current_context()
    if ctx is None or ctx.checkpoints is None:
        return None
    index = ctx.next_fit()
    world = dinfo.world_size if dinfo is not None else 1
    return FitCheckpointer(
        ctx.checkpoints, index, fingerprint(config, tensors, steps_per_epoch, world)
    )


class _ObjectiveModule(nn.Module):
    """``batch -> objective(module, batch)``: the whole loss as one ``forward``.

    DDP synchronises gradients of what runs inside its wrapped module's ``forward``. Objectives
    call more than ``module.forward`` (Mult-VAE's ``parts``, the towers' ``user_vectors``,
    embedding L2 through submodules) and check ``isinstance`` on the bare network, so DDP wraps
    this module and the objective still sees the network itself.
    """

    def __init__(self, module: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.module = module
        self.objective = objective  # not an nn.Module: a plain attribute

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.objective(self.module, batch)


def _loss_function(
    module: nn.Module, objective: Objective, dinfo: DistInfo | None
) -> Callable[[Batch], torch.Tensor]:
    """``batch -> loss``: the objective itself, or its DDP-wrapped form under torchrun."""
    if dinfo is None:
        return lambda batch: objective(module, batch)
    from torch.nn.parallel import DistributedDataParallel

    if any(isinstance(m, nn.Embedding) and m.sparse for m in module.modules()):
        # Measured (docs/benchmarks/ddp.md): gloo all-gathers sparse gradients, slower than the
        # dense all-reduce here, and one sparse DDP run died of heap corruption (gloo suspected).
        warnings.warn(
            "sparse embedding gradients under --distributed go through gloo's sparse all-reduce "
            "(slower here, and one crash observed); prefer a dense optimizer such as adamw",
            stacklevel=4,  # the caller of fit (fit -> _build -> here)
        )
    # static_graph: every step uses the same parameters, but some objectives leave a few out
    # (the two-tower softmax never touches the rating head); DDP learns that set in the first
    # step instead of waiting for their gradients or re-walking the graph every step.
    ddp = DistributedDataParallel(
        _ObjectiveModule(module, objective),
        device_ids=[dinfo.device.index] if dinfo.device.type == "cuda" else None,
        static_graph=True,
    )

    def loss(batch: Batch) -> torch.Tensor:
        out: torch.Tensor = ddp(batch)
        return out

    return loss


def _rng_states(gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    out = {"torch": torch.get_rng_state(), "perm": gen.get_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def _restore(
    module: nn.Module,
    optimizers: list[torch.optim.Optimizer],
    objective: Objective,
    gen: torch.Generator,
    state: TrainState,
    device: torch.device,
) -> None:
    """Load a mid-training checkpoint into freshly built training objects."""
    module.load_state_dict(state.module)
    if len(state.optimizers) != len(optimizers):
        raise DataError(
            f"checkpoint has {len(state.optimizers)} optimizer states, the run builds "
            f"{len(optimizers)}; delete the checkpoint directory to restart"
        )
    for opt, sd in zip(optimizers, state.optimizers, strict=True):
        load_optimizer_state(opt, sd)
    torch.set_rng_state(state.rng["torch"])
    gen.set_state(state.rng["perm"])
    if device.type == "cuda" and "cuda" in state.rng:
        torch.cuda.set_rng_state(state.rng["cuda"], device)
    objective.set_rng_state(state.objective)


def _history_frame(rows: list[dict[str, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    first = ["epoch", "train_loss", "valid_loss"]
    last = ["lr", "seconds"]
    middle = [c for c in df.columns if c not in first and c not in last]
    df = df[first + middle + last]
    df["epoch"] = df["epoch"].astype(np.int64)
    return df


def _describe(description: str, row: Mapping[str, float], epoch: int, epochs: int) -> str:
    parts = [f"{description} {epoch}/{epochs}", f"loss {row['train_loss']:.4f}"]
    if not math.isnan(row.get("valid_loss", math.nan)):
        parts.append(f"valid {row['valid_loss']:.4f}")
    return " · ".join(parts)


@contextmanager
def _progress(verbose: bool, total: int, description: str) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n, description=None)``: a rich bar when stderr is a terminal; off one, in
    the CLI, one plain line per epoch (the epoch-end ``description``; see :mod:`recforge.progress`).
    """
    from recforge.progress import line, style

    mode = style(verbose)
    if mode == "lines":
        yield lambda n, desc=None: line(desc) if desc is not None else None
        return
    if mode == "off":
        yield lambda n, desc=None: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int, desc: str | None = None) -> None:
            if desc is not None:
                bar.update(task, advance=n, description=desc)
            elif n:
                bar.advance(task, n)

        yield advance


# ====================================================================== evaluation helpers
def predict_pairs(
    module: nn.Module,
    user_idx: torch.Tensor,
    item_idx: torch.Tensor,
    *,
    batch_size: int = 65_536,
) -> torch.Tensor:
    """``module(user, item)`` for many pairs in chunks under ``no_grad`` (caller sets eval mode)."""
    device = next(module.parameters()).device
    out = []
    with torch.no_grad():
        for s in range(0, len(user_idx), batch_size):
            u = user_idx[s : s + batch_size].to(device)
            i = item_idx[s : s + batch_size].to(device)
            out.append(module(u, i).float())
    if not out:
        return torch.zeros(0)
    return torch.cat(out)


def rating_validator(
    user_idx: torch.Tensor,
    item_idx: torch.Tensor,
    rating: torch.Tensor,
    *,
    clip: tuple[float, float] | None = None,
    batch_size: int = 65_536,
) -> Validator:
    """Explicit-rating validator: ``valid_loss`` (unclipped MSE), ``valid_rmse``, ``valid_mae``.

    RMSE and MAE use predictions clipped to ``clip`` (the rating scale), as reported at test time.
    """
    target = rating.double()

    def validate(module: nn.Module) -> dict[str, float]:
        pred = predict_pairs(module, user_idx, item_idx, batch_size=batch_size).double().cpu()
        err = pred - target
        clipped = pred.clamp(clip[0], clip[1]) if clip is not None else pred
        cerr = clipped - target
        return {
            "valid_loss": float(err.pow(2).mean()),
            "valid_rmse": float(cerr.pow(2).mean().sqrt()),
            "valid_mae": float(cerr.abs().mean()),
        }

    return validate


def objective_validator(
    objective: Objective, data: Mapping[str, torch.Tensor], *, batch_size: int = 65_536
) -> Validator:
    """Validator reporting ``valid_loss``: the objective's mean loss over ``data`` in chunks.

    For sampled objectives, put fixed negatives in ``data["neg"]`` (see
    :func:`~recforge.train.losses.fixed_negatives`) so the number is comparable across epochs.
    """
    n = next(iter(data.values())).shape[0]

    def validate(module: nn.Module) -> dict[str, float]:
        device = next(module.parameters()).device
        total = 0.0
        for s in range(0, n, batch_size):
            batch: Batch = {k: v[s : s + batch_size].to(device) for k, v in data.items()}
            rows = min(batch_size, n - s)
            total += float(objective(module, batch)) * rows
        return {"valid_loss": total / max(n, 1)}

    return validate
