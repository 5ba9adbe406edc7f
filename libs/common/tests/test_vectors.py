"""The vector store through the real local Qdrant server process, and the real embedding model."""
from __future__ import annotations

import math

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models
from qdrant_client.http.exceptions import UnexpectedResponse

from llmtwin.domain import Chunk, CleanDocument, DocumentKind, Platform
from llmtwin.embeddings import DEFAULT_MODEL_NAME, embed, embedding_dimension, embedding_model_name
from llmtwin.infra.process import free_port
from llmtwin.infra.qdrant_server import qdrant_local
from llmtwin.settings import Settings
from llmtwin.vectors import (collection_name, count_points, delete_stale_chunks, ensure_collection,
                             search, upsert_chunks)

DIM = 4


def document(twin_id: str, link: str, kind: DocumentKind = DocumentKind.POST) -> CleanDocument:
    return CleanDocument(id=f"{twin_id}-{link}", twin_id=twin_id, platform=Platform.LINKEDIN, kind=kind,
                         link=link, title=link, content="...", content_hash="h", raw_hash="h")


def chunks_of(doc: CleanDocument, *texts: str) -> list[Chunk]:
    return [Chunk.create(doc, position, text, token_count=len(text.split())) for position, text in enumerate(texts)]


def unit(*xs: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in xs))
    return [x / norm for x in xs]


@pytest.fixture
def client(qdrant_url) -> QdrantClient:
    qdrant = QdrantClient(url=qdrant_url, timeout=10)
    yield qdrant
    qdrant.close()


def test_collection_is_per_model_and_records_model_and_dimension(client):
    name = ensure_collection(client, "all-MiniLM-L6-v2", DIM)

    assert name == "chunks__all-minilm-l6-v2__4"
    assert ensure_collection(client, "all-MiniLM-L6-v2", DIM) == name  # idempotent
    assert collection_name("other-model", DIM) != name
    assert collection_name("all-MiniLM-L6-v2", 384) != name
    info = client.get_collection(name)
    assert info.config.params.vectors.size == DIM
    assert info.config.params.vectors.distance == models.Distance.COSINE
    assert info.config.metadata == {"embedding_model": "all-MiniLM-L6-v2", "dimension": DIM}
    assert info.points_count == 0
    assert [c.name for c in client.get_collections().collections] == [name]


def test_search_stays_within_one_twin_and_kinds(client):
    collection = ensure_collection(client, "m", DIM)
    alice_post = chunks_of(document("alice", "p1"), "alice on rust", "alice on go")
    alice_code = chunks_of(document("alice", "repo", DocumentKind.CODE), "fn main() {}")
    bob_post = chunks_of(document("bob", "p1"), "bob on rust")
    upsert_chunks(client, collection, alice_post + alice_code,
                  [unit(1, 1, 0, 0), unit(0, 1, 1, 0), unit(1, 0, 0, 2)])
    # Bob's chunk is exactly the query: if the twin filter leaked, it would come first.
    upsert_chunks(client, collection, bob_post, [unit(1, 0, 0, 0)])

    found = search(client, collection, unit(1, 0, 0, 0), twin_id="alice", top_k=10)
    assert {hit.chunk.twin_id for hit in found} == {"alice"}
    assert [hit.chunk for hit in found] == [alice_post[0], alice_code[0], alice_post[1]]  # best first
    assert found[0].score == pytest.approx(1 / math.sqrt(2), abs=1e-6)

    assert [hit.chunk for hit in search(client, collection, unit(1, 0, 0, 0), twin_id="bob", top_k=10)] == bob_post
    code_only = search(client, collection, unit(1, 0, 0, 0), twin_id="alice", top_k=10, kinds=[DocumentKind.CODE])
    assert [hit.chunk for hit in code_only] == alice_code
    others = search(client, collection, unit(1, 0, 0, 0), twin_id="alice", top_k=10,
                    exclude_document_id=alice_post[0].document_id)
    assert [hit.chunk for hit in others] == alice_code
    close_only = search(client, collection, unit(1, 0, 0, 0), twin_id="alice", top_k=10, score_threshold=0.4)
    assert [hit.chunk for hit in close_only] == [alice_post[0], alice_code[0]]
    assert len(search(client, collection, unit(1, 0, 0, 0), twin_id="alice", top_k=1)) == 1
    assert search(client, collection, unit(1, 0, 0, 0), twin_id="carol", top_k=10) == []
    with pytest.raises(ValueError, match="twin"):
        search(client, collection, unit(1, 0, 0, 0), twin_id="", top_k=3)

    assert count_points(client, collection) == 4
    assert count_points(client, collection, twin_id="alice") == 3
    assert count_points(client, collection, twin_id="bob") == 1


def test_upsert_is_idempotent_and_stale_chunks_are_deleted(client):
    collection = ensure_collection(client, "m", DIM)
    doc, other, third = document("alice", "p1"), document("alice", "p2"), document("alice", "p3")
    old = chunks_of(doc, "one", "two", "three")
    untouched = chunks_of(other, "elsewhere")
    gone = chunks_of(third, "deleted", "too")
    upsert_chunks(client, collection, old + untouched + gone, [unit(1, 0, 0, 0)] * 6)
    upsert_chunks(client, collection, old, [unit(1, 0, 0, 0)] * 3)  # a replay changes nothing
    assert count_points(client, collection) == 6

    # One document was edited (its first chunk stayed, the rest changed), another emptied: one request.
    new = [old[0], *chunks_of(doc, "one", "TWO, rewritten")[1:]]
    upsert_chunks(client, collection, new, [unit(0, 1, 0, 0)] * 2)
    delete_stale_chunks(client, collection, {doc.id: [c.id for c in new], third.id: []})

    remaining = {hit.chunk.id for hit in search(client, collection, unit(1, 0, 0, 0), twin_id="alice", top_k=10)}
    assert remaining == {c.id for c in new + untouched}

    delete_stale_chunks(client, collection, {doc.id: []})  # the document is gone entirely
    assert count_points(client, collection) == 1
    delete_stale_chunks(client, collection, {})  # nothing to do
    assert count_points(client, collection) == 1


