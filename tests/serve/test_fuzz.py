"""Schemathesis over the service's own OpenAPI schema, in process: zero 5xx (CI size).

The full-size run (>= 1,000 cases) is benchmarks/fuzz_service.py; results in
docs/benchmarks/fuzz.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recforge.serve import Settings, create_app

from .fuzzing import fuzz_app

KEY = "fuzz-key-0123456789abcdef"


@pytest.mark.parametrize("mode", ["live", "store", "live+key"])
def test_fuzzed_requests_never_get_a_5xx(mode: str, mf_run: Path, store_url: str) -> None:
    settings = {
        "live": Settings(run=str(mf_run)),
        "store": Settings(store=store_url),
        "live+key": Settings(run=str(mf_run), api_key=KEY),  # type: ignore[arg-type]
    }[mode]
    headers = {"X-API-Key": KEY} if mode == "live+key" else None
    result = fuzz_app(create_app(settings), examples=6, headers=headers, seed=1)
    assert result.server_errors == []
    assert not [s for s in result.by_status if s >= 500]
    # Every operation was exercised, and both accepted and rejected requests were sent.
    assert len(result.by_operation) == 7
    assert 200 in result.by_status and 422 in result.by_status
    # The key was sent: nothing was refused for lack of it.
    assert 401 not in result.by_status
    assert result.cases >= 50
