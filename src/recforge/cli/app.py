"""Command definitions. Each command parses options, calls one library function, prints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from recforge.cli import train as topts
from recforge.cli._data_options import DataFlags, data_options

app = typer.Typer(
    name="recforge",
    help="Train, evaluate, explain and serve deep-learning recommenders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect and split rating data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")
]


def _print_version(value: bool) -> None:
    if value:
        from recforge import __version__

        typer.echo(f"recforge {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        # Eager: answered while parsing, so `recforge --version` alone needs no command.
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="CPU threads for every fit (overrides configs' num_threads; default: the CPUs "
            "this process may use, from its affinity and cgroup quota).",
        ),
    ] = None,
) -> None:
    from recforge.threads import set_forced_threads

    set_forced_threads(threads)


# ---------------------------------------------------------------------------- data
@data_app.command("describe")
@data_options
def data_describe(
    source: Annotated[
        str, typer.Argument(help="A ratings file or a MovieLens name (ml-100k, ...).")
    ],
    data_flags: DataFlags,
    json_out: JsonOpt = False,
) -> None:
    """Users, items, ratings, density, rating histogram, the column mapping and the time range."""
    from recforge.cli._output import console, emit_json
    from recforge.cli.describe import render_describe
    from recforge.data.describe import describe
    from recforge.data.sources import load_with_info

    inter, info = load_with_info(data_flags.source(source))
    stats = describe(inter) | {"read": info}
    if json_out:
        emit_json(stats)
        return
    render_describe(console(), stats)


@data_app.command("split")
@data_options
def data_split(
    source: Annotated[str, typer.Argument(help="A ratings file or a MovieLens name.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write train.csv and test.csv into.")
    ],
    data_flags: DataFlags,
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            "-p",
            help="random:0.2 | temporal-user:0.2 | global-temporal:0.2 | loo | ml100k:u1 ...",
        ),
    ] = "random:0.2",
    json_out: JsonOpt = False,
) -> None:
    """Split a dataset with a named, seeded protocol and write its parts as CSV (atomically).

    `recforge train --train OUT/train.csv --test OUT/test.csv` reads them back.

    Each row carries its item's title (a `title` column) when the data has titles, and, for
    implicit data whose events carry weights (repeats, a count column or --event-weights), its
    weight (a `count` column, named in split.json, which also records --event-weights/--events).
    """
    from recforge.cli._output import console, emit_json
    from recforge.data.sources import load_with_info
    from recforge.data.split_io import write_split
    from recforge.errors import ConfigError
    from recforge.pipeline import AllDataSplit, resolve_split

    read = data_flags.source(source)
    inter, info = load_with_info(read)
    split = resolve_split(inter, protocol)
    if isinstance(split, AllDataSplit):
        raise ConfigError("--protocol none writes no split; pick e.g. random:0.2")
    # The title column as given (else as found by its name), so that flag given again for the
    # parts reads their 'title' column (split_io.part_title_source).
    title_from = (read.columns() or {}).get("title", info.get("titles_column"))
    written = write_split(split, out, events=read.event_settings(), title_from=title_from)
    summary = {
        "protocol": split.protocol.describe(),
        "files": {k: str(v) for k, v in written.items()},
    }
    summary |= {f"n_{name}": len(getattr(split, name)) for name in ("train", "test")}
    if json_out:
        emit_json(summary)
        return
    con = console()
    con.print(f"protocol {summary['protocol']}")
    for name, path in written.items():
        con.print(f"  {name:<6} {len(getattr(split, name)):>9} rows -> {path}")


# ---------------------------------------------------------------------------- models
@app.command("models")
def list_models(json_out: JsonOpt = False) -> None:
    """List registered models: name, feedback kind (explicit/implicit/both), description."""
    from recforge.cli._output import emit_json
    from recforge.models.registry import available, describe

    rows = [describe(name) for name in available()]
    if json_out:
        emit_json(rows)
        return
    width = max(len(r["name"]) for r in rows)
    typer.echo(f"{'model':<{width}}  {'feedback':<8}  description")
    for r in rows:
        typer.echo(f"{r['name']:<{width}}  {r['feedback']:<8}  {r['description']}")


KsOpt = Annotated[
    str | None, typer.Option("--k", help="Cut-offs of the ranking metrics, e.g. 5,10,20.")
]
LikeOpt = Annotated[
    float | None,
    typer.Option(
        "--like-threshold", help="'Liked' means rating > this (default: the scale's middle)."
    ),
]
RelevanceOpt = Annotated[
    float | None,
    typer.Option(
        "--relevance-threshold",
        help="Relevant means rating >= this (default: 3/4 up the scale; 4 on 1-5).",
    ),
]


@app.command("train")
@data_options
def train(
    data_flags: DataFlags,
    model: topts.ModelOpt = None,
    data: topts.DataOpt = None,
    split: topts.SplitOpt = "random:0.2",
    train_file: topts.TrainFileOpt = None,
    test_file: topts.TestFileOpt = None,
    valid_ratio: topts.ValidRatioOpt = None,
    ks: KsOpt = None,
    like_threshold: LikeOpt = None,
    relevance_threshold: RelevanceOpt = None,
    out: topts.OutOpt = None,
    config: topts.ConfigOpt = None,
    sets: topts.SetsOpt = None,
    epochs: topts.EpochsOpt = None,
    lr: topts.LrOpt = None,
    batch_size: topts.BatchSizeOpt = None,
    n_factors: topts.FactorsOpt = None,
    seed: topts.SeedOpt = None,
    threads: topts.ThreadsOpt = None,
    protocol: topts.ProtocolOpt = None,
    fold: topts.FoldOpt = "0",
    checkpoint_every: topts.CheckpointEveryOpt = None,
    checkpoint_minutes: topts.CheckpointMinutesOpt = None,
    resume: topts.ResumeOpt = None,
    distributed: topts.DistributedOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a model, evaluate it on the split's test part, and save the run."""
    from recforge.cli._output import parse_ks
    from recforge.errors import ConfigError
    from recforge.pipeline import train_run

    topts.force_threads(threads)
    if resume is not None:
        given = [model, config, sets, epochs, lr, batch_size, n_factors, seed, out, data]
        given += [train_file, test_file, valid_ratio, ks, like_threshold, relevance_threshold]
        others = any(v is not None for v in given) or data_flags.any()
        topts.resume_command(
            resume, others_given=others, distributed=distributed, json_out=json_out
        )
        return
    if model is None:
        raise ConfigError("--model is required (or --resume RUN_DIR)")
    flags = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "n_factors": n_factors}
    params = topts.train_params(model, config, sets, flags | {"seed": seed})
    if protocol is not None:
        topts.check_protocol_options(checkpoint_every, checkpoint_minutes, distributed)
        from recforge.cli.benchmark import train_protocol_command

        source = data_flags.source(data or "ml-100k")
        train_protocol_command(model, source, protocol, fold, params, out, json_out)
        return
    topts.check_files(train_file, test_file, data)
    result = train_run(
        model,
        data_flags.source(train_file if train_file is not None else data or "ml-100k"),
        split=split,
        config=params,
        out=out,
        ks=parse_ks(ks),
        checkpoint_every_epochs=checkpoint_every,
        checkpoint_every_minutes=checkpoint_minutes,
        distributed=distributed,
        test_data=data_flags.source(test_file) if test_file is not None else None,
        valid_ratio=valid_ratio,
        like_threshold=like_threshold,
        relevance_threshold=relevance_threshold,
    )
    topts.report_train(result, json_out)


