"""``recforge benchmark --suite speed``: recforge against its fastest peer, same work, same threads.

Each *pair* fits a recforge model and a peer doing the same work (same factors, iterations or
epochs, neighbours, λ) on the same training part, in the same process. Runs are **interleaved**:
repetition ``r`` runs, for each thread count, recforge then the peer (the order flips on odd
repetitions so neither side always gets the warmer cache or the quieter moment), with seed ``r``
for both. Reported per pair: median fit time and its min–max over repetitions, the quality
(NDCG@10 on ``temporal-user-80-20``, or RMSE on ``random-80-20`` for rating models) beside every
time, and the **paired ratio** recforge/peer of each repetition (median and min–max): on a
machine shared with other work, the ratio of two runs seconds apart is far steadier than either
time. Both sides get the same thread count: torch's, BLAS's (``threadpoolctl``) and the peer's
``num_threads`` (Surprise is single-threaded, noted in its row). With more than one thread count
the report also gives recforge's own time at N threads over its time at 1 thread.

Only fitting is timed; evaluation is the protocol's, the same code for both sides.

Pairs (``speed_pairs()``):

- ``als``: recforge ALS (64 factors, 15 iterations, CG with 3 steps; default backend) vs
  implicit's ``AlternatingLeastSquares`` (64 factors, 15 iterations).
- ``als-torch``: the same with recforge's own torch kernels (``backend='torch'``), the fallback
  when implicit is not installed.
- ``ease``: recforge EASE (λ=300, default precision) vs a plain numpy float32 Cholesky
  reference ``L = chol(G); P = L⁻ᵀL⁻¹`` (:class:`NumpyCholeskyEASE`).
- ``bpr``: recforge ``mf`` with ``loss='bpr'`` (64 factors, 20 epochs) vs implicit's
  ``BayesianPersonalizedRanking`` (64 factors, 100 iterations).
- ``item_knn``: recforge ``item_knn`` (cosine, 40 neighbours, implicit scoring) vs implicit's
  ``CosineRecommender`` (K=40).
- ``biased_mf``: recforge ``biased_mf`` (defaults) vs Surprise ``SVD`` (defaults), RMSE.
- ``funk_svd``: recforge ``funk_svd`` (defaults: Surprise's settings, per-rating SGD) vs
  Surprise ``SVD`` (defaults), RMSE: the same algorithm, rating by rating.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.eval.protocols import ProtocolSplit, get_protocol
from recforge.models.base import FloatArray, Recommender

__all__ = [
    "SYNTHETIC_LOGS",
    "ImplicitCosine",
    "NumpyCholeskyEASE",
    "Pair",
    "load_speed_dataset",
    "run_speed",
    "speed_markdown",
    "speed_pairs",
]

Factory = Callable[[int, int], Recommender]  # (threads, seed) -> unfitted model


# ---------------------------------------------------------------------------- reference "peers"
class NumpyCholeskyEASE(Recommender):
    """EASE solved the plain way in numpy float32: ``L = cholesky(G)``, ``P = L⁻ᵀ L⁻¹``.

    ``G = XᵀX + λI`` on the binary matrix; ``B = I − P·diagMat(1/diag P)``. The reference the
    speed suite holds recforge's EASE against (numpy's BLAS limited to the suite's threads).
    """

    name: ClassVar[str] = "numpy-cholesky-ease"
    predicts_ratings: ClassVar[bool] = False
    reg: ClassVar[float] = 300.0
    weights_: FloatArray
    user_matrix_: sp.csr_matrix

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        x = train.csr("binary").astype(np.float32)
        gram = _dense_gram(x)
        gram[np.diag_indices(gram.shape[0])] += self.reg
        # Each intermediate freed once used: at 27,000 items one is 2.9 GB, and holding them
        # all (with the sparse XᵀX) ran the 10M-event log out of 24 GB (session 19).
        chol = np.linalg.cholesky(gram)
        del gram
        inv_chol = np.linalg.inv(chol)
        del chol
        p = inv_chol.T @ inv_chol
        del inv_chol
        p /= -np.diag(p).copy()[None, :]
        p[np.diag_indices(p.shape[0])] = 0.0
        self.weights_ = np.ascontiguousarray(p, dtype=np.float32)
        self.user_matrix_ = x

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """``X[u] B``."""
        out: FloatArray = np.asarray(self.user_matrix_[user_idx] @ self.weights_, np.float32)
        return out

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """Per-pair scores (from full rows; the suite only ranks)."""
        rows = self.score_items(np.asarray(user_idx))
        out: FloatArray = rows[np.arange(len(rows)), np.asarray(item_idx)]
        return out


def _dense_gram(x: sp.csr_matrix, block: int = 2048) -> npt.NDArray[np.float32]:
    """``XᵀX`` as a dense float32 array, built ``block`` item columns at a time: the sparse
    product of a large log is nearly dense and, whole, takes twice the dense array's memory in
    values and indices."""
    xt = x.T.tocsr()
    n = x.shape[1]
    gram = np.empty((n, n), dtype=np.float32)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        gram[:, lo:hi] = (xt @ x[:, lo:hi]).toarray()
    return gram


class ImplicitCosineConfig(ModelConfig):
    """Options of :class:`ImplicitCosine`."""

    K: int = 40
    num_threads: int = 1


class ImplicitCosine(Recommender):
    """implicit's ``CosineRecommender`` (item-item cosine, K neighbours) behind recforge's API.

    Scores ``X[u] S`` with ``S`` implicit's learned (sparse, item × item) similarity, exactly as
    implicit's own ``recommend`` does.
    """

    name: ClassVar[str] = "implicit-cosine"
    Config: ClassVar[type[ModelConfig]] = ImplicitCosineConfig
    predicts_ratings: ClassVar[bool] = False
    config: ImplicitCosineConfig
    similarity_: sp.csr_matrix
    user_matrix_: sp.csr_matrix

    def _fit(self, train: Interactions, valid: Interactions | None) -> None:
        nn = importlib.import_module("implicit.nearest_neighbours")
        x = train.csr("binary").astype(np.float32).tocsr()
        algo = nn.CosineRecommender(K=self.config.K, num_threads=self.config.num_threads)
        algo.fit(x, show_progress=False)
        self.similarity_ = sp.csr_matrix(algo.similarity)
        self.user_matrix_ = x

    def score_items(self, user_idx: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """``X[u] S``."""
        out: FloatArray = np.asarray(
            (self.user_matrix_[user_idx] @ self.similarity_).toarray(), np.float32
        )
        return out

    def predict_idx(
        self, user_idx: npt.NDArray[np.integer[Any]], item_idx: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """Per-pair scores (from full rows; the suite only ranks)."""
        rows = self.score_items(np.asarray(user_idx))
        out: FloatArray = rows[np.arange(len(rows)), np.asarray(item_idx)]
        return out


# ---------------------------------------------------------------------------- pairs
@dataclass(frozen=True)
class Pair:
    """A recforge model and a peer doing the same work, scored by one protocol's metric."""

    name: str
    ours_label: str
    peer_label: str
    ours: Factory
    peer: Factory
    protocol: str
    metric: str
    note: str = ""
    #: Modules the peer needs (the pair is skipped, with the reason, when one is missing).
    needs: tuple[str, ...] = ()
    #: Why the peer cannot run on these data at these thread counts (the pair is skipped with
    #: that reason), or None.
    refuses: Callable[[Interactions, Sequence[int]], str | None] | None = None


