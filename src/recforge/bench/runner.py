"""``recforge benchmark``: every model (and peer) on a suite's named protocols, side by side.

For each protocol of the suite the splits are built **once** and every model and peer is fitted
and scored on the very same split objects, in the same process. Each (model, fold) cell records
the protocol's metrics, fit seconds, evaluate seconds and peak memory; a row aggregates its cells
into mean ± sd over folds/seeds (and, for ``ml100k-folds``, the u1 fold alone).

Suites:
    ``rating``: ``ml100k-folds`` + ``random-80-20`` + ``ml1m-90-10`` + ``ml1m-5fold``, each where
    it applies (rating models and the surprise peers).
    ``ranking``: ``temporal-user-80-20`` (``ncf-loo`` and ``heldout-users`` with ``--protocols``).
    ``all``: all five protocols; each gets the default models of its kind.

Configs:
    A model is given as ``name``, ``name:{json}`` or ``name:key=value,key=value`` (values read as
    JSON where they parse). Unless ``use_configs`` is False (``--defaults``), a tuned config file
    is looked up under ``configs_dir`` (default ``configs/``), first match wins:
    ``<dataset>/<protocol>/<label>.toml``, ``<dataset>/<protocol>/<name>.toml``,
    ``<dataset>/<label>.toml``, ``<dataset>/<name>.toml``, where ``label`` is the spec slugged
    (``ncf:variant=gmf`` -> ``ncf-variant-gmf``). A file's ``model = "..."`` key may name the
    model, so a bare label (``--models ncf-gmf``) can select a committed config. A spec with
    inline overrides looks up only its own label's file and otherwise starts from the model
    defaults (a file tuned for bare ``mf`` does not fit ``mf:n_factors=5``); the overrides apply
    on top. Every row records the config it used and where it came from.

Peak memory:
    Measured in-process on Linux: before each cell, writing ``5`` to ``/proc/self/clear_refs``
    resets the kernel's peak-RSS mark, and ``VmHWM`` in ``/proc/self/status`` is read after
    evaluation. So the figure is the process's peak resident memory during that fit + evaluate
    (it includes the interpreter, torch and the loaded data, reported separately as the
    baseline). Forking a child per cell would isolate cells better but does not mix well with
    torch's thread pools and would re-pay imports; where ``clear_refs`` is unavailable the
    monotone ``ru_maxrss`` is used and the report says so.

Rows that cannot run (a peer library missing, a model that does not predict ratings on a rating
protocol, a model without fold-in on ``heldout-users``, an error while fitting) are kept in the
tables with the reason, never dropped.

Per-user values:
    Each cell's per-user values of the protocol's metrics (those that exist per user) are kept and
    written next to ``benchmark.json`` as ``per_user.parquet`` (``dataset, protocol, fold, row,
    user_id`` + one float32 column per metric), so two rows can be compared user by user
    (:mod:`recforge.bench.paired`, ``recforge compare-rows``) without rerunning.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import importlib
import json
import math
import os
import platform
import re
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recforge.data.interactions import Interactions
from recforge.errors import ConfigError
from recforge.eval.protocols import Protocol, ProtocolSplit, get_protocol
from recforge.models.base import Recommender

if TYPE_CHECKING:
    import pandas as pd

    from recforge.eval.evaluate import EvalReport

#: File of the per-user metric values, next to ``benchmark.json``.
PER_USER_FILE = "per_user.parquet"
#: The columns that identify a per-user value; every other column of the file is a metric.
PER_USER_KEYS = ("dataset", "protocol", "fold", "row", "user_id")

SUITES: dict[str, tuple[str, ...]] = {
    # Each protocol runs where it applies: the ml100k/ml1m ones skip other data with a reason.
    "rating": ("ml100k-folds", "random-80-20", "ml1m-90-10", "ml1m-5fold"),
    "ranking": ("temporal-user-80-20",),
    "all": (
        "ml100k-folds",
        "random-80-20",
        "ml1m-90-10",
        "ml1m-5fold",
        "temporal-user-80-20",
        "ncf-loo",
        "heldout-users",
    ),
}

#: Default models per protocol kind (see RATING_MODELS / RANKING_MODELS in the Makefile).
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "rating": (
        "global_mean",
        "biases",
        "biased_mf",
        "mf",
        "embedding_net",
        "ncf",
        "two_tower",
        "autorec",
        'item_knn:similarity="pearson_baseline"',
        'user_knn:similarity="pearson_baseline"',
        'als:objective="explicit"',
        "content",
    ),
    "ranking": (
        "popularity",
        "ease",
        "als",
        'item_knn:feedback="implicit"',
        'user_knn:feedback="implicit"',
        "mult_vae",
        "mult_dae",
        'mf:loss="bce",epochs=20,lr=0.02,weight_decay=0.0',
        'ncf:loss="bce"',
        'two_tower:loss="softmax"',
        'content:feedback="implicit"',
    ),
}

PEERS_MODULE = "recforge.bench.peers"


# ====================================================================== model specs
@dataclass(frozen=True)
class ModelSpec:
    """One model as given on the command line.

    Attributes:
        spec: the text given (also the row label).
        name: registry (or peer) name, or a config label to look up.
        overrides: inline config overrides.
        peer: True for a peer adapter (``recforge.bench.peers``).
    """

    spec: str
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    peer: bool = False

    @property
    def slug(self) -> str:
        """File-name form of the spec: ``ncf:variant=gmf`` -> ``ncf-variant-gmf``."""
        return re.sub(r"[^a-z0-9_.]+", "-", self.spec.lower()).strip("-.")


def parse_model_spec(spec: str) -> ModelSpec:
    """``name``, ``name:{json}`` or ``name:key=value,...`` (values JSON where they parse)."""
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"model spec {spec!r}: empty model name")
    overrides: dict[str, Any] = {}
    rest = rest.strip()
    if rest.startswith("{"):
        try:
            obj = json.loads(rest)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"model spec {spec!r}: invalid JSON config ({exc})") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"model spec {spec!r}: the JSON config must be an object")
        overrides = obj
    elif rest:
        for item in _split_top_level(rest):
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"model spec {spec!r}: expected key=value, got {item!r}")
            try:
                overrides[key.strip()] = json.loads(raw)
            except json.JSONDecodeError:
                overrides[key.strip()] = raw
    return ModelSpec(spec.strip(), name, overrides, peer=False)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets/braces/quotes (so list values survive)."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quoted = 0, False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "[{":
            depth += 1
        elif not quoted and ch in "]}":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (s.strip() for s in parts) if p]


def default_configs_dir() -> Path:
    """``./configs`` when it exists, else the source checkout's ``configs/``."""
    here = Path.cwd() / "configs"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "configs"


