"""The dataset-builder stage as a real process over a real broker (Tansu) and a SQLite warehouse."""
from __future__ import annotations

import json
import sys
import time

from kafka import KafkaConsumer

from llmtwin.bus.producer import SyncEventProducer
from llmtwin.domain import CleanDocument, InstructSample
from llmtwin.events import CleanDocStored, Topic, decode
from llmtwin.infra.process import LocalServer, free_port
from llmtwin.settings import settings_env
from llmtwin.warehouse import Collection, open_warehouse
from llmtwin.warehouse.repository import Repository


def consume(bootstrap: str, topic: str, until, timeout: float = 90.0) -> list[bytes]:
    """Messages of `topic` from the start, until `until(messages)` holds (or the timeout passes)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=None, consumer_timeout_ms=500)
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(got) and time.monotonic() < deadline:
            got += [record.value for record in consumer]
    finally:
        consumer.close()
    return got


def stored(doc: CleanDocument) -> CleanDocStored:
    return CleanDocStored(id=doc.id, twin_id=doc.twin_id, kind=doc.kind, platform=doc.platform,
                          content_hash=doc.content_hash)


async def test_clean_docs_in_samples_out_with_backlog_replay(bus_settings, tmp_path, post_doc, article_doc, code_doc):
    warehouse = open_warehouse(bus_settings.warehouse)
    clean_docs = Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument)
    # Stored before the stage ever ran, and announced on a bus that has forgotten it: the backlog.
    await clean_docs.add(code_doc)

    port = free_port()
    env = {**settings_env(bus_settings), "TWIN_DATASET_BUILDER_PORT": str(port)}
    stage = LocalServer("dataset-builder", [sys.executable, "-m", "twin_dataset_builder"], "127.0.0.1", port,
                        log_path=tmp_path / "stage.log", env=env)
    stage.start(timeout=60)
    try:
        await clean_docs.add(post_doc)
        await clean_docs.add(article_doc)
        producer = SyncEventProducer(bus_settings)
        for doc in (post_doc, article_doc):
            producer.send(stored(doc))
        missing = stored(post_doc).model_copy(update={"id": "not-in-the-warehouse"})
        producer.send(missing)
        producer.close()

        events = consume(bus_settings.kafka_bootstrap, Topic.INSTRUCT_SAMPLES.value,
                         until=lambda got: len({decode(Topic.INSTRUCT_SAMPLES, m).id for m in got}) >= 7)
        dead = consume(bus_settings.kafka_bootstrap, Topic.CLEAN_DOCS.dead_letter, until=lambda got: len(got) >= 1)
    finally:
        stage.stop()
        log_tail = (tmp_path / "stage.log").read_text(errors="replace")[-3000:]

    try:
        samples = await Repository(warehouse, Collection.INSTRUCT_SAMPLES, InstructSample).list({"twin_id": "ada"})
        records = await warehouse.ids(Collection.SAMPLE_RECORDS)
    finally:
        await warehouse.close()
    decoded = [decode(Topic.INSTRUCT_SAMPLES, m) for m in events]
    assert {e.id for e in decoded} == {s.id for s in samples}, log_tail
    assert len(samples) == 7
    assert {s.document_id for s in samples} == {post_doc.id, article_doc.id, code_doc.id} == records
    assert all(s.answer in {post_doc.id: post_doc, article_doc.id: article_doc, code_doc.id: code_doc}[
        s.document_id].content for s in samples)
    [reason] = [json.loads(d)["reason"] for d in dead]
    assert "not-in-the-warehouse" in reason