#: Items above which the ``ease`` reference's multi-threaded float32 Cholesky (numpy's OpenBLAS
#: 0.3.31 ``spotrf``) crashed the process with a segfault on the 2-core machine: 12,000 items ran
#: at 2 threads, 16,000 and more did not (session 16; one thread ran at 18,000). scipy's
#: OpenBLAS 0.3.30 ran 17,000 but crashed at 27,000. recforge's EASE (torch's LAPACK) is not
#: affected.
NUMPY_CHOLESKY_MAX_THREADED_ITEMS = 12_000


def _numpy_cholesky_refuses(data: Interactions, threads: Sequence[int]) -> str | None:
    if data.n_items > NUMPY_CHOLESKY_MAX_THREADED_ITEMS and max(threads) > 1:
        return (
            f"the numpy reference's multi-threaded OpenBLAS Cholesky crashes (segfault) above "
            f"{NUMPY_CHOLESKY_MAX_THREADED_ITEMS:,} items; this log has {data.n_items:,} "
            "(run with --threads 1)"
        )
    return None


def _create(name: str, **cfg: Any) -> Recommender:
    from recforge.models.registry import create

    return create(name, **cfg)


def _peer(name: str, **cfg: Any) -> Recommender:
    from recforge.bench.peers import create_peer

    return create_peer(name, cfg)


