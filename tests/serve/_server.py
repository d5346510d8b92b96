"""A real ``recforge serve`` process on a free loopback port, for tests that need sockets."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

CLI = (sys.executable, "-m", "recforge.cli")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A running ``recforge serve``: its base URL and the lines it printed so far."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.lines: list[str] = []

    def count(self, text: str) -> int:
        """How many printed lines contain ``text``."""
        return sum(text in line for line in list(self.lines))


@contextlib.contextmanager
def serve_process(
    run: Path | None, *args: str, log_level: str = "warning", ready: int = 0, **env: str
) -> Iterator[Server]:
    """Start ``recforge serve [RUN] ARGS``; yield once /health answers 200 and, with ``ready``,
    that many processes logged "Application startup complete" (needs ``log_level="info"``)."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECFORGE_")} | env
    cmd = [*CLI, "serve", *([str(run)] if run is not None else []), *args]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--log-level", log_level],
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # workers share the group: one signal stops them all
    )
    server = Server(f"http://127.0.0.1:{port}")

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            server.lines.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                up = httpx.get(server.base + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                up = False
            if up and server.count("Application startup complete") >= ready:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("recforge serve did not start:\n" + "".join(server.lines))
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)
        reader.join(timeout=10)


@contextlib.contextmanager
def serve(run: Path | None, *args: str, **env: str) -> Iterator[str]:
    """Start ``recforge serve [RUN] ARGS`` and yield its base URL once /health answers 200."""
    with serve_process(run, *args, **env) as server:
        yield server.base
