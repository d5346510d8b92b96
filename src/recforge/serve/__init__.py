"""The HTTP service: ``create_app(settings)`` (FastAPI) in live or store mode.

See :mod:`recforge.serve.app`. Importing this package does not import torch; live mode imports it
when it loads a run.
"""

from recforge.serve.app import create_app, reload
from recforge.serve.settings import Settings

__all__ = ["Settings", "create_app", "reload"]
