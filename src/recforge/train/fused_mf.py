"""A fused CPU epoch for factor models (``mf``, ``biased_mf``): the Trainer's loop without torch.

Why: a biased_mf epoch on ML-100k is 79 batches of 1,024 ratings; per batch torch spends far more
time dispatching (autograd graph, embedding backward into a dense table, ten optimizer ops) than
computing, so recforge's fit was 4-7x slower than Surprise's Cython SGD, and mf with BPR 3-6x
slower than implicit (docs/benchmarks/speed.md). The fused epoch runs the same algorithm in one
compiled call per epoch (:mod:`recforge.train._mf_kernels`, numba):

* the same rows in the same order (the Trainer's ``torch.randperm`` with its seeded generator),
  the same negatives (the objective's :class:`~recforge.train.NegativeSampler`, drawn for the
  epoch in batch order: for the uniform sampler the very same draws),
* the same loss (MSE through the optional scaled sigmoid, sampled BCE or BPR, with the batch L2
  ``reg`` of :func:`~recforge.train.losses.embedding_l2`), the same schedule,
* torch's plain SGD (no momentum or weight decay; MSE only): each batch's rows stepped by their
  gradient and nothing else touched (``funk_svd``: one rating a batch, Funk's update), or
* torch's Adam/AdamW update with dense semantics, on the **optimizer's own state tensors**
  (``exp_avg``, ``exp_avg_sq``, ``step``), so history, validation, early stopping, callbacks,
  checkpoints and resume are the Trainer's, unchanged; or, with ``lazy`` (``lazy_adam``), the
  same update on the rows each batch touches only, the others caught up in closed form when next
  touched and at the epoch's end (dense Adam up to ε; the rows' directions are rebuilt from the
  moments at each epoch's start, so a resumed fit still continues as the uninterrupted one).

Results equal the torch loop's up to float rounding (tests/train/test_fused_mf.py compares
them) and are deterministic for a seed, whatever the thread count: with two or more, BPR /
sampled-BCE epochs without ``reg`` may run on the threaded kernel
(:func:`~recforge.train._mf_kernels.sampled_epoch_threaded`), the serial one's result bit for
bit; :class:`~recforge.threads.EnginePicker` runs whichever of the two is faster on the machine
at the moment. :func:`fused_mf_epoch` returns None when the setup is outside what the kernel
implements (another optimizer, gradient clipping, bf16, a GPU, torchrun, a module that is not a
bare factor table pair); the Trainer then runs its torch loop.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.threads import (
    EnginePicker,
    background,
    in_worker_thread,
    map_in_threads,
    threads_for,
)
from recforge.train.losses import BPR, Objective, RatingMSE, SampledBCE

if TYPE_CHECKING:
    from recforge.models.neural import OutputHead

__all__ = [
    "EnginePicker",
    "FusedMFEpoch",
    "fused_mf_epoch",
    "lazy_sides",
    "numba_available",
    "threaded_engine_usable",
]


def numba_available() -> bool:
    """Whether numba can be imported (the fused path's only extra requirement)."""
    return importlib.util.find_spec("numba") is not None


def _arr(t: torch.Tensor) -> npt.NDArray[Any]:
    """A numpy view sharing ``t``'s memory (CPU, contiguous)."""
    return t.detach().numpy()


@dataclass
class _EpochArgs:
    """One epoch's kernel arguments (:meth:`FusedMFEpoch.run`)."""

    #: ``P, Q, BU, BI, has_bias``, the moments ``m, v`` of each table, the gradient buffers.
    tables: list[Any]
    #: The epoch's users, items and ratings in its order (:meth:`FusedMFEpoch._in_order`).
    data: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.float64]]
    negs: npt.NDArray[np.int64]
    order: npt.NDArray[np.int64]
    batch_size: int
    rates: npt.NDArray[np.float64]
    step0: int
    #: The lazy catch-up's constants (:func:`~recforge.train._mf_kernels.lazy_coefs`), once.
    coefs: npt.NDArray[np.float64] | None = None


