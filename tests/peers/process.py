"""Starting and stopping peer processes the tests run on 127.0.0.1."""
from __future__ import annotations

import os
import socket
import subprocess
import time


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    stop_process(process)
    raise RuntimeError(f"{process.args[0]} did not listen on {port} within {timeout} s")


def stop_process(process: subprocess.Popen | None) -> None:
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_listener(argv: list[str], port: int, env: dict | None = None) -> subprocess.Popen:
    """Start a server process (DCMTK with TCP_NODELAY=1) and wait until it accepts connections."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TCP_NODELAY": "1", **(env or {})})
    wait_listening(port, process)
    return process
