"""The README's "Your own data" commands, run exactly as written on a click log made here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recforge.cli import main
from recforge.serve import Settings, create_app

README = Path(__file__).resolve().parents[2] / "README.md"


def own_data_commands() -> list[list[str]]:
    """The bash block after the ``own-data`` marker, one argv per command."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- own-data:.*?-->\s*```bash\n(.*?)```", text, re.S)
    assert block is not None, "README has no own-data block"
    return [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]


def test_readme_section_is_at_most_six_commands() -> None:
    commands = own_data_commands()
    assert 1 <= len(commands) <= 6
    assert all(c[0] == "recforge" for c in commands)


def test_readme_own_data_commands_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(30), 10)
    items = (users % 3) * 8 + rng.integers(0, 12, len(users))
    when = pd.Timestamp("2024-05-01") + pd.to_timedelta(rng.integers(0, 10**6, len(users)), "s")
    pd.DataFrame(
        {
            "customer": [f"c{u}" for u in users],
            "product": [f"p{i}" for i in items],
            "clicked_at": when.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    ).to_csv(tmp_path / "clicks.csv", index=False)
    monkeypatch.chdir(tmp_path)
    *commands, serve = own_data_commands()
    for argv in commands:
        code = main(argv[1:])
        assert code == 0, (argv, capsys.readouterr().err)
    assert serve[1] == "serve"  # a server blocks: build the same app in-process instead
    store = serve[serve.index("--store") + 1]
    with TestClient(create_app(Settings(store=store))) as client:
        got = client.get("/users/c1/recommendations", params={"k": 3})
        assert got.status_code == 200, got.text
        assert len(got.json()["items"]) == 3
