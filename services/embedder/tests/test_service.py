"""The embedder with the real model, a real local Qdrant and a real SQLite warehouse; and as a
real stage process over a real broker."""
from __future__ import annotations

import asyncio
import json

import pytest
from llmtwin.bus.producer import SyncEventProducer
from llmtwin.domain import CleanDocument, DocumentKind, Platform, content_hash
from llmtwin.embeddings import embed, embedding_dimension, embedding_model_name
from llmtwin.events import BadMessage, ChunksStored, CleanDocStored, Topic, decode
from llmtwin.settings import Settings
from llmtwin.testing.stages import consume, stage_process
from llmtwin.vectors import (
    collection_name,
    count_points,
    ensure_collection,
    open_vector_client,
    search,
)
from llmtwin.warehouse import Collection, open_warehouse
from llmtwin.warehouse.repository import Repository
from twin_embedder.service import ChunkRecord, Embedder, chunk_limit

ARTICLE = "\n\n".join(
    f"Section {i}. Retrieval quality starts with chunking. Each chunk is measured in the embedding "
    f"model's own tokens and never exceeds its window, so nothing is silently truncated. Paragraph {i} "
    f"adds detail about overlap, sentence boundaries and deterministic identifiers for idempotent writes."
    for i in range(16))


def clean_doc(link: str, content: str, kind: DocumentKind = DocumentKind.ARTICLE,
              duplicate_of: str | None = None, twin_id: str = "ada") -> CleanDocument:
    from llmtwin.domain import stable_id

    return CleanDocument(id=stable_id(twin_id, link), twin_id=twin_id, platform=Platform.MEDIUM, kind=kind,
                         link=link, title=f"Title of {link}", content=content, content_hash=content_hash(content),
                         raw_hash="raw", duplicate_of=duplicate_of)


def stored(doc: CleanDocument) -> CleanDocStored:
    return CleanDocStored(id=doc.id, twin_id=doc.twin_id, kind=doc.kind, platform=doc.platform,
                          content_hash=doc.content_hash)


@pytest.fixture
async def setup(sqlite_url, qdrant_url, embedding_model):
    settings = Settings(qdrant_url=qdrant_url)
    warehouse = open_warehouse(sqlite_url)
    client = open_vector_client(settings)
    collection = ensure_collection(client, embedding_model_name(settings), embedding_dimension(embedding_model))
    max_tokens = chunk_limit(settings, embedding_model)
    embedder = Embedder(warehouse, client, embedding_model, collection=collection, max_tokens=max_tokens,
                        overlap=32, batch_size=16)
    yield embedder, Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument)
    await embedder.close()


async def test_embeds_chunks_with_payload_and_reprocessing_overwrites(setup, embedding_model):
    embedder, clean = setup
    article = clean_doc("https://medium.com/@ada/chunking", ARTICLE)
    post = clean_doc("https://linkedin.com/feed/1", "**Shipped** the embedder today 🚀\n\n#RAG",
                     kind=DocumentKind.POST)
    await clean.add(article)
    await clean.add(post)
    assert embedder.max_tokens == 126  # the default 128 tokens, less [CLS] and [SEP]

    emitted = await embedder.handle([stored(article), stored(post)])

    assert [type(e) for e in emitted] == [ChunksStored, ChunksStored]
    by_doc = {e.document_id: e for e in emitted}
    assert len(by_doc[article.id].chunk_ids) > 3 and len(by_doc[post.id].chunk_ids) == 1
    client, collection = embedder.client, embedder.collection
    total = len(by_doc[article.id].chunk_ids) + 1
    assert count_points(client, collection, twin_id="ada") == total
    info = client.get_collection(collection)
    assert info.config.metadata == {"embedding_model": "all-minilm-l6-v2-int8", "dimension": 384}

    query = embed(embedding_model, ["shipped the embedder"], 1)[0]
    best = search(client, collection, query, twin_id="ada", top_k=1)[0].chunk
    assert best.document_id == post.id and best.position == 0 and best.platform is Platform.MEDIUM
    assert best.kind is DocumentKind.POST and best.link == post.link and best.title == post.title
    assert best.text == post.content and best.id == by_doc[post.id].chunk_ids[0]
    assert search(client, collection, query, twin_id="someone-else", top_k=3) == []

    # Redelivery: nothing changes, the documents are announced again.
    again = await embedder.handle([stored(article)])
    assert again[0].chunk_ids == by_doc[article.id].chunk_ids
    assert count_points(client, collection) == total

    # An edited article: its new chunks replace the old ones, none left behind.
    edited = clean_doc(article.link, ARTICLE.replace("Section 15.", "The last section."))
    assert edited.content_hash != article.content_hash
    await clean.add(edited)
    after = (await embedder.handle([stored(edited)]))[0]
    assert after.chunk_ids != by_doc[article.id].chunk_ids
    assert count_points(client, collection) == len(after.chunk_ids) + 1
    kept = client.retrieve(collection, after.chunk_ids)
    assert sorted(p.payload["position"] for p in kept) == list(range(len(after.chunk_ids)))

    records = Repository(embedder.warehouse, Collection.CHUNK_RECORDS, ChunkRecord)
    record = await records.get(article.id)
    assert record.content_hash == edited.content_hash and record.chunk_ids == after.chunk_ids


