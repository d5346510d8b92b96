"""CPU threads that fit the machine: how many, and how idle OpenMP workers wait.

**How many.** The default is the number of CPUs this process may actually run on: the
scheduler affinity mask (``os.sched_getaffinity``; taskset, cpusets, Kubernetes CPU pinning)
capped by the cgroup CPU quota (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``; Docker ``--cpus``, Kubernetes limits), rounded down, at least 1.
``os.cpu_count()`` and torch's own default both ignore the quota, so a container limited to 2
CPUs on a 64-core host would otherwise start 64 threads that fight over 2 CPUs.

Precedence, highest first: a forced count (``recforge --threads N`` on the command line, or
:func:`forced_threads`), the model config's ``num_threads``, the ``RECFORGE_NUM_THREADS``
environment variable, then :func:`available_cpus`.

**How many for one parallel region.** Within that count, a region whose result depends on
the thread count (a LAPACK call, torch's GEMMs) starts a thread only per
:data:`MIN_MS_PER_THREAD` of estimated one-thread work (:func:`threads_for`, :func:`capped`).
A region whose result is the same to the last bit for any count (independent rows: ALS
half-steps, the kNN accumulation, top-k blocks) instead measures: :func:`picked_threads` times
one thread against the full count and keeps the faster (:class:`EnginePicker`), since a static
threshold cannot be right both on a busy machine and on a quiet one.

**How they wait.** GNU OpenMP (torch's CPU thread pool) lets an idle worker spin for up to
~300,000 iterations before sleeping. When the machine is busier than it has cores, a spinning
worker burns the time slice the working thread needs; measured here on a 2-core machine under a
load average of ~11 (a loop of small matmuls and element-wise ops): one thread 1.9 s, two
threads 28 s with the default policy, 2.2 s with ``OMP_WAIT_POLICY=PASSIVE``. :func:`quiet_openmp`
therefore makes PASSIVE the default; it must run before torch loads libgomp, so ``import
recforge`` calls it (torch is imported lazily later), and an explicit ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` set by the user is left alone.
"""

from __future__ import annotations

import collections
import itertools
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from recforge._cgroup import CGROUP_ROOT, PROC_CGROUP, cgroup_entries, with_ancestors

if TYPE_CHECKING:
    import numpy.typing as npt

_T = TypeVar("_T")
_R = TypeVar("_R")
_E = TypeVar("_E", bound=Hashable)

__all__ = [
    "BLAS_MIN_MS_PER_THREAD",
    "ENV_VAR",
    "MIN_MS_PER_THREAD",
    "PICK_MIN_MS_PER_THREAD",
    "EnginePicker",
    "available_cpus",
    "background",
    "blas_capped",
    "capped",
    "cgroup_cpu_limit",
    "default_threads",
    "equal_cost_ranges",
    "forced_threads",
    "in_worker_thread",
    "map_in_threads",
    "picked_threads",
    "quiet_openmp",
    "resolve_threads",
    "run_team",
    "set_forced_threads",
    "thread_picker",
    "threads",
    "threads_for",
]

#: Environment variable that sets the default thread count (below ``--threads`` and configs).
ENV_VAR = "RECFORGE_NUM_THREADS"


# Set by ``recforge --threads`` / forced_threads: wins over every model config.
_forced: int | None = None


def quiet_openmp() -> None:
    """Make idle OpenMP workers sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE``) by default.

    Only effective before the OpenMP runtime is loaded (before ``import torch``); a user's own
    ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _v2_limit(rel: Path, root: Path) -> float | None:
    """Smallest ``cpu.max`` quota / period along the cgroup's path up to the root (v2)."""
    best: float | None = None
    for directory in with_ancestors(root, rel):
        text = _read(directory / "cpu.max")
        if not text:
            continue
        parts = text.split()
        if len(parts) != 2 or parts[0] == "max":
            continue
        try:
            quota, period = float(parts[0]), float(parts[1])
        except ValueError:
            continue
        if quota > 0 and period > 0:
            best = quota / period if best is None else min(best, quota / period)
    return best


