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

The whole directory is written into a temporary sibling, every file fsynced, and renamed into
place (then the parent folder is fsynced), so a crash never leaves a half-written run.

Loading trusts nothing it reads, in this order, and raises :class:`ArtifactError` (one line) at the
first problem, before any model is built:

1. ``manifest.json`` (a regular file, not a link, at most 16 MiB) parses as JSON; its
   ``format_version`` is an integer no newer than :data:`FORMAT_VERSION` ("written by recforge X,
   upgrade"); then the whole manifest validates against :class:`RunManifest` (pydantic).
2. ``files`` may only name :data:`RUN_FILES` (no ``..``, no absolute paths, no other names), each
   with a SHA-256 checksum. Names outside that list are refused, not skipped; files on disk that the
   manifest does not list (a plot written later) are never read.
3. Each file is read only if it is a regular file whose real path lies inside the run (no symlink
   out) and that has no other name (a hard link count of 1: a hard link cannot show where its
   other name lies), and only after its checksum matches.
4. The safetensors header is parsed by hand first: known dtypes, shapes and byte ranges consistent
   with the file size; the base tensors' shapes must match the vocabularies, and a torch model's
   network, built on the ``meta`` device from config and vocabularies (no memory), must find each
   of its parameters there with the same size, so nothing is allocated beyond what the bytes on
   disk hold. Only then are the arrays loaded (safetensors executes nothing; there is no pickle
   anywhere).
5. The family's ``set_state`` checks its own shapes against config and vocabularies, and scoring one
   user must give one score per item, so a mismatch is caught here, never deep inside torch later.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from recforge._atomic import atomic_dir
from recforge.data.vocab import IdVocab
from recforge.errors import ArtifactError, ConfigError, RecError
from recforge.models.base import Recommender

FORMAT_VERSION = 1
#: The only names a run's manifest may list (paths relative to the run, POSIX separators).
RUN_FILES = frozenset(
    {"config.json", "vocab/users.json", "vocab/items.json", "weights.safetensors"}
    | {"items.parquet", "metrics.json", "history.csv"}
)
_MAX_MANIFEST_BYTES = 16 << 20
_MAX_ST_HEADER_BYTES = 100 << 20
#: safetensors dtypes numpy can hold, with their item sizes.
_ST_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F16": 2, "I16": 2, "U16": 2}
_ST_ITEMSIZE |= {"F32": 4, "I32": 4, "U32": 4, "F64": 8, "I64": 8, "U64": 8}
_BASE_PREFIX = "_base."
_MANIFEST_KEYS = frozenset(
    {"format_version", "model_name", "created_at", "versions", "data_fingerprint", "n_users"}
    | {"n_items", "files"}
)


class RunManifest(BaseModel):
    """Schema of ``manifest.json``; keys passed as ``save_run(extra=...)`` are kept as extras."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    format_version: int = Field(ge=1)
    model_name: str = Field(min_length=1, max_length=200)
    created_at: str
    versions: dict[str, str | None]
    data_fingerprint: str | None = None
    n_users: int = Field(ge=0)
    n_items: int = Field(ge=0)
    files: dict[str, Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]]

    @field_validator("files")
    @classmethod
    def _only_run_files(cls, files: dict[str, str]) -> dict[str, str]:
        # A fixed allow-list rejects "../x", "/etc/passwd", "vocab/../../x" and "model.pkl" alike.
        for name in files:
            if name not in RUN_FILES:
                raise ValueError(
                    f"lists {name!r}, which is not one of the run files "
                    f"({', '.join(sorted(RUN_FILES))}); refusing to read it"
                )
        return files


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
        # Ratings and timeline order of the seen entries: explanations of known users read them.
        f"{_BASE_PREFIX}seen_ratings": np.asarray(model.seen_ratings_, dtype=np.float32),
        f"{_BASE_PREFIX}seen_order": np.asarray(model.seen_order_, dtype=np.int32),
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

    model.check_fitted()
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
    """Parse and validate ``manifest.json`` of a run directory (steps 1-2 of the module docstring).

    Raises:
        ArtifactError: not a run directory, a corrupt or oversized manifest, a newer format,
            a manifest that does not fit :class:`RunManifest`, or a file name outside
            :data:`RUN_FILES`.
    """
    root = Path(path)
    mf = root / "manifest.json"
    if not root.is_dir():
        raise ArtifactError(f"{root}: not a run directory (it does not exist or is not a folder)")
    if mf.is_symlink():
        raise ArtifactError(f"{root}: manifest.json is a symbolic link; refusing to follow it")
    if not mf.is_file():
        raise ArtifactError(f"{root}: no manifest.json; is this a recforge run directory?")
    _refuse_hard_link(root, mf, "manifest.json")
    if mf.stat().st_size > _MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{mf}: corrupt manifest (over {_MAX_MANIFEST_BYTES >> 20} MiB)")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ArtifactError(f"{mf}: corrupt manifest ({exc})") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise ArtifactError(f"{mf}: manifest has no integer format_version")
    if version > FORMAT_VERSION:
        versions = manifest.get("versions")
        writer = versions.get("recforge") if isinstance(versions, dict) else None
        raise ArtifactError(
            f"{root}: run format {version} is newer than this recforge "
            f"{_version('recforge') or '(unknown version)'} understands (format "
            f"{FORMAT_VERSION}); it was written by recforge {writer or '(unknown version)'}: "
            "upgrade recforge to load it"
        )
    try:
        RunManifest.model_validate(manifest)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        raise ArtifactError(f"{mf}: invalid manifest: {loc}: {msg}") from None
    checked: dict[str, Any] = manifest
    return checked


def _refuse_hard_link(root: Path, path: Path, name: str) -> None:
    """A run file with another name somewhere (a hard link) may be a file outside the run.

    A hard link cannot be told apart from the original, so a link count above one is refused
    whatever the other name is: save_run never creates one, and a copied run has its own files.
    """
    links = path.stat().st_nlink
    if links > 1:
        raise ArtifactError(
            f"{root}: {name} is a hard link ({links} names); a run's files must be its own, "
            "so copy the run (cp -r) instead of linking it"
        )


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
    # Checked before anything else touches the path: a link (even one pointing inside) or a
    # linked folder on the way out of the run is refused without being read.
    if p.is_symlink() or not p.resolve().is_relative_to(root.resolve()):
        raise ArtifactError(f"{root}: {name} points outside the run directory; refusing to read it")
    if not p.is_file():
        raise ArtifactError(f"{root}: {name} is missing")
    _refuse_hard_link(root, p, name)
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


def _safetensors_header(root: Path, path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) from a safetensors header, checked against the file size.

    Parsed here, before the safetensors library sees the file, so that a truncated file, a pickle
    or a hostile header becomes one clear ArtifactError.
    """
    size = path.stat().st_size
    bad = f"{root}: weights.safetensors is not a valid safetensors file"
    with open(path, "rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > min(size - 8, _MAX_ST_HEADER_BYTES):
            raise ArtifactError(
                f"{bad} (header length {n} in a {size}-byte file: truncated, or another "
                "format such as a pickle); re-create the run"
            )
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ArtifactError(f"{bad} (unreadable header); re-create the run") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"{bad} (header is not an object); re-create the run")
    data_len = size - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = spec.get("dtype") if isinstance(spec, dict) else None
        shape = spec.get("shape") if isinstance(spec, dict) else None
        offsets = spec.get("data_offsets") if isinstance(spec, dict) else None
        ok = (
            dtype in _ST_ITEMSIZE
            and isinstance(shape, list)
            and all(isinstance(d, int) and d >= 0 for d in shape)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
        )
        if not ok:
            raise ArtifactError(f"{bad} (tensor {name!r} has a malformed entry); re-create the run")
        assert isinstance(dtype, str) and isinstance(shape, list) and isinstance(offsets, list)
        begin, end = offsets
        nbytes = math.prod(shape) * _ST_ITEMSIZE[dtype]
        if not 0 <= begin <= end <= data_len or end - begin != nbytes:
            raise ArtifactError(
                f"{bad} (tensor {name!r} {dtype}{shape} needs bytes {begin}..{end} of "
                f"{data_len}: truncated or corrupt); re-create the run"
            )
        out[name] = (dtype, tuple(shape))
    return out


def _check_base_tensors(
    root: Path, tensors: dict[str, tuple[str, tuple[int, ...]]], n_users: int, n_items: int
) -> None:
    """The tensors every run holds must exist with the shapes the vocabularies imply."""
    expected = {
        f"{_BASE_PREFIX}seen_indptr": ("I64", (n_users + 1,)),
        f"{_BASE_PREFIX}global_mean": ("F64", (1,)),
        f"{_BASE_PREFIX}rating_scale": ("F64", (2,)),
    }
    for name, (dtype, shape) in expected.items():
        if tensors.get(name) != (dtype, shape):
            found = tensors.get(name, "missing")
            raise ArtifactError(
                f"{root}: weights tensor {name!r} is {found}, expected {(dtype, shape)} for "
                f"{n_users} users; the weights do not belong to these vocabularies"
            )
    indices = tensors.get(f"{_BASE_PREFIX}seen_indices")
    if indices is None or indices[0] != "I32" or len(indices[1]) != 1:
        raise ArtifactError(f"{root}: weights tensor '{_BASE_PREFIX}seen_indices' is {indices}")


def _one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _torch_parts(model: Recommender, prefix: str = "") -> list[tuple[str, Any]]:
    """(state-key prefix, torch model) for ``model`` and the sub-models it rebuilds on load.

    Blends hold members under ``m<k>.``, content models a hybrid under ``hybrid.``; both are
    rebuilt from the config, so a crafted config can make them as large as a top-level model.
    """
    from recforge.models.neural import NeuralRecommender

    parts: list[tuple[str, Any]] = []
    subs: list[tuple[str, Recommender]] = []
    if isinstance(model, NeuralRecommender):
        parts.append((prefix + "module.", model))
    cfg = model.config
    members = getattr(cfg, "members", None)
    if members is not None and hasattr(model, "_new_members"):
        subs = [(f"{prefix}m{k}.", m) for k, m in enumerate(model._new_members())]
    elif (hybrid := getattr(cfg, "hybrid_with", None)) is not None:
        from recforge.models.registry import create

        subs = [(f"{prefix}hybrid.", create(hybrid, getattr(cfg, "hybrid_config", None) or {}))]
    for sub_prefix, sub in subs:
        # As the parent's set_state does: members share its vocabularies and base state.
        sub.users_, sub.items_, sub.seen_ = model.users_, model.items_, model.seen_
        sub.global_mean_, sub.rating_scale_ = model.global_mean_, model.rating_scale_
        sub.item_meta_ = getattr(model, "item_meta_", None)
        parts.extend(_torch_parts(sub, sub_prefix))
    return parts


def _check_declared_sizes(
    root: Path, model: Recommender, tensors: dict[str, tuple[str, tuple[int, ...]]]
) -> None:
    """Refuse a run whose config and vocabularies declare networks its weights do not hold.

    A torch model allocates ``rows × n_factors`` parameters from its vocabularies and config
    before its weights are copied in: a 3 MB crafted run (150k users, ``n_factors`` 4096) asked
    for 2.5 GB that way. The network is built on torch's ``meta`` device here (shapes, no
    memory), and each parameter must appear in the safetensors header with the same size. The
    header was checked against the file size, so what load allocates is bounded by the bytes on
    disk.
    """
    parts = _torch_parts(model)
    if not parts:
        return
    import torch

    for key_prefix, part in parts:
        with torch.device("meta"):
            module = part._new_module()
        for name, value in module.state_dict().items():
            key = key_prefix + name
            found = tensors.get(key)
            want = tuple(value.shape)
            # Sizes, not shapes: torch itself accepts a [1] tensor for a 0-d buffer, and a
            # same-size wrong shape is refused by load_state_dict without over-allocating.
            if found is None or math.prod(found[1]) != math.prod(want):
                have = "missing" if found is None else f"{found[0]}{list(found[1])}"
                raise ArtifactError(
                    f"{root}: weights tensor {key!r} is {have}, but the config and vocabularies "
                    f"({len(model.users_)} users, {len(model.items_)} items) declare "
                    f"{list(want)}; the weights do not belong to this config; re-create the run"
                )


def load_run(path: str | Path) -> Run:
    """Load a run directory written by :func:`save_run`, validating it first.

    Every failure to load a run is an :class:`ArtifactError` with a one-line message naming the
    run: the checks below raise it on purpose, and anything else a crafted run provokes deeper
    down (an overflowing id, a library error, memory exhaustion) is converted here, so the CLI
    exits 2 and ``POST /admin/reload`` answers 4xx and keeps the old model.

    Raises:
        ArtifactError: the directory is missing, corrupt, truncated, unsafe (links or names
            leading outside it, files that are not what they claim), larger than its weights
            justify, or from a newer format; see the module docstring for the checks and their
            order.
    """
    root = Path(path)
    try:
        return _load_run(root)
    except ArtifactError as exc:
        raise ArtifactError(_one_line(str(exc))) from None
    except RecError as exc:
        raise ArtifactError(_one_line(f"{root}: {exc}")) from None
    except MemoryError:
        raise ArtifactError(
            f"{root}: loading the run needs more memory than is available; is it the run you meant?"
        ) from None
    except Exception as exc:  # any other failure is still a bad run, said on one line
        raise ArtifactError(
            _one_line(f"{root}: cannot load the run ({type(exc).__name__}: {exc})")
        ) from None


def _load_run(root: Path) -> Run:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from recforge.models.registry import get_class

    manifest = read_manifest(root)
    try:
        cls = get_class(manifest["model_name"])
    except ConfigError as exc:
        raise ArtifactError(f"{root}: the run's model is not available here ({exc})") from None
    cfg_path = _checked(root, manifest, "config.json")
    users_path = _checked(root, manifest, "vocab/users.json")
    items_path = _checked(root, manifest, "vocab/items.json")
    weights_path = _checked(root, manifest, "weights.safetensors")
    assert cfg_path and users_path and items_path and weights_path
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        users = IdVocab.from_json(users_path.read_text(encoding="utf-8"))
        items = IdVocab.from_json(items_path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ArtifactError(f"{root}: cannot parse run files ({exc})") from None
    if (len(users), len(items)) != (manifest["n_users"], manifest["n_items"]):
        raise ArtifactError(
            f"{root}: vocabularies hold {len(users)} users and {len(items)} items but the "
            f"manifest says {manifest['n_users']} and {manifest['n_items']}; re-create the run"
        )
    tensors = _safetensors_header(root, weights_path)
    _check_base_tensors(root, tensors, len(users), len(items))
    if not isinstance(config, dict):
        raise ArtifactError(f"{root}: config.json is not an object; re-create the run")
    try:
        model = cls(config)
    except ConfigError as exc:
        raise ArtifactError(f"{root}: config.json is not a valid config ({exc})") from None
    model.users_ = users
    model.items_ = items
    try:
        state = load_file(str(weights_path))
    except (ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise ArtifactError(f"{root}: cannot parse run files ({exc})") from None
    _restore_base_state(root, model, state, len(users), len(items))
    meta_path = _checked(root, manifest, "items.parquet", required=False)
    metrics_path = _checked(root, manifest, "metrics.json", required=False)
    history_path = _checked(root, manifest, "history.csv", required=False)
    try:
        model.item_meta_ = _read_item_meta(meta_path) if meta_path else None
        metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path else {}
        history = pd.read_csv(history_path) if history_path else None
    except (ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise ArtifactError(f"{root}: cannot parse run files ({exc})") from None
    # Arrays read so far are bounded by the file; a network built from the config is not.
    _check_declared_sizes(root, model, tensors)
    try:
        model.set_state(state)
        # One user scored end to end: a weight that fits the loader but not the model's maths
        # fails here, with the run's name, rather than in the first request it serves.
        if len(users):
            shape = model.score_items(np.zeros(1, dtype=np.int64)).shape
            if shape != (1, len(items)):
                raise ValueError(f"scoring a user gives shape {shape}, expected (1, {len(items)})")
    except RecError:
        raise
    except (KeyError, ValueError, RuntimeError, IndexError, TypeError) as exc:
        raise ArtifactError(
            f"{root}: weights do not fit model {manifest['model_name']} ({exc})"
        ) from None
    return Run(path=root, model=model, manifest=manifest, metrics=metrics, history=history)


def _restore_base_state(
    root: Path, model: Recommender, state: dict[str, Any], n_users: int, n_items: int
) -> None:
    """Pop the base-class tensors (seen matrix, its ratings and order, global mean, scale) from
    ``state`` into ``model``, after checking them against the vocabulary sizes."""
    indptr = state.pop(f"{_BASE_PREFIX}seen_indptr")
    indices = state.pop(f"{_BASE_PREFIX}seen_indices")
    model.global_mean_ = float(state.pop(f"{_BASE_PREFIX}global_mean")[0])
    scale = state.pop(f"{_BASE_PREFIX}rating_scale")
    ordered = indptr[0] == 0 and indptr[-1] == len(indices) and bool(np.all(np.diff(indptr) >= 0))
    if not ordered or (len(indices) and (indices.min() < 0 or indices.max() >= n_items)):
        raise ArtifactError(f"{root}: stored interactions do not match the vocabularies")
    model.seen_ = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(n_users, n_items)
    )
    model.rating_scale_ = None if np.isnan(scale).any() else (float(scale[0]), float(scale[1]))
    ratings = state.pop(f"{_BASE_PREFIX}seen_ratings", None)
    order = state.pop(f"{_BASE_PREFIX}seen_order", None)
    if ratings is None or order is None:
        # Runs saved before explanations existed: item order, ratings unknown (1 = "seen").
        ratings = np.ones(len(indices), dtype=np.float32)
        order = (np.arange(len(indices)) - np.repeat(indptr[:-1], np.diff(indptr))).astype(np.int32)
    if ratings.shape != indices.shape or order.shape != indices.shape:
        raise ArtifactError(f"{root}: stored ratings do not match the stored interactions")
    model.seen_ratings_ = np.asarray(ratings, dtype=np.float32)
    model.seen_order_ = np.asarray(order, dtype=np.int32)
