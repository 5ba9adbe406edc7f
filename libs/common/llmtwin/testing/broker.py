"""Fixtures: a real Kafka-protocol broker (Tansu) on a free port.

Tansu starts in milliseconds and keeps nothing, so every test gets its own broker
and no test sees another's messages."""
from __future__ import annotations

import pytest

from llmtwin.bus.admin import ensure_topics
from llmtwin.infra.broker import tansu
from llmtwin.infra.process import free_port
from llmtwin.settings import Settings


@pytest.fixture
def broker_bootstrap(tmp_path) -> str:
    port = free_port()
    server = tansu(port=port, log_path=tmp_path / "tansu.log").start()
    yield f"127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bus_settings(broker_bootstrap, tmp_path) -> Settings:
    """Settings for one test: its own data folder, its own broker, topics created."""
    settings = Settings(data_dir=tmp_path / "data", kafka_bootstrap=broker_bootstrap)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    return settings
