"""The ``recforge`` command line: thin typer shells over library functions.

``main()`` maps :class:`~recforge.errors.RecError` to a one-line message and exit code 2; anything
else is a bug and exits 1 with its traceback. Heavy imports happen inside commands, so
``recforge --help`` answers quickly.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    from recforge.cli.app import app
    from recforge.errors import RecError

    try:
        # Standalone mode: the parser reports usage errors itself and exits 2 via SystemExit.
        app(args=argv, prog_name="recforge", standalone_mode=True)
    except RecError as exc:
        sys.stderr.write(f"recforge: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("recforge: interrupted\n")
        return 130
    except SystemExit as exc:  # the parser's own exits (--help, usage errors) carry their code
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
