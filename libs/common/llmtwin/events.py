"""Topics and their versioned message schemas.

Messages are small notifications: big payloads live in the warehouse, the bus
carries ids (deterministic, see `domain.stable_id`) and hashes. Every message
has `schema_version`; consumers reject versions they do not know.
"""
from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError

from .domain import DocumentKind, Platform, Split, stable_id, utcnow


class Topic(StrEnum):
    CRAWL_REQUESTS = "crawl_requests"
    RAW_DOCS = "raw_docs"
    CLEAN_DOCS = "clean_docs"
    CHUNKS = "chunks"
    INSTRUCT_SAMPLES = "instruct_samples"
    MODEL_EVENTS = "model_events"

    @property
    def dead_letter(self) -> str:
        return f"{self.value}.dlq"


class Event(BaseModel):
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC: ClassVar[Topic]

    schema_version: int = 1
    id: str
    emitted_at: datetime = Field(default_factory=utcnow)

    @property
    def key(self) -> str:
        """The partition key: all of one twin's messages keep their order."""
        return getattr(self, "twin_id", self.id)

    def encode(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


class CrawlRequested(Event):
    TOPIC = Topic.CRAWL_REQUESTS
    request: Literal["crawl"] = "crawl"
    twin_id: str
    profile_id: str
    platform: Platform
    url: str

    @classmethod
    def now(cls, twin_id: str, profile_id: str, platform: Platform, url: str) -> "CrawlRequested":
        # Each request is its own job: the id includes the time it was asked for.
        return cls(id=stable_id(profile_id, utcnow().isoformat()), twin_id=twin_id,
                   profile_id=profile_id, platform=platform, url=url)


class ForgetRequested(Event):
    """The person asked that one of their documents be forgotten. The crawler, which owns the raw
    documents, empties it and announces it; each stage then deletes what it had made of it."""

    TOPIC = Topic.CRAWL_REQUESTS
    request: Literal["forget"] = "forget"
    twin_id: str
    document_id: str

    @classmethod
    def now(cls, twin_id: str, document_id: str) -> "ForgetRequested":
        return cls(id=stable_id("forget", document_id, utcnow().isoformat()), twin_id=twin_id,
                   document_id=document_id)


class DocumentEvent(Event):
    """A document (raw or clean) was stored or changed; body is in the warehouse."""

    twin_id: str
    kind: DocumentKind
    platform: Platform
    content_hash: str


class RawDocStored(DocumentEvent):
    TOPIC = Topic.RAW_DOCS


class CleanDocStored(DocumentEvent):
    TOPIC = Topic.CLEAN_DOCS


class ChunksStored(Event):
    """All chunks of one document were embedded and written to the vector store."""

    TOPIC = Topic.CHUNKS
    twin_id: str
    document_id: str
    chunk_ids: list[str]
    collection: str


class SampleStored(Event):
    TOPIC = Topic.INSTRUCT_SAMPLES
    change: Literal["stored"] = "stored"
    twin_id: str
    document_id: str
    split: Split


class SamplesWithdrawn(Event):
    """A withdrawn document's samples were deleted: the trigger trains a version without them, however
    few they are, if the last dataset version held them."""

    TOPIC = Topic.INSTRUCT_SAMPLES
    change: Literal["withdrawn"] = "withdrawn"
    twin_id: str
    document_id: str
    sample_ids: list[str]

    @classmethod
    def of(cls, twin_id: str, document_id: str, sample_ids: list[str]) -> "SamplesWithdrawn":
        return cls(id=stable_id("samples-withdrawn", document_id), twin_id=twin_id, document_id=document_id,
                   sample_ids=sorted(sample_ids))


class ModelEvent(Event):
    TOPIC = Topic.MODEL_EVENTS
    twin_id: str
    model_name: str
    version: str
    action: Literal["promoted", "rejected", "rolled_back"]
    dataset_version: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)


# Topics that carry two kinds of message tell them apart by one field; a message without it (as
# written before the second kind existed) is of the topic's first kind.
VARIANTS: dict[Topic, tuple[str, dict[str, type[Event]]]] = {
    Topic.CRAWL_REQUESTS: ("request", {"crawl": CrawlRequested, "forget": ForgetRequested}),
    Topic.INSTRUCT_SAMPLES: ("change", {"stored": SampleStored, "withdrawn": SamplesWithdrawn}),
}
# The other topics carry one kind each.
EVENT_TYPES: dict[Topic, type[Event]] = {cls.TOPIC: cls for cls in (RawDocStored, CleanDocStored, ChunksStored,
                                                                     ModelEvent)}


class BadMessage(ValueError):
    """A message that cannot be processed: goes to the dead-letter topic with this reason."""


def decode(topic: Topic | str, payload: bytes | str | dict[str, Any]) -> Event:
    topic = Topic(topic)
    try:
        data = payload if isinstance(payload, dict) else json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadMessage(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadMessage("not a JSON object")
    if topic in VARIANTS:
        field, kinds = VARIANTS[topic]
        kind = data.get(field, next(iter(kinds)))
        if not isinstance(kind, str) or kind not in kinds:
            raise BadMessage(f"unknown {field} {kind!r} on {topic.value}: expected one of {', '.join(kinds)}")
        cls = kinds[kind]
    else:
        cls = EVENT_TYPES[topic]
    version = data.get("schema_version")
    if version != cls.SCHEMA_VERSION:
        raise BadMessage(f"unknown schema_version {version!r} for {topic.value}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise BadMessage(f"invalid {topic.value} message: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}") from exc