class FusedMFEpoch:
    """Runs Trainer epochs of an ``OutputHead(DotModule | BiasedDotModule)`` in one numba call.

    Built by :func:`fused_mf_epoch`; the Trainer calls :meth:`run` once per epoch.
    """

    def __init__(
        self,
        head: OutputHead,
        optimizer: torch.optim.Optimizer,
        objective: Objective,
        tensors: Mapping[str, torch.Tensor],
        *,
        decoupled: bool,
        overlap: bool = False,
        n_threads: int = 1,
        lazy: int = 0,
        sgd: bool = False,
    ) -> None:
        from recforge.models.mf import BiasedDotModule, DotModule

        inner = head.inner
        assert isinstance(inner, (DotModule, BiasedDotModule))
        self.tables: list[torch.Tensor] = [inner.user_emb.weight, inner.item_emb.weight]
        self.has_bias = isinstance(inner, BiasedDotModule)
        if isinstance(inner, BiasedDotModule):
            self.tables += [inner.user_bias.weight, inner.item_bias.weight]
        self.optimizer = optimizer
        self.objective = objective
        self.offset = float(head.offset)
        y_range = head.y_range
        self.use_range = y_range is not None
        self.lo, self.hi = (float(y_range[0]), float(y_range[1])) if y_range else (0.0, 1.0)
        self.users = _arr(tensors["user"])
        self.items = _arr(tensors["item"])
        if isinstance(objective, RatingMSE):
            self.kind = 0
            self.ratings = _arr(tensors["rating"]).astype(np.float64)
        else:
            self.kind = 1 if isinstance(objective, SampledBCE) else 2
            self.ratings = np.zeros(1)
        self.reg = float(getattr(objective, "reg", 0.0))
        self.decoupled = decoupled
        #: Plain SGD (MSE, no momentum or decay: :func:`_sgd_usable`) instead of Adam(W).
        self.sgd = sgd
        #: Draw each epoch's negatives in a worker thread beside the kernel (see _negatives).
        self.overlap = overlap
        self.grads = [np.zeros(t.shape, dtype=np.float32) for t in self.tables]
        #: The sides (bit mask: 1 users, 2 items) whose Adam(W) step is lazy (_mf_kernels' lazy
        #: section; :func:`lazy_sides`).
        self.lazy = lazy
        side = [bool(lazy & 1), bool(lazy & 2)] * 2  # P, Q, BU, BI
        #: Each user's / item's epoch step of its last update (lazy): zero between epochs.
        self.last = [
            np.zeros(len(t) if lazy_side else 1, dtype=np.int64)
            for t, lazy_side in zip(self.tables[:2], side, strict=False)
        ]
        #: Each table's row directions (lazy), set from the moments at each epoch's start.
        shapes = [tuple(t.shape) if side[k] else (1, 1) for k, t in enumerate(self.tables)]
        self.directions = tuple(
            np.zeros(shape, dtype=np.float32) for shape in [*shapes, (1, 1), (1, 1)][:4]
        )
        #: Threads of the owner-computes epoch (1: the serial kernel only). It gives the serial
        #: kernel's result to the last bit, so :class:`EnginePicker` may switch between the two
        #: by measured speed without changing the fit.
        self.n_threads = n_threads if self.kind != 0 and self.reg == 0.0 else 1
        self.picker = _picker(self.n_threads, self.kind, self.has_bias, self.tables, lazy=self.lazy)
        #: Where an epoch's negatives are drawn, "beside" the kernel (a worker thread) or
        #: "first": on a busy machine the kernel can wait for a worker the scheduler parked, so
        #: the two are timed per epoch like the kernels (the same draws either way).
        self.draws: EnginePicker[str] = (
            _picker(n_threads, self.kind, self.has_bias, self.tables, len(self.users))
            if overlap and self.kind != 0
            else EnginePicker(("first",))
        )

    def _state(self) -> list[tuple[npt.NDArray[Any], npt.NDArray[Any], torch.Tensor]]:
        """``(exp_avg, exp_avg_sq, step)`` of each table, created as torch's Adam creates them."""
        out = []
        for p in self.tables:
            st = self.optimizer.state[p]
            if not st:
                st["step"] = torch.tensor(0.0, dtype=torch.float32)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            out.append((_arr(st["exp_avg"]), _arr(st["exp_avg_sq"]), st["step"]))
        return out

    def run(self, perm: torch.Tensor, batch_size: int, lrs: npt.NDArray[np.float64]) -> float:
        """One epoch over ``perm`` with the per-batch rates ``lrs``; the summed batch losses."""
        if self.sgd:
            return self._run_sgd(perm, batch_size, lrs)
        order = _arr(perm).astype(np.int64, copy=False)
        n_batches = len(lrs)
        # Batch ranges run in order, each once its negatives are there (see _negatives).
        ranges: list[tuple[int, int, Future[None] | None]] = [(0, n_batches, None)]
        draws = self.draws.pick()
        t_epoch = time.perf_counter()
        if self.kind == 0:
            negs = np.zeros((1, 1), dtype=np.int64)
        else:
            negs, ranges = self._negatives(order, batch_size, n_batches, beside=draws == "beside")
        state = self._state()
        step0 = int(state[0][2].item())
        p = [_arr(t) for t in self.tables]
        m = [s[0] for s in state]
        v = [s[1] for s in state]
        g = self.grads
        if not self.has_bias:  # placeholders for the bias arguments
            z = np.zeros((1, 1), dtype=np.float32)
            p, m, v, g = [*p, z, z], [*m, z, z], [*v, z, z], [*g, z.copy(), z.copy()]
        tables = [p[0], p[1], p[2], p[3], self.has_bias, m[0], v[0], m[1], v[1], m[2], v[2]]
        tables += [m[3], v[3], g[0], g[1], g[2], g[3]]
        rates = np.asarray(lrs, dtype=np.float64)
        data, order = self._in_order(order)
        epoch = _EpochArgs(tables, data, negs, order, int(batch_size), rates, step0)
        total = 0.0
        with torch.no_grad():
            for b_lo, b_hi, ready in self._chunked(ranges):
                if ready is not None:
                    ready.result()
                engine = self.picker.pick()
                if engine == "threaded":
                    # Negatives drawn beside the serial kernel (it leads): a threaded chunk
                    # waits for them all first. Beside a drawing worker its barriers
                    # would wait for a descheduled thread, and the picker would time that and
                    # keep the serial kernel for good (the probes measured 3 threads on 2 cores).
                    for _, _, pending in ranges:
                        if pending is not None:
                            pending.result()
                t0 = time.perf_counter()
                total = self._kernel(engine, epoch, b_lo, b_hi, total)
                self.picker.record(engine, (time.perf_counter() - t0) / (b_hi - b_lo))
            if len(self.draws.engines) > 1:
                self.draws.record(draws, (time.perf_counter() - t_epoch) / max(n_batches, 1))
            for _, _, step in state:
                step += len(lrs)
            for t in self.tables:
                # Written in place through numpy views: bump the version counter, so that caches
                # keyed on it (the ridge fold-in constants) see the new weights. (add_(0) did it
                # at the cost of a pass over the table: 40 ms a fit at 2 threads under load.)
                _bump_version(t)
        return float(total)

    def _in_order(
        self, order: npt.NDArray[np.int64]
    ) -> tuple[
        tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.float64]], npt.NDArray[np.int64]
    ]:
        """The epoch's users, items and ratings gathered in its ``order`` (numpy's vectorised
        take), and the identity order the kernels then walk: the same values in the same order,
        so the same fit to the last bit. Read through the permutation, each rating cost the
        kernels three dependent cache misses (its user, item and rating) before its rows' own."""
        ratings = self.ratings[order] if self.kind == 0 else self.ratings
        data = (self.users[order], self.items[order], ratings)
        return data, np.arange(len(order), dtype=np.int64)

    def _run_sgd(self, perm: torch.Tensor, batch_size: int, lrs: npt.NDArray[np.float64]) -> float:
        """:meth:`run` for plain SGD: one serial kernel call (SGD keeps no optimizer state)."""
        from recforge.train import _mf_kernels as kernels

        (users, items, ratings), order = self._in_order(_arr(perm).astype(np.int64, copy=False))
        p = [_arr(t) for t in self.tables]
        g = list(self.grads)
        if not self.has_bias:  # placeholders for the bias arguments
            p += [np.zeros((1, 1), dtype=np.float32)] * 2
            g += [np.zeros((1, 1), dtype=np.float32) for _ in range(2)]
        rates = np.asarray(lrs, dtype=np.float64)
        with torch.no_grad():
            total = kernels.mse_sgd_epoch(
                *p[:4], self.has_bias, *g[:4], users, items, ratings, order,
                int(batch_size), rates, self.offset, self.lo, self.hi, self.use_range, self.reg,
            )  # fmt: skip
            for t in self.tables:
                _bump_version(t)
        return float(total)

    def _kernel(self, engine: str, e: _EpochArgs, b_lo: int, b_hi: int, total: float) -> float:
        """Batches ``b_lo ≤ b < b_hi`` of the epoch ``e`` on ``engine``; the new running total."""
        from recforge.train import _mf_kernels as kernels

        group = self.optimizer.param_groups[0]
        b1, b2 = (float(x) for x in group["betas"])
        eps, wd = float(group["eps"]), float(group["weight_decay"])
        if self.lazy and e.coefs is None:  # the epoch's first call
            e.coefs = kernels.lazy_coefs(e.rates, e.step0, b1, b2, wd, self.decoupled)
            for k, u in enumerate(self.directions[: len(self.tables)]):
                if not self.lazy >> (k % 2) & 1:
                    continue
                m, v = e.tables[5 + 2 * k], e.tables[6 + 2 * k]
                kernels.lazy_directions(
                    m.reshape(-1), v.reshape(-1), u.reshape(-1), e.step0, b2, eps
                )
        coefs = e.coefs if e.coefs is not None else np.zeros((3, 1))
        lazy = (self.lazy, coefs, self.last[0], self.last[1], self.directions)
        data = e.data[:2]
        adam = (b1, b2, eps, wd, self.decoupled, b_lo, b_hi, total)
        if engine == "threaded":
            args = [*e.tables, *data, e.negs, e.order, e.batch_size, e.rates, e.step0]
            args += [self.kind, self.offset, *adam, self.n_threads, *lazy]
            out = kernels.sampled_epoch_threaded(*args)
        else:
            out = kernels.mf_epoch(
                *e.tables, *data, e.data[2], e.negs, e.order, e.batch_size, e.rates,
                e.step0, self.kind, self.offset, self.lo, self.hi, self.use_range, self.reg,
                *adam, *lazy,
            )  # fmt: skip
        return float(out)

    def _chunked(
        self, ranges: list[tuple[int, int, Future[None] | None]]
    ) -> list[tuple[int, int, Future[None] | None]]:
        """``ranges`` cut to at most :data:`_PICK_BATCHES` batches each when two engines are in
        play, so that the picker measures (and switches) within an epoch."""
        if len(self.picker.engines) < 2:
            return ranges
        out: list[tuple[int, int, Future[None] | None]] = []
        for b_lo, b_hi, ready in ranges:
            cuts = [*range(b_lo, b_hi, _PICK_BATCHES), b_hi]
            out += [(a, b, ready) for a, b in itertools.pairwise(cuts)]
        return out

    def _negatives(
        self, order: npt.NDArray[np.int64], batch_size: int, n_batches: int, *, beside: bool = True
    ) -> tuple[npt.NDArray[np.int64], list[tuple[int, int, Future[None] | None]]]:
        """The epoch's negatives in batch order (the draws the torch loop makes batch by batch),
        and the batch ranges to run with the future each waits for.

        With one thread, all are drawn first. With more (``overlap``), the same random numbers
        are drawn, then a worker thread maps them to items range by range (the compiled uniform
        draw, GIL released) while the epoch's kernel runs the ranges already drawn: the same
        negatives, the same epoch, bit for bit, with the sampling (a quarter of a BPR fit on
        ML-100k) off the critical path. When the picker runs the threaded kernel, which keeps
        every thread busy, the ranges are instead mapped first, on all the threads: a third
        runnable thread beside the kernel's would hold up each of its barriers (they
        wait for their slowest thread). Without ``beside`` (the serial kernel, when drawing
        first was measured faster) all are drawn first, as with one thread.
        """
        assert isinstance(self.objective, (SampledBCE, BPR))
        sampler, n_neg = self.objective.sampler, self.objective.n_negatives
        if not self.overlap or not sampler.compiled_uniform(len(order) * n_neg):
            negs = sampler.sample(self.users[order], n_neg)
            return negs, [(0, n_batches, None)]
        users = np.repeat(self.users[order], n_neg)
        rand = sampler.uniform_random(len(users))
        out = np.empty(len(users), dtype=np.int64)
        cuts = np.linspace(0, n_batches, min(n_batches, _OVERLAP_RANGES) + 1).astype(np.int64)
        spans = [
            (b_lo, b_hi, b_lo * batch_size * n_neg, min(len(users), b_hi * batch_size * n_neg))
            for b_lo, b_hi in itertools.pairwise(cuts.tolist())
        ]

        def draw(span: tuple[int, int, int, int]) -> None:
            _, _, lo, hi = span
            out[lo:hi] = sampler.uniform_items(users[lo:hi], rand[lo:hi])

        if self.n_threads > 1 and self.picker.best() == "threaded":
            map_in_threads(draw, spans, self.n_threads)
            return out.reshape(-1, n_neg), [(0, n_batches, None)]
        if not beside:
            draw((0, n_batches, 0, len(users)))
            return out.reshape(-1, n_neg), [(0, n_batches, None)]
        ranges: list[tuple[int, int, Future[None] | None]] = [
            (span[0], span[1], background(functools.partial(draw, span))) for span in spans
        ]
        return out.reshape(-1, n_neg), ranges


