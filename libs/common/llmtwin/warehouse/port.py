"""The warehouse port: a document store of JSON objects keyed by `id`, in named collections.

Two adapters implement it: SQLite (embedded default) and MongoDB through PyMongo's
async API (at scale). One contract test suite runs against both.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

# `where` is equality on top-level fields; a list value means "any of these".
Where = dict[str, Any]


class Collection(StrEnum):
    TWINS = "twins"
    PROFILES = "profiles"
    RAW_DOCUMENTS = "raw_documents"
    CLEAN_DOCUMENTS = "clean_documents"
    CHUNK_RECORDS = "chunk_records"  # which chunks of which document version are in the vector store
    INSTRUCT_SAMPLES = "instruct_samples"
    DATASET_VERSIONS = "dataset_versions"
    TRAINING_JOBS = "training_jobs"
    CRAWL_JOBS = "crawl_jobs"
    TRIGGER_STATE = "trigger_state"
    SAMPLE_RECORDS = "sample_records"  # per clean document: which content version its samples came from
    DATASET_SAMPLES = "dataset_samples"  # write-once copies of every sample a dataset version holds
    PREFERENCE_PAIRS = "preference_pairs"  # per instruct sample: the real answer against a base model's


class UpsertResult(StrEnum):
    INSERTED = "inserted"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class Warehouse(Protocol):
    async def upsert(self, collection: str, doc: dict[str, Any]) -> UpsertResult:
        """Insert or replace the document with `doc["id"]`; says whether anything changed."""

    async def get(self, collection: str, doc_id: str) -> dict[str, Any] | None: ...

    async def find(self, collection: str, where: Where | None = None, *,
                   order_by: str | None = None, descending: bool = False,
                   limit: int | None = None) -> list[dict[str, Any]]: ...

    async def count(self, collection: str, where: Where | None = None) -> int: ...

    async def ids(self, collection: str, where: Where | None = None) -> set[str]: ...

    async def delete(self, collection: str, doc_id: str) -> bool: ...

    async def close(self) -> None: ...
