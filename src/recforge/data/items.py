"""Item metadata from a user's own item file (``--items FILE``), and titles from the item ids.

The result is the frame every consumer of ``Interactions.item_meta`` reads: indexed by raw
``item_id`` (same dtype as the ratings' ids), with ``title`` when a title column is known and
``genres``, a list of category strings, built from the feature columns (``|``-separated cells are
split, as MovieLens writes genres). Feature-aware models (two-tower ``use_features``, content
models), CLI tables, reports and the service all use those two columns. The feature columns are
also kept under their own names.

Titles also come from the ratings file itself, in this order after an item file's (which wins
wherever it gives a title):

1. a title column beside the item column (``user_id,movie_id,title,rating``; named by
   ``--title-col``, or by its older spelling ``--item-title-col`` without ``--items``, or
   found by its name, see :func:`recforge.data.io.names_title_column`): :func:`resolve_titles`
   gives each item the
   title written most often on its rows, a tie going to the latest row (by time, then file
   order), once, while the file is read; the reader hands that choice on, one title per item
   (:attr:`RowTitles.by_item`), to :func:`titled_items`;
2. the item column itself when it holds titles (``--item-col Titel``, a column named
   ``title``, ``movie``, ``book``..., see :func:`recforge.data.io.names_titles`) and its ids
   are text: :func:`id_titles` makes each id the title of its item wherever nothing else
   gives one.

That one table, built where the data is read (:func:`titled_items`, for a file through
:func:`item_table` and for a DataFrame through :func:`recforge.data.frames.frame_to_interactions`),
is what ``recommend``,
``similar``, the run's ``items.parquet``, the service (live and store mode) and
``RecList.to_frame`` show; integer ids and columns named like ids (``product``, ``sku``) keep
no title (``null`` in JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
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
        meta: item metadata from an item file (and the ratings' title column), or None.

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
    if all_codes(index):
        return meta  # tt0111161, SKU-0003: codes in a column named like titles
    if meta is None:
        return pd.DataFrame({"title": index.astype(str)}, index=index)
    every = index.append(meta.index[~meta.index.isin(index)])
    return _fill_titles(meta, pd.Series(every.astype(str).to_numpy(object), index=every))


def all_codes(values: Any) -> bool:
    """Whether every value is a code, not a title: one word holding a digit (``tt0111161``,
    ``SKU-0003``); an empty collection is all codes (it holds no title)."""
    text = pd.Index(values).astype(str)
    return bool(text.str.fullmatch(_CODE).all())


def _fill_titles(meta: pd.DataFrame, fill: pd.Series) -> pd.DataFrame:
    """``meta`` with ``fill`` (item id → title) as the title of each item whose title is
    missing or blank; rows are added for items ``meta`` lacks, its other columns and ``attrs``
    kept, and a title ``fill`` does not know stays as it is."""
    missing_rows = pd.DataFrame(index=fill.index[~fill.index.isin(meta.index)])
    out: pd.DataFrame = pd.concat([meta, missing_rows])
    out.index.name = "item_id"
    titles = out["title"] if "title" in out.columns else pd.Series(None, out.index, object)
    given = fill.reindex(out.index)
    missing = (titles.isna() | (titles.astype(str).str.strip() == "")) & given.notna()
    out["title"] = titles.astype(object).mask(missing, given.to_numpy(object))
    out.attrs = dict(meta.attrs)
    return out


@dataclass(frozen=True)
class RowTitles:
    """The titles a ratings file's title column gives its items (:func:`resolve_titles`).

    Attributes:
        per_row: each row's item's chosen title (categorical, NaN for an item without one).
        by_item: the same choice once per item: item id → title (index ``item_id``, in order
            of first row; an item without a title is left out). The item table is built from
            it (:func:`titled_items`), so nothing reads the choice back from the rows.
        titles: the distinct titles written in the column.
        conflicts: items whose rows carry two or more different titles.
        repeated: items with a title on two or more rows (those that could conflict).
    """

    per_row: pd.Categorical
    by_item: pd.Series
    titles: pd.Index
    conflicts: int
    repeated: int


def resolve_titles(
    item_ids: pd.Series, titles: pd.Series, times: npt.NDArray[np.int64]
) -> RowTitles:
    """One title per item from a title column of the ratings (one cell per event row).

    The rule: an item's title is the one written on most of its rows; a tie goes to the title
    of the latest of the tied rows, by ``times`` (0 everywhere without a time column), then by
    file order (the later row wins). Empty, blank and missing cells are no title; an item
    whose cells are all empty has none. Vectorised: no Python per row.

    Args:
        item_ids: the rows' raw item ids, in file order.
        titles: the rows' title cells, in the same order (any dtype; non-text values are
            written as text).
        times: the rows' epoch seconds.

    Raises:
        TypeError: a cell is unhashable (a list in a DataFrame column).
    """
    items, item_uniques = pd.factorize(item_ids)
    n_items = int(items.max()) + 1 if len(items) else 0
    codes, uniques = _title_codes(titles)
    order = np.argsort(times, kind="stable")  # time order, equal times in file order
    rows = order[codes[order] >= 0]  # titled rows, oldest first
    pair = items[rows].astype(np.int64) * max(len(uniques), 1) + codes[rows]
    # The latest row of each (item, title) pair: its first place in the reversed order.
    kept, from_end, counts = np.unique(pair[::-1], return_index=True, return_counts=True)
    latest = len(pair) - 1 - from_end
    item, title = np.divmod(kept, max(len(uniques), 1))
    ranked = np.lexsort((latest, counts, item))  # per item: most rows, then latest, last
    top = ranked[np.append(item[ranked][1:] != item[ranked][:-1], True)] if len(kept) else ranked
    best = np.full(n_items, -1, dtype=np.int64)
    best[item[top]] = title[top]
    titled = np.flatnonzero(best >= 0)
    by_item = pd.Series(
        uniques.to_numpy(dtype=object)[best[titled]],
        index=pd.Index(np.asarray(item_uniques)[titled], name="item_id"),
        dtype=object,
    )
    return RowTitles(
        per_row=pd.Categorical.from_codes(best[items], categories=uniques),
        by_item=by_item,
        titles=uniques,
        conflicts=int((np.bincount(item, minlength=n_items) > 1).sum()),
        repeated=int((np.bincount(items[rows], minlength=n_items) > 1).sum()),
    )


def _title_codes(titles: pd.Series) -> tuple[npt.NDArray[np.int64], pd.Index]:
    """Each cell's code into the distinct titles (-1 for an empty, blank or missing cell)."""
    raw_codes, raw_uniques = pd.factorize(titles)
    texts = _texts(pd.Series(raw_uniques, dtype=object))
    remap, uniques = pd.factorize(pd.Series(texts, dtype=object))
    # raw code -1 (a missing cell) takes the appended -1.
    codes = np.append(remap, -1).astype(np.int64)[raw_codes]
    return codes, pd.Index(uniques, dtype=object)


