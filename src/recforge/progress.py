"""How long-running work reports progress: a rich bar, plain lines, or nothing.

On a terminal, long work draws a transient rich bar on stderr. Off a terminal (a CI log, a pipe,
``nohup``), a bar is useless and silence looks like a hang, so the **command line** prints one
plain line per epoch or phase on stderr instead (``recforge: train 3/20 · loss 0.8123``).
Library calls stay silent off a terminal unless ``RECFORGE_PROGRESS=lines`` asks for the
lines: a notebook or a service embedding recforge should not get chatter it did not ask for.

:func:`recforge.cli.main` switches lines on for the duration of one command (:func:`cli_lines`);
stdout stays reserved for results (``--json`` output is never mixed with progress).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

__all__ = ["Ticker", "cli_lines", "line", "style"]

Style = Literal["bar", "lines", "off"]

# A process-wide switch, not a context variable: worker threads (export's prefetch) must see it.
_cli_lines = False


@contextmanager
def cli_lines() -> Iterator[None]:
    """Within this block, off-terminal progress is printed as lines (used by the CLI's main)."""
    global _cli_lines
    before, _cli_lines = _cli_lines, True
    try:
        yield
    finally:
        _cli_lines = before


def style(verbose: bool = True) -> Style:
    """``"bar"`` on a terminal, ``"lines"`` off one inside the CLI (or when
    ``RECFORGE_PROGRESS=lines``), else ``"off"``; always ``"off"`` when not ``verbose``."""
    if not verbose:
        return "off"
    if sys.stderr.isatty():
        return "bar"
    wanted = _cli_lines or os.environ.get("RECFORGE_PROGRESS", "").lower() == "lines"
    return "lines" if wanted else "off"


def line(message: str, *, verbose: bool = True) -> None:
    """Print ``recforge: <message>`` on stderr when progress is in line mode (else nothing)."""
    if style(verbose) == "lines":
        sys.stderr.write(f"recforge: {message}\n")
        sys.stderr.flush()


class Ticker:
    """Line-mode progress of a counted task: a line at every ``step`` fraction and at the end.

    ``Ticker(n_users, "export: users scored")`` then ``tick(len(chunk))`` per chunk prints
    ``export: users scored 1000/10000 (10%)``... at most ``1/step + 1`` lines, however many
    chunks there are, so a 20M-user export does not write 20,000 lines to a log.
    """

    def __init__(self, total: int, label: str, *, step: float = 0.1, verbose: bool = True) -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.step = step
        self.done = 0
        self._next = step
        self._t0 = time.perf_counter()
        self.on = style(verbose) == "lines"

    def tick(self, n: int) -> None:
        """Count ``n`` more units; print a line when a ``step`` boundary (or the end) is crossed."""
        if not self.on:
            return
        self.done += n
        frac = self.done / self.total if self.total else 1.0
        if frac + 1e-12 >= self._next or self.done >= self.total:
            while self._next <= frac + 1e-12:
                self._next += self.step
            seconds = time.perf_counter() - self._t0
            line(f"{self.label} {self.done}/{self.total} ({frac:.0%}, {seconds:.1f} s)")
            if self.done >= self.total:
                self.on = False  # the end is reported once
