"""Domain types: twins, profiles, documents, chunks, samples, dataset versions.

Pure data and pure functions; no I/O. Ids are deterministic hashes of natural
keys so every consumer can be at-least-once and idempotent.
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


def stable_id(*parts: object) -> str:
    """A short, deterministic id from a natural key."""
    joined = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "twin"


class Platform(StrEnum):
    LINKEDIN = "linkedin"
    MEDIUM = "medium"
    SUBSTACK = "substack"
    GITHUB = "github"
    X = "x"
    BLOG = "blog"


class DocumentKind(StrEnum):
    POST = "post"
    ARTICLE = "article"
    CODE = "code"


class Twin(BaseModel):
    id: str
    name: str
    created_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def named(cls, name: str) -> "Twin":
        return cls(id=slugify(name), name=name)


class Profile(BaseModel):
    """A source of a twin's writing: a URL to crawl or an uploaded export archive."""

    id: str
    twin_id: str
    platform: Platform
    url: str
    cadence_minutes: int | None = None  # re-crawl period; None: only on request

    @classmethod
    def of(cls, twin_id: str, platform: Platform, url: str, cadence_minutes: int | None = None) -> "Profile":
        return cls(id=stable_id(twin_id, platform, url), twin_id=twin_id, platform=platform,
                   url=url, cadence_minutes=cadence_minutes)


class RawDocument(BaseModel):
    """What the crawler stored: standardised, not yet cleaned."""

    id: str
    twin_id: str
    platform: Platform
    kind: DocumentKind
    link: str
    title: str = ""
    content: str
    published_at: datetime | None = None
    fetched_at: datetime = Field(default_factory=utcnow)
    content_hash: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    # When the person asked for it to be forgotten; it then keeps no text, and is never collected again.
    withdrawn_at: datetime | None = None

    @classmethod
    def create(cls, *, twin_id: str, platform: Platform, kind: DocumentKind, link: str,
               content: str, **fields: Any) -> "RawDocument":
        # Natural key: the twin, the platform and the link.
        return cls(id=stable_id(twin_id, platform, link), twin_id=twin_id, platform=platform,
                   kind=kind, link=link, content=content, content_hash=content_hash(content), **fields)

    def as_withdrawn(self, at: datetime) -> "RawDocument":
        """What is kept of a document its author asked to forget: where it was and its title, not its text.

        The record stays (its id is the link's) so that a later crawl of the link knows to skip it."""
        return self.model_copy(update={"content": "", "content_hash": content_hash(""), "metadata": {},
                                       "withdrawn_at": at})


class CleanDocument(BaseModel):
    """The cleaned snapshot, used for fine-tuning and chunking."""

    id: str  # same id as the raw document it came from
    twin_id: str
    platform: Platform
    kind: DocumentKind
    link: str
    title: str = ""
    content: str
    content_hash: str
    raw_hash: str  # content_hash of the raw document that produced it
    duplicate_of: str | None = None  # near-duplicate of an earlier document
    withdrawn: bool = False  # its author asked for it to be forgotten: no text left

    @property
    def feeds_features(self) -> bool:
        """Whether it gets chunks and samples: a near-duplicate or a withdrawn document leaves none
        (the stages still take its message, to delete what an earlier version left)."""
        return self.duplicate_of is None and not self.withdrawn


class Chunk(BaseModel):
    id: str
    document_id: str
    twin_id: str
    platform: Platform
    kind: DocumentKind
    link: str
    title: str = ""
    position: int
    text: str
    token_count: int = 0

    @classmethod
    def create(cls, doc: CleanDocument, position: int, text: str, token_count: int = 0) -> "Chunk":
        return cls(id=chunk_id(doc.id, position, text), document_id=doc.id, twin_id=doc.twin_id,
                   platform=doc.platform, kind=doc.kind, link=doc.link, title=doc.title,
                   position=position, text=text, token_count=token_count)


def chunk_id(document_id: str, position: int, text: str) -> str:
    # Qdrant point ids must be UUIDs or integers: format the hash as a UUID.
    h = stable_id(document_id, position, content_hash(text))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class Split(StrEnum):
    TRAIN = "train"
    TEST = "test"


class InstructSample(BaseModel):
    id: str
    twin_id: str
    document_id: str
    kind: DocumentKind
    instruction: str
    answer: str
    split: Split
    generator: str = "offline"
    # Passages of the person's other writing that the prompt carries, as serving's retrieval gives
    # them: not part of the sample's identity or of a dataset version; a training job looks them up.
    material: list[str] = Field(default_factory=list)

    @classmethod
    def create(cls, *, twin_id: str, document_id: str, kind: DocumentKind, instruction: str,
               answer: str, generator: str = "offline", test_share: float = 0.2) -> "InstructSample":
        sid = stable_id(document_id, content_hash(instruction), content_hash(answer))
        return cls(id=sid, twin_id=twin_id, document_id=document_id, kind=kind,
                   instruction=instruction, answer=answer, split=split_for(sid, test_share),
                   generator=generator)


def split_for(sample_id: str, test_share: float = 0.2) -> Split:
    """A stable train/test split by hash: the same sample always lands on the same side."""
    bucket = int(sample_id[:8], 16) / 0xFFFFFFFF
    return Split.TEST if bucket < test_share else Split.TRAIN


class PreferencePair(BaseModel):
    """For a later preference-tuning (DPO) stage: the person's real text is preferred to a base model's.

    `prompt` is the sample's instruction (render it with `prompts.build_messages`, as training
    does); one pair per sample, so its id is the sample's."""

    id: str
    twin_id: str
    sample_id: str
    document_id: str
    kind: DocumentKind
    prompt: str
    chosen: str  # the person's own text: the sample's answer
    rejected: str  # what the base model answered to the same instruction
    model: str  # the model that wrote `rejected`

    @classmethod
    def of(cls, sample: InstructSample, rejected: str, model: str) -> "PreferencePair":
        return cls(id=stable_id("preference-pair", sample.id), twin_id=sample.twin_id, sample_id=sample.id,
                   document_id=sample.document_id, kind=sample.kind, prompt=sample.instruction,
                   chosen=sample.answer, rejected=rejected, model=model)


class DatasetVersion(BaseModel):
    """An immutable set of samples: its id is a hash of the sample ids."""

    id: str
    twin_id: str
    sample_ids: list[str]
    created_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def of(cls, twin_id: str, sample_ids: list[str]) -> "DatasetVersion":
        ordered = sorted(set(sample_ids))
        return cls(id=stable_id(twin_id, *ordered)[:16], twin_id=twin_id, sample_ids=ordered)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class TrainingJob(BaseModel):
    id: str
    twin_id: str
    dataset_version: str
    state: JobState = JobState.QUEUED
    progress: float = 0.0
    message: str = ""
    model_version: str | None = None
    promoted: bool | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class CrawlJob(BaseModel):
    id: str
    twin_id: str
    profile_id: str
    platform: Platform
    url: str
    state: JobState = JobState.QUEUED
    found: int = 0
    stored: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


def registered_model_name(twin_id: str) -> str:
    return f"twin-{twin_id}"