_BPR_NOTE = (
    "recforge: compiled (numba) epochs (AdamW + one-cycle mini-batches, 4 negatives a positive, "
    "drawn beside the serial kernel in a 2nd thread); with 2+ threads each batch's gradient rows "
    "and Adam sweep are also split by owner (the same fit to the last bit), used when measured "
    "faster than the serial kernel (its negatives then drawn first on all threads); implicit: "
    "Hogwild, 1 neg."
)


_ALS_NOTE = (
    "recforge's default backend is its numba per-row CG (implicit's compiled CG when "
    "numba is missing); neither side computes a training loss per sweep. At N threads "
    "each half-step runs on 1 or N threads, whichever recforge.threads.picked_threads "
    "measured faster in this process (the same fit either way); its probes are paid once "
    "a process, by the first fits here."
)
_ALS_TORCH_NOTE = (
    "recforge's own unpadded torch CG (sampled_addmm + CSR spmm), no implicit code: "
    "row blocks set by the problem size, each on one torch thread, run on 1 or N "
    "threads as measured faster (the same fit for any count)."
)
_KNN_NOTE = (
    "recforge: compiled sparse accumulator, top-k by a similarity histogram then a heap, "
    "row ranges on 1 or N threads as measured faster (the same matrix)."
)


def speed_pairs() -> list[Pair]:
    """The suite's pairs (see the module docstring)."""
    rank, ndcg = "temporal-user-80-20", "ndcg@10"
    return [
        Pair(
            "als",
            "recforge als (64 f, 15 it)",
            "implicit ALS (64 f, 15 it)",
            lambda t, s: _create("als", n_factors=64, iterations=15, seed=s, num_threads=t),
            lambda t, s: _peer("implicit-als", factors=64, iterations=15, num_threads=t, seed=s),
            rank,
            ndcg,
            _ALS_NOTE,
            ("implicit",),
        ),
        Pair(
            "als-torch",
            "recforge als backend=torch",
            "implicit ALS (64 f, 15 it)",
            lambda t, s: _create(
                "als", n_factors=64, iterations=15, seed=s, num_threads=t, backend="torch"
            ),
            lambda t, s: _peer("implicit-als", factors=64, iterations=15, num_threads=t, seed=s),
            rank,
            ndcg,
            _ALS_TORCH_NOTE,
            ("implicit",),
        ),
        Pair(
            "ease",
            "recforge ease (λ=300)",
            "numpy float32 Cholesky (λ=300)",
            lambda t, s: _create("ease", reg=300.0, seed=s, num_threads=t),
            lambda t, s: NumpyCholeskyEASE(seed=s),
            rank,
            ndcg,
            "recforge: float32 Cholesky via torch LAPACK, float64 fallback when ill-conditioned.",
            refuses=_numpy_cholesky_refuses,
        ),
        Pair(
            "bpr",
            "recforge mf loss=bpr (64 f, 20 ep)",
            "implicit BPR (64 f, 100 it)",
            lambda t, s: _create(
                "mf", loss="bpr", n_factors=64, epochs=20, seed=s, num_threads=t, verbose=False
            ),
            lambda t, s: _peer("implicit-bpr", factors=64, iterations=100, num_threads=t, seed=s),
            rank,
            ndcg,
            _BPR_NOTE,
            ("implicit",),
        ),
        Pair(
            "item_knn",
            "recforge item_knn (cosine, k=40)",
            "implicit CosineRecommender (K=40)",
            lambda t, s: _create(
                "item_knn", k_neighbors=40, feedback="implicit", seed=s, num_threads=t
            ),
            lambda t, s: ImplicitCosine(K=40, num_threads=t, seed=s),
            rank,
            ndcg,
            _KNN_NOTE,
            ("implicit",),
        ),
        *_rating_pairs(),
    ]