@app.command("evaluate")
@data_options
def evaluate_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory written by `recforge train`.")],
    data_flags: DataFlags,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Dataset (default: the run's).")
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", "-s", help="Split spec (default: the run's).")
    ] = None,
    test_file: Annotated[
        Path | None,
        typer.Option("--test", help="Score on this test file (the run's data is the train part)."),
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            "--protocol",
            "-p",
            help="Score on a named protocol (default: the run's); refuses a run that saw its "
            "test data.",
        ),
    ] = None,
    fold: Annotated[
        str | None, typer.Option("--fold", help="Protocol fold (default: the run's, else 0).")
    ] = None,
    memory_budget: Annotated[
        str | None,
        typer.Option("--memory-budget", help="Scoring memory per user chunk, e.g. 4GB, 512MB."),
    ] = None,
    ks: KsOpt = None,
    like_threshold: LikeOpt = None,
    relevance_threshold: RelevanceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-evaluate a saved run on a split or a named protocol of its data (never trains)."""
    from recforge.batch import parse_memory_budget
    from recforge.cli._output import console, emit_json, parse_ks
    from recforge.cli.outcomes import render_evaluation
    from recforge.pipeline import evaluate_saved_run

    result = evaluate_saved_run(
        run,
        protocol=protocol,
        fold=fold,
        data=data_flags.source(data) if data is not None else None,
        split=split,
        test_data=data_flags.source(test_file) if test_file is not None else None,
        ks=parse_ks(ks) if ks else None,
        memory_budget_bytes=parse_memory_budget(memory_budget),
        like_threshold=like_threshold,
        relevance_threshold=relevance_threshold,
        data_options=data_flags.given(),
    )
    if json_out:
        emit_json(result)
    else:
        render_evaluation(console(), result)


@app.command("recommend")
def recommend(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    user: Annotated[
        list[str] | None, typer.Option("--user", "-u", help="Raw user id (repeatable).")
    ] = None,
    item: Annotated[
        list[str] | None,
        typer.Option(
            "--item",
            "-i",
            help="A new user's item, oldest first (repeatable; sequential models read the order).",
        ),
    ] = None,
    rating: Annotated[
        list[str] | None,
        typer.Option("--rating", "-r", help="A new user's rating ID=VALUE (repeatable)."),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100000, help="How many items.")] = 10,
    include_seen: Annotated[
        bool, typer.Option(help="Also recommend items the user already rated (or gave).")
    ] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Say which rated items led to each item.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Top-k recommendations for existing users (--user), or for a new user from their items
    (--item, repeated) or ratings (--rating ID=VALUE, repeated) without retraining, with titles
    and categories when known."""
    from recforge.cli import newuser

    newuser.check_one_form(user, item, rating)
    if not user:
        # Ratings are checked before the run loads (a typo should not wait for torch).
        ratings = None if item else newuser.parse_ratings(rating or [])
        newuser.recommend_new_user(run, item, ratings, k, include_seen, explain, json_out)
        return
    _recommend_known(run, user, k, include_seen, explain, json_out)


