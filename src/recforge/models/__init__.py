"""Model families behind one :class:`Recommender` interface, created by name via the registry."""

from recforge.models.base import RecList, Recommender, reclists_to_frame
from recforge.models.registry import available, config_class, create, get_class, register

__all__ = [
    "RecList",
    "Recommender",
    "available",
    "config_class",
    "create",
    "get_class",
    "reclists_to_frame",
    "register",
]
