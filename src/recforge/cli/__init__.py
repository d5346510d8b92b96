"""The ``recforge`` command line: thin typer shells over library functions.

``main()`` maps :class:`~recforge.errors.RecError` to a one-line message and exit code 2; anything
else is a bug and exits 1 with its traceback. Heavy imports happen inside commands, so
``recforge --help`` answers quickly.
"""

from __future__ import annotations

import sys
from typing import TextIO


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    from recforge.cli.app import app
    from recforge.errors import RecError
    from recforge.progress import cli_lines

    _one_line_warnings()
    try:
        # Standalone mode: the parser reports usage errors itself and exits 2 via SystemExit.
        # Off a terminal, long work prints one progress line per epoch or phase on stderr.
        with cli_lines():
            app(args=argv, prog_name="recforge", standalone_mode=True)
    except RecError as exc:
        # One line, whatever the message held (a library's multi-line text inside it).
        message = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        sys.stderr.write(f"recforge: error: {message}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("recforge: interrupted\n")
        return 130
    except SystemExit as exc:  # the parser's own exits (--help, usage errors) carry their code
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def _one_line_warnings() -> None:
    """Show recforge's data warnings as ``recforge: warning: ...`` (no source line dump)."""
    import warnings

    from recforge.errors import DataWarning

    default = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, DataWarning):
            sys.stderr.write(f"recforge: warning: {message}\n")
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
