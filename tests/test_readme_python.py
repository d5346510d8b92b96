"""The README's Python section runs exactly as written (a fresh process, in a temporary folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import recforge

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    """Every fenced ```python block of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_has_one_python_section_with_the_dataframe_path() -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 1
    assert ".fit(\n    clicks," in blocks[0] and "to_frame()" in blocks[0]


@pytest.mark.movielens
@pytest.mark.slow
def test_readme_python_section_runs_as_written(data_dir: Path, tmp_path: Path) -> None:
    if not (data_dir / "ml-100k").exists() and not (data_dir / "ml-100k.zip").exists():
        pytest.skip(f"no ml-100k under {data_dir}; the README example loads it")
    (block,) = python_blocks(README.read_text(encoding="utf-8"))
    script = tmp_path / "readme_example.py"
    script.write_text(block, encoding="utf-8")
    src = str(Path(recforge.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "RECFORGE_DATA_DIR": str(data_dir),
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }
    res = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert "rmse" in out and "random-holdout" in out
    assert "title" in out  # the recommendations frame carries MovieLens titles
    assert (tmp_path / "runs" / "mf" / "manifest.json").is_file()
    # The DataFrame example: cy clicked mug and cup; tea (clicked with mug) comes first.
    last = out.strip().splitlines()[-2:]
    assert last[0].split()[1:4] == ["cy", "1", "tea"], out[-500:]
    assert last[1].split()[1:4] == ["cy", "2", "pot"], out[-500:]