def _recommend_known(
    run: Path, user: list[str], k: int, include_seen: bool, explain: bool, json_out: bool
) -> None:
    """``recommend --user``: the top ``k`` of each known user."""
    from recforge.artifacts import load_run
    from recforge.cli._output import console, emit_json
    from recforge.cli.explain import render_because
    from recforge.cli.render import coerce_ids, reclist_json, render_reclist

    model = load_run(run).model
    ids = coerce_ids(user, model.users_.ids)
    recs = model.recommend(ids, k, exclude_seen=not include_seen)
    why = [model.explain_batch(r.user_id, list(r.item_ids)) if explain else [] for r in recs]
    if json_out:
        emit_json([reclist_json(r, model, explanations=e) for r, e in zip(recs, why, strict=True)])
        return
    con = console()
    for rec, exps in zip(recs, why, strict=True):
        render_reclist(con, f"Top {k} for user {rec.user_id}", rec, model.item_meta_)
        if exps:
            render_because(con, rec, exps)


@app.command("explain")
def explain_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    user: Annotated[str, typer.Option("--user", "-u", help="Raw user id.")],
    item: Annotated[list[str], typer.Option("--item", "-i", help="Raw item id (repeatable).")],
    k: Annotated[int, typer.Option("-k", "--k", min=0, max=1000, help="History items.")] = 5,
    json_out: JsonOpt = False,
) -> None:
    """Why an item scores as it does for a user: each rated item's signed weight + residual."""
    from recforge.cli.explain import explain_command

    explain_command(run, user, item, k, json_out)