def _rating_pairs() -> list[Pair]:
    """The pairs of rating models, against Surprise SVD at its defaults (RMSE, ``random-80-20``)."""
    return [
        _surprise_pair(
            "biased_mf",
            "recforge biased_mf (defaults)",
            "Surprise is single-threaded whatever the thread count; so is recforge's compiled "
            "(numba) epoch.",
        ),
        _surprise_pair(
            "funk_svd",
            "recforge funk_svd (defaults: 100 f, 20 ep, per-rating SGD)",
            "the same algorithm and settings (Surprise's lr_all 0.005 and reg_all 0.02 are "
            "funk_svd's lr 0.0025 and reg 0.02 on its (ŷ − r)² loss); recforge reshuffles the "
            "ratings every epoch, Surprise walks them in a fixed order; both single-threaded.",
        ),
    ]


def _surprise_pair(model: str, label: str, note: str) -> Pair:
    """recforge ``model`` at its defaults against Surprise ``SVD`` at its defaults."""
    return Pair(
        model,
        label,
        "Surprise SVD (defaults)",
        lambda t, s: _create(model, seed=s, num_threads=t, verbose=False),
        lambda t, s: _peer("surprise-svd", seed=s),
        "random-80-20",
        "rmse",
        note,
        ("surprise",),
    )


# ---------------------------------------------------------------------------- synthetic logs
#: Synthetic logs the suite can run on: name -> (users, items, events). ``synthetic-10m`` has
#: ML-20M's shape (138k users, 27k items) at half its events; ``synthetic-2m`` is issue 16's
#: 100k × 20k log. Power-law popularity, ratings 1–5 and timestamps (see
#: :func:`recforge.data.synthetic.make_interactions`), seed 0.
SYNTHETIC_LOGS: dict[str, tuple[int, int, int]] = {
    "synthetic-2m": (100_000, 20_000, 2_000_000),
    "synthetic-10m": (138_000, 27_000, 10_000_000),
}

#: Where generated logs are kept between runs (``RECFORGE_CACHE_DIR`` overrides it).
CACHE_ENV = "RECFORGE_CACHE_DIR"


def _cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "recforge"


def load_speed_dataset(name: str) -> Interactions:
    """A dataset by name: a :data:`SYNTHETIC_LOGS` entry, else :func:`load_dataset`'s spec.

    A synthetic log is generated once (deterministically, seed 0) and saved under
    ``~/.cache/recforge/speed-<name>`` (``RECFORGE_CACHE_DIR``), then read from there.
    """
    if name not in SYNTHETIC_LOGS:
        from recforge.data.sources import load_dataset

        return load_dataset(name)
    folder = _cache_dir() / f"speed-{name}"
    if (folder / "meta.json").is_file():
        return Interactions.open(folder, mmap=False)
    from recforge.data.synthetic import make_interactions

    n_users, n_items, events = SYNTHETIC_LOGS[name]
    data = make_interactions(
        n_users, n_items, density=events / (n_users * n_items), seed=0, method="sampled"
    ).interactions
    data.save(folder)
    return data


# ---------------------------------------------------------------------------- running
@dataclass
class _Series:
    seconds: list[float] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    #: Process CPU seconds of each fit (all threads): the work done, whatever the scheduler did.
    cpu: list[float] = field(default_factory=list)
    #: Fits averaged in each measurement (see _fit_eval's min_seconds).
    fits: list[int] = field(default_factory=list)
    #: Threads that did a tenth or more of each measurement's CPU work (None: not known).
    busy_threads: list[int | None] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "cpu_seconds": self.cpu,
            "fits": self.fits,
            "busy_threads": self.busy_threads,
            "seconds_median": statistics.median(self.seconds),
            "seconds_min": min(self.seconds),
            "seconds_max": max(self.seconds),
            "metric_median": statistics.median(self.metric),
            "metric_min": min(self.metric),
            "metric_max": max(self.metric),
            "seconds": self.seconds,
            "metric": self.metric,
        }