# One picker per kind of epoch for the life of the process (see _picker).
_PICKERS: dict[tuple[int, ...], EnginePicker[str]] = {}


def _picker(
    n_threads: int,
    kind: int,
    has_bias: bool,
    tables: list[torch.Tensor],
    events: int = 0,
    *,
    lazy: int = 0,
) -> EnginePicker[str]:
    """The :class:`EnginePicker` of epochs like this one, shared by the fits of a process.

    Its pace is seconds per batch, which the tables' size sets (the Adam sweep is dense), so
    pickers are per thread count, loss kind, bias, lazy or dense Adam and power of two of the
    parameter count: a
    process that fits the same model again (tuning, the speed suite, a service's retraining)
    does not pay the probes again. Only the threaded kernel's own fits have two engines.
    """
    if events:  # where the negatives are drawn (FusedMFEpoch.draws), per epoch
        params = sum(int(t.numel()) for t in tables)
        draws: tuple[int, ...] = (0, n_threads, kind, int(has_bias), params.bit_length())
        key = (*draws, events.bit_length())
        return _PICKERS.setdefault(key, EnginePicker(("beside", "first")))
    if n_threads <= 1:
        return EnginePicker(("serial",))
    params = sum(int(t.numel()) for t in tables)
    kernels: tuple[int, ...] = (n_threads, kind, int(has_bias), max(params, 1).bit_length())
    kernels += (lazy,) if lazy else ()
    return _PICKERS.setdefault(kernels, EnginePicker(("threaded", "serial")))


