"""Bodies of ``recforge benchmark`` and ``recforge evaluate --protocol`` (registered in app.py)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recforge.data.datasource import DataSource


def _split_list(text: str | None) -> list[str] | None:
    """``"a,b:{"x": 1, "y": 2},c"`` -> specs, keeping commas inside brackets and quotes."""
    if text is None or not text.strip():
        return None
    from recforge.bench.runner import _split_top_level

    # Model specs separate their own key=value pairs with commas too; a new spec starts at a
    # token that does not look like key=value (``a,b:k=1,k2=2,c`` -> a | b:k=1,k2=2 | c).
    out: list[str] = []
    for token in _split_top_level(text):
        head = token.split(":", 1)[0]
        if out and "=" in head and ":" in out[-1]:
            out[-1] = f"{out[-1]},{token}"
        else:
            out.append(token)
    return out


def benchmark_command(
    *,
    suite: str,
    data: str,
    models: str | None,
    protocols: str | None,
    out: Path | None,
    folds: int | None,
    peers: bool,
    configs: Path | None,
    defaults: bool,
    threads: int | None,
    json_out: bool,
    source: DataSource | None = None,
    data_args: list[str] | None = None,
) -> None:
    """Run the benchmark, show progress and the tables, write benchmark.md/json.

    ``source`` (built from the data flags, ``data_args`` as typed) replaces ``data`` for loading.
    """
    from recforge.bench.runner import default_configs_dir, run_benchmark
    from recforge.cli._output import console, emit_json
    from recforge.data.sources import is_movielens_name, load_dataset
    from recforge.threads import forced_threads
    from recforge.threads import threads as torch_threads

    # The canonical command with every option explicit (not sys.argv: tests and `python -m`
    # call main(argv) directly), so the report states exactly how to reproduce it.
    args = ["benchmark", "--suite", suite, "--data", data, *(data_args or [])]
    args += ["--models", models] if models else []
    args += ["--protocols", protocols] if protocols else []
    args += ["--folds", str(folds)] if folds is not None else []
    args += ["--peers" if peers else "--no-peers"]
    args += ["--defaults"] if defaults else (["--configs", str(configs)] if configs else [])
    args += ["--threads", str(threads)] if threads is not None else []
    command = "recforge " + shlex.join(args)
    dataset = data if is_movielens_name(data) else Path(data).stem
    out_dir = out if out is not None else Path("runs") / "benchmark" / f"{dataset}-{suite}"
    configs_dir = None if defaults else (configs or default_configs_dir())
    inter = load_dataset(source if source is not None else data)
    display = _BenchmarkProgress(json_out)
    with display.progress, forced_threads(threads), torch_threads(threads):
        result = run_benchmark(
            inter,
            dataset=dataset,
            suite=suite,
            models=_split_list(models),
            protocols=_split_list(protocols),
            folds=folds,
            peers=peers,
            configs_dir=configs_dir,
            command=command,
            out=out_dir,
            progress=display.step,
            on_total=display.on_total,
        )
    payload = result.to_dict()
    if json_out:
        emit_json(payload | {"out": str(out_dir)})
        return
    render_benchmark(payload)
    console().print(f"wrote {out_dir / 'benchmark.md'} and {out_dir / 'benchmark.json'}")


class _BenchmarkProgress:
    """A transient bar on a terminal's stderr; off one, a line as each cell starts (not --json)."""

    def __init__(self, json_out: bool) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        err_console = Console(stderr=True)
        self.json_out = json_out
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=json_out or not err_console.is_terminal,
        )
        self.task = self.progress.add_task("benchmark", total=None)

    def on_total(self, n: int) -> None:
        self.progress.update(self.task, total=n)

    def step(self, desc: str, advance: int) -> None:
        from recforge.progress import line

        self.progress.update(self.task, description=desc, advance=advance)
        if not advance:  # off a terminal: one line as each cell starts
            total = self.progress.tasks[0].total
            done = int(self.progress.tasks[0].completed)
            line(f"benchmark {done + 1}/{total or '?'}: {desc}", verbose=not self.json_out)


def render_benchmark(payload: dict[str, Any]) -> None:
    """One rich table per protocol, titled with the protocol's label; reasons as notes below."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from recforge.bench.report_md import table_cells
    from recforge.cli._output import console

    con = console()
    if not con.is_terminal:  # files and pipes: wide enough that cells do not wrap
        con = Console(highlight=False, width=220)
    for name, why in (payload.get("skipped_protocols") or {}).items():
        con.print(f"[yellow]protocol {name} not run:[/yellow] {why}")
    for name, info in payload["protocols"].items():
        header, rows = table_cells(payload, name)
        table = Table(
            title=f"{info['label']} on {payload['dataset']}: mean ± sd over "
            f"{', '.join(info['folds'])}",
            title_justify="left",
        )
        for i, col in enumerate(header):
            title = col.replace(" (mean ± sd)", "")
            table.add_column(title, justify="left" if i < 2 or i == len(header) - 1 else "right")
        notes = []
        for r in rows:
            status, _, reason = r[-1].partition(": ")
            if reason:
                notes.append(escape(f"  {r[0]}: {status}: {reason}"))
            table.add_row(*(escape(c) for c in r[:-1]), escape(status))
        con.print(table)
        for note in notes:
            con.print(note, style="dim")
    load = payload["environment"].get("load_average_start")
    con.print(f"[dim]load average at start {load}; {payload['environment']['machine']}[/dim]")


def train_protocol_command(
    model: str,
    data: str | DataSource,
    protocol: str,
    fold: str,
    params: dict[str, Any],
    out: Path | None,
    json_out: bool,
) -> None:
    """``recforge train --protocol P [--fold N]``: fit on the protocol's training part."""
    from recforge.cli._output import emit_json
    from recforge.cli.render import render_train_result
    from recforge.eval.protocols import train_protocol_run

    result = train_protocol_run(model, data, protocol, fold=fold, config=params, out=out)
    if json_out:
        emit_json({"run_dir": str(result.run_dir) if result.run_dir else None, **result.metrics})
        return
    render_train_result(result)


