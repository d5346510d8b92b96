"""Every tuned config committed under configs/ must still build its model.

The benchmark reads these files by label (configs/<dataset>/<protocol>/<label>.toml); a renamed
or re-bounded config field would otherwise surface only in a long `make bench` run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recforge.config import load_config_file
from recforge.models.registry import available, create

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FILES = sorted(CONFIGS.rglob("*.toml"))


def test_configs_are_committed() -> None:
    assert len(FILES) >= 10, f"expected the tuned MovieLens configs under {CONFIGS}"


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CONFIGS)) for p in FILES])
def test_config_builds_its_model(path: Path) -> None:
    params = load_config_file(path)
    # A file named after its model may leave `model` out (the benchmark's label lookup).
    name = params.pop("model", path.stem)
    if name in available():
        model = create(name, params)
        for key, value in params.items():
            if not isinstance(value, list | dict):
                assert getattr(model.config, key) == value, key
    else:
        peers = pytest.importorskip("recforge.bench.peers")
        assert name in peers.peer_names(), f"{path}: {name!r} is neither a model nor a peer"
        if peers.peer_status()[name] != "ok":
            pytest.skip(f"{name}: {peers.peer_status()[name]}")
        peers.create_peer(name, params)
