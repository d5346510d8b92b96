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
        app(args=argv, prog_name="recforge", standalone_mode=False)
    except RecError as exc:
        sys.stderr.write(f"recforge: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("recforge: interrupted\n")
        return 130
    except SystemExit as exc:  # typer/click exits (e.g. --help) carry their own code
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return 2
        if isinstance(exc, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
