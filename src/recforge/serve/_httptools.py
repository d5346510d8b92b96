"""The head deadline and head size limit of :mod:`recforge.serve.timeouts` on uvicorn's
``httptools`` protocol (a module of its own: importing it needs ``httptools``)."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from recforge.serve.timeouts import INVALID_REQUEST, MAX_HEADER_BYTES, HeadDeadline


class HeaderTimeoutHttpToolsProtocol(HeadDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol plus the head deadline and the head size limit.

    llhttp itself bounds no header size (h11 does, with ``max_incomplete_event_size``), so it is
    counted here, twice: the URL and header bytes the parser hands over (a head that arrives
    whole in one read), and the bytes received while a head is incomplete (one that trickles
    in, which httptools would otherwise buffer without end). Over :data:`MAX_HEADER_BYTES` the
    request is answered 400 and the connection closed, as h11 does.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._parsed_head = 0

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does, counting the bytes of an incomplete head."""
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        too_big = self._in_head and self._head_bytes > MAX_HEADER_BYTES
        if too_big and not self.transport.is_closing():
            self.send_400_response(INVALID_REQUEST)

    def _count_head(self, n: int) -> None:
        self._parsed_head += n
        if self._parsed_head > MAX_HEADER_BYTES:
            # httptools raises HttpParserCallbackError, which uvicorn answers with a 400.
            raise ValueError("request head too large")

    def on_message_begin(self) -> None:
        """A new request: its head counts from zero."""
        self._parsed_head = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        """Count the URL's bytes against the head limit."""
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count the header's bytes against the head limit."""
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head arrived in time and within the size limit."""
        self._in_head = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """What follows a message is the next one's head."""
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        """The next request's head gets a fresh deadline."""
        super().on_response_complete()
        self._rearm_when_idle(self.cycle is None or self.cycle.response_complete)
