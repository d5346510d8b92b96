"""Exception hierarchy shared by the whole library.

Every error a user can cause derives from :class:`RecError`; the CLI maps it to a one-line message
and exit code 2. Each class also derives from the builtin a Python user would expect to catch
(``ValueError`` for bad data or configuration, ``KeyError`` for unknown ids), so recforge fits into
existing ``except`` clauses.
"""

from __future__ import annotations


class RecError(Exception):
    """Base class of every error recforge raises on purpose."""


class DataError(RecError, ValueError):
    """Input data is malformed. The message names the file, row and column, and a fix."""


class ConfigError(RecError, ValueError):
    """A configuration value or combination is invalid; raised before any work starts."""


class NoFoldInError(ConfigError):
    """The model cannot fold in a new user (no per-user parameters to fit from a history)."""


class NotFittedError(RecError, ValueError, AttributeError):
    """A model method that needs learned state was called before ``fit``."""


class UnknownIdError(RecError, KeyError):
    """A raw user or item id is not in the model's vocabulary."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a readable sentence.
        return str(self.args[0]) if self.args else "unknown id"


class ModelFitError(RecError, RuntimeError):
    """Training failed (diverged to NaN, produced no usable state, ...)."""


class ArtifactError(RecError, ValueError):
    """A saved run directory is missing, corrupt, unsafe or from a newer format."""


class DataWarning(UserWarning):
    """Data was accepted but changed (duplicates merged, rows dropped, ...)."""
