"""Optional API-key authentication (``RECFORGE_API_KEY``), as plain ASGI middleware.

Decisions, so that clients can rely on them:

* The key travels in a header, ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``, never in
  the URL (URLs end up in access logs and browser history).
* Open without a key: ``GET /health`` (load balancers and probes carry no secrets) and the web
  page's files (``/`` and ``/static/...``): they are the same bytes as in the package and hold no
  data. Every API call the page makes carries the key, which the page asks for when the service
  answers 401 and keeps in the tab's ``sessionStorage`` only. Everything else, including
  ``/openapi.json``, ``/docs`` and ``POST /admin/reload``, answers 401 without the key.
* The comparison is :func:`hmac.compare_digest` on bytes, so its time does not depend on how many
  leading characters of a guess are right.
* CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered by the CORS
  middleware, which sits outside this one, so browsers can learn that the key header is allowed.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.responses import JSONResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The ``detail`` of every 401 (stable: clients and tests rely on it).
API_KEY_REQUIRED = "missing or invalid API key: send it as X-API-Key or Authorization: Bearer"

#: Paths answered without a key (exact matches) and path prefixes (the web page's files).
OPEN_PATHS = frozenset({"/health", "/"})
OPEN_PREFIXES = ("/static/",)


def presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request carries: ``X-API-Key`` first, else a ``Bearer`` authorization."""
    bearer = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"x-api-key":
            return value.strip()
        if lower == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                bearer = token.strip()
    return bearer


class ApiKeyAuth:
    """ASGI middleware: 401 for requests without the right key (see the module docstring).

    Args:
        app: the wrapped application.
        key: the expected key (text; compared as UTF-8 bytes).
    """

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self._key = key.encode("utf-8")

    def allowed(self, scope: Scope) -> bool:
        """Whether the request may pass: an open path, or the right key."""
        path = scope.get("path", "")
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return True
        given = presented_key(list(scope.get("headers") or []))
        # compare_digest on equal-type operands; a missing key still costs one comparison.
        return hmac.compare_digest(given if given is not None else b"", self._key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"detail": API_KEY_REQUIRED},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="recforge"'},
        )
        await response(scope, receive, send)