def resolve_config(
    spec: ModelSpec,
    dataset: str,
    protocol: str,
    configs_dir: Path | None,
) -> tuple[str, dict[str, Any], str]:
    """(model name, config, where the config came from) for ``spec`` on one protocol.

    Args:
        configs_dir: root of tuned configs, or None to use defaults + inline overrides only.
    """
    from recforge.config import load_config_file

    source = "defaults"
    base: dict[str, Any] = {}
    name = spec.name
    if configs_dir is not None:
        roots = [configs_dir / dataset / protocol, configs_dir / dataset]
        for root in roots:
            hit = next(
                (
                    root / f"{stem}.toml"
                    # Inline overrides (``mf:n_factors=5``) start from the model defaults: a
                    # file tuned for the bare model does not fit a changed variant/size.
                    for stem in ((spec.slug,) if spec.overrides else (spec.slug, spec.name))
                    if (root / f"{stem}.toml").is_file()
                ),
                None,
            )
            if hit is not None:
                base = load_config_file(hit)
                named = base.pop("model", None)
                if named is not None and str(named) != spec.name:
                    if _is_known_model(spec.name):
                        raise ConfigError(
                            f"{hit}: model = {named!r} but the file is looked up for "
                            f"{spec.name!r}; rename the file or fix its model key"
                        )
                    name = str(named)  # a label (``--models ncf-gmf``) naming its model
                source = _display_path(hit)
                break
    if spec.overrides:
        source = "inline" if source == "defaults" else f"{source} + inline"
    return name, base | spec.overrides, source


