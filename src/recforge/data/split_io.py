"""Write a Split's parts to disk as canonical CSV files (atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recforge._atomic import atomic_path


def write_split(split: Any, out: str | Path) -> dict[str, Path]:
    """Write ``train.csv``, ``test.csv`` (and ``valid.csv``) with raw ids into ``out``.

    Each file is written to a temporary name and renamed, so an interrupted run never leaves a
    half-written part. A ``protocol.txt`` records how the split was made.
    """
    folder = Path(out)
    written: dict[str, Path] = {}
    for name in ("train", "valid", "test"):
        part = getattr(split, name, None)
        if part is None:
            continue
        target = folder / f"{name}.csv"
        frame = part.to_frame()
        if not part.has_timestamps:  # zeros would read back as real (1970) times
            frame = frame.drop(columns="timestamp")
        with atomic_path(target) as tmp:
            frame.to_csv(tmp, index=False)
        written[name] = target
    with atomic_path(folder / "protocol.txt") as tmp:
        tmp.write_text(split.protocol.describe() + "\n", encoding="utf-8")
    return written