@contextlib.contextmanager
def _all_threads(n: int) -> Iterator[None]:
    """torch, BLAS and OpenMP pools limited to ``n`` threads, and forced for recforge fits."""
    from recforge.threads import forced_threads, threads

    try:
        threadpoolctl = importlib.import_module("threadpoolctl")
        limits: contextlib.AbstractContextManager[Any] = threadpoolctl.threadpool_limits(n)
    except ImportError:
        limits = contextlib.nullcontext()
    with limits, forced_threads(n), threads(n):
        yield


def _skip_reason(pair: Pair, data: Interactions, threads: Sequence[int]) -> str | None:
    """Why ``pair`` is skipped on ``data`` at ``threads`` (a missing peer module, or a peer that
    cannot run there), or None."""
    reason = _missing(pair.needs)
    if reason is None and pair.refuses is not None:
        reason = pair.refuses(data, threads)
    return reason


def _missing(modules: Sequence[str]) -> str | None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not installed (pip install 'recforge[peers]')"
    return None


def _fit_eval(
    factory: Factory,
    threads: int,
    seed: int,
    ps: ProtocolSplit,
    protocol: str,
    metric: str,
    *,
    measure: bool = True,
    min_seconds: float = 0.0,
) -> tuple[float, float | None, float, int, int | None]:
    """(wall seconds, quality or None, process CPU seconds, fits, busy threads) of one
    measurement (:func:`_busy_threads`).

    The same fit (same seed: the same model, every fit being deterministic) is repeated until
    the fits together last ``min_seconds`` (at most :data:`MAX_FITS`); the times are the mean
    per fit. A 0.1 s fit is as long as a scheduler hiccup on a shared machine: one fit per
    measurement made the 2-thread / 1-thread ratio of such fits swing by ±30%.
    """
    proto = get_protocol(protocol)
    seconds = cpu = 0.0
    fits = 0
    ticks = _thread_ticks()
    with _all_threads(threads):
        while fits == 0 or (seconds < min_seconds and fits < MAX_FITS):
            model = factory(threads, seed)
            c0, t0 = time.process_time(), time.perf_counter()
            model.fit(ps.train)
            seconds += time.perf_counter() - t0
            cpu += time.process_time() - c0
            fits += 1
    busy = _busy_threads(ticks, _thread_ticks())
    if not measure:
        return seconds / fits, None, cpu / fits, fits, busy
    value = float(proto.evaluate(model, ps)["metrics"][metric])
    return seconds / fits, value, cpu / fits, fits, busy


def _thread_ticks() -> dict[str, int]:
    """CPU clock ticks (user + system) of each thread of this process: Linux ``/proc``, else
    empty."""
    out: dict[str, int] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 0
        out[tid] = int(fields[11]) + int(fields[12])
    return out


def _busy_threads(before: dict[str, int], after: dict[str, int]) -> int | None:
    """Threads that did at least a tenth of the CPU work between two :func:`_thread_ticks`
    (None: under 20 ticks in all, too coarse to tell). Shows whether a fit given two threads
    used them, or kept to one because its work was too small to share (recforge.threads)."""
    deltas = [n - before.get(tid, 0) for tid, n in after.items()]
    total = sum(d for d in deltas if d > 0)
    if total < 20:
        return None
    return sum(1 for d in deltas if d >= 0.1 * total)


#: Most fits one measurement repeats to reach ``min_seconds`` (see :func:`_fit_eval`).
MAX_FITS = 20
#: Default ``min_seconds`` of a measurement.
MIN_SECONDS = 1.0


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _interleaved(
    pair: Pair,
    ps: ProtocolSplit,
    threads: Sequence[int],
    reps: int,
    eval_reps: int | None,
    dataset: str,
    progress: Callable[[str], None] | None,
    min_seconds: float = 0.0,
) -> dict[tuple[int, str], _Series]:
    """Fit (and evaluate) both sides of ``pair``: per repetition and thread count, interleaved
    (the order of the sides and of the thread counts flips on odd repetitions)."""
    series = {(t, side): _Series() for t in threads for side in ("ours", "peer")}
    for rep in range(reps):
        for t in threads if rep % 2 == 0 else list(reversed(threads)):
            order = ("ours", "peer") if rep % 2 == 0 else ("peer", "ours")
            for side in order:
                if progress is not None:
                    progress(f"{dataset} · {pair.name} · {side} · {t} thr · rep {rep + 1}")
                factory = pair.ours if side == "ours" else pair.peer
                measure = eval_reps is None or rep < eval_reps
                sec, val, cpu, fits, busy = _fit_eval(
                    factory, t, rep, ps, pair.protocol, pair.metric, measure=measure,
                    min_seconds=min_seconds,
                )  # fmt: skip
                series[(t, side)].seconds.append(sec)
                series[(t, side)].cpu.append(cpu)
                series[(t, side)].fits.append(fits)
                series[(t, side)].busy_threads.append(busy)
                if val is not None:
                    series[(t, side)].metric.append(val)
    return series


