"""``recforge train``: its options (one table) and the steps its command calls.

The options are typer ``Annotated`` aliases so that the command's signature stays one line per
option; the steps turn the parsed options into one :mod:`recforge.pipeline` call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Registered model name (see `recforge models`)."),
]
DataOpt = Annotated[
    str | None,
    typer.Option("--data", "-d", help="Ratings file or MovieLens name (default ml-100k)."),
]
SplitOpt = Annotated[
    str,
    typer.Option(
        "--split",
        "-s",
        help="Split spec, e.g. random:0.2, temporal-user:0.2, ml100k:u1; 'none' trains on "
        "all the data (production; nothing held out, so no evaluate step and no test metrics).",
    ),
]
TrainFileOpt = Annotated[
    Path | None,
    typer.Option("--train", help="Train file (e.g. from `recforge data split`); with --test."),
]
TestFileOpt = Annotated[
    Path | None, typer.Option("--test", help="Test file to evaluate on (with --train).")
]
ValidRatioOpt = Annotated[
    float | None,
    typer.Option(
        "--valid-ratio", help="With --split none: random share held out for early stopping."
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Run directory to write.")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML/JSON file of hyper-parameters.")
]
SetsOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one hyper-parameter: key=value (repeatable)."),
]
EpochsOpt = Annotated[int | None, typer.Option(help="Training epochs (neural models).")]
LrOpt = Annotated[float | None, typer.Option(help="Learning rate (neural models).")]
BatchSizeOpt = Annotated[int | None, typer.Option(help="Batch size (neural models).")]
FactorsOpt = Annotated[int | None, typer.Option(help="Embedding size (factor models).")]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="CPU threads for this fit (the same as `recforge --threads N train ...`; overrides "
        "the config's num_threads; default: the CPUs this process may use).",
    ),
]
ProtocolOpt = Annotated[
    str | None,
    typer.Option(
        "--protocol",
        "-p",
        help="Train on a named protocol's training part instead of --split "
        "(ml100k-folds, random-80-20, temporal-user-80-20, loo-latest, ncf-loo, "
        "heldout-users).",
    ),
]
FoldOpt = Annotated[
    str, typer.Option("--fold", help="Protocol fold: index (0..) or label (u1, seed=43).")
]
CheckpointEveryOpt = Annotated[
    int | None,
    typer.Option(help="Checkpoint training every N epochs into <out>.ckpt/ (needs --out)."),
]
CheckpointMinutesOpt = Annotated[
    float | None,
    typer.Option(help="Checkpoint at the first epoch end M minutes after the last one."),
]
ResumeOpt = Annotated[
    Path | None,
    typer.Option(help="Continue the interrupted run RUN_DIR from its last checkpoint."),
]
DistributedOpt = Annotated[
    bool,
    typer.Option(
        help="Data-parallel (DDP) training; start with torchrun --nproc_per_node=N "
        "-m recforge.cli train ... --distributed."
    ),
]


def resume_command(resume: Path, *, others_given: bool, distributed: bool, json_out: bool) -> None:
    """``train --resume RUN_DIR``: everything else comes from ``RUN_DIR.ckpt``."""
    from recforge.errors import ConfigError
    from recforge.pipeline import resume_run

    if others_given:
        raise ConfigError(
            "--resume RUN_DIR restores model, data, split and config from RUN_DIR.ckpt; "
            "pass no other training options"
        )
    report_train(resume_run(resume, distributed=distributed), json_out)


def train_params(
    model: str, config: Path | None, sets: list[str] | None, flags: dict[str, Any]
) -> dict[str, Any]:
    """Hyper-parameters: the config file, then the flags given, then ``--set``; validated."""
    from recforge.cli._output import parse_sets
    from recforge.config import load_config_file
    from recforge.models.registry import create

    params: dict[str, Any] = load_config_file(config) if config else {}
    params.pop("model", None)
    params |= {k: v for k, v in flags.items() if v is not None}
    params |= parse_sets(sets)
    create(model, dict(params))  # a bad config fails here, before any data is looked at
    return params


def check_protocol_options(
    checkpoint_every: int | None, checkpoint_minutes: float | None, distributed: bool
) -> None:
    if checkpoint_every is not None or checkpoint_minutes is not None or distributed:
        from recforge.errors import ConfigError

        # train_protocol_run has no checkpoint/DDP path; never drop the options silently.
        raise ConfigError(
            "--protocol does not combine with --checkpoint-every, --checkpoint-minutes or "
            "--distributed yet; train with --split (e.g. temporal-user:0.2) for those"
        )


def check_files(train_file: Path | None, test_file: Path | None, data: str | None) -> None:
    from recforge.errors import ConfigError

    if (train_file is None) != (test_file is None):
        raise ConfigError("--train and --test go together (the files `recforge data split` wrote)")
    if train_file is not None and data is not None:
        raise ConfigError("give --data or --train/--test, not both")


def report_train(result: Any, json_out: bool) -> None:
    """Print a TrainResult (rank 0 only: other torchrun ranks stay silent)."""
    if result.rank != 0:
        return
    if json_out:
        from recforge.cli._output import emit_json

        emit_json({"run_dir": str(result.run_dir) if result.run_dir else None, **result.metrics})
        return
    from recforge.cli.render import render_train_result

    render_train_result(result)


def force_threads(threads: int | None) -> None:
    """``train --threads N``: every fit of this command on ``N`` threads (None: leave the global
    ``recforge --threads`` choice, or the config's and the machine's, as they are)."""
    if threads is not None:
        from recforge.threads import set_forced_threads

        set_forced_threads(threads)
