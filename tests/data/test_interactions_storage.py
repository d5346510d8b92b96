"""Compact dtypes, timestamp-free storage and the memory-mapped save/open round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions, no_timestamps
from recforge.errors import DataError


@pytest.fixture
def frame() -> pd.DataFrame:
    """Five events: users a, b, c; items 10, 20, 30; timestamps."""
    rows = [("b", 20, 4.0, 100), ("a", 10, 5.0, 50), ("b", 30, 2.0, 70), ("c", 20, 3.0, 10)]
    rows.append(("a", 20, 1.0, 60))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def test_compact_dtypes(frame: pd.DataFrame) -> None:
    x = Interactions.from_frame(frame)
    assert x.user_idx.dtype == np.int32 and x.item_idx.dtype == np.int32
    assert x.rating.dtype == np.float32 and x.timestamp.dtype == np.int64
    assert x.has_timestamps
    assert x.nbytes == 5 * (4 + 4 + 4 + 8)


def test_no_timestamp_column_costs_no_memory(frame: pd.DataFrame) -> None:
    with_ts = Interactions.from_frame(frame)
    x = Interactions.from_frame(frame.drop(columns="timestamp"))
    assert not x.has_timestamps
    assert x.timestamp.tolist() == [0, 0, 0, 0, 0]
    assert x.timestamp.strides == (0,) and not x.timestamp.flags.writeable
    assert x.nbytes == 5 * 12
    # same fingerprint as an explicit zero column: storage does not change identity
    zeros = Interactions.from_frame(frame.assign(timestamp=0))
    assert zeros.has_timestamps and x.fingerprint() == zeros.fingerprint()
    assert x.fingerprint() != with_ts.fingerprint()
    # filters keep the placeholder instead of materialising zeros
    for part in (
        x.subset(np.array([True, False, True, True, False])),
        x.subset([0, 4]),
        x.compact(),
    ):
        assert not part.has_timestamps
        assert part.timestamp.tolist() == [0] * len(part)
    assert not x.with_ratings(x.rating * 2).has_timestamps
    assert no_timestamps(0).shape == (0,)


@pytest.mark.parametrize("drop_ts", [False, True])
def test_save_open_round_trip_memory_mapped(
    frame: pd.DataFrame, tmp_path: Path, drop_ts: bool
) -> None:
    meta = pd.DataFrame(
        {"title": ["Ten", "Twenty", "Thirty"], "genres": [["A"], ["B", "C"], []]},
        index=pd.Index([10, 20, 30], name="item_id"),
    )
    src = frame.drop(columns="timestamp") if drop_ts else frame
    x = Interactions.from_frame(src, rating_scale=(1.0, 5.0), item_meta=meta, source="tiny")
    out = x.save(tmp_path / "inter")
    names = sorted(p.name for p in out.iterdir())
    expected = {"user_idx.npy", "item_idx.npy", "rating.npy", "users.json", "items.json"}
    assert expected <= set(names) and "meta.json" in names and "item_meta.parquet" in names
    assert ("timestamp.npy" in names) is not drop_ts
    assert not any(n.endswith((".pkl", ".pickle")) for n in names)

    y = Interactions.open(out, mmap=True)
    for name in ("user_idx", "item_idx", "rating"):
        arr = getattr(y, name)
        assert isinstance(arr, np.memmap), name
        assert arr.dtype == getattr(x, name).dtype
        np.testing.assert_array_equal(arr, getattr(x, name))
        assert not arr.flags.writeable
    assert isinstance(y.timestamp, np.memmap) is not drop_ts
    assert y.has_timestamps is not drop_ts
    assert y.fingerprint() == x.fingerprint()
    assert y.users == x.users and y.items == x.items
    assert y.users.ids.tolist() == ["a", "b", "c"]
    assert y.rating_scale == (1.0, 5.0) and y.source == "tiny"
    assert y.item_meta is not None and y.item_meta.loc[20, "title"] == "Twenty"
    assert list(y.item_meta.loc[20, "genres"]) == ["B", "C"]
    # views work on mapped arrays
    np.testing.assert_array_equal(y.csr().toarray(), x.csr().toarray())

    z = Interactions.open(out, mmap=False)
    assert not isinstance(z.user_idx, np.memmap)
    assert z.fingerprint() == x.fingerprint()


def test_save_replaces_atomically(frame: pd.DataFrame, tmp_path: Path) -> None:
    a = Interactions.from_frame(frame)
    b = Interactions.from_frame(frame.iloc[:2])
    a.save(tmp_path / "x")
    b.save(tmp_path / "x")
    assert len(Interactions.open(tmp_path / "x")) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # no temp folder left


def test_open_errors(frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no meta\.json"):
        Interactions.open(tmp_path / "missing")
    out = Interactions.from_frame(frame).save(tmp_path / "x")
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(DataError, match="newer"):
        Interactions.open(out)
    (out / "meta.json").write_text(json.dumps(meta))
    np.save(out / "rating.npy", np.zeros(5, dtype=np.float64))
    with pytest.raises(DataError, match=r"rating\.npy: expected a 1-D float32"):
        Interactions.open(out)
    np.save(out / "rating.npy", np.zeros(4, dtype=np.float32))
    with pytest.raises(DataError, match="column rating has 4 rows"):
        Interactions.open(out)
    (out / "rating.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="cannot read"):
        Interactions.open(out)