# What the cleaner may later say of a document: it found the original (same text), or the author withdrew it.
RETRACTIONS = {
    "became a duplicate": lambda doc, original: doc.model_copy(update={"duplicate_of": original.id}),
    "was withdrawn": lambda doc, original: doc.model_copy(update={"content": "", "content_hash": content_hash(""),
                                                                  "withdrawn": True}),
}


@pytest.mark.parametrize("retraction", RETRACTIONS)
async def test_a_document_that_became_a_duplicate_or_was_withdrawn_loses_its_chunks(setup, retraction):
    embedder, clean = setup
    original = clean_doc("https://medium.com/@ada/a", ARTICLE)
    repost = clean_doc("https://linkedin.com/feed/a", ARTICLE + "\n\n#RAG", kind=DocumentKind.POST)
    await clean.add(original)
    await clean.add(repost)
    await embedder.handle([stored(original), stored(repost)])
    both = count_points(embedder.client, embedder.collection)

    repost = RETRACTIONS[retraction](repost, original)
    await clean.add(repost)
    emitted = await embedder.handle([stored(repost)])

    assert emitted[0].chunk_ids == []
    remaining = count_points(embedder.client, embedder.collection)
    assert 0 < remaining < both
    assert count_points(embedder.client, embedder.collection, document_id=repost.id) == 0
    assert remaining == count_points(embedder.client, embedder.collection, twin_id="ada", document_id=original.id)
    assert [e.id async for e in embedder.backlog()] == []


async def test_missing_document_is_a_bad_message_and_backlog_finds_unembedded(setup):
    embedder, clean = setup
    with pytest.raises(BadMessage, match="not in the warehouse"):
        await embedder.handle([stored(clean_doc("https://ghost.example.com", "boo"))])
    waiting = clean_doc("https://medium.com/@ada/waiting", "Stored while the embedder was down.")
    await clean.add(waiting)
    assert [e.id async for e in embedder.backlog()] == [waiting.id]


def test_stage_process_embeds_and_dead_letters(bus_settings: Settings, qdrant_url, tmp_path):
    settings = bus_settings.model_copy(update={"qdrant_url": qdrant_url})
    article = clean_doc("https://medium.com/@ada/stage", ARTICLE)
    missing = clean_doc("https://medium.com/@ada/missing", "not stored")

    async def store() -> None:
        warehouse = open_warehouse(settings.warehouse)
        await Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument).add(article)
        await warehouse.close()
    asyncio.run(store())

    with stage_process("twin_embedder", settings, tmp_path / "embedder.log", "embedder_port") as stage:
        producer = SyncEventProducer(settings)
        producer.send(stored(missing))
        producer._producer.send(Topic.CLEAN_DOCS.value, b"[1, 2]", key=b"ada")
        producer.send(stored(article))
        producer.close()
        # The article comes twice: from the backlog at start-up and from its message.
        events = [decode(Topic.CHUNKS, v) for v in consume(settings.kafka_bootstrap, "chunks", want=2, timeout=120)]
        dead = [json.loads(v) for v in consume(settings.kafka_bootstrap, "clean_docs.dlq", want=2)]
        metrics = stage.get("/metrics").text
        log_tail = stage.log_tail()

    assert [e.document_id for e in events] == [article.id, article.id], log_tail
    assert events[0].chunk_ids == events[1].chunk_ids and len(events[0].chunk_ids) > 3
    collection = collection_name("all-minilm-l6-v2-int8", 384)
    assert events[0].collection == collection
    assert count_points(open_vector_client(settings), collection) == len(events[0].chunk_ids)
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == [f"BadMessage: clean document {missing.id} is not in the warehouse", "not a JSON object"]
    assert f"twin_embedder_chunks_total {float(len(events[0].chunk_ids))}" in metrics