@app.command("similar")
def similar(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    item: Annotated[str, typer.Option("--item", "-i", help="Raw item id.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100000)] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Items most similar to one item (cosine over the model's item vectors)."""
    from recforge.artifacts import load_run
    from recforge.cli._output import console, emit_json
    from recforge.cli.render import coerce_ids, reclist_json, render_reclist

    model = load_run(run).model
    item_id = coerce_ids([item], model.items_.ids)[0]
    rec = model.similar_items(item_id, k)
    if json_out:
        emit_json(reclist_json(rec, model, key="item_id"))
        return
    from recforge.data.domain import nouns_for

    heading = f"{nouns_for(model.item_meta_).items.capitalize()} similar to {item_id}"
    render_reclist(console(), heading, rec, model.item_meta_, score_label="cosine")


# ---------------------------------------------------------------------------- report
@app.command("report")
@data_options
def report_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory written by `recforge train`.")],
    data_flags: DataFlags,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: RUN/report).")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="Dataset for the test split (default: the run's)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write an HTML report (curves, metrics, errors, embedding maps) of a saved run."""
    from recforge.cli.report import report_command

    report_command(run, out, data_flags.source(data) if data is not None else None, json_out)


# ---------------------------------------------------------------------------- benchmark
@app.command("benchmark")
@data_options
def benchmark_cmd(
    data_flags: DataFlags,
    suite: Annotated[
        str,
        typer.Option(
            "--suite",
            help="rating | ranking | all (see docs/protocols.md) | speed (recforge vs its "
            "fastest peer, timed; --data takes a comma list, --models picks pairs).",
        ),
    ] = "rating",
    data: Annotated[
        str, typer.Option("--data", "-d", help="Ratings file or MovieLens name.")
    ] = "ml-100k",
    models: Annotated[
        str | None,
        typer.Option("--models", "-m", help="Comma-separated model specs (default: the suite's)."),
    ] = None,
    protocols: Annotated[
        str | None,
        typer.Option("--protocols", "-p", help="Comma-separated protocols (default: the suite's)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for benchmark.md/json (default runs/benchmark/)."),
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option("--folds", min=1, help="Folds/seeds per protocol (default: each one's own)."),
    ] = None,
    peers: Annotated[
        bool, typer.Option("--peers/--no-peers", help="Add the surprise/implicit peer rows.")
    ] = True,
    configs: Annotated[
        Path | None,
        typer.Option("--configs", help="Tuned configs root (default ./configs)."),
    ] = None,
    defaults: Annotated[
        bool, typer.Option("--defaults", help="Ignore tuned configs; use model defaults.")
    ] = False,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="torch intra-op threads.")
    ] = None,
    reps: Annotated[
        int, typer.Option("--reps", min=1, help="speed suite: interleaved repetitions.")
    ] = 3,
    speed_opts: Annotated[
        str | None,
        typer.Option(
            "--speed-opts",
            help="speed suite: 'only-threads' (skip the 1-thread runs), 'eval-reps=N' "
            "(quality on the first N repetitions only), 'min-seconds=S' (repeat each timed fit "
            "until the fits last S seconds, default 1), comma-separated.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run models and peers on a suite's named protocols; write benchmark.md and benchmark.json."""
    from recforge.cli.benchmark import benchmark_command, speed_command

    if suite == "speed":
        speed_command(data=data, pairs=models, threads=threads, reps=reps, out=out, opts=speed_opts)
        return

    benchmark_command(
        suite=suite,
        data=data,
        models=models,
        protocols=protocols,
        out=out,
        folds=folds,
        peers=peers,
        configs=configs,
        defaults=defaults,
        threads=threads,
        json_out=json_out,
        source=data_flags.source(data) if data_flags.any() else None,
        data_args=data_flags.argv(),
    )


@app.command("compare-rows")
def compare_rows_cmd(
    directories: Annotated[
        list[Path],
        typer.Argument(
            help="`recforge benchmark` output folders (with per_user.parquet); rows of several "
            "folders are compared as one set."
        ),
    ],
    a: Annotated[
        list[str],
        typer.Option(
            "--a",
            help="Row label of model A (as in benchmark.md); repeat it for a config's seeds: "
            "each user's mean over them.",
        ),
    ],
    b: Annotated[list[str], typer.Option("--b", help="Row label of model B (repeatable too).")],
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="Metric column (default ndcg@10, else the file's first)."),
    ] = None,
    boot: Annotated[int, typer.Option("--boot", min=1, help="Bootstrap resamples.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the resampling.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Compare two benchmark rows user by user: mean difference A - B with a paired bootstrap
    95% CI, per fold and pooled (see docs/benchmarks.md)."""
    from recforge.cli.benchmark import compare_rows_command

    compare_rows_command(
        directories, a=a, b=b, metric=metric, n_boot=boot, seed=seed, json_out=json_out
    )


# ---------------------------------------------------------------------------- export
@app.command("export")
def export_cmd(
    run: Annotated[
        Path | None, typer.Argument(help="Run directory to export (omit with --list/--activate).")
    ] = None,
    db: Annotated[
        str,
        typer.Option("--db", help="Store URL: sqlite:///recs.db or postgresql://user@host/db."),
    ] = "sqlite:///recs.db",
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100000, help="Items per user.")] = 100,
    users: Annotated[
        str, typer.Option("--users", help="'all', or a file of raw user ids (one per line).")
    ] = "all",
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Users scored per chunk.")
    ] = None,
    memory_budget: Annotated[
        str | None,
        typer.Option(
            "--memory-budget", help="Scoring memory per user chunk (e.g. 4GB) if no --batch-size."
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option("--version", help="Version key (default: run folder name + creation time)."),
    ] = None,
    list_versions: Annotated[
        bool, typer.Option("--list", help="List stored versions (time, model, k, users).")
    ] = False,
    keep: Annotated[
        int | None,
        typer.Option("--keep", min=0, help="Prune all but the N newest versions (active kept)."),
    ] = None,
    activate: Annotated[
        str | None, typer.Option("--activate", help="Mark VERSION as the one the service reads.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Precompute top-k recommendations into SQLite/PostgreSQL; list, activate and prune versions.

    An export is one transaction: readers see the previous state until it completes, and an
    interrupted export leaves no rows behind. Steps run in the order export, activate, keep, list.
    """
    from recforge.batch import parse_memory_budget
    from recforge.cli._output import console, emit_json
    from recforge.cli.outcomes import render_export
    from recforge.export import export_steps, read_user_file

    out = export_steps(
        db,
        run,
        k=k,
        users=None if users == "all" or run is None else read_user_file(users),
        batch_size=batch_size,
        version=version,
        progress=not json_out,
        memory_budget_bytes=parse_memory_budget(memory_budget) if run is not None else None,
        activate=activate,
        keep=keep,
        list_versions=list_versions,
    )
    if json_out:
        emit_json(out)
    else:
        render_export(console(), out)


# ---------------------------------------------------------------------------- serve
@app.command("serve")
def serve_cmd(
    run: Annotated[
        Path | None, typer.Argument(help="Run directory to serve live (omit with --store).")
    ] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="Store URL written by `recforge export`.")
    ] = None,
    store_version: Annotated[
        str | None, typer.Option("--store-version", help="Store version (default: active).")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    index: Annotated[
        str | None, typer.Option("--index", help="Item index: auto | exact | hnsw | ivf.")
    ] = None,
    fallback: Annotated[
        str | None, typer.Option("--fallback", help="Unknown users: none (404) | popular.")
    ] = None,
    watch: Annotated[
        float | None,
        typer.Option("--watch", min=0.0, help="Seconds between checks for a new run/version."),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="uvicorn worker processes, each loading the model; a POST /admin/reload on "
            "any of them reaches all (they follow a shared state file, RECFORGE_STATE_FILE).",
        ),
    ] = 1,
) -> None:
    """Serve recommendations over HTTP (FastAPI on uvicorn) with a web page at /.

    Settings not given as flags come from RECFORGE_* environment variables.
    """
    import uvicorn

    from recforge.serve import Settings, create_app

    settings = Settings.from_env(
        run=str(run) if run is not None else None,
        store=store,
        store_version=store_version,
        index=index,
        fallback=fallback,
        watch_interval=watch,
    ).check()
    if "RECFORGE_FREEZE_HEAP" not in os.environ:  # a served process holds little besides the run
        settings = settings.model_copy(update={"freeze_heap": True})
    _preflight(settings)
    from recforge.serve.timeouts import uvicorn_options

    timeouts = uvicorn_options(
        settings.header_timeout, settings.keep_alive_timeout, settings.http_parser
    )
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, **timeouts)
        return
    # Worker processes import the factory and read the settings back from the environment;
    # they agree on reloads through a state file in a private folder (serve/shared.py).
    state_dir = None
    if settings.state_file is None:
        import tempfile

        state_dir = tempfile.mkdtemp(prefix="recforge-serve-")
        settings = settings.model_copy(update={"state_file": f"{state_dir}/state.json"})
    os.environ.update(settings.to_env())
    try:
        _serve_workers(host, port, workers, log_level, timeouts)
    finally:
        if state_dir is not None:
            import shutil

            shutil.rmtree(state_dir, ignore_errors=True)


def _preflight(settings: Any) -> None:
    """Refuse a run or store that cannot be served with one line (exit 2) before uvicorn starts.

    The service loads them in its lifespan, where a failure is a logged traceback and exit 3;
    the manifest check and the store lookup here are cheap and catch the usual mistakes (a wrong
    path, a folder that is not a run, an unknown store or version).
    """
    if settings.run:
        from recforge.artifacts import read_manifest

        read_manifest(settings.run)
    if settings.store:
        from recforge.serve.service import StoreBackend

        StoreBackend(settings.store, settings.store_version).close()


def _serve_workers(
    host: str, port: int, workers: int, log_level: str, options: dict[str, Any]
) -> None:
    """uvicorn's multi-process supervisor on a listening socket bound here.

    ``uvicorn.run(workers=N)`` binds its socket with ``proto=0``; accepted connections inherit
    that, asyncio then skips ``TCP_NODELAY``, and every keep-alive request after the first waits
    ~40 ms for a delayed ACK (uvicorn issue #3149). Binding with ``IPPROTO_TCP`` avoids it.
    """
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "recforge.serve.app:create_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level=log_level,
        **options,
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    Multiprocess(config, sockets=[sock]).run()


# ---------------------------------------------------------------------------- tune
@app.command("tune")
@data_options
def tune_cmd(
    data_flags: DataFlags,
    model: Annotated[str, typer.Option("--model", "-m", help="Model or peer name to tune.")],
    protocol: Annotated[
        str, typer.Option("--protocol", "-p", help="Named protocol (its validation carve).")
    ],
    trials: Annotated[int, typer.Option("--trials", "-n", help="Number of Optuna trials.")] = 20,
    data: Annotated[
        str, typer.Option("--data", "-d", help="Ratings file or MovieLens name.")
    ] = "ml-100k",
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    seed: Annotated[int, typer.Option(help="TPE sampler seed.")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the best config here (TOML).")
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Hold a hyper-parameter fixed: key=value (repeatable)."),
    ] = None,
    fold: Annotated[str, typer.Option(help="Protocol fold whose train part is carved.")] = "0",
    json_out: JsonOpt = False,
) -> None:
    """Tune hyper-parameters with Optuna (TPE, median pruning) on a validation carve of train."""
    from recforge.cli.tune import tune_command

    tune_command(
        model=model,
        protocol=protocol,
        trials=trials,
        data=data_flags.source(data) if data_flags.any() else data,
        timeout=timeout,
        seed=seed,
        out=out,
        sets=sets,
        fold=fold,
        json_out=json_out,
    )