#: Batch ranges an epoch is cut into when its negatives are drawn beside the kernel.
_OVERLAP_RANGES = 16
#: One-thread milliseconds per uniform negative draw (~50 ns, ML-100k): the overlap's work.
_DRAW_MS = 5e-5


#: Batches a kernel call runs at most when :class:`EnginePicker` chooses between two engines.
_PICK_BATCHES = 8


#: ``lazy="auto"`` makes a side lazy when a batch is expected to touch less than this share of its
#: rows. Measured (docs/benchmarks/speed_bpr16.md): at ~45% (ml-latest-small's items under BPR)
#: the lazy step was 1.4x slower than the dense sweep, at ~1% (100k users) 1.6x faster.
LAZY_SHARE = 0.1


def lazy_sides(lazy: bool | str, n_users: int, n_items: int, batch: int, n_neg: int) -> int:
    """The kernels' lazy mask (1: users, 2: items) for the option ``lazy`` (True, False, "auto").

    "auto": a side is lazy when a batch is expected to touch less than :data:`LAZY_SHARE` of its
    rows: ``1 − exp(−draws/rows)`` with ``draws`` the batch's rows for users and its positives
    plus negatives for items (distinct rows of uniform draws; skewed draws touch fewer, so this
    errs toward the dense sweep). Dense Adam(W) couples an L2 decay into every row's gradient,
    so the caller passes lazy only with decoupled (AdamW) or no weight decay.
    """
    if lazy == "auto":
        users = 1.0 - np.exp(-batch / max(n_users, 1)) < LAZY_SHARE
        items = 1.0 - np.exp(-batch * (1 + n_neg) / max(n_items, 1)) < LAZY_SHARE
        return int(users) | 2 * int(items)
    return 3 if lazy else 0


