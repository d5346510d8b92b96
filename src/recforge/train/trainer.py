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

import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.errors import ConfigError, DataError, ModelFitError
from recforge.train.checkpoint import (
    FitCheckpointer,
    TrainState,
    current_context,
    fingerprint,
    load_optimizer_state,
)
from recforge.train.distributed import (
    DistInfo,
    all_reduce_sum,
    broadcast_flags,
    rank_seed,
    shard_indices,
    shard_size,
)
from recforge.train.losses import Batch, Objective
from recforge.train.schedules import Schedule

#: ``module -> {metric name: value}``; called under ``eval()`` and ``torch.no_grad()``.
Validator = Callable[[nn.Module], Mapping[str, float]]


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


@contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)`` (None: unchanged), restoring the old value.

    Small embedding models are often faster on one thread, and far faster when the machine is
    oversubscribed (OpenMP workers spin-wait for busy cores).
    """
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


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
    ) -> TrainResult:
        """Train ``module`` in place on ``data`` and return the history.

        Args:
            module: the network; moved to :attr:`device`.
            data: training rows, a dict of tensors sharing their first dimension; each batch is
                the same dict sliced by a random index set (``batch_size`` rows).
            objective: turns a batch into the scalar loss.
            validate: optional ``module -> metrics`` (e.g. :func:`rating_validator`); required
                for early stopping (``config.patience``).
            description: label of the progress bar.

        Raises:
            DataError: ``data`` is empty or its tensors differ in length.
            ConfigError: ``config.monitor`` is not among the validator's metrics.
            ModelFitError: the training loss became NaN or infinite.
        """
        cfg = self.config
        ctx = current_context()
        dinfo: DistInfo | None = ctx.distributed if ctx is not None else None
        if dinfo is not None:
            self.device = dinfo.device  # torchrun decides: cuda:LOCAL_RANK or cpu
        tensors = self._prepare(data)
        n = next(iter(tensors.values())).shape[0]
        batch_size = min(cfg.batch_size, n)
        rows_per_epoch = n
        if dinfo is not None:
            # batch_size is the global batch: each rank takes its share (module doc).
            rows_per_epoch = shard_size(n, dinfo.world_size)
            batch_size = math.ceil(batch_size / dinfo.world_size)
        steps_per_epoch = math.ceil(rows_per_epoch / batch_size)
        schedule = Schedule.from_config(cfg, steps_per_epoch)
        module.to(self.device)
        objective.to(self.device)
        optimizers = build_optimizers(module, cfg)
        params = [p for p in module.parameters() if p.requires_grad]
        compute_loss = _loss_function(module, objective, dinfo)
        early = cfg.patience is not None
        if early and validate is None:
            warnings.warn(
                "patience is set but no validation data was given; training all epochs",
                stacklevel=2,
            )
            early = False
        ckpt = _checkpointer(cfg, tensors, steps_per_epoch, dinfo)
        writes = dinfo is None or dinfo.is_main  # only rank 0 writes checkpoints
        resumed = ckpt.load() if ckpt is not None else None
        if resumed is not None and resumed.complete:
            return self._finished(module, resumed, n)

        rows: list[dict[str, float]] = []
        best_score: float | None = None
        best_epoch = 0
        best_state: dict[str, torch.Tensor] | None = None
        stale = 0
        stopped = False
        train_seconds = 0.0
        gen = torch.Generator().manual_seed(cfg.seed)
        step = 0
        first_epoch = 0
        with (
            threads(cfg.num_threads),
            seeded(cfg.seed, self.device),
            _progress(cfg.verbose and writes, cfg.epochs * steps_per_epoch, description) as advance,
        ):
            if resumed is not None:
                # Inside ``seeded``: the restored RNG states replace the freshly seeded ones.
                _restore(module, optimizers, objective, gen, resumed, self.device)
                rows, step, first_epoch = resumed.rows, resumed.step, resumed.epoch
                best_score, best_epoch, stale = (
                    resumed.best_score,
                    resumed.best_epoch,
                    resumed.stale,
                )
                best_state, train_seconds = resumed.best_state, resumed.train_seconds
                advance(first_epoch * steps_per_epoch)
            for epoch in range(first_epoch, cfg.epochs):
                t0 = time.perf_counter()
                objective.start_epoch(epoch)
                module.train()
                if dinfo is None:
                    perm = torch.randperm(n, generator=gen).to(self.device)
                else:
                    perm = shard_indices(n, cfg.seed, epoch, dinfo.rank, dinfo.world_size)
                    perm = perm.to(self.device)
                    rank_rng = rank_seed(cfg.seed, epoch, dinfo.rank)
                    torch.manual_seed(rank_rng)  # dropout draws differ across ranks
                    objective.reseed(rank_rng)  # and so do sampled negatives
                total = torch.zeros((), dtype=torch.float64, device=self.device)
                lr = schedule(step)
                bf16 = cfg.precision == "bf16"
                for b in range(steps_per_epoch):
                    idx = perm[b * batch_size : (b + 1) * batch_size]
                    batch = {k: v[idx] for k, v in tensors.items()}
                    lr = schedule.apply(optimizers, step)
                    # bf16 autocast of the forward pass only (weights and optimizer stay fp32);
                    # disabled, the context is a no-op and fp32 results are unchanged.
                    with torch.autocast(self.device.type, torch.bfloat16, enabled=bf16):
                        loss = compute_loss(batch)
                    for opt in optimizers:
                        opt.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    if cfg.grad_clip is not None:
                        nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    for opt in optimizers:
                        opt.step()
                    total += loss.detach() * len(idx)
                    step += 1
                    advance(1)
                if dinfo is None:
                    train_loss = float(total) / n
                else:
                    sums = torch.stack([total, total.new_tensor(float(len(perm)))])
                    sums = all_reduce_sum(sums)
                    train_loss = float(sums[0] / sums[1])
                t_train = time.perf_counter()
                train_seconds += t_train - t0
                if not math.isfinite(train_loss):
                    raise ModelFitError(
                        f"training diverged at epoch {epoch + 1} (loss {train_loss}); "
                        f"lower lr (now {cfg.lr}) or set grad_clip"
                    )
                row: dict[str, float] = {
                    "epoch": epoch + 1,
                    "train_loss": train_loss,
                    "valid_loss": math.nan,
                }
                if validate is not None:
                    row.update(self._validate(module, validate))
                row["lr"] = lr
                row["seconds"] = time.perf_counter() - t0
                rows.append(row)
                advance(0, _describe(description, row, epoch + 1, cfg.epochs))
                if (on_epoch := _EPOCH_CALLBACK.get()) is not None:
                    on_epoch(epoch + 1, row)

                stop_now = False
                if early:
                    score = self._monitor(row)
                    if best_score is None or self._better(score, best_score):
                        best_score, best_epoch, stale = score, epoch + 1, 0
                        best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                    else:
                        stale += 1
                        assert cfg.patience is not None
                        stop_now = stale >= cfg.patience
                due = ckpt is not None and epoch + 1 < cfg.epochs and ckpt.due(epoch + 1)
                if dinfo is not None:  # every rank validated the same data; rank 0 decides
                    stop_now, due = map(bool, broadcast_flags([stop_now, due], dinfo))
                if stop_now:
                    stopped = epoch + 1 < cfg.epochs
                    break
                if ckpt is not None and due and writes:
                    snap = TrainState(
                        epoch + 1, step, rows, best_score, best_epoch, stale, train_seconds,
                        complete=False, stopped_early=False, module=dict(module.state_dict()),
                        best_state=best_state,
                        optimizers=[opt.state_dict() for opt in optimizers],
                        rng=_rng_states(gen, self.device), objective=objective.rng_state(),
                        fingerprint=ckpt.fingerprint,
                    )  # fmt: skip
                    ckpt.save(snap)
        for opt in optimizers:  # free gradient memory; the module is handed back for inference
            opt.zero_grad(set_to_none=True)
        if early and best_state is not None:
            module.load_state_dict(best_state)
        else:
            best_epoch = len(rows)
            if validate is not None and cfg.monitor in rows[-1]:
                best_score = float(rows[-1][cfg.monitor])
        module.eval()
        if ckpt is not None and writes:
            # The final weights, so that a crash after training resumes without training again.
            final = TrainState(
                len(rows), step, rows, best_score, best_epoch, stale, train_seconds,
                complete=True, stopped_early=stopped, module=dict(module.state_dict()),
                best_state=None, optimizers=[], rng={}, objective={},
                fingerprint=ckpt.fingerprint,
            )  # fmt: skip
            ckpt.save(final)
        history = _history_frame(rows)
        return TrainResult(
            history=history,
            best_epoch=best_epoch,
            best_score=best_score,
            stopped_early=stopped,
            train_seconds=train_seconds,
            samples_per_second=(n * len(rows)) / train_seconds if train_seconds > 0 else math.inf,
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
            samples_per_second=(n * len(state.rows)) / secs if secs > 0 else math.inf,
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

    def _monitor(self, row: Mapping[str, float]) -> float:
        name = self.config.monitor
        if name not in row:
            raise ConfigError(
                f"monitor: {name!r} is not a history column ({sorted(row)}); set monitor to one"
            )
        value = float(row[name])
        if math.isnan(value):
            raise ModelFitError(f"monitor {name!r} is NaN; check the validation data")
        return value

    def _better(self, score: float, best: float) -> bool:
        delta = self.config.min_delta
        if self.config.monitor_mode == "min":
            return score < best - delta
        return score > best + delta


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
            stacklevel=3,
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
