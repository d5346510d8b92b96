"""Case 1 of issue 17: the body limit counts the bytes received, whatever the headers say."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from recforge.serve.app import BodyLimit
from recforge.serve.deps import BODY_TOO_LARGE, BOTH_LENGTHS

from ._server import serve

# A valid request padded with JSON whitespace: accepted whole, it answers 200.
PAYLOAD = b'{"ratings": {"1": 5.0, "2": 4.0}, "k": 3}'


def _asgi(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, int, bytes]:
    """Run BodyLimit(64 KiB) over an app that reads the whole body; (status, bytes read, body)."""
    seen = {"read": 0}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen["read"] += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/recommendations", "headers": headers}
    asyncio.run(BodyLimit(app, 65_536)(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], seen["read"], body


def test_small_content_length_does_not_let_a_big_body_through() -> None:
    # 1 MiB arrives in 64 chunks under a declared length of 41: counted, refused at 64 KiB.
    headers = [(b"content-type", b"application/json"), (b"content-length", b"41")]
    status, read, body = _asgi(headers, [b" " * 16384] * 64)
    assert status == 413 and read == 0 and BODY_TOO_LARGE.encode() in body


def test_both_length_headers_are_refused_before_reading() -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"41"),
        (b"transfer-encoding", b"chunked"),
    ]
    status, read, body = _asgi(headers, [PAYLOAD])
    assert status == 400 and read == 0 and BOTH_LENGTHS.encode() in body


def test_honest_body_under_the_limit_still_reaches_the_app() -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"41")]
    assert _asgi(headers, [PAYLOAD[:20], PAYLOAD[20:]]) == (200, len(PAYLOAD), b"ok")


def test_in_process_client_gets_400_for_both_headers(live: TestClient) -> None:
    r = live.post(
        "/recommendations",
        content=PAYLOAD,
        headers={"content-type": "application/json", "transfer-encoding": "chunked"},
    )
    assert r.status_code == 400 and r.json() == {"detail": BOTH_LENGTHS}


def _raw_post(base: str, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send a hand-made request on a raw socket while reading the answer in parallel."""
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    answer = bytearray()

    def reader() -> None:
        try:
            while data := sock.recv(65536):
                answer.extend(data)
        except OSError:  # the server closes (or resets) once it has answered
            pass

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sock.sendall(b"0\r\n\r\n")
    except OSError:  # refused early: the server stopped reading and closed
        pass
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    thread.join(timeout=60)
    sock.close()
    return bytes(answer)


def test_live_uvicorn_refuses_chunked_body_with_small_content_length(mf_run: Path) -> None:
    # The probe's request: chunked framing, a tiny Content-Length, 8 MiB of (valid) body.
    head = (
        b"POST /recommendations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 41\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunks = [PAYLOAD] + [b" " * 65536] * 128
    with serve(mf_run) as base:
        answer = _raw_post(base, head, chunks)
        status_line = answer.split(b"\r\n", 1)[0]
        assert b" 200 " not in status_line
        assert status_line.startswith((b"HTTP/1.1 400", b"HTTP/1.1 413")), answer[:300]
        # Without a Content-Length, the chunked body is still counted: 413.
        answer = _raw_post(base, head.replace(b"Content-Length: 41\r\n", b""), chunks)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        # And an honest small chunked request still works.
        answer = _raw_post(base, head.replace(b"Content-Length: 41\r\n", b""), [PAYLOAD])
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


@pytest.mark.parametrize(
    "body",
    [
        {"ratings": {"1": 5.0}, "k": True},
        {"ratings": {"1": 5.0}, "k": "5"},
        {"ratings": {"1": 5.0}, "k": 5.0},
        {"ratings": {"1": True}},
        {"ratings": {"1": 5.0}, "exclude_rated": "no"},
    ],
)
def test_json_booleans_and_strings_are_not_numbers(live: TestClient, body: object) -> None:
    # Issue 17 case 7: `k: true` was taken as k=1.
    assert live.post("/recommendations", json=body).status_code == 422


def test_plain_numbers_still_work(live: TestClient) -> None:
    r = live.post("/recommendations", json={"ratings": {"1": 5, "2": 3.5}, "k": 4})
    assert r.status_code == 200 and len(r.json()["items"]) == 4
