"""Start a local server process, wait until its port answers, stop it by its PID."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class LocalServer:
    """A child process that serves on host:port; ready when the port accepts connections."""

    def __init__(self, name: str, argv: Sequence[str], host: str, port: int, *,
                 log_path: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.host, self.port = name, list(argv), host, port
        self.log_path, self.env = log_path, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "LocalServer":
        return self.launch().wait_ready(timeout)

    def launch(self) -> "LocalServer":
        """Start the process without waiting, so several servers can warm up at once."""
        if port_open(self.host, self.port):
            raise RuntimeError(f"{self.name}: port {self.host}:{self.port} is already in use")
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **(self.env or {})}, start_new_session=True)
        finally:
            if self.log_path:
                log.close()  # the child holds its own copy of the handle
        return self

    def wait_ready(self, timeout: float = 30.0) -> "LocalServer":
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was ready"
                                   + (f" (log: {self.log_path})" if self.log_path else ""))
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} not ready on {self.host}:{self.port} after {timeout}s")
            time.sleep(0.05)
        return self

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
