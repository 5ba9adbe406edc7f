"""Helpers for tests that run a pipeline stage as a real process over the test's broker.

    with stage_process("twin_cleaner", settings, log_path) as stage:
        ...produce...
        values = consume(settings.kafka_bootstrap, "clean_docs", want=2)
        stage.get("/metrics")
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from kafka import KafkaConsumer

from ..infra.process import free_port
from ..settings import Settings, settings_env


@dataclass
class StageProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextmanager
def stage_process(module: str, settings: Settings, log_path: Path, port_setting: str) -> Iterator[StageProcess]:
    """`python -m module` with the test's settings; its web port (setting `port_setting`) is a free one."""
    port = free_port()
    env = {**os.environ, **settings_env(settings), f"TWIN_{port_setting.upper()}": str(port)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", module], env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=log_path.parent)
    try:
        yield StageProcess(proc, port, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def consume(bootstrap: str, topic: str, want: int, timeout: float = 60.0) -> list[bytes]:
    """Values of the topic from its beginning, until `want` arrived or the deadline passed."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=None, consumer_timeout_ms=500)
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < want and time.monotonic() < deadline:
            got.extend(record.value for record in consumer)
    finally:
        consumer.close()
    return got