def test_bad_input_and_unknown_collection_give_clear_errors(client):
    collection = ensure_collection(client, "m", DIM)
    chunks = chunks_of(document("alice", "p1"), "one", "two")

    with pytest.raises(ValueError, match="2 chunks but 1 vectors"):
        upsert_chunks(client, collection, chunks, [unit(1, 0, 0, 0)])
    with pytest.raises(UnexpectedResponse) as wrong_dim:
        upsert_chunks(client, collection, chunks, [unit(1, 0, 0, 0), [1.0, 0.0]])
    assert wrong_dim.value.status_code == 400
    assert "dim" in wrong_dim.value.content.decode()
    assert count_points(client, collection) == 0  # the whole batch was refused

    with pytest.raises(UnexpectedResponse) as missing:
        search(client, "chunks__nothing__4", unit(1, 0, 0, 0), twin_id="alice", top_k=3)
    assert missing.value.status_code == 404
    assert "chunks__nothing__4" in missing.value.content.decode()
    assert client.collection_exists("chunks__nothing__4") is False


def test_server_serves_health_and_request_metrics(qdrant_url, client):
    collection = ensure_collection(client, "m", DIM)
    search(client, collection, unit(1, 0, 0, 0), twin_id="alice", top_k=3)

    assert httpx.get(f"{qdrant_url}/healthz", timeout=5).status_code == 200
    metrics = httpx.get(f"{qdrant_url}/metrics", timeout=5).text
    assert ('twin_qdrant_requests_total{endpoint="/collections/{name}/points/query",method="POST",status="200"} 1.0'
            in metrics)
    raw = httpx.put(f"{qdrant_url}/collections/{collection}/points", content=b'{"points": 5}', timeout=5)
    assert raw.status_code == 400 and "error" in raw.json()["status"]


def test_data_persists_across_restart_and_the_folder_has_one_owner(tmp_path):
    path, log = tmp_path / "qdrant", tmp_path / "qdrant.log"
    chunks = chunks_of(document("alice", "p1"), "kept across restarts")

    first = qdrant_local(path, port=free_port(), log_path=log).start()
    try:
        client = QdrantClient(url=f"http://127.0.0.1:{first.port}", timeout=10)
        collection = ensure_collection(client, "m", DIM)
        upsert_chunks(client, collection, chunks, [unit(1, 0, 0, 0)])
        client.close()
        # A second server on the same folder is refused while the first one owns it.
        with pytest.raises(RuntimeError, match="exited"):
            qdrant_local(path, port=free_port(), log_path=log).start()
    finally:
        first.stop()

    with qdrant_local(path, port=free_port(), log_path=log) as second:
        client = QdrantClient(url=f"http://127.0.0.1:{second.port}", timeout=10)
        hits = search(client, collection, unit(1, 0, 0, 0), twin_id="alice", top_k=3)
        assert [hit.chunk for hit in hits] == chunks
        assert client.get_collection(collection).config.metadata["dimension"] == DIM
        client.close()


def test_embedding_model_name_is_short_stable_and_tells_the_runtime():
    fp32 = {"embedding_runtime": "torch"}
    assert embedding_model_name(Settings(embedding_model="", **fp32)) == DEFAULT_MODEL_NAME
    assert embedding_model_name(Settings(embedding_model="sentence-transformers/all-MiniLM-L6-v2", **fp32)) == \
        "all-minilm-l6-v2"
    assert embedding_model_name(Settings(embedding_model="/models/BGE_small en/", **fp32)) == "bge-small-en"
    # int8 vectors differ from fp32 ones, so they go to a collection of their own.
    assert embedding_model_name(Settings(embedding_model="", embedding_runtime="onnx-int8")) == \
        DEFAULT_MODEL_NAME + "-int8"


@pytest.mark.slow
def test_real_model_gives_normalized_vectors_that_rank_related_text_first(embedding_model, client):
    texts = ["How do I fine-tune a language model with LoRA adapters?",
             "Low-rank adaptation trains small matrices on top of a frozen LLM.",
             "My grandmother's apple pie recipe uses cinnamon and butter."]
    vectors = embed(embedding_model, texts, batch_size=8)

    assert embedding_dimension(embedding_model) == 384
    assert [len(v) for v in vectors] == [384] * 3
    assert all(math.sqrt(sum(x * x for x in v)) == pytest.approx(1.0, abs=1e-4) for v in vectors)
    similarity = [sum(a * b for a, b in zip(vectors[0], v)) for v in vectors[1:]]
    assert similarity[0] > similarity[1] + 0.2
    assert embed(embedding_model, [], batch_size=8) == []

    # End to end: embedded chunks in the real server, searched with an embedded query.
    collection = ensure_collection(client, DEFAULT_MODEL_NAME, 384)
    doc = document("alice", "p1")
    chunks = chunks_of(doc, *texts[1:])
    upsert_chunks(client, collection, chunks, vectors[1:])
    hits = search(client, collection, vectors[0], twin_id="alice", top_k=2)
    assert [hit.chunk.text for hit in hits] == texts[1:]
