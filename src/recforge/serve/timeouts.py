"""Connection timeouts for ``recforge serve``: uvicorn's HTTP protocol with a header deadline.

uvicorn closes a keep-alive connection that stays idle between requests
(``timeout_keep_alive``), but it has no deadline for the request head itself: a client that opens
a connection and sends its headers a byte at a time (or never) holds it forever. So:

* **Header timeout** (``RECFORGE_HEADER_TIMEOUT``, default 10 s): a connection whose request line
  and headers are not complete this long after it opened, or after the previous response, is
  closed. Bodies are not under this deadline (they are bounded in size by the body limit).
* **Idle timeout** (``RECFORGE_KEEP_ALIVE_TIMEOUT``, default 5 s): uvicorn's keep-alive timeout,
  set explicitly.
* **Header size**: at most :data:`MAX_HEADER_BYTES` of unparsed request head; more is a 400 and
  the connection is closed.

Two protocol classes carry them: ``HeaderTimeoutHttpToolsProtocol`` (in ``_httptools``) on
uvicorn's ``httptools`` parser (C, llhttp) when ``httptools`` is installed, as it is with
recforge's dependencies, else :class:`HeaderTimeoutH11Protocol` on the pure-Python ``h11``
(``RECFORGE_HTTP_PARSER`` picks one). h11 bounds the head it holds *unparsed*, so it takes a
longer head that arrives whole in one read; the httptools protocol counts every head. The parser is
most of a small request's fixed cost: measured on the shared 2-core machine, ``GET /health``
took ~250 µs of server CPU per request with h11 and ~160 µs with httptools
(docs/benchmarks/explain_serve.md).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADER_BYTES = 16 << 10

#: The 400's text, as uvicorn words it for any unparsable request.
INVALID_REQUEST = "Invalid HTTP request received."


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


class HeadDeadline(asyncio.Protocol):
    """The head deadline shared by both protocols: a timer armed while a head is awaited
    (from the connection on; listed first, so its connection hooks wrap the protocol's).

    Worker processes import the protocol classes by name; they read the deadline from the
    environment that ``recforge serve`` hands them.
    """

    header_timeout: float = _env_seconds("RECFORGE_HEADER_TIMEOUT", 10.0)
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head deadline with the connection."""
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadline with the connection."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _rearm_when_idle(self, idle: bool) -> None:
        """After a response: the next head gets a fresh deadline (the idle timeout may close
        first), unless a pipelined request that started just now is being answered."""
        if idle and not self.transport.is_closing() and self._head_timer is None:
            self._arm_head_timer()


class HeaderTimeoutH11Protocol(HeadDeadline, H11Protocol):
    """uvicorn's h11 protocol plus a deadline on each request head (see the module docstring)."""

    def handle_events(self) -> None:
        """Parse as uvicorn does; a new request (a new cycle) means its head arrived in time."""
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        """The next request's head gets a fresh deadline."""
        super().on_response_complete()
        self._rearm_when_idle(self.cycle is None or self.cycle.response_complete)


def protocol_class(parser: str = "auto") -> type[Any]:
    """The protocol class ``recforge serve`` runs: ``"httptools"``, ``"h11"`` or ``"auto"``
    (httptools when installed, else h11)."""
    if parser == "h11":
        return HeaderTimeoutH11Protocol
    try:
        from recforge.serve._httptools import HeaderTimeoutHttpToolsProtocol
    except ImportError:  # uvicorn's httptools module imports httptools at its top
        if parser == "httptools":
            raise
        return HeaderTimeoutH11Protocol
    return HeaderTimeoutHttpToolsProtocol


def uvicorn_options(
    header_timeout: float, keep_alive_timeout: float, parser: str = "auto"
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that set the timeouts above."""
    HeadDeadline.header_timeout = header_timeout
    return {
        "http": protocol_class(parser),
        "timeout_keep_alive": keep_alive_timeout,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