def _is_known_model(name: str) -> bool:
    from recforge.models.registry import available

    return name in available() or _is_peer(name)


def _display_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    return str(path)


# ====================================================================== peers
def _peers_module() -> Any | None:
    """The peers module, or None until it lands / when it cannot be imported."""
    try:
        return importlib.import_module(PEERS_MODULE)
    except ImportError:
        return None


def peer_rows_for(kind: str) -> list[tuple[str, str]]:
    """``[(peer name, "ok" or why it cannot run)]`` of the peers whose task is ``kind``.

    A missing peers module yields one pseudo-row saying so, so the table shows the gap.
    """
    mod = _peers_module()
    if mod is None:
        return [("peers", f"{PEERS_MODULE} is not available in this installation")]
    status: dict[str, str] = mod.peer_status()
    out = []
    for name in mod.peer_names():
        task = _peer_task(mod, name)
        if task == kind:
            out.append((name, status.get(name, "unknown status")))
    return out


def _peer_task(mod: Any, name: str) -> str:
    if hasattr(mod, "peer_task"):
        return str(mod.peer_task(name))
    return "ranking" if name.startswith("implicit") else "rating"


def _is_peer(name: str) -> bool:
    mod = _peers_module()
    return mod is not None and name in mod.peer_names()


def _create(name: str, config: dict[str, Any], peer: bool) -> Recommender:
    if peer:
        mod = _peers_module()
        if mod is None:
            raise ConfigError(f"peer {name}: {PEERS_MODULE} is not available")
        model: Recommender = mod.create_peer(name, config)
        return model
    from recforge.models.registry import create

    return create(name, config)


# ====================================================================== memory
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _status_kib(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_memory() -> str:
    """Reset the peak-RSS mark; returns the method the following measurement uses."""
    try:
        _CLEAR_REFS.write_text("5")
        if _status_kib("VmHWM") is not None:
            return "VmHWM after clear_refs=5"
    except OSError:
        pass
    return "ru_maxrss (process-wide peak, not reset between cells)"


def peak_memory_mib() -> float:
    """Peak resident memory (MiB) since the last reset (or process start without reset)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024.0


def current_memory_mib() -> float:
    """Current resident memory (MiB); NaN where /proc is unavailable."""
    kib = _status_kib("VmRSS")
    return float("nan") if kib is None else kib / 1024.0


# ====================================================================== results
@dataclass
class Cell:
    """One (model, fold): its metrics, timings and peak memory (or the error)."""

    fold: str
    metrics: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = float("nan")
    evaluate_seconds: float = float("nan")
    peak_rss_mib: float = float("nan")
    baseline_rss_mib: float = float("nan")
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Row:
    """One (model, protocol) row of a table."""

    label: str
    model: str
    protocol: str
    peer: bool
    config: dict[str, Any]
    config_source: str
    status: str = "ok"  # ok | error | n/a | unavailable
    reason: str | None = None
    cells: list[Cell] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        """``metric -> {"mean", "sd", "n"}`` over the folds that produced a value."""
        out: dict[str, dict[str, float]] = {}
        names = {m for c in self.cells for m in c.metrics}
        for m in sorted(names):
            vals = [c.metrics[m] for c in self.cells if math.isfinite(c.metrics.get(m, math.nan))]
            out[m] = _mean_sd(vals)
        for key in ("fit_seconds", "evaluate_seconds"):
            vals = [getattr(c, key) for c in self.cells if math.isfinite(getattr(c, key))]
            out[key] = _mean_sd(vals)
        peaks = [c.peak_rss_mib for c in self.cells if math.isfinite(c.peak_rss_mib)]
        out["peak_rss_mib"] = {"max": max(peaks) if peaks else math.nan, "n": float(len(peaks))}
        return out

    def fold(self, label: str) -> Cell | None:
        """The cell of fold ``label`` (e.g. ``"u1"``), if it ran."""
        return next((c for c in self.cells if c.fold == label and c.error is None), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN as None)."""
        out = asdict(self)
        out["summary"] = self.summary()
        clean: dict[str, Any] = _nan_to_none(out)
        return clean


def _mean_sd(vals: Sequence[float]) -> dict[str, float]:
    n = len(vals)
    if n == 0:
        return {"mean": math.nan, "sd": math.nan, "n": 0.0}
    mean = sum(vals) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
    return {"mean": mean, "sd": sd, "n": float(n)}


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


@dataclass
class BenchmarkResult:
    """Everything ``benchmark.json`` holds."""

    command: str
    dataset: str
    suite: str
    protocols: dict[str, dict[str, Any]]
    rows: list[Row]
    environment: dict[str, Any]
    created_at: str
    finished_at: str | None = None
    skipped_protocols: dict[str, str] = field(default_factory=dict)
    #: One frame per finished cell (see :func:`per_user_frame`); not part of benchmark.json.
    per_user: list[pd.DataFrame] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "command": self.command,
            "dataset": self.dataset,
            "suite": self.suite,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "environment": self.environment,
            "protocols": self.protocols,
            "skipped_protocols": self.skipped_protocols,
            "rows": [r.to_dict() for r in self.rows],
        }


