"""Item metadata from a user's own item file (``--items FILE``), and titles from the item ids.

The result is the frame every consumer of ``Interactions.item_meta`` reads: indexed by raw
``item_id`` (same dtype as the ratings' ids), with ``title`` when a title column is known and
``genres``, a list of category strings, built from the feature columns (``|``-separated cells are
split, as MovieLens writes genres). Feature-aware models (two-tower ``use_features``, content
models), CLI tables, reports and the service all use those two columns. The feature columns are
also kept under their own names.

When the ratings' item column itself holds titles (``--item-col Titel``, a column named
``title``, ``movie``, ``book``..., see :func:`recforge.data.io.names_titles`) and its ids are
text, :func:`id_titles` makes each id the title of its item wherever no item file gives one.
That one rule, applied where the data is read, is what ``recommend``, ``similar``, the run's
``items.parquet``, the service (live and store mode) and ``RecList.to_frame`` show; integer ids
and columns named like ids (``product``, ``sku``) keep no title (``null`` in JSON).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recforge.data.datasource import DataSource
from recforge.errors import DataError

_TITLE_NAMES = ("title", "name", "item_name", "product_name", "label")
#: An id that is a code, not a title: one word holding a digit (``tt0111161``, ``SKU-0003``).
_CODE = r"\S*\d\S*"
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
        # object, not str: a missing title stays None on every pandas (str would make it NaN)
        meta["title"] = pd.Series(_texts(table[title_col]), index=index, dtype=object)
    if features:
        lists: list[list[str]] = [[] for _ in range(len(table))]
        for col in features:
            assert col is not None
            meta[col] = table[col].to_numpy()
            for k, cell in enumerate(_texts(table[col])):
                if cell is not None:
                    lists[k].extend(v.strip() for v in cell.split("|") if v.strip())
        meta["genres"] = lists
    return meta


def _texts(column: pd.Series) -> list[str | None]:
    """The column's cells as text, None where a cell is missing (None, NaN, NA: a Parquet null)
    or blank (an empty CSV cell): ``astype(str)`` wrote them as the titles or genres 'None' and
    'nan' (pandas 2), or kept a float NaN that ``str.split`` cannot take (pandas 3)."""
    out: list[str | None] = []
    for cell in column.astype(object).tolist():
        missing = cell is None or (pd.api.types.is_scalar(cell) and pd.isna(cell))
        text = None if missing else str(cell)
        out.append(text if text is not None and text.strip() else None)
    return out


def id_titles(frame: pd.DataFrame, meta: pd.DataFrame | None) -> pd.DataFrame | None:
    """``meta`` with each item's id as its title where no title is known, when the ratings'
    item column holds titles.

    Args:
        frame: the canonical ratings frame (``attrs["mapping"]["item_id"]`` names the file's
            item column, as :func:`recforge.data.io.read_ratings` records it).
        meta: item metadata from an item file, or None.

    Returns:
        ``meta`` unchanged when the item column is not named like titles
        (:func:`recforge.data.io.names_titles`), or its ids are integers or all codes (one
        word with a digit, such as ``tt0111161`` or ``SKU-0003``); otherwise a frame
        indexed by ``item_id`` whose ``title`` is the item file's title, else the id (rows
        added for items the item file lacks; its other columns and ``attrs`` kept).
    """
    from recforge.data.io import names_titles

    column = frame.attrs.get("mapping", {}).get("item_id")
    ids = frame["item_id"]
    if not len(ids) or ids.dtype.kind in "iu" or not names_titles(column):
        return meta
    index = pd.Index(pd.unique(ids), name="item_id")
    if index.astype(str).str.fullmatch(_CODE).all():
        return meta  # tt0111161, SKU-0003: codes in a column named like titles
    if meta is None:
        return pd.DataFrame({"title": index.astype(str)}, index=index)
    missing_rows = pd.DataFrame(index=index[~index.isin(meta.index)])
    out: pd.DataFrame = pd.concat([meta, missing_rows])
    out.index.name = "item_id"
    titles = out["title"] if "title" in out.columns else pd.Series(None, out.index, object)
    missing = titles.isna() | (titles.astype(str).str.strip() == "")
    out["title"] = titles.astype(object).mask(missing, out.index.astype(str).to_numpy(object))
    out.attrs = dict(meta.attrs)
    return out