def run_speed(
    datasets: Sequence[tuple[str, Interactions]],
    *,
    threads: Sequence[int],
    reps: int = 3,
    eval_reps: int | None = None,
    pairs: Sequence[str] | None = None,
    command: str = "",
    progress: Callable[[str], None] | None = None,
    min_seconds: float = 0.0,
) -> dict[str, Any]:
    """Run the pairs on each dataset, interleaved; the JSON-ready result (see module docstring).

    ``min_seconds``: each measurement repeats its fit until the fits last that long together
    and reports the mean per fit (:func:`_fit_eval`); the CLI uses :data:`MIN_SECONDS`.

    ``eval_reps``: measure quality on the first that many repetitions only (None: all); on a
    10M-event log one evaluation costs more than a fit.
    """
    known = {p.name: p for p in speed_pairs()}
    # "scoring" (top-k of many users vs numpy) is a row of its own, see bench.scoring_speed.
    valid_names = [*known, "scoring"]
    chosen = list(pairs) if pairs else valid_names
    unknown = [n for n in chosen if n not in valid_names]
    if unknown:
        raise ConfigError(
            f"unknown speed pair(s) {', '.join(unknown)}; valid: {', '.join(valid_names)}"
        )
    if reps < 1:
        raise ConfigError(f"reps must be >= 1, got {reps}")
    result: dict[str, Any] = {
        "command": command,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_start": _loadavg(),
        "machine": _machine(),
        "threads": list(threads),
        "reps": reps,
        "eval_reps": eval_reps,
        "min_seconds": min_seconds,
        "rows": [],
    }
    for dataset, data in datasets:
        splits: dict[str, ProtocolSplit] = {}
        for name in chosen:
            if name == "scoring":
                from recforge.bench.scoring_speed import run_scoring

                result["rows"].append(
                    run_scoring(
                        data,
                        threads=threads,
                        reps=reps,
                        all_threads=_all_threads,
                        progress=progress,
                        dataset=dataset,
                    )
                )
                continue
            pair = known[name]
            row = _pair_row(pair, dataset)
            reason = _skip_reason(pair, data, threads)
            if reason is None and pair.protocol not in splits:
                splits[pair.protocol] = get_protocol(pair.protocol).split(data)
            if reason is not None:
                row["skipped"] = reason
                result["rows"].append(row)
                continue
            ps = splits[pair.protocol]
            for t in threads:  # each thread count may load its own kernels (fused_mf's threaded)
                _warm_up(pair, ps, t)
            series = _interleaved(
                pair, ps, threads, reps, eval_reps, dataset, progress, min_seconds
            )
            row |= _ratios(series, threads)
            result["rows"].append(row)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["load_average_end"] = _loadavg()
    return result


def _pair_row(pair: Pair, dataset: str) -> dict[str, Any]:
    """A pair's row of the result, before its timings."""
    return {
        "pair": pair.name,
        "dataset": dataset,
        "protocol": pair.protocol,
        "metric": pair.metric,
        "ours": pair.ours_label,
        "peer": pair.peer_label,
        "note": pair.note,
    }