def threaded_engine_usable() -> bool:
    """Whether the threaded kernel may run from this thread: not from inside one of recforge's
    worker threads (its team's workers could wait behind their own caller,
    :func:`~recforge.threads.run_team`). Its team is plain Python threads running the nogil
    kernel, so it needs no numba threading layer and survives a fork (the pools are renewed in
    the child); it does need its spin barrier to compile here (atomics and libc's
    ``sched_yield``), checked once a process."""
    return not in_worker_thread() and _barrier_compiles()


@functools.cache
def _barrier_compiles() -> bool:
    """Whether the team's barrier compiles and runs on this platform (a one-thread call returns
    at once); if not, fits keep to the serial kernel instead of failing."""
    try:
        from recforge.train._numba_sync import barrier

        return int(barrier(np.zeros(3, dtype=np.int64), 1)) == 0
    except Exception:  # any failure (no sched_yield to link, no atomics): no threaded engine
        return False


def _bump_version(t: torch.Tensor) -> None:
    """Mark ``t`` as modified in place (its version counter), without touching its data."""
    bump = getattr(torch.autograd.graph, "increment_version", None)
    if bump is not None:
        bump(t)
    else:  # pragma: no cover - torch without increment_version
        t.add_(0)


def fused_mf_epoch(
    module: nn.Module,
    optimizers: list[torch.optim.Optimizer],
    objective: Objective,
    tensors: Mapping[str, torch.Tensor],
    config: TrainConfig,
    *,
    lazy: bool | str = False,
) -> FusedMFEpoch | None:
    """The fused epoch for this fit, or None when the setup needs the torch loop (module doc).

    ``lazy``: Adam(W) steps only the rows each batch touches, the others caught up in closed
    form (:mod:`recforge.train._mf_kernels`, lazy section; dense Adam up to ε), on both sides
    (True), none (False) or those :func:`lazy_sides` expects a batch to touch little of ("auto").
    """
    from recforge.models.mf import BiasedDotModule, DotModule
    from recforge.models.neural import OutputHead

    if not numba_available() or not isinstance(module, OutputHead):
        return None
    inner = module.inner
    if type(inner) not in (DotModule, BiasedDotModule) or type(objective) not in (
        RatingMSE, SampledBCE, BPR,
    ):  # fmt: skip
        return None
    if config.grad_clip is not None or config.precision != "fp32" or len(optimizers) != 1:
        return None
    opt = optimizers[0]
    if len(opt.param_groups) != 1:
        return None
    group = opt.param_groups[0]
    sgd = type(opt) is torch.optim.SGD
    if sgd and not _sgd_usable(group, objective):
        return None
    if not sgd and type(opt) not in (torch.optim.Adam, torch.optim.AdamW):
        return None
    if group.get("amsgrad") or group.get("maximize") or group.get("capturable"):
        return None
    params = list(module.parameters())
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
        return None
    if any(not t.is_contiguous() for t in params) or any(
        t.device.type != "cpu" for t in tensors.values()
    ):
        return None
    sparse = any(isinstance(m, nn.Embedding) and m.sparse for m in module.modules())
    if sparse:
        return None
    if sgd:
        return FusedMFEpoch(module, opt, objective, tensors, decoupled=False, sgd=True)
    decoupled = bool(group.get("decoupled_weight_decay", isinstance(opt, torch.optim.AdamW)))
    # The fit's thread count, read now (the Trainer then holds torch's own ops of a fused fit to
    # what they need): with two or more, an epoch's negatives are drawn beside the kernel.
    n_draws = len(next(iter(tensors.values()))) * int(getattr(objective, "n_negatives", 0))
    n_threads = torch.get_num_threads()
    overlap = threads_for(n_draws * _DRAW_MS, n_threads) > 1
    # The threaded kernel covers BPR / sampled BCE without reg.
    sampled = isinstance(objective, (SampledBCE, BPR)) and not getattr(objective, "reg", 0.0)
    threaded = n_threads if n_threads > 1 and sampled and threaded_engine_usable() else 1
    coupled_decay = not decoupled and float(group["weight_decay"]) != 0.0
    assert isinstance(inner, (DotModule, BiasedDotModule))
    rows = (inner.user_emb.num_embeddings, inner.item_emb.num_embeddings)
    n_neg = int(getattr(objective, "n_negatives", 0))
    mask = 0 if coupled_decay else lazy_sides(lazy, *rows, config.batch_size, n_neg)
    return FusedMFEpoch(
        module,
        opt,
        objective,
        tensors,
        decoupled=decoupled,
        overlap=overlap,
        n_threads=threaded,
        lazy=mask,
    )


def _sgd_usable(group: Mapping[str, Any], objective: Objective) -> bool:
    """Whether the SGD kernel (:func:`~recforge.train._mf_kernels.mse_sgd_epoch`) runs this fit.

    It implements torch's SGD without momentum, weight decay, Nesterov or maximisation, on the
    MSE loss: the rows a batch does not touch do not move, so nothing but the batch's rows is
    read or written. With decay every row would shrink every step (a sweep of the tables per
    rating at batch size 1); the per-row ``reg`` of the loss is the Funk/Surprise regulariser.
    """
    plain = not group.get("nesterov") and not group.get("maximize")
    no_memory = float(group.get("momentum", 0.0)) == 0.0
    return (
        plain
        and no_memory
        and float(group["weight_decay"]) == 0.0
        and (isinstance(objective, RatingMSE))
    )
