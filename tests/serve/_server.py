"""A real ``recforge serve`` process on a free loopback port, for tests that need sockets."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
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


@contextlib.contextmanager
def serve(run: Path | None, *args: str, **env: str) -> Iterator[str]:
    """Start ``recforge serve [RUN] ARGS`` and yield its base URL once /health answers 200."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECFORGE_")} | env
    cmd = [*CLI, "serve", *([str(run)] if run is not None else []), *args]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--log-level", "warning"],
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # workers share the group: one signal stops them all
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"recforge serve did not start:\n{out}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