def _machine() -> dict[str, Any]:
    from recforge.threads import available_cpus

    return {
        "cpus_available": available_cpus(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "versions": _versions(),
    }


def _warm_up(pair: Pair, ps: ProtocolSplit, threads: int) -> None:
    # Untimed warm-up of both sides on a small slice: imports and first-call costs
    # (library loading, thread-pool start) must not land in the first repetition.
    tiny = ps.train.subset(np.arange(min(len(ps.train), 3000))).compact()
    for factory in (pair.ours, pair.peer):
        with _all_threads(threads):
            factory(threads, 0).fit(tiny)


def _ratios(series: dict[tuple[int, str], _Series], threads: Sequence[int]) -> dict[str, Any]:
    """``by_threads`` (each side's summary, ours/peer wall and CPU time ratios) and, over several
    thread counts, ``ours_threads_ratio`` (our time at t threads over our time at the first)."""
    out: dict[str, Any] = {"by_threads": {}}
    for t in threads:
        ours, peer = series[(t, "ours")], series[(t, "peer")]
        ratios = [a / b for a, b in zip(ours.seconds, peer.seconds, strict=True)]
        cpu_ratios = [a / b for a, b in zip(ours.cpu, peer.cpu, strict=True) if b > 0]
        out["by_threads"][str(t)] = {
            "ours": ours.summary(),
            "peer": peer.summary(),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "cpu_ratio_median": statistics.median(cpu_ratios) if cpu_ratios else None,
        }
    if len(threads) > 1:
        base, base_cpu = series[(threads[0], "ours")].seconds, series[(threads[0], "ours")].cpu
        walls = {
            t: [a / b for a, b in zip(series[(t, "ours")].seconds, base, strict=True)]
            for t in threads[1:]
        }
        out["ours_threads_ratio"] = {str(t): statistics.median(r) for t, r in walls.items()}
        out["ours_threads_ratio_range"] = {str(t): [min(r), max(r)] for t, r in walls.items()}
        out["ours_busy_threads"] = {
            str(t): max(
                (b for b in series[(t, "ours")].busy_threads if b is not None), default=None
            )
            for t in threads
        }
        out["ours_threads_cpu_ratio"] = {
            str(t): statistics.median(
                [a / b for a, b in zip(series[(t, "ours")].cpu, base_cpu, strict=True) if b > 0]
                or [float("nan")]
            )
            for t in threads[1:]
        }
    return out


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for module in ("recforge", "torch", "numpy", "scipy", "implicit", "surprise"):
        try:
            out[module] = str(getattr(importlib.import_module(module), "__version__", "?"))
        except ImportError:
            out[module] = "not installed"
    return out


# ---------------------------------------------------------------------------- report
def _fmt_time(s: dict[str, Any]) -> str:
    return f"{s['seconds_median']:.2f} s [{s['seconds_min']:.2f}–{s['seconds_max']:.2f}]"


def _fmt_metric(s: dict[str, Any], metric: str) -> str:
    lo, hi = s["metric_min"], s["metric_max"]
    spread = "" if lo == hi else f" [{lo:.4f}–{hi:.4f}]"
    return f"{metric} {s['metric_median']:.4f}{spread}"


def _cpu_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Process CPU time ratios (recforge / peer): the work done, independent of scheduling."""
    cells = [
        f"{row['pair']} {t} thr: **{cell['cpu_ratio_median']:.2f}**"
        for row in rows
        for t, cell in row.get("by_threads", {}).items()
        if cell.get("cpu_ratio_median") is not None
    ]
    if not cells:
        return []
    return [
        "Process CPU seconds of the fit, recforge / peer (median of paired repetitions; all "
        "threads counted, so it measures the work done whatever share of the cores the "
        "scheduler gave each side): " + "; ".join(cells) + ".",
        "",
    ]


def _threads_table(rows: list[dict[str, Any]], threads: Sequence[int]) -> list[str]:
    """recforge's own N-thread / 1-thread ratios of one dataset's rows (wall and CPU)."""
    lines = [
        f"recforge at {', '.join(map(str, threads[1:]))} threads over 1 thread "
        "(wall: median [min–max] of paired repetitions, ≤ 1.0 means more threads did not "
        "slow it down; CPU: process CPU seconds, the work added by the threads; busy: the "
        "threads that did a tenth or more of the fit's CPU work, most over the repetitions — "
        "1 means the fit kept to one thread, its work being too small to share, so its ratio "
        "compares the same single-threaded run twice):",
        "",
        "| model | "
        + " | ".join(f"{t} thr / 1 thr (wall) | (CPU) | busy at {t}" for t in threads[1:])
        + " |",
        "|---|" + "---|---|---|" * (len(threads) - 1),
    ]
    for row in rows:
        if "ours_threads_ratio" in row:
            spans = row.get("ours_threads_ratio_range", {})
            cpus = row.get("ours_threads_cpu_ratio", {})
            busy = row.get("ours_busy_threads", {})
            cells = []
            for t, v in row["ours_threads_ratio"].items():
                lo, hi = spans.get(t, [v, v])
                c = cpus.get(t)
                cells.append(
                    f"{v:.2f} [{lo:.2f}–{hi:.2f}] | "
                    + (f"{c:.2f}" if c is not None and c == c else "–")
                    + f" | {busy.get(t) if busy.get(t) is not None else '–'}"
                )
            lines.append(f"| {row['ours']} | {' | '.join(cells)} |")
    lines.append("")
    return lines


def speed_markdown(result: dict[str, Any]) -> str:
    """The Markdown report of :func:`run_speed`'s result."""
    m = result["machine"]
    lines = [
        "# Speed: recforge against its fastest peer, same work, same threads",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Run {result['started_at']} → {result['finished_at']}; load average (1, 5, 15 min) "
        f"{result['load_average_start']} at the start, {result['load_average_end']} at the end, "
        f"on {m['cpus_available']} available CPUs ({m['processor'] or m['platform']}); "
        f"OMP_WAIT_POLICY={m['omp_wait_policy']}; versions {m['versions']}.",
        "",
        "The machine is shared with other work (a load average above the CPU count means every "
        "thread waits for a core): absolute times are inflated and noisy. Each pair runs in one "
        "process, interleaved (per repetition and thread count: recforge then the peer, the "
        "order flipped on odd repetitions; seed = repetition for both), so the **paired ratio** "
        "recforge/peer is the figure to read. Times are fit only, median [min–max] over "
        f"{result['reps']} repetitions; the quality beside each is the median [min–max] over "
        + (
            "the same seeds"
            if not result.get("eval_reps")
            else f"the first {result['eval_reps']} of those seeds"
        )
        + " (NDCG@10 on temporal-user-80-20, or RMSE on random-80-20). Same thread "
        "count both sides (torch, BLAS via threadpoolctl, and the peer's num_threads)."
        + (
            f" Each measurement repeats its fit (same seed) until the fits last "
            f"{result['min_seconds']:g} s together (at most {MAX_FITS}) and takes the mean per "
            "fit, so that sub-second fits are not read off one scheduler slice; the thread "
            "counts' order also flips on odd repetitions."
            if result.get("min_seconds")
            else ""
        ),
        "",
    ]
    datasets = list(dict.fromkeys(r["dataset"] for r in result["rows"]))
    threads = result["threads"]
    for dataset in datasets:
        lines += [
            f"## {dataset}",
            "",
            "| pair | threads | recforge | quality | peer | quality | ratio (median [min–max]) |",
            "|---|---|---|---|---|---|---|",
        ]
        notes: list[str] = []
        for row in (r for r in result["rows"] if r["dataset"] == dataset):
            if "skipped" in row:
                lines.append(f"| {row['pair']} | – | skipped: {row['skipped']} | | | | |")
                continue
            for t, cell in row["by_threads"].items():
                lines.append(
                    f"| {row['pair']}: {row['ours']} vs {row['peer']} | {t} | "
                    f"{_fmt_time(cell['ours'])} | {_fmt_metric(cell['ours'], row['metric'])} | "
                    f"{_fmt_time(cell['peer'])} | {_fmt_metric(cell['peer'], row['metric'])} | "
                    f"**{cell['ratio_median']:.2f}** [{cell['ratio_min']:.2f}–"
                    f"{cell['ratio_max']:.2f}] |"
                )
            if row.get("note"):
                notes.append(f"- {row['pair']}: {row['note']}")
        lines += ["", *notes, ""]
        lines += _cpu_lines([r for r in result["rows"] if r["dataset"] == dataset])
        if len(threads) > 1:
            lines += _threads_table([r for r in result["rows"] if r["dataset"] == dataset], threads)
    return "\n".join(lines)


def write_speed(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``speed.json`` and ``speed.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / "speed.json", out / "speed.md"
    jpath.write_text(json.dumps(result, indent=2) + "\n")
    mpath.write_text(speed_markdown(result))
    return jpath, mpath
