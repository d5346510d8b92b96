"""Connection timeouts for ``recforge serve`` (uvicorn's h11 protocol with a header deadline).

uvicorn closes a keep-alive connection that stays idle between requests
(``timeout_keep_alive``), but it has no deadline for the request head itself: a client that opens
a connection and sends its headers a byte at a time (or never) holds it forever. So:

* **Header timeout** (``RECFORGE_HEADER_TIMEOUT``, default 10 s): a connection whose request line
  and headers are not complete this long after it opened, or after the previous response, is
  closed. Bodies are not under this deadline (they are bounded in size by the body limit).
* **Idle timeout** (``RECFORGE_KEEP_ALIVE_TIMEOUT``, default 5 s): uvicorn's keep-alive timeout,
  set explicitly.
* **Header size**: at most :data:`MAX_HEADER_BYTES` of unparsed request head (h11's limit, set
  explicitly); more is a 400.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADER_BYTES = 16 << 10


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline on each request head (see the module docstring).

    Worker processes import this class by name; they read the deadline from the environment
    that ``recforge serve`` hands them.
    """

    header_timeout: float = _env_seconds("RECFORGE_HEADER_TIMEOUT", 10.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head deadline with the connection."""
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadline with the connection."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        """Parse as uvicorn does; a new request (a new cycle) means its head arrived in time."""
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        """The next request's head gets a fresh deadline (the idle timeout may close first)."""
        super().on_response_complete()
        # Not while a pipelined request that started just now is being answered.
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self.transport.is_closing() and self._head_timer is None:
            self._arm_head_timer()


def uvicorn_options(header_timeout: float, keep_alive_timeout: float) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that set the timeouts above."""
    HeaderTimeoutH11Protocol.header_timeout = header_timeout
    return {
        "http": HeaderTimeoutH11Protocol,
        "timeout_keep_alive": keep_alive_timeout,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
