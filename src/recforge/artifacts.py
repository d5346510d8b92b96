"""Run directories: save a fitted model with everything needed to use and audit it.

Layout (DESIGN.md §5)::

    run/
      manifest.json        format_version, versions, data fingerprint, model name, file checksums
      config.json          the model's resolved config
      vocab/users.json     IdVocab of users;  vocab/items.json  IdVocab of items
      weights.safetensors  learned arrays (no pickle; loading executes nothing)
      items.parquet        item metadata (titles, genres), when known
      metrics.json         evaluation summary + protocol, when given
      history.csv          per-epoch training history, when given

The whole directory is written into a temporary sibling and renamed into place, so a crash never
leaves a half-written run. Loading reads only these fixed names inside the directory and checks
every file against the manifest's SHA-256 before parsing it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recforge._atomic import atomic_dir
from recforge.data.vocab import IdVocab
from recforge.errors import ArtifactError
from recforge.models.base import Recommender

FORMAT_VERSION = 1
_BASE_PREFIX = "_base."
_MANIFEST_KEYS = frozenset(
    {"format_version", "model_name", "created_at", "versions", "data_fingerprint", "n_users"}
    | {"n_items", "files"}
)


@dataclass
class Run:
    """A loaded run directory."""

    path: Path
    model: Recommender
    manifest: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    history: pd.DataFrame | None = None


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _base_state(model: Recommender) -> dict[str, npt.NDArray[Any]]:
    seen = model.seen_
    scale = model.rating_scale_
    return {
        f"{_BASE_PREFIX}seen_indptr": seen.indptr.astype(np.int64),
        f"{_BASE_PREFIX}seen_indices": seen.indices.astype(np.int32),
        f"{_BASE_PREFIX}global_mean": np.asarray([model.global_mean_], dtype=np.float64),
        f"{_BASE_PREFIX}rating_scale": np.asarray(
            scale if scale is not None else [np.nan, np.nan], dtype=np.float64
        ),
    }


def save_run(
    path: str | Path,
    model: Recommender,
    *,
    metrics: dict[str, Any] | None = None,
    history: pd.DataFrame | None = None,
    data_fingerprint: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write fitted ``model`` and optional metrics/history to run directory ``path`` atomically."""
    from safetensors.numpy import save_file

    model._check_fitted()
    clash = sorted(set(extra or {}) & _MANIFEST_KEYS)
    if clash:
        raise ArtifactError(f"save_run: extra keys {clash} are reserved manifest fields; rename")
    target = Path(path)
    state = {k: np.ascontiguousarray(v) for k, v in model.get_state().items()}
    if any(k.startswith(_BASE_PREFIX) for k in state):
        raise ArtifactError(f"model state keys must not start with {_BASE_PREFIX!r}")
    state.update(_base_state(model))
    with atomic_dir(target) as tmp:
        (tmp / "vocab").mkdir()
        (tmp / "vocab" / "users.json").write_text(model.users_.to_json(), encoding="utf-8")
        (tmp / "vocab" / "items.json").write_text(model.items_.to_json(), encoding="utf-8")
        (tmp / "config.json").write_text(
            json.dumps(model.config.model_dump(), indent=2), encoding="utf-8"
        )
        save_file(state, str(tmp / "weights.safetensors"))
        if model.item_meta_ is not None:
            # load_run re-indexes by "item_id"; an unnamed index would otherwise become "index".
            meta = model.item_meta_.rename_axis("item_id").reset_index()
            meta.to_parquet(tmp / "items.parquet", index=False)
        if metrics is not None:
            (tmp / "metrics.json").write_text(
                json.dumps(metrics, indent=2, default=_json_default), encoding="utf-8"
            )
        if history is not None:
            history.to_csv(tmp / "history.csv", index=False)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "format_version": FORMAT_VERSION,
            "model_name": model.name,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "versions": {pkg: _version(pkg) for pkg in ("recforge", "torch", "numpy")},
            "data_fingerprint": data_fingerprint,
            "n_users": model.n_users,
            "n_items": model.n_items,
            "files": {name: _sha256(tmp / name) for name in files},
            **(extra or {}),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return target


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Parse and validate ``manifest.json`` of a run directory."""
    root = Path(path)
    mf = root / "manifest.json"
    if not root.is_dir():
        raise ArtifactError(f"{root}: not a run directory (it does not exist or is not a folder)")
    if not mf.is_file():
        raise ArtifactError(f"{root}: no manifest.json; is this a recforge run directory?")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{mf}: corrupt manifest ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format_version"), int):
        raise ArtifactError(f"{mf}: manifest has no integer format_version")
    if manifest["format_version"] > FORMAT_VERSION:
        raise ArtifactError(
            f"{root}: run format {manifest['format_version']} is newer than this recforge "
            f"understands ({FORMAT_VERSION}); upgrade recforge to load it"
        )
    if not isinstance(manifest.get("files"), dict) or not isinstance(
        manifest.get("model_name"), str
    ):
        raise ArtifactError(f"{mf}: manifest lacks 'files' or 'model_name'")
    return manifest


def _checked(
    root: Path, manifest: dict[str, Any], name: str, *, required: bool = True
) -> Path | None:
    """Path of a known file inside ``root`` after verifying its checksum."""
    p = root / name
    expected = manifest["files"].get(name)
    if expected is None:
        if required:
            raise ArtifactError(f"{root}: manifest does not list required file {name}")
        return None
    if p.is_symlink() or not p.resolve().is_relative_to(root.resolve()):
        raise ArtifactError(f"{root}: {name} points outside the run directory; refusing to read it")
    if not p.is_file():
        raise ArtifactError(f"{root}: {name} is missing")
    if _sha256(p) != expected:
        raise ArtifactError(f"{root}: {name} is corrupt (checksum mismatch); re-create the run")
    return p


def _read_item_meta(path: Path) -> pd.DataFrame:
    meta = pd.read_parquet(path).set_index("item_id")
    # Parquet list columns (genres, tags) come back as numpy arrays; restore the lists the model
    # was fitted with, so a loaded model's metadata equals the fitted one's.
    for col in meta.columns:
        if meta[col].dtype == object:
            meta[col] = [v.tolist() if isinstance(v, np.ndarray) else v for v in meta[col]]
    return meta


def load_run(path: str | Path) -> Run:
    """Load a run directory written by :func:`save_run`."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from recforge.models.registry import get_class

    root = Path(path)
    manifest = read_manifest(root)
    cls = get_class(manifest["model_name"])
    cfg_path = _checked(root, manifest, "config.json")
    users_path = _checked(root, manifest, "vocab/users.json")
    items_path = _checked(root, manifest, "vocab/items.json")
    weights_path = _checked(root, manifest, "weights.safetensors")
    assert cfg_path and users_path and items_path and weights_path
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        users = IdVocab.from_json(users_path.read_text(encoding="utf-8"))
        items = IdVocab.from_json(items_path.read_text(encoding="utf-8"))
        state = load_file(str(weights_path))
    except (ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise ArtifactError(f"{root}: cannot parse run files ({exc})") from None
    model = cls(config)
    model.users_ = users
    model.items_ = items
    try:
        indptr = state.pop(f"{_BASE_PREFIX}seen_indptr")
        indices = state.pop(f"{_BASE_PREFIX}seen_indices")
        model.global_mean_ = float(state.pop(f"{_BASE_PREFIX}global_mean")[0])
        scale = state.pop(f"{_BASE_PREFIX}rating_scale")
    except KeyError as exc:
        raise ArtifactError(f"{root}: weights lack base state {exc}") from None
    if len(indptr) != len(users) + 1 or (len(indices) and indices.max() >= len(items)):
        raise ArtifactError(f"{root}: stored interactions do not match the vocabularies")
    model.seen_ = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(users), len(items))
    )
    model.rating_scale_ = None if np.isnan(scale).any() else (float(scale[0]), float(scale[1]))
    meta_path = _checked(root, manifest, "items.parquet", required=False)
    model.item_meta_ = _read_item_meta(meta_path) if meta_path else None
    try:
        model.set_state(state)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ArtifactError(
            f"{root}: weights do not fit model {manifest['model_name']} ({exc})"
        ) from None
    metrics_path = _checked(root, manifest, "metrics.json", required=False)
    history_path = _checked(root, manifest, "history.csv", required=False)
    return Run(
        path=root,
        model=model,
        manifest=manifest,
        metrics=json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path else {},
        history=pd.read_csv(history_path) if history_path else None,
    )
