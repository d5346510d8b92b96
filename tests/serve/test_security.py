"""API-key auth, CORS, and hostile requests: every bad request is a 4xx with a stable detail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recforge.errors import ConfigError
from recforge.serve import Settings, create_app
from recforge.serve.deps import NEEDS_RUN, NOT_JSON
from recforge.serve.security import API_KEY_REQUIRED, presented_key

from .conftest import client_for

KEY = "s3cret-key-for-tests-0123456789"
WRONG = "s3cret-key-for-tests-0123456780"  # same length, last character differs


@pytest.fixture(scope="module")
def keyed(mf_run: Path) -> Iterator[TestClient]:
    with client_for(run=str(mf_run), api_key=KEY) as client:
        yield client


@pytest.fixture(scope="module")
def plain(mf_run: Path) -> Iterator[TestClient]:
    with client_for(run=str(mf_run)) as client:
        yield client


PROTECTED = [
    ("GET", "/users/1/recommendations", None),
    ("GET", "/users/1/history", None),
    ("GET", "/items?query=toy", None),
    ("GET", "/items/1/similar", None),
    ("POST", "/recommendations", {"ratings": {"1": 5}}),
    ("POST", "/admin/reload", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
    ("GET", "/no/such/route", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_every_route_but_health_needs_the_key(
    keyed: TestClient, method: str, path: str, body: object
) -> None:
    for headers in ({}, {"X-API-Key": WRONG}, {"Authorization": f"Bearer {WRONG}"}):
        r = keyed.request(method, path, json=body, headers=headers)
        assert r.status_code == 401, (path, headers)
        assert r.json() == {"detail": API_KEY_REQUIRED}
        assert r.headers["www-authenticate"].startswith("Bearer")
    ok = keyed.request(method, path, json=body, headers={"X-API-Key": KEY})
    assert ok.status_code == (404 if path == "/no/such/route" else 200)
    bearer = keyed.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status_code == ok.status_code


def test_health_and_web_page_files_are_open(keyed: TestClient) -> None:
    assert keyed.get("/health").json()["status"] == "ok"
    assert "<html" in keyed.get("/").text
    assert "X-API-Key" in keyed.get("/static/app.js").text  # the page sends the key
    # A path that only starts like an open one is not open.
    assert keyed.get("/healthz").status_code == 401
    assert keyed.get("/static/../openapi.json").status_code in {401, 404}


def test_key_header_parsing() -> None:
    assert presented_key([(b"X-Api-Key", b" abc ")]) == b"abc"
    assert presented_key([(b"authorization", b"bearer  tok")]) == b"tok"
    assert presented_key([(b"authorization", b"Basic dXNlcjpwYXNz")]) is None
    assert presented_key([(b"authorization", b"Bearer ")]) is None
    assert presented_key([]) is None


def test_key_compared_with_compare_digest(
    keyed: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    import recforge.serve.security as sec

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(sec.hmac, "compare_digest", spy)
    assert keyed.get("/items?query=toy", headers={"X-API-Key": "guess"}).status_code == 401
    assert calls == [(b"guess", KEY.encode())]


def test_api_key_setting_from_env_is_secret_and_round_trips() -> None:
    s = Settings.from_env({"RECFORGE_RUN": "r", "RECFORGE_API_KEY": KEY})
    assert s.api_key is not None and s.api_key.get_secret_value() == KEY
    assert KEY not in repr(s) and KEY not in str(s.model_dump())
    # Worker processes get the real key back through the environment.
    assert s.to_env()["RECFORGE_API_KEY"] == KEY
    assert Settings.from_env(s.to_env()) == s
    with pytest.raises(ConfigError, match="RECFORGE_API_KEY"):
        Settings.from_env({"RECFORGE_RUN": "r", "RECFORGE_API_KEY": "short"})


def test_openapi_documents_401_only_with_a_key(keyed: TestClient, plain: TestClient) -> None:
    op = "/users/{user_id}/recommendations"
    with_key = keyed.get("/openapi.json", headers={"X-API-Key": KEY}).json()
    assert "401" in with_key["paths"][op]["get"]["responses"]
    assert "401" not in plain.get("/openapi.json").json()["paths"][op]["get"]["responses"]


# ------------------------------------------------------------------------------ CORS
def test_no_cors_headers_by_default(plain: TestClient) -> None:
    origin = {"Origin": "https://evil.example"}
    r = plain.get("/health", headers=origin)
    assert r.status_code == 200
    assert not any(h.lower().startswith("access-control-") for h in r.headers)
    pre = plain.options(
        "/recommendations",
        headers=origin | {"Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers
    assert pre.status_code == 405


def test_cors_only_for_listed_origins(mf_run: Path) -> None:
    env = {
        "RECFORGE_RUN": str(mf_run),
        "RECFORGE_CORS_ORIGINS": "https://a.example, https://b.example",
    }
    settings = Settings.from_env(env, api_key=KEY)
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.to_env()["RECFORGE_CORS_ORIGINS"] == "https://a.example,https://b.example"
    with TestClient(create_app(settings)) as client:
        r = client.get("/health", headers={"Origin": "https://b.example"})
        assert r.headers["access-control-allow-origin"] == "https://b.example"
        r = client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        # A preflight carries no key: answered by CORS, outside the auth middleware.
        pre = client.options(
            "/recommendations",
            headers={
                "Origin": "https://a.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key, content-type",
            },
        )
        assert pre.status_code == 200
        assert "x-api-key" in pre.headers["access-control-allow-headers"].lower()
        # A 401 still names the origin, so the browser lets the page read the error.
        r = client.get("/items?query=toy", headers={"Origin": "https://a.example"})
        assert r.status_code == 401
        assert r.headers["access-control-allow-origin"] == "https://a.example"


# ------------------------------------------------------------------------------ hostile input
def _detail(r: object) -> object:
    return r.json()["detail"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/users/" + "9" * 100 + "/recommendations", "unknown user: " + "9" * 100),
        ("/users/" + "9" * 5000 + "/recommendations", "unknown user: " + "9" * 5000),
        ("/users/%F0%9F%98%80/recommendations", "unknown user: \U0001f600"),
        ("/users/%00/history", "unknown user: \x00"),
        # int() would read these as user 10 / user 1; they are other (unknown) ids
        ("/users/1_0/recommendations", "unknown user: 1_0"),
        ("/users/%D9%A1/recommendations", "unknown user: \u0661"),
        ("/users/%2B1/recommendations", "unknown user: +1"),
        ("/items/" + "9" * 40 + "/similar", "unknown item: " + "9" * 40),
        ("/items/%E2%80%AE1/similar", "unknown item: \u202e1"),
    ],
)
def test_unicode_huge_and_odd_ids_are_404(plain: TestClient, path: str, detail: str) -> None:
    r = plain.get(path)
    assert r.status_code == 404 and _detail(r) == detail


@pytest.mark.parametrize("k", ["0", "-5", "1001", "99999999999999999999999999", "1e3", "nan"])
def test_bad_k_everywhere_is_422(plain: TestClient, k: str) -> None:
    assert plain.get(f"/users/1/recommendations?k={k}").status_code == 422
    assert plain.get(f"/items/1/similar?k={k}").status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        b'{"ratings": {"1": NaN}}',
        b'{"ratings": {"1": Infinity}, "k": 5}',
        b'{"ratings": {"1": -Infinity}}',
        b'{"ratings": {"1": 1e308}}',
        b'{"ratings": {"1": 5}, "k": 1e400}',
        b'{"ratings": {"1": 5}, "k": 100000000000000000000000000000}',
        b'{"ratings": {"1": 5}, "k": 0}',
        b'{"ratings": {"1": 5}, "k": -3}',
        b'{"ratings": {"1": "five"}}',
        b'{"ratings": {"\\ud800": "x"}}',
        b'{"ratings": {}}',
        b'{"ratings": [1, 2]}',
        b'{"ratings": {"1": 5}, "extra": 1}',
        b'{"ratings": {"1": 5}',
        b"\xff\xfe\x00",
        b"[]",
        b"null",
        b"",
    ],
)
def test_malformed_new_user_bodies_are_4xx_json(plain: TestClient, body: bytes) -> None:
    r = plain.post("/recommendations", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in {400, 422}, r.text
    detail = _detail(r)
    # Stable and small: a string, or a list of {type, loc, msg} without the echoed input.
    if isinstance(detail, list):
        assert detail and all(set(d) == {"type", "loc", "msg"} for d in detail)
    else:
        assert isinstance(detail, str) and detail
    json.loads(r.content.decode("ascii"))  # ASCII-only JSON, even for lone surrogates


def test_lone_surrogates_are_422_and_error_bodies_are_ascii(plain: TestClient) -> None:
    from recforge.serve.app import ErrorResponse

    r = plain.post(
        "/admin/reload",
        content=b'{"run": "/nowhere/\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert _detail(r)[0]["loc"] == ["body", "run"]  # type: ignore[index]
    # Details that echo client text cannot fail to encode (the default renderer raises).
    assert ErrorResponse({"detail": "x\ud800"}).body == b'{"detail":"x\\ud800"}'


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ],
)
def test_wrong_content_type_is_415(plain: TestClient, content_type: str) -> None:
    for path in ("/recommendations", "/admin/reload"):
        r = plain.post(
            path, content=b'{"ratings": {"1": 5}}', headers={"Content-Type": content_type}
        )
        assert r.status_code == 415 and _detail(r) == NOT_JSON


def test_json_content_types_accepted(plain: TestClient) -> None:
    for ct in (
        "application/json",
        "application/json; charset=utf-8",
        "application/merge-patch+json",
    ):
        r = plain.post(
            "/recommendations", content=b'{"ratings": {"1": 5}}', headers={"Content-Type": ct}
        )
        assert r.status_code == 200, ct


def test_huge_body_is_413_before_parsing(plain: TestClient) -> None:
    body = b'{"ratings": {' + b",".join(b'"%d": 3' % i for i in range(20_000)) + b"}}"
    r = plain.post("/recommendations", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and _detail(r) == "request body too large"
    r = plain.post(
        "/recommendations",
        content=b"{}",
        headers={"Content-Type": "application/json", "Content-Length": "x"},
    )
    assert r.status_code in {400, 413}


@pytest.mark.parametrize(
    "body",
    [
        {"run": "/tmp/\x00x"},
        {"run": "a" * 5000},
        {"run": "/no/such/run"},
        {"run": "/etc/passwd"},
        {"store_version": "\x00"},
        {"other": 1},
        "run",
    ],
)
def test_bad_reload_requests_are_422_and_keep_serving(plain: TestClient, body: object) -> None:
    before = plain.get("/health").json()["model_version"]
    r = plain.post("/admin/reload", json=body)
    assert r.status_code == 422, r.text
    assert plain.get("/health").json()["model_version"] == before


def test_store_only_mode_answers_live_routes_with_404(store_url: str) -> None:
    with client_for(store=store_url) as client:
        for method, path, body in (
            ("GET", "/users/1/history", None),
            ("GET", "/items/1/similar", None),
            ("POST", "/recommendations", {"ratings": {"1": 5}}),
        ):
            r = client.request(method, path, json=body)
            assert r.status_code == 404 and _detail(r) == NEEDS_RUN
        assert client.get("/users/%00/recommendations").status_code == 404