def environment() -> dict[str, Any]:
    """Machine, versions, thread settings and load average (for the report header)."""
    import torch

    from recforge import __version__

    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "platform": platform.platform(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "recforge": __version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "thread_env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
            if k in os.environ
        },
        "load_average_start": load,
        "peak_memory_method": reset_peak_memory(),
    }


# ====================================================================== planning
@dataclass
class _Job:
    row: Row
    spec: ModelSpec | None
    proto: Protocol


def select_protocols(suite: str, protocols: Sequence[str] | None) -> list[Protocol]:
    """The protocols to run: ``protocols`` when given, else the suite's."""
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; valid: {', '.join(SUITES)}")
    names = list(protocols) if protocols else list(SUITES[suite])
    return [get_protocol(n) for n in names]


def _plan(
    protos: Sequence[Protocol],
    models: Sequence[str] | None,
    dataset: str,
    configs_dir: Path | None,
    peers: bool,
) -> list[_Job]:
    jobs: list[_Job] = []
    for proto in protos:
        texts = list(models) if models else list(DEFAULT_MODELS[proto.kind])
        specs = [parse_model_spec(t) for t in texts]
        specs = [ModelSpec(s.spec, s.name, s.overrides, peer=_is_peer(s.name)) for s in specs]
        if peers:
            given = {s.name for s in specs}
            for name, status in peer_rows_for(proto.kind):
                if name in given:
                    continue
                if status == "ok":
                    specs.append(ModelSpec(name, name, {}, peer=True))
                else:
                    row = Row(name, name, proto.name, True, {}, "-", "unavailable", status)
                    jobs.append(_Job(row, None, proto))
        for spec in specs:
            name, cfg, source = resolve_config(spec, dataset, proto.name, configs_dir)
            model = _create(name, cfg, spec.peer)  # validates the config before any work
            row = Row(spec.spec, name, proto.name, spec.peer, model.config.model_dump(), source)
            problem = proto.model_problem(model) or _foldin_problem(proto, model)
            if problem:
                row.status, row.reason = "n/a", problem
            jobs.append(_Job(row, ModelSpec(spec.spec, name, cfg, spec.peer), proto))
    return jobs