def _speed_opts(opts: str | None) -> tuple[bool, int | None, float]:
    """``--speed-opts``: (only the given thread count, repetitions that measure quality,
    minimum seconds of fits per measurement)."""
    from recforge.bench.speed import MIN_SECONDS
    from recforge.errors import ConfigError

    only, eval_reps, min_seconds = False, None, MIN_SECONDS
    for part in _split_list(opts) or []:
        value = part.split("=", 1)[1] if "=" in part else ""
        if part == "only-threads":
            only = True
        elif part.startswith("eval-reps=") and value.isdigit():
            eval_reps = max(1, int(value))
        elif part.startswith("min-seconds=") and value.replace(".", "", 1).isdigit():
            min_seconds = float(value)
        else:
            raise ConfigError(
                f"--speed-opts: unknown option {part!r}; use only-threads, eval-reps=N "
                "and/or min-seconds=S"
            )
    return only, eval_reps, min_seconds


def speed_command(
    *,
    data: str,
    pairs: str | None,
    threads: int | None,
    reps: int,
    out: Path | None,
    opts: str | None = None,
) -> None:
    """``recforge benchmark --suite speed``: run the pairs, write speed.md and speed.json.

    ``data`` is a comma list of datasets; the thread counts are 1 and ``threads`` (default: the
    CPUs available), so the report also shows recforge's own N-thread / 1-thread ratio
    (``--speed-opts only-threads``: ``threads`` alone, for logs too large to fit twice).
    """
    from recforge.bench.speed import load_speed_dataset, run_speed, write_speed
    from recforge.cli._output import console
    from recforge.progress import line
    from recforge.threads import default_threads

    names = [d.strip() for d in data.split(",") if d.strip()]
    n = threads if threads is not None else default_threads()
    only, eval_reps, min_seconds = _speed_opts(opts)
    counts = [n] if n == 1 or only else [1, n]
    out_dir = out if out is not None else Path("runs") / "benchmark" / "speed"
    args = ["benchmark", "--suite", "speed", "--data", ",".join(names), "--reps", str(reps)]
    args += ["--models", pairs] if pairs else []
    args += ["--threads", str(threads)] if threads is not None else []
    args += ["--out", str(out)] if out is not None else []
    args += ["--speed-opts", opts] if opts else []
    datasets = [(name, load_speed_dataset(name)) for name in names]
    result = run_speed(
        datasets,
        threads=counts,
        reps=reps,
        eval_reps=eval_reps,
        pairs=_split_list(pairs),
        command="recforge " + shlex.join(args),
        progress=lambda desc: line(f"speed: {desc}", verbose=True),
        min_seconds=min_seconds,
    )
    jpath, mpath = write_speed(result, out_dir)
    console().print(f"wrote {mpath} and {jpath}")


def compare_rows_command(
    directories: list[Path],
    *,
    a: list[str],
    b: list[str],
    metric: str | None,
    n_boot: int,
    seed: int,
    json_out: bool,
) -> None:
    """``recforge compare-rows DIR... --a ROW --b ROW``: paired bootstrap of two benchmark rows
    (each ``--a``/``--b`` given more than once: the per-user mean over those rows, a config's
    seeds)."""
    from recforge.bench.paired import metric_columns, paired_comparison, read_per_user
    from recforge.bench.runner import PER_USER_FILE
    from recforge.cli._output import emit_json

    per_user = read_per_user(directories, PER_USER_FILE)
    if metric is None:  # the ranking headline where there is one, else the file's first metric
        metrics = metric_columns(per_user)
        metric = "ndcg@10" if "ndcg@10" in metrics or not metrics else metrics[0]
    result = paired_comparison(per_user, a, b, metric, n_boot=n_boot, seed=seed)
    if json_out:
        emit_json(result | {"dir": [str(d) for d in directories]})
        return
    render_comparison(result)


def render_comparison(result: dict[str, Any]) -> None:
    """One rich table per dataset/protocol: a line per fold, then the pooled line."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from recforge.cli._output import console

    con = console()
    if not con.is_terminal:  # files and pipes: no wrapping of the CI column
        con = Console(highlight=False, width=160)
    pct = f"{result['confidence']:.0%}"
    for res in result["results"]:
        table = Table(
            title=escape(
                f"{result['metric']}, {res['protocol']} on {res['dataset']}: "
                f"A = {result['a']}, B = {result['b']}"
            ),
            caption=f"paired bootstrap, {result['n_boot']} resamples of users",
            title_justify="left",
            caption_justify="left",
        )
        for i, col in enumerate(
            ("fold", "users", "mean A", "mean B", "A − B", f"{pct} CI", "P(A > B)")
        ):
            table.add_column(col, justify="left" if i == 0 else "right")
        lines = res["folds"] + ([res["pooled"]] if len(res["folds"]) > 1 else [])
        for s in lines:
            table.add_row(
                escape(s["fold"]),
                str(s["n_users"]),
                f"{s['mean_a']:.4f}",
                f"{s['mean_b']:.4f}",
                f"{s['difference']:+.4f}",
                f"[{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]",
                f"{s['p_a_gt_b']:.3f}",
            )
        con.print(table)
    note = "P(A > B): share of resampled mean differences above 0 (not a p-value)"
    if any(len(res["folds"]) > 1 for res in result["results"]):
        note += "; pooled: every (fold, user) resampled as one independent unit"
    con.print(f"[dim]{note}.[/dim]")
