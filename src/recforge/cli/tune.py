"""Body of ``recforge tune`` (registered in app.py): parse options, run the study, print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recforge.data.datasource import DataSource


def tune_command(
    *,
    model: str,
    protocol: str,
    trials: int,
    data: str | DataSource,
    timeout: float | None,
    seed: int,
    out: Path | None,
    sets: list[str] | None,
    fold: str,
    json_out: bool,
) -> None:
    """Run the study with a progress bar on stderr; print the best config (or JSON)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recforge.cli._output import console, emit_json, parse_sets
    from recforge.tune import tune

    err = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=json_out or not err.is_terminal,
    )
    task = progress.add_task(f"tune {model}", total=trials)

    from recforge.progress import line

    def on_trial(number: int, total: int, value: float | None) -> None:
        progress.update(task, total=total, completed=number + 1)
        shown = "pruned" if value is None else f"{value:.4f}"
        line(f"tune {model}: trial {number + 1}/{total} {shown}", verbose=not json_out)

    with progress:
        result = tune(
            model,
            protocol,
            data=data,
            trials=trials,
            timeout=timeout,
            seed=seed,
            fixed=parse_sets(sets),
            out=out,
            fold=int(fold) if fold.isdigit() else fold,
            callback=on_trial,
        )
    if json_out:
        emit_json({**result.to_dict(), "out": str(out) if out else None})
        return
    con = console()
    con.print(result.header().replace("# ", "").rstrip())
    for key, value in result.config.items():
        con.print(f"  {key} = {value!r}")
    if out is not None:
        from recforge.models.registry import available

        # Peers are not registered models: their tuned files are read by the benchmark only.
        use = (
            f"recforge train --model {model} --config {out}"
            if model in available()
            else f"recforge benchmark reads it as configs/<dataset>/<protocol>/{model}.toml"
        )
        con.print(f"wrote {out} (use: {use})")