def _v1_limit(rel: Path, mount: Path) -> float | None:
    """Smallest ``cfs_quota_us / cfs_period_us`` along the path up to the mount (v1)."""
    best: float | None = None
    for directory in with_ancestors(mount, rel):
        quota, period = (
            _read(directory / "cpu.cfs_quota_us"),
            _read(directory / "cpu.cfs_period_us"),
        )
        try:
            q, p = float(quota or "-1"), float(period or "0")
        except ValueError:
            continue
        if q > 0 and p > 0:  # -1 means "no limit"
            best = q / p if best is None else min(best, q / p)
    return best


def cgroup_cpu_limit(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when unlimited/unknown.

    Reads ``proc_cgroup`` (``/proc/self/cgroup``) for the process's cgroup paths, then the
    quota files under ``root`` (``/sys/fs/cgroup``): v2 ``<path>/cpu.max`` ("max 100000" or
    "150000 100000"), and v1 ``cpu[,cpuacct]/<path>/cpu.cfs_quota_us`` and
    ``cpu.cfs_period_us``. Ancestors are read too, since a parent's limit binds its children.
    """
    limits: list[float] = []
    for controllers, rel in cgroup_entries(proc_cgroup):
        if not controllers:  # the v2 unified hierarchy: "0::/path"
            limit = _v2_limit(rel, root)
        elif "cpu" in controllers:
            mounts = [root / ",".join(controllers), root / "cpu", root / "cpu,cpuacct"]
            mount = next((m for m in mounts if m.is_dir()), None)
            limit = _v1_limit(rel, mount) if mount is not None else None
        else:
            continue
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def _affinity_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # macOS / Windows: no affinity API in the stdlib


def available_cpus(*, affinity: int | None = None, cgroup_limit: float | bool | None = True) -> int:
    """CPUs this process may use: the affinity mask capped by the cgroup quota, at least 1.

    Args:
        affinity: the affinity mask's size (None: read it with ``os.sched_getaffinity``).
        cgroup_limit: the quota in CPUs, None for none, or True to read it (the default).
    """
    n = _affinity_count() if affinity is None else affinity
    limit = cgroup_cpu_limit() if cgroup_limit is True else cgroup_limit
    if isinstance(limit, float | int) and not isinstance(limit, bool) and limit > 0:
        # Rounded down: a thread per fractional CPU would be throttled and make others wait.
        n = min(n, max(1, math.floor(limit)))
    return max(1, n)


def default_threads() -> int:
    """``RECFORGE_NUM_THREADS`` when set to a positive integer, else :func:`available_cpus`."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value >= 1:
            return value
    return available_cpus()


def set_forced_threads(n: int | None) -> None:
    """Force every fit in this process to ``n`` threads (None: back to configs/defaults)."""
    global _forced
    _forced = n


@contextmanager
def forced_threads(n: int | None) -> Iterator[None]:
    """Within the block, ``n`` threads win over model configs (None: no change)."""
    if n is None:
        yield
        return
    old = _forced
    set_forced_threads(n)
    try:
        yield
    finally:
        set_forced_threads(old)


def resolve_threads(configured: int | None) -> int:
    """The thread count to use: forced, else ``configured`` (a config's ``num_threads``), else
    :func:`default_threads`."""
    if _forced is not None:
        return _forced
    if configured is not None:
        return configured
    return default_threads()


@contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(resolve_threads(n))``, restoring the old value."""
    import torch

    want = resolve_threads(n)
    old = torch.get_num_threads()
    if want != old:
        torch.set_num_threads(want)
    try:
        yield
    finally:
        if want != old:
            torch.set_num_threads(old)


def equal_cost_ranges(row_cost: npt.ArrayLike, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, non-empty row ranges of about equal summed ``row_cost``.

    For kernels that compute independent rows with the GIL released: more ranges than threads,
    so a thread the scheduler parks holds no one up; the split never changes the result.
    """
    import numpy as np

    cost = np.cumsum(np.asarray(row_cost, dtype=np.float64))
    n = len(cost)
    total = float(cost[-1]) if n else 0.0
    cuts = np.searchsorted(cost, np.linspace(0, total, max(parts, 1) + 1)[1:-1], side="right")
    edges = [0, *[int(c) for c in cuts], n]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


# One lasting pool per size: starting and joining fresh threads at every call cost ~0.3 ms, paid
# 30 times by a 15-sweep ALS fit. Idle workers block on the pool's queue (no spinning).
_pools: dict[tuple[str, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_in_worker = threading.local()


def _forget_pools() -> None:
    # A forked child inherits the pool objects but not their threads: it starts its own.
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _pool(n_workers: int, purpose: str) -> ThreadPoolExecutor:
    """The lasting pool of ``n_workers`` threads for ``purpose`` (``"map"``, ``"background"`` or
    ``"team"``: separate, so that a background task never holds up a map's or a team's
    workers)."""
    with _pools_lock:
        pool = _pools.get((purpose, n_workers))
        if pool is None:
            pool = ThreadPoolExecutor(
                n_workers, thread_name_prefix="recforge", initializer=_mark_worker
            )
            _pools[(purpose, n_workers)] = pool
        return pool


def _mark_worker() -> None:
    _in_worker.active = True


def in_worker_thread() -> bool:
    """Whether the calling thread is one of this module's pool workers."""
    return bool(getattr(_in_worker, "active", False))


def map_in_threads(fn: Callable[[_T], _R], items: Sequence[_T], n_threads: int) -> list[_R]:
    """``[fn(x) for x in items]`` on ``n_threads`` threads when more than one (results in order).

    The calling thread is one of the ``n_threads``: it and ``n_threads − 1`` workers of a lasting
    pool take the items one at a time, whichever is free next. On a busy machine a woken worker
    can wait a whole scheduler slice (~3 ms) for a core: the ML-100k ALS half-step's first range
    on each worker took 3.4 ms against 0.7 ms for the others, and the fit on two threads was no
    faster than on one. Here such a worker delays only the item it took, and the call returns
    once every item is done, without waiting for a worker that took none; so two threads cost
    about one thread's time at worst. A call made from inside a worker runs serially (a nested
    map on the same pool could wait forever for a free worker). The first error raised by ``fn``
    (in item order) is raised after every item has run.
    """
    if n_threads <= 1 or len(items) <= 1 or getattr(_in_worker, "active", False):
        return [fn(x) for x in items]
    n_items = len(items)
    results: list[Any] = [None] * n_items
    errors: dict[int, BaseException] = {}
    claim = itertools.count()  # next() on a C iterator is atomic under the GIL
    finished = 0
    all_done = threading.Condition()

    def drain() -> None:
        nonlocal finished
        for i in iter(claim.__next__, None):
            if i >= n_items:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # re-raised in the caller, in item order
                errors[i] = exc
            with all_done:
                finished += 1
                if finished == n_items:
                    all_done.notify_all()

    pool = _pool(n_threads - 1, "map")
    for _ in range(min(n_threads - 1, n_items - 1)):
        pool.submit(drain)
    drain()
    with all_done:
        all_done.wait_for(lambda: finished == n_items)
    if errors:
        raise errors[min(errors)]
    return results


#: One-thread milliseconds of work a parallel region must give each thread before it starts one
#: more: below it, starting and joining the thread (and, on a busy machine, waiting for a core
#: for it) costs more than the thread saves. Derived from measurements on a 2-core machine, see
#: docs/benchmarks/speed_threads.md.
MIN_MS_PER_THREAD = 6.0


#: The same for BLAS (OpenBLAS) calls, whose idle workers spin instead of sleeping: measured on
#: the 2-core machine at load ~4.5 (a float32 ``(rows × 64) @ (64 × items)`` score product), two
#: BLAS threads took 4x as long as one for 1.6M cells (~5 ms), 1.1x for 5.9M, 0.88x for 28M.
BLAS_MIN_MS_PER_THREAD = 40.0


def threads_for(
    work_ms: float, requested: int | None = None, *, min_ms: float = MIN_MS_PER_THREAD
) -> int:
    """How many threads a parallel region of ``work_ms`` one-thread milliseconds should use.

    At most ``requested`` (None: torch's current count, which :func:`threads` sets for a fit),
    and only as many as each get ``min_ms`` (:data:`MIN_MS_PER_THREAD`) of work; at least 1.
    Every compiled
    kernel and BLAS/LAPACK call that runs in threads asks here, with its own cost model turning
    the problem size into milliseconds, so that a small problem runs on one thread and two
    threads are never slower than one.
    """
    if requested is None:
        import torch

        requested = torch.get_num_threads()
    return max(1, min(int(requested), int(work_ms // min_ms)))


@contextmanager
def capped(work_ms: float) -> Iterator[int]:
    """Within the block, torch uses at most :func:`threads_for` ``(work_ms)`` threads; yields that.

    For a stretch of torch ops (or a LAPACK call through torch) whose parallel regions each hold
    about ``work_ms`` one-thread milliseconds; the count torch had before is restored after.
    """
    import torch

    old = torch.get_num_threads()
    want = threads_for(work_ms, old)
    if want != old:
        torch.set_num_threads(want)
    try:
        yield want
    finally:
        if want != old:
            torch.set_num_threads(old)


def run_team(fn: Callable[[int], _R], n_threads: int) -> list[_R]:
    """``[fn(0), …, fn(n_threads − 1)]`` all running at once, each part on its own thread.

    For kernels whose parts wait for each other (a spin barrier between phases,
    :mod:`recforge.train._numba_sync`), which :func:`map_in_threads` cannot run: it may hand two
    items to one thread. The caller runs part 0 and ``n_threads − 1`` workers of a lasting pool
    of their own the others; ``fn`` must release the GIL while it waits (nogil numba). Two teams
    started at once from different threads share the workers: the second's parts wait in the
    pool's queue until the first team is done, and its part 0 waits for them at its first
    barrier, so both finish. Not from inside a worker of this module (its parts could wait
    behind their own caller): that raises ``RuntimeError``. An error in a part is raised after
    every part has returned; ``fn`` must then release the others (the barrier's abort flag).
    """
    if n_threads <= 1:
        return [fn(0)]
    if in_worker_thread():
        raise RuntimeError("run_team cannot run inside a recforge worker thread")
    pool = _pool(n_threads - 1, "team")
    futures = [pool.submit(fn, part) for part in range(1, n_threads)]
    try:
        first = fn(0)
    finally:
        rest = [f.exception() for f in futures]  # waits for every part
    for err in rest:
        if err is not None:
            raise err
    return [first, *(f.result() for f in futures)]


def background(fn: Callable[[], _R]) -> Future[_R]:
    """Run ``fn`` on a lasting background worker; calls run one at a time, in submission order."""
    return _pool(1, "background").submit(fn)


_blas_controller: list[Any] = []  # [ThreadpoolController] once created (None: no threadpoolctl)


def _blas() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries, created once (~1 ms: it scans
    the loaded libraries; a limit through it then costs ~0.03 ms), or None without threadpoolctl.
    It knows the libraries loaded at its first use (numpy's BLAS, loaded with numpy; one loaded
    later, say by torch, is not capped: torch's own pool is, by :func:`capped`)."""
    if not _blas_controller:
        try:
            import importlib

            threadpoolctl = importlib.import_module("threadpoolctl")  # optional (implicit's)
            _blas_controller.append(threadpoolctl.ThreadpoolController().select(user_api="blas"))
        except (ImportError, AttributeError):
            _blas_controller.append(None)
    return _blas_controller[0]


@contextmanager
def blas_capped(work_ms: float) -> Iterator[int]:
    """Within the block, numpy/scipy's BLAS uses at most :func:`threads_for` ``(work_ms)`` threads,
    at :data:`BLAS_MIN_MS_PER_THREAD` a thread.

    For BLAS calls (numpy matmuls) of about ``work_ms`` one-thread milliseconds each. OpenBLAS
    workers spin while they wait: on a busy machine two threads made the speed suite's scoring
    of ML-100k 2.3x and of ml-latest-small 1.7x slower than one (docs/benchmarks/speed.md).
    Yields the count in force.
    """
    controller = _blas()
    infos = controller.info() if controller is not None else []
    current = max((int(i.get("num_threads") or 1) for i in infos), default=1)
    want = threads_for(work_ms, current, min_ms=BLAS_MIN_MS_PER_THREAD)
    if controller is None or want >= current:
        yield current
        return
    with controller.limit(limits=want):
        yield want


class EnginePicker(Generic[_E]):
    """Chooses, call by call, the fastest of engines that compute the same result.

    An engine is any label: a kernel's name (the fused BPR epoch's ``"threaded"`` /
    ``"serial"``) or a thread count (:func:`picked_threads`). Each engine's first call is a
    warm-up (numba loads compiled code, a thread pool starts) and is not counted, except for
    engines named ``warm``; then each is tried until it has :data:`PROBES` timings, after which
    the one with the lowest pace (the median of its latest :data:`WINDOW` timings, in seconds
    per unit of work) is used. The others are re-tried now and then, since the machine's load
    changes: after :data:`REPROBE` calls, and after twice as many each time a re-try confirms
    the loser slower (up to :data:`MAX_REPROBE`; at once when it lost by :data:`CLEAR_MARGIN`),
    so that on a busy machine, where a second thread mostly waits for a core, the slower engine
    costs a few calls, not a fixed share. A re-try is :data:`PROBES` calls timed afresh, and
    takes the lead only when :data:`MARGIN` faster than the engine in use (one lucky timing on a
    noisy machine should not flip it); when the engine in use slows down below another's last
    pace, that one is re-tried within a few calls.

    Only for engines whose results are bit-identical: the choice changes the time, never the
    result. Thread-safe (one lock around the bookkeeping; the timed work runs outside it).
    """

    PROBES = 2
    REPROBE = 12
    MAX_REPROBE = 96
    #: The share by which a re-tried engine must beat the one in use to take over.
    MARGIN = 0.1
    #: The share by which the engine in use beats a re-tried one for the re-try to count as a
    #: clear loss: the next re-try then waits :data:`MAX_REPROBE` calls at once. A re-try costs
    #: whole calls on the slow engine (item-kNN on ML-100k: 43 ms on one thread against 25 on
    #: two), and a load change that favours the loser shows first as the engine in use slowing
    #: down, which brings a re-try forward anyway (below).
    CLEAR_MARGIN = 0.25
    #: Timings an engine's pace is the median of (its latest): on a busy machine a call may be
    #: parked for a time slice, and one such call must not flip the choice (a running mean did:
    #: 2 threads ran 25% of a BPR fit's chunks at load 6 while 3.4x slower than one).
    WINDOW = 5

    def __init__(self, engines: tuple[_E, ...], warm: tuple[_E, ...] = ()) -> None:
        """``warm``: engines whose first call needs no warm-up (it is timed like the others):
        one thread of a kernel whose code another engine's first call has loaded."""
        self.engines = engines
        self.calls = 0
        # Calls seen so far, the warm-up counted; a warm engine starts as if past its warm-up.
        self.seen: dict[_E, int] = {e: int(e in warm) for e in engines}
        self.pace: dict[_E, float] = {}
        self.interval = self.REPROBE
        self.next_probe = 0
        self.current: _E | None = None
        self._recent: dict[_E, collections.deque[float]] = {}
        self._retrying: _E | None = None
        self._retry_left = 0
        self._lock = threading.Lock()

    def best(self) -> _E:
        """The engine in use (before the probes end: the lowest pace so far, or the first)."""
        if self.current is not None:
            return self.current
        timed = [e for e in self.engines if e in self.pace]
        return min(timed, key=lambda e: self.pace[e]) if timed else self.engines[0]

    def probing(self, engine: _E) -> bool:
        """Whether ``engine``, as :meth:`pick` just returned it, is being timed (a first probe or
        a re-try) rather than used as the fastest."""
        with self._lock:
            return self.current is None or self._retrying == engine

    def pick(self) -> _E:
        """The engine for the next call."""
        with self._lock:
            self.calls += 1
            short = [e for e in self.engines if self.seen[e] <= self.PROBES]
            if short:
                self.next_probe = self.calls + self.interval
                return short[0]
            if self._retrying is not None:
                return self._retrying
            best = self.best()
            others = [e for e in self.engines if e != best]
            if others and self.calls >= self.next_probe:
                engine = others[(self.calls // self.REPROBE) % len(others)]
                # A re-try is PROBES calls timed afresh: the engine's older timings predate the
                # load now (a burst that slowed it once must not keep it out).
                self._retrying, self._retry_left = engine, self.PROBES
                self._recent.pop(engine, None)
                self.next_probe = self.calls + self.interval
                return engine
            return best

    def record(self, engine: _E, seconds_per_unit: float) -> None:
        """The timing of a call made with ``engine`` (seconds per unit of its work)."""
        with self._lock:
            self.seen[engine] += 1
            if self.seen[engine] == 1:
                return  # the warm-up call
            recent = self._recent.setdefault(engine, collections.deque(maxlen=self.WINDOW))
            recent.append(seconds_per_unit)
            self.pace[engine] = statistics.median(recent)
            if any(self.seen[e] <= self.PROBES for e in self.engines):
                return  # still probing: best() is the lowest pace so far
            if self.current is None:
                self.current = self.best()
                return
            current = self.current
            if engine != current:  # a re-try
                if engine == self._retrying:
                    self._retry_left -= 1
                    if self._retry_left > 0:
                        return
                    self._retrying = None
                if self.pace[engine] < (1.0 - self.MARGIN) * self.pace[current]:
                    self.current = engine  # it took the lead: re-try the old one soon
                    self.interval = self.REPROBE
                elif self.pace[current] < (1.0 - self.CLEAR_MARGIN) * self.pace[engine]:
                    self.interval = self.MAX_REPROBE  # a clear loss: re-try it rarely
                else:  # confirmed slower: wait longer before the next re-try
                    self.interval = min(2 * self.interval, self.MAX_REPROBE)
                self.next_probe = self.calls + self.interval
            elif any(
                self.pace[e] < (1.0 - self.MARGIN) * self.pace[current]
                for e in self.engines
                if e != current and e in self.pace
            ):
                # The engine in use slowed down below another's last pace: re-try that soon.
                self.interval = self.REPROBE
                self.next_probe = min(self.next_probe, self.calls + self.REPROBE // 4)


#: One-thread milliseconds of work per thread below which a region is not even offered a second
#: thread: the picker's probes of a region this small would cost more than they could save.
#: :data:`MIN_MS_PER_THREAD` (6 ms) was a static threshold calibrated on the 2-core machine under
#: a load of 4.5-6; on the same machine quiet, a 5 ms ALS half-step ran 1.7x faster on two
#: threads (docs/benchmarks/speed.md). Between the two, :func:`picked_threads` measures.
PICK_MIN_MS_PER_THREAD = 0.5

# One picker per (kernel, thread count offered, size class), for the life of the process: the
# probes are paid once, not per fit (a 15-sweep ALS fit has only 30 half-steps).
_thread_pickers: dict[tuple[str, int, int], EnginePicker[int]] = {}


def thread_picker(
    kernel: str,
    work_ms: float,
    requested: int | None = None,
    *,
    min_ms: float = PICK_MIN_MS_PER_THREAD,
) -> EnginePicker[int]:
    """The process's :class:`EnginePicker` over thread counts for a region of ``kernel``.

    Its engines are ``(n, 1)`` with ``n = threads_for(work_ms, requested, min_ms=min_ms)``, or
    ``(1,)`` when that is 1. Regions are grouped by size (powers of two of ``work_ms``), since
    whether a second thread pays depends on the size: the pace a picker compares is seconds per
    one-thread millisecond of estimated work.
    """
    n = threads_for(work_ms, requested, min_ms=min_ms)
    size = math.floor(math.log2(work_ms)) if work_ms >= 1.0 else 0
    key = (kernel, n, size)
    picker = _thread_pickers.get(key)
    if picker is None:
        # One thread needs no warm-up call: the n-thread probes ran first and loaded the kernel.
        engines = (n, 1) if n > 1 else (1,)
        picker = _thread_pickers.setdefault(key, EnginePicker(engines, warm=(1,) if n > 1 else ()))
    return picker


@contextmanager
def picked_threads(
    kernel: str,
    work_ms: float,
    requested: int | None = None,
    *,
    min_ms: float = PICK_MIN_MS_PER_THREAD,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[int]:
    """Yields the thread count to run a region of ``kernel`` with, and times the block.

    The count is the choice of :func:`thread_picker`: as many threads as the fit allows when
    they were measured faster here, else one. Only for regions whose result is the same to the
    last bit for any thread count (independent rows, each computed by one thread); the choice
    then changes the time, never the result. ``--threads`` / ``num_threads`` still cap the count
    (``requested``, default torch's current count). A block that raises is not recorded.
    """
    picker = thread_picker(kernel, work_ms, requested, min_ms=min_ms)
    n = picker.pick()
    if len(picker.engines) < 2:
        yield n
        return
    t0 = clock()
    yield n
    picker.record(n, (clock() - t0) / max(work_ms, 1e-9))


#: Every how many items a one-thread probe of :func:`picked_map` times on one thread.
PROBE_STRIDE = 4


def offered_threads(work_ms: float, requested: int | None = None) -> int:
    """The most threads :func:`picked_threads` / :func:`picked_map` may pick for a region of
    ``work_ms`` one-thread milliseconds."""
    return threads_for(work_ms, requested, min_ms=PICK_MIN_MS_PER_THREAD)


def thread_ranges(
    n_rows: int,
    row_cost: Callable[[], npt.ArrayLike],
    work_ms: float,
    requested: int | None = None,
) -> tuple[list[tuple[int, int]], list[float]]:
    """The row ranges a :func:`picked_map` over ``n_rows`` independent rows takes, and each
    range's cost.

    One range when a single thread is offered for ``work_ms`` (``row_cost`` is then not called);
    else ``4 ×`` the offered count, of equal cost by ``row_cost()`` (:func:`equal_cost_ranges`:
    more ranges than threads, so a parked thread holds no one up, and a one-thread probe has a
    quarter of them to time).
    """
    import numpy as np

    offered = offered_threads(work_ms, requested)
    if offered < 2 or n_rows < 2:
        return [(0, n_rows)], [1.0]
    cost = np.asarray(row_cost(), dtype=np.float64)
    bounds = equal_cost_ranges(cost, 4 * offered) or [(0, n_rows)]
    cum = np.concatenate([[0.0], np.cumsum(cost)])
    return bounds, [float(cum[hi] - cum[lo]) for lo, hi in bounds]


def picked_map(
    kernel: str,
    fn: Callable[[_T], _R],
    items: Sequence[_T],
    costs: Sequence[float],
    work_ms: float,
    requested: int | None = None,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> list[_R]:
    """``map_in_threads(fn, items, n)`` with ``n`` picked as :func:`picked_threads` picks it,
    and one-thread probes that cost a fraction of a call.

    ``costs``: each item's share of the work (any unit), ``work_ms``: the whole call's one-thread
    milliseconds (the picker's size class and pace unit); :func:`thread_ranges` gives both the
    items (row ranges) and their costs. When the picker asks for a timing of
    one thread while more are allowed, this call runs every :data:`PROBE_STRIDE`-th item on this
    thread alone, timed, then the other items on ``n`` threads, timed: both engines get a pace
    (per unit of work) from one call, under the same load, and the probe costs a quarter of the
    call at one thread's speed, where a whole-call probe cost all of it (item-kNN on
    ml-latest-small: 215 ms on one thread against 118 on two, two probes in the first six fits).
    Items must be independent, so that the result does not depend on who ran which item.
    """
    picker = thread_picker(kernel, work_ms, requested)
    n = picker.pick()
    if len(picker.engines) < 2:
        return map_in_threads(fn, items, n)
    many = max(picker.engines)
    total = float(sum(costs))
    if n != 1 or not picker.probing(1) or len(items) < PROBE_STRIDE or total <= 0.0:
        t0 = clock()
        out = map_in_threads(fn, items, n)
        picker.record(n, (clock() - t0) / max(work_ms, 1e-9))
        return out
    results, alone_s, rest_s = map_with_one_thread_probe(fn, items, many, clock)
    share_alone = sum(costs[::PROBE_STRIDE]) / total  # the items run alone
    # The engine in use first: a one-thread timing that takes the lead must not be followed by
    # a many-thread one read as a re-try of the old engine.
    picker.record(many, rest_s / max(work_ms * (1.0 - share_alone), 1e-9))
    picker.record(1, alone_s / max(work_ms * share_alone, 1e-9))
    return results


def map_with_one_thread_probe(
    fn: Callable[[_T], _R],
    items: Sequence[_T],
    n_threads: int,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[_R], float, float]:
    """``[fn(x) for x in items]``: every :data:`PROBE_STRIDE`-th item on this thread alone, then
    the others on ``n_threads`` threads. Returns the results in order and the seconds of each
    part (:func:`picked_map`'s one-thread probe)."""
    alone = range(0, len(items), PROBE_STRIDE)
    rest = [i for i in range(len(items)) if i % PROBE_STRIDE]
    results: list[Any] = [None] * len(items)
    t0 = clock()
    for i in alone:
        results[i] = fn(items[i])
    t1 = clock()
    for i, r in zip(rest, map_in_threads(fn, [items[i] for i in rest], n_threads), strict=True):
        results[i] = r
    t2 = clock()
    return results, t1 - t0, t2 - t1
