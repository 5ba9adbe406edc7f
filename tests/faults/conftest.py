"""Helpers for the fault-injection suites: reading what the stores and topics hold, and waiting for it."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from qdrant_client import models

from llmtwin import vectors
from llmtwin.domain import CleanDocument, DocumentKind, Platform, RawDocument, content_hash
from llmtwin.embeddings import embedding_model_name
from llmtwin.events import CleanDocStored, RawDocStored, Topic, decode
from llmtwin.settings import Settings
from llmtwin.testing.stages import StageProcess, consume
from llmtwin.warehouse import Collection, open_warehouse

from .corpus import Post

T = TypeVar("T")

EMBEDDING_DIMENSION = 384  # all-MiniLM-L6-v2, the default embedding model


def wait_for(read: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str,
             every: float = 0.1) -> T:
    """Read until `done(value)`; the deadline is only a guard against a hang, never the assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached in {timeout:.0f}s; last seen {value!r}")
        time.sleep(every)


def warehouse_counts(settings: Settings, twin_id: str) -> dict[str, int]:
    """How many documents of the twin each collection holds (a fresh connection, as an outsider reads)."""
    async def read() -> dict[str, int]:
        warehouse = open_warehouse(settings.warehouse)
        try:
            return {collection.value: await warehouse.count(collection, {"twin_id": twin_id})
                    for collection in (Collection.RAW_DOCUMENTS, Collection.CLEAN_DOCUMENTS,
                                       Collection.CHUNK_RECORDS, Collection.SAMPLE_RECORDS,
                                       Collection.INSTRUCT_SAMPLES, Collection.DATASET_VERSIONS,
                                       Collection.TRAINING_JOBS, Collection.TRIGGER_STATE)}
        finally:
            await warehouse.close()
    return asyncio.run(read())


def warehouse_find(settings: Settings, collection: Collection, where: dict[str, Any] | None = None) -> list[dict]:
    async def read() -> list[dict]:
        warehouse = open_warehouse(settings.warehouse)
        try:
            return await warehouse.find(collection, where)
        finally:
            await warehouse.close()
    return asyncio.run(read())


def topic_sizes(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Messages ever written to each topic (the sum of its partitions' end offsets)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    try:
        sizes = {}
        for topic in topics:
            partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
            sizes[topic] = sum(consumer.end_offsets(partitions).values())
        return sizes
    finally:
        consumer.close()


def topic_ids(settings: Settings, topic: Topic) -> set[str]:
    """The ids of every message ever written to the topic."""
    size = topic_sizes(settings, [topic.value])[topic.value]
    return {decode(topic, value).id for value in consume(settings.kafka_bootstrap, topic.value, want=size)}


def committed_offsets(settings: Settings, group: str, topic: str) -> int:
    """Messages of the topic the consumer group has acknowledged (committed), over all partitions."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        offsets = admin.list_group_offsets({group: partitions})[group]
        return sum(max(meta.offset, 0) for meta in offsets.values())
    finally:
        admin.close()


def metric_value(process: StageProcess, name: str, **labels: str) -> float:
    """A sample of the stage's /metrics (0 while the series does not exist yet)."""
    for family in text_string_to_metric_families(process.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def raw_documents(twin_id: str, posts: list[Post]) -> list[RawDocument]:
    return [RawDocument.create(twin_id=twin_id, platform=Platform.LINKEDIN, kind=DocumentKind.POST, link=post.link,
                               content=post.text) for post in posts]


def clean_documents(twin_id: str, posts: list[Post]) -> list[CleanDocument]:
    """The posts as the cleaner leaves them (cleaning changes nothing in them)."""
    return [CleanDocument(id=raw.id, twin_id=twin_id, platform=raw.platform, kind=raw.kind, link=raw.link,
                          content=raw.content, content_hash=content_hash(raw.content), raw_hash=raw.content_hash)
            for raw in raw_documents(twin_id, posts)]


def announcements(docs: list[RawDocument] | list[CleanDocument]) -> list[RawDocStored | CleanDocStored]:
    """The messages the stage before would send for these stored documents."""
    return [(RawDocStored if isinstance(d, RawDocument) else CleanDocStored)(
        id=d.id, twin_id=d.twin_id, kind=d.kind, platform=d.platform, content_hash=d.content_hash) for d in docs]


def store(settings: Settings, collection: Collection, docs: list[RawDocument] | list[CleanDocument]) -> None:
    async def write() -> None:
        warehouse = open_warehouse(settings.warehouse)
        try:
            for doc in docs:
                await warehouse.upsert(collection, doc.model_dump(mode="json"))
        finally:
            await warehouse.close()
    asyncio.run(write())


def count(settings: Settings, collection: Collection) -> int:
    async def read() -> int:
        warehouse = open_warehouse(settings.warehouse)
        try:
            return await warehouse.count(collection)
        finally:
            await warehouse.close()
    return asyncio.run(read())


def point_ids(settings: Settings, twin_id: str) -> list[str]:
    """The ids of every point the twin has in the vector store (a list: a doubled one would show)."""
    client = vectors.open_vector_client(settings)
    try:
        collection = vectors.collection_name(embedding_model_name(settings), EMBEDDING_DIMENSION)
        twin = models.Filter(must=[models.FieldCondition(key="twin_id", match=models.MatchValue(value=twin_id))])
        ids, offset = [], None
        while True:
            points, offset = client.scroll(collection, scroll_filter=twin, limit=256, offset=offset)
            ids += [str(point.id) for point in points]
            if offset is None:
                return ids
    finally:
        client.close()
