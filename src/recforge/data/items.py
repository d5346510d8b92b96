"""Item metadata from a user's own item file (``--items FILE``).

The result is the frame every consumer of ``Interactions.item_meta`` reads: indexed by raw
``item_id`` (same dtype as the ratings' ids), with ``title`` when a title column is known and
``genres``, a list of category strings, built from the feature columns (``|``-separated cells are
split, as MovieLens writes genres). Feature-aware models (two-tower ``use_features``, content
models), CLI tables, reports and the service all use those two columns. The feature columns are
also kept under their own names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recforge.data.datasource import DataSource
from recforge.errors import DataError

_TITLE_NAMES = ("title", "name", "item_name", "product_name", "label")
_ID_NAMES = ("item_id", "itemid", "item", "id", "product_id", "productid", "movieid")


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum() or ch == "_").replace("_", "")


def _read_table(source: DataSource) -> pd.DataFrame:
    assert source.items is not None
    path = source.items
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise DataError(f"{path}: item file not found; check --items") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the item file ({exc})") from None
    try:
        if magic == b"PAR1":
            return pd.read_parquet(path)
        sep = None if source.sep in (None, "::") else source.sep
        return pd.read_csv(
            path,
            sep=sep if sep is not None else None,
            engine="python",
            dtype=str,
            keep_default_na=False,
            encoding=source.encoding or "utf-8-sig",
        )
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(
            f"{path}: not a readable item table ({type(exc).__name__}: {exc}); give a CSV/TSV "
            "with a header row, or Parquet"
        ) from None


def _pick(
    path: str, columns: list[str], wanted: str | None, names: tuple[str, ...], flag: str
) -> str | None:
    if wanted is not None:
        if wanted in columns:
            return wanted
        hit = next((c for c in columns if _norm(c) == _norm(wanted)), None)
        if hit is None:
            raise DataError(
                f"{path}: missing column {wanted!r}; the item file has columns: "
                f"{', '.join(map(str, columns))}; fix {flag}"
            )
        return hit
    return next((c for c in columns if _norm(str(c)) in {_norm(n) for n in names}), None)


def read_items(source: DataSource, rating_ids: pd.Series) -> pd.DataFrame:
    """The item file of ``source`` as an item-metadata frame indexed like ``rating_ids``.

    Args:
        source: a DataSource with ``items`` set (and optionally ``item_id_col``,
            ``item_title_col``, ``item_feature_cols``).
        rating_ids: the ratings' item ids (their dtype decides how the file's ids are read).

    Raises:
        DataError: the file is unreadable, a named column is absent (the message lists the
            columns the file has), or ids repeat or do not fit the ratings' id type.
    """
    table = _read_table(source)
    path = str(source.items)
    columns = [str(c) for c in table.columns]
    table.columns = columns
    id_col = _pick(path, columns, source.item_id_col, _ID_NAMES, "--item-id-col") or columns[0]
    title_col = _pick(path, columns, source.item_title_col, _TITLE_NAMES, "--item-title-col")
    features = [
        _pick(path, columns, name, (), "--item-feature-cols") for name in source.item_feature_cols
    ]
    ids = table[id_col]
    if rating_ids.dtype.kind in "iu":
        numeric = pd.to_numeric(ids.astype(str).str.strip(), errors="coerce")
        bad = numeric.isna() | (numeric != np.floor(numeric))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}, row {row + 1}, column {id_col!r}: {ids.iloc[row]!r} is not an integer "
                "id, but the ratings' item ids are integers; fix --item-id-col"
            )
        index: Any = pd.Index(numeric.astype(np.int64), name="item_id")
    else:
        index = pd.Index(ids.astype(str).str.strip(), name="item_id")
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise DataError(f"{path}: item id {dup!r} appears twice in column {id_col!r}; dedupe it")
    meta = pd.DataFrame(index=index)
    if title_col is not None:
        meta["title"] = table[title_col].astype(str).to_numpy()
    if features:
        lists: list[list[str]] = [[] for _ in range(len(table))]
        for col in features:
            assert col is not None
            meta[col] = table[col].to_numpy()
            for k, cell in enumerate(table[col].astype(str)):
                lists[k].extend(v.strip() for v in cell.split("|") if v.strip())
        meta["genres"] = lists
    return meta