def item_table(
    source: DataSource, frame: pd.DataFrame, by_item: pd.Series | None
) -> tuple[pd.DataFrame | None, str | None]:
    """The item table of a ratings file and its item file, and the item column whose ids are
    titles (None when they are not used as titles): :func:`titled_items` of the item file's
    table (``source.items``; None without one) and the ratings' own titles ``by_item``.
    """
    from_file = read_items(source, frame["item_id"]) if source.items is not None else None
    return titled_items(frame, from_file, by_item)


def titled_items(
    frame: pd.DataFrame, meta: pd.DataFrame | None, by_item: pd.Series | None
) -> tuple[pd.DataFrame | None, str | None]:
    """``meta`` (an item file's table, or a DataFrame given to ``fit``) with the titles the
    ratings ``frame`` gives, and the item column whose ids are titles (None when they are not
    used as titles).

    Titles, first found first: ``meta``, the ratings' title column (``by_item``), the item ids
    when the item column holds titles (:func:`id_titles`). Files (:func:`item_table`) and
    DataFrames (:func:`recforge.data.frames.frame_to_interactions`) both come here, so the two
    orders cannot drift apart.

    Args:
        frame: the canonical ratings frame (:func:`recforge.data.io.read_ratings` or
            :func:`~recforge.data.io.read_frame`; its ``attrs`` name the item and title
            columns).
        meta: item metadata indexed by raw item id, or None.
        by_item: the title :func:`resolve_titles` chose for each item of ``frame`` from the
            ratings' title column (:attr:`RowTitles.by_item`, as the reader returns it), or
            None without a title column. Nothing is chosen here: it was chosen once, while the
            data was read, before repeated rows were merged, so every row's title counted.
    """
    with_rows = meta
    if by_item is not None and meta is not None:
        with_rows = _fill_titles(meta, by_item)
    elif by_item is not None and len(by_item):
        with_rows = pd.DataFrame({"title": by_item})
    item_meta = id_titles(frame, with_rows)
    # The ids count as the titles' source only where no title column gave any.
    from_ids = item_meta is not with_rows and frame.attrs.get("title_column") is None
    return item_meta, frame.attrs.get("mapping", {}).get("item_id") if from_ids else None