def _foldin_problem(proto: Protocol, model: Recommender) -> str | None:
    if proto.name != "heldout-users":
        return None
    cls = type(model)
    if (
        cls.fold_in_scores is Recommender.fold_in_scores
        and cls.fold_in_scores_batch is Recommender.fold_in_scores_batch
    ):
        return f"{model.name} cannot fold in new users (no fold_in_scores)"
    return None


# ====================================================================== running
ProgressHook = Callable[[str, int], None]


def run_benchmark(
    data: Interactions,
    *,
    dataset: str,
    suite: str = "rating",
    models: Sequence[str] | None = None,
    protocols: Sequence[str] | None = None,
    folds: int | None = None,
    peers: bool = True,
    configs_dir: Path | None = None,
    command: str = "",
    out: Path | None = None,
    progress: ProgressHook | None = None,
    on_total: Callable[[int], None] | None = None,
) -> BenchmarkResult:
    """Fit and score every model on every protocol of ``suite``; return (and write) the result.

    Args:
        data: the dataset.
        dataset: its name as given (``ml-100k``), used for config lookup and reports.
        suite: ``rating``, ``ranking`` or ``all``.
        models: model specs; default per protocol kind (:data:`DEFAULT_MODELS`).
        protocols: protocol names replacing the suite's list.
        folds: folds/seeds per protocol (default each protocol's own; deterministic protocols
            always have one).
        peers: add the peer rows of each protocol's kind.
        configs_dir: tuned configs root, or None to ignore tuned configs (``--defaults``).
        command: the command line, recorded in the report.
        out: folder for ``benchmark.json`` and ``benchmark.md``, rewritten after every row so
            an interrupted run keeps what finished.
        progress: called as ``progress(description, advance)`` before/after each cell.
        on_total: called once with the number of cells.
    """
    protos = select_protocols(suite, protocols)
    env = environment()
    result = BenchmarkResult(
        command=command,
        dataset=dataset,
        suite=suite,
        protocols={},
        rows=[],
        environment=env,
        created_at=_now(),
    )
    runnable: list[Protocol] = []
    for proto in protos:
        problem = proto.applicable(data)
        if problem:
            result.skipped_protocols[proto.name] = problem
        else:
            runnable.append(proto)
    jobs = _plan(runnable, models, dataset, configs_dir, peers)
    split_cache: dict[str, list[ProtocolSplit]] = {}
    for proto in runnable:
        split_cache[proto.name] = proto.splits(data, folds)
        result.protocols[proto.name] = proto.to_dict() | {
            "folds": [ps.fold for ps in split_cache[proto.name]],
            "splits": [ps.split.summary() for ps in split_cache[proto.name]],
        }
    if on_total is not None:
        on_total(sum(len(split_cache[j.proto.name]) for j in jobs))
    for job in jobs:
        result.rows.append(job.row)
        for fold, report in _run_row(job, split_cache[job.proto.name], progress):
            frame = per_user_frame(report, job.proto, dataset, fold, job.row.label)
            if frame is not None:
                result.per_user.append(frame)
        if out is not None:
            write_reports(result, out)
    result.finished_at = _now()
    result.environment["load_average_end"] = _loadavg()
    if out is not None:
        write_reports(result, out)
    return result


def _run_row(
    job: _Job, splits: list[ProtocolSplit], progress: ProgressHook | None
) -> list[tuple[str, EvalReport]]:
    """Run the row's cells; return ``(fold, report)`` of each cell that evaluated."""
    row, proto = job.row, job.proto
    reports: list[tuple[str, EvalReport]] = []
    for ps in splits:
        desc = f"{row.label} · {proto.label} {ps.fold}"
        if progress is not None:
            progress(desc, 0)
        if row.status == "ok" and job.spec is not None:
            cell, report = _run_cell(job.spec, proto, ps)
            row.cells.append(cell)
            if report is not None:
                reports.append((ps.fold, report))
            if cell.error is not None:
                row.status, row.reason = "error", f"fold {ps.fold}: {cell.error}"
        if progress is not None:
            progress(desc, 1)
    return reports


