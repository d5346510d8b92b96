"""Issue 17, case 7: a connection that never finishes its request head is closed; a head over
the size limit is refused. Both HTTP parsers (httptools, the default, and h11) carry them."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from recforge.serve.timeouts import MAX_HEADER_BYTES

from ._server import serve

PARSERS = pytest.mark.parametrize("parser", ["httptools", "h11"])


def _connect(base: str) -> socket.socket:
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    return sock


@PARSERS
def test_slow_request_head_is_cut_and_idle_connections_close(mf_run: Path, parser: str) -> None:
    env = {
        "RECFORGE_HEADER_TIMEOUT": "1",
        "RECFORGE_KEEP_ALIVE_TIMEOUT": "1",
        "RECFORGE_HTTP_PARSER": parser,
    }
    with serve(mf_run, **env) as base:
        # Half a request head, then silence: the server closes (recv gives b"") well before
        # the 60 s socket timeout, which a server without a head deadline would reach.
        slow = _connect(base)
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        assert slow.recv(1024) == b""
        assert time.monotonic() - t0 < 50
        slow.close()
        # A byte every half second keeps no connection alive past the head deadline either.
        drip = _connect(base)
        closed = False
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200:
            try:
                drip.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.5)
            drip.setblocking(False)
            try:
                if drip.recv(1024) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except OSError:
                # Closed with a reset, not a FIN: a byte we sent was still unread when the
                # server closed (Linux then resets), which a loaded machine makes likely.
                closed = True
                break
            finally:
                drip.setblocking(True)
        assert closed
        # A prompt request is answered; the idle connection afterwards is closed.
        ok = _connect(base)
        ok.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += ok.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        rest = b""
        while chunk := ok.recv(4096):
            rest += chunk
        ok.close()


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


@PARSERS
def test_a_request_head_over_the_limit_is_refused(mf_run: Path, parser: str) -> None:
    pad = b"a" * (MAX_HEADER_BYTES + 100)
    with serve(mf_run, RECFORGE_HTTP_PARSER=parser) as base:
        # Whole in one write (the parser sees a complete head): httptools counts what it
        # parsed; h11 bounds only what it holds unparsed, so it takes a whole head in one read.
        whole = _connect(base)
        whole.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + pad + b"\r\n\r\n")
        answer = _answer(whole)
        if parser == "httptools":
            assert answer.startswith(b"HTTP/1.1 400")
        whole.close()
        # Never finished (the bytes pile up): 400 and closed with either parser.
        endless = _connect(base)
        endless.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + pad)
        assert _answer(endless).startswith(b"HTTP/1.1 400")
        endless.close()
        # Many small headers add up as well (sent without the final blank line: incomplete).
        many = _connect(base)
        heads = b"".join(b"X-H%d: %s\r\n" % (n, b"b" * 100) for n in range(200))
        many.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + heads)
        assert _answer(many).startswith(b"HTTP/1.1 400")
        many.close()
        # A head just under the limit is answered.
        ok = _connect(base)
        ok.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
            + b"a" * 8000
            + b"\r\n\r\n"
        )
        assert _answer(ok).startswith(b"HTTP/1.1 200")
        ok.close()
