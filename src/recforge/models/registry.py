"""Model registry: name → class, imported lazily so the CLI and store stay light.

Each entry is a ``"module:Class"`` path; :func:`create` imports it on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Literal

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
    "funk_svd": "recforge.models.mf:FunkSVD",
    "embedding_net": "recforge.models.embedding_net:EmbeddingNet",
    "ncf": "recforge.models.ncf:NCF",
    "two_tower": "recforge.models.two_tower:TwoTower",
    "autorec": "recforge.models.autorec:AutoRec",
    "glocal_k": "recforge.models.glocal_k:GLocalK",
    "mult_vae": "recforge.models.vae:MultVAE",
    "mult_dae": "recforge.models.vae:MultDAE",
    "blend": "recforge.models.blend:Blend",
    "sasrec": "recforge.models.sasrec:SASRec",
    "gru4rec": "recforge.models.gru4rec:GRU4Rec",
    "bert4rec": "recforge.models.bert4rec:BERT4Rec",
}


Feedback = Literal["explicit", "implicit", "both"]

#: What ``recforge models`` shows without importing torch: the feedback each model learns from
#: (explicit ratings, implicit events, or both through a config option) and one line about it.
#: Models registered without an entry here fall back to their class docstring.
_INFO: dict[str, tuple[Feedback, str]] = {
    "global_mean": ("explicit", "the mean training rating for every pair (a floor)"),
    "biases": ("explicit", "baseline predictor mu + b_u + b_i (Koren 2010)"),
    "popularity": ("both", "the most-interacted items, the same list for everyone"),
    "item_knn": ("both", "item-based k-nearest neighbours (Sarwar 2001; top-N rule on events)"),
    "user_knn": ("both", "user-based k-nearest neighbours (Herlocker 1999)"),
    "content": ("both", "cosine between a user profile and item features (titles, categories)"),
    "ease": ("implicit", "closed-form item-item regression with a zero diagonal (Steck 2019)"),
    "als": ("both", "alternating least squares: implicit confidence (Hu 2008) or ALS-WR"),
    "mf": ("both", "dot-product matrix factorisation by SGD (MSE, BCE or BPR loss)"),
    "biased_mf": ("both", "matrix factorisation with user and item biases (Koren 2009)"),
    "funk_svd": ("explicit", "biased MF by per-rating SGD, Surprise's SVD (Funk 2006)"),
    "embedding_net": ("both", "an MLP over concatenated user and item embeddings"),
    "ncf": ("both", "neural collaborative filtering: GMF, MLP or NeuMF (He 2017)"),
    "two_tower": ("both", "two-tower retrieval with in-batch softmax; item features optional"),
    "autorec": ("explicit", "autoencoder over rating rows, I-AutoRec or U-AutoRec (Sedhain 2015)"),
    "glocal_k": ("explicit", "item autoencoder with local + global kernels (Han 2021, GLocal-K)"),
    "mult_vae": ("implicit", "variational autoencoder, multinomial likelihood (Liang 2018)"),
    "mult_dae": ("implicit", "denoising autoencoder, multinomial likelihood (Liang 2018)"),
    "blend": ("explicit", "ridge blend of rating models fitted on a validation carve"),
    "sasrec": ("implicit", "causal self-attention over ordered histories (Kang 2018; SASRec+ CE)"),
    "gru4rec": ("implicit", "recurrent next-item model over ordered histories (Hidasi 2016)"),
    "bert4rec": ("implicit", "bidirectional masked-item transformer over histories (Sun 2019)"),
}


def describe(name: str) -> dict[str, str]:
    """``{"name", "feedback", "description"}`` of a registered model.

    Uses the table above (no torch import); for models registered elsewhere, the class docstring's
    first line and ``predicts_ratings`` (explicit when it predicts ratings, else both).
    """
    if name in _INFO:
        feedback, text = _INFO[name]
        return {"name": name, "feedback": feedback, "description": text}
    cls = get_class(name)
    doc = (cls.__doc__ or "").strip().splitlines()
    ratings = cls.__dict__.get("predicts_ratings", True)
    kind = "explicit" if ratings is True else "both"
    return {"name": name, "feedback": kind, "description": doc[0] if doc else ""}


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