def _run_cell(
    spec: ModelSpec, proto: Protocol, ps: ProtocolSplit
) -> tuple[Cell, EvalReport | None]:
    cell = Cell(ps.fold)
    report: EvalReport | None = None
    gc.collect()
    cell.baseline_rss_mib = current_memory_mib()
    reset_peak_memory()
    try:
        model = _create(spec.name, spec.overrides, spec.peer)
        t0 = time.perf_counter()
        model.fit(ps.train)
        cell.fit_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        res, report = proto.evaluate_with_report(model, ps)
        cell.evaluate_seconds = time.perf_counter() - t0
        cell.metrics = dict(res["metrics"])
        summary = (res.get("rating") or res.get("ranking") or {}).get("summary", {})
        cell.counts = {k: v for k, v in summary.items() if k.startswith("n_")}
    except Exception as exc:  # one failing model must not sink a long benchmark; it is reported
        cell.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    cell.peak_rss_mib = peak_memory_mib()
    return cell, report


def per_user_frame(
    report: EvalReport, proto: Protocol, dataset: str, fold: str, row: str
) -> pd.DataFrame | None:
    """One cell's per-user values: the key columns + the protocol's metrics that exist per user.

    Only metrics the protocol reports are kept (not counts, not the extra per-user columns of
    the evaluation), as float32: a long benchmark holds one frame per cell in memory. None when
    the report has no per-user column of the protocol's metrics (e.g. only ``coverage@k``).
    """
    import pandas as pd

    src = report.per_user
    metrics = [m for m in proto.metrics if m in src.columns]
    if not metrics or "user_id" not in src.columns:
        return None
    n = len(src)
    # Raw ids as text: a file mixing datasets whose ids are ints in one and strings in another
    # must still have one user_id type, and joins between rows compare like with like.
    frame = pd.DataFrame(
        {
            "dataset": [dataset] * n,
            "protocol": [proto.name] * n,
            "fold": [fold] * n,
            "row": [row] * n,
            "user_id": src["user_id"].astype(str).to_numpy(),
        }
    )
    for m in metrics:
        frame[m] = src[m].to_numpy(dtype="float32")
    return frame


def write_per_user(frames: Sequence[pd.DataFrame], out: Path) -> Path | None:
    """Write the cells' per-user frames as ``out/per_user.parquet`` (atomically); None if none.

    With no frames yet, a ``per_user.parquet`` left by an earlier run in ``out`` is removed: it
    would otherwise sit beside a ``benchmark.json`` it does not belong to.

    Metrics a protocol does not have are NaN in its rows (the rating and ranking protocols of
    ``--suite all`` share one file).
    """
    import pandas as pd

    from recforge._atomic import atomic_path

    path = out / PER_USER_FILE
    if not frames:
        path.unlink(missing_ok=True)
        return None
    table = pd.concat(frames, ignore_index=True, sort=False)
    for key in PER_USER_KEYS[:4]:  # few distinct values repeated per user: store them once
        table[key] = table[key].astype("category")
    for col in table.columns.difference(list(PER_USER_KEYS)):
        table[col] = table[col].astype("float32")
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return path


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def write_reports(result: BenchmarkResult, out: Path) -> tuple[Path, Path]:
    """Write ``benchmark.json``, ``benchmark.md`` and ``per_user.parquet`` into ``out``
    (each atomically)."""
    from recforge._atomic import atomic_write_text
    from recforge.bench.report_md import to_markdown

    out.mkdir(parents=True, exist_ok=True)
    payload = result.to_dict()
    jpath, mpath = out / "benchmark.json", out / "benchmark.md"
    # default=str: a config value JSON cannot hold (a tuple is fine, a Path is not) is
    # written as text rather than crashing a long run at its first report.
    atomic_write_text(jpath, json.dumps(payload, indent=2, default=str) + "\n")
    atomic_write_text(mpath, to_markdown(payload))
    write_per_user(result.per_user, out)
    return jpath, mpath
