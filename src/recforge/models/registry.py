"""Model registry: name → class, imported lazily so the CLI and store stay light.

Each entry is a ``"module:Class"`` path; :func:`create` imports it on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from recforge.config import ModelConfig
from recforge.errors import ConfigError
from recforge.models.base import Recommender

_MODELS: dict[str, str] = {
    "global_mean": "recforge.models.baselines:GlobalMean",
    "biases": "recforge.models.baselines:Biases",
    "popularity": "recforge.models.baselines:Popularity",
    "item_knn": "recforge.models.knn:ItemKNN",
    "user_knn": "recforge.models.knn:UserKNN",
    "content": "recforge.models.content:ContentBased",
    "ease": "recforge.models.ease:EASE",
    "als": "recforge.models.als:ALS",
    "mf": "recforge.models.mf:MF",
    "biased_mf": "recforge.models.mf:BiasedMF",
    "embedding_net": "recforge.models.embedding_net:EmbeddingNet",
    "ncf": "recforge.models.ncf:NCF",
    "two_tower": "recforge.models.two_tower:TwoTower",
    "autorec": "recforge.models.autorec:AutoRec",
    "mult_vae": "recforge.models.vae:MultVAE",
    "mult_dae": "recforge.models.vae:MultDAE",
    "blend": "recforge.models.blend:Blend",
}


def register(name: str, target: str) -> None:
    """Register ``"module:Class"`` under ``name`` (for plug-ins and tests)."""
    _MODELS[name] = target


def available() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def get_class(name: str) -> type[Recommender]:
    """The class registered under ``name``; ConfigError listing valid names otherwise."""
    try:
        target = _MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available())}") from None
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise ConfigError(f"registry entry {name!r} -> {target} is not a Recommender")
    return cls


def config_class(name: str) -> type[ModelConfig]:
    """The config class of model ``name``."""
    return get_class(name).Config


def create(
    name: str, config: ModelConfig | Mapping[str, Any] | None = None, **overrides: Any
) -> Recommender:
    """Instantiate model ``name`` with ``config`` (a mapping or config object) and overrides."""
    return get_class(name)(config, **overrides)
