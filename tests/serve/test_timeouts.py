"""Issue 17, case 7: a connection that never finishes its request head is closed."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from ._server import serve


def _connect(base: str) -> socket.socket:
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    return sock


def test_slow_request_head_is_cut_and_idle_connections_close(mf_run: Path) -> None:
    env = {"RECFORGE_HEADER_TIMEOUT": "1", "RECFORGE_KEEP_ALIVE_TIMEOUT": "1"}
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
