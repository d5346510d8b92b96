"""Schemathesis against the service's own OpenAPI schema, in process (ASGI, no network).

Shared by tests/serve/test_fuzz.py (few cases, in CI) and benchmarks/fuzz_service.py (>= 1,000).
Every operation is fuzzed with positive cases (valid per the schema) and negative ones (invalid
types, out-of-range numbers, missing fields, wrong shapes). The requirement is *zero 5xx*; the
other schemathesis checks (status codes and bodies conforming to the schema, ...) are counted
and reported, not required.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import hypothesis
import hypothesis.errors
import schemathesis
from hypothesis import HealthCheck
from schemathesis import GenerationMode
from schemathesis.python import asgi


@dataclasses.dataclass
class FuzzResult:
    """What a fuzz run sent and got back."""

    cases: int = 0
    by_operation: dict[str, int] = dataclasses.field(default_factory=dict)
    by_status: dict[int, int] = dataclasses.field(default_factory=dict)
    server_errors: list[str] = dataclasses.field(default_factory=list)
    check_failures: dict[str, int] = dataclasses.field(default_factory=dict)
    check_examples: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (status codes as strings)."""
        out = dataclasses.asdict(self)
        out["by_status"] = {str(k): v for k, v in sorted(self.by_status.items())}
        out["n_5xx"] = sum(v for k, v in self.by_status.items() if k >= 500)
        return out


def fuzz_app(
    app: Any,
    *,
    examples: int,
    modes: tuple[str, ...] = ("positive", "negative"),
    headers: dict[str, str] | None = None,
    seed: int = 0,
    run_checks: bool = True,
) -> FuzzResult:
    """Fuzz every operation of ``app``'s schema with ``examples`` cases per operation and mode.

    Args:
        app: the ASGI application (its lifespan is started once, by schemathesis).
        examples: hypothesis ``max_examples`` per (operation, mode).
        modes: generation modes, ``positive`` and/or ``negative``.
        headers: sent with every request (e.g. the API key).
        seed: hypothesis seed, so a run is reproducible.
        run_checks: also run schemathesis' default response checks and count their failures.

    Returns:
        Counts by operation and status, every 5xx (method, path, body excerpt) and check failures.
    """
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=headers or {})
    result = FuzzResult()
    status: collections.Counter[int] = collections.Counter()
    checks: collections.Counter[str] = collections.Counter()
    with asgi.get_client(app) as client:
        for op_result in schema.get_all_operations():
            operation = op_result.ok()
            label = f"{operation.method.upper()} {operation.path}"
            for mode in modes:
                _fuzz_operation(
                    operation,
                    label,
                    mode,
                    examples,
                    seed,
                    client,
                    headers,
                    result,
                    status,
                    checks,
                    run_checks,
                )
    result.by_status = dict(status)
    result.check_failures = dict(checks)
    return result


def _fuzz_operation(
    operation: Any,
    label: str,
    mode: str,
    examples: int,
    seed: int,
    client: Any,
    headers: dict[str, str] | None,
    result: FuzzResult,
    status: collections.Counter[int],
    checks: collections.Counter[str],
    run_checks: bool,
) -> None:
    strategy = operation.as_strategy(generation_mode=GenerationMode(mode))

    @hypothesis.seed(seed)
    @hypothesis.settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def one(case: Any) -> None:
        response = case.call(session=client, headers=headers)
        result.cases += 1
        result.by_operation[label] = result.by_operation.get(label, 0) + 1
        status[response.status_code] += 1
        if response.status_code >= 500:
            result.server_errors.append(
                f"{label} -> {response.status_code}: {case.as_curl_command(headers=headers)[:400]}"
            )
        if run_checks:
            _count_check_failures(case, response, headers, checks, result)

    try:
        one()
    except hypothesis.errors.Unsatisfiable:
        # No invalid input exists (e.g. negative cases of GET /health, which takes no
        # parameters): nothing to send.
        result.skipped.append(f"{label} ({mode})")


def _count_check_failures(
    case: Any,
    response: Any,
    headers: dict[str, str] | None,
    counter: collections.Counter[str],
    result: FuzzResult,
) -> None:
    from schemathesis.core.failures import FailureGroup

    try:
        case.validate_response(response, headers=headers)
    except FailureGroup as group:
        for failure in group.exceptions:
            name = type(failure).__name__
            counter[name] += 1
            result.check_examples.setdefault(
                name, f"{case.method} {case.formatted_path}: {str(failure)[:300]}"
            )
