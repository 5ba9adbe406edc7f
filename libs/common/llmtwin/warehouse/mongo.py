"""The warehouse at scale: MongoDB through PyMongo's async API (`AsyncMongoClient`, not Motor).

The database is the URL's path (`mongodb://host:27017/llmtwin`, default "llmtwin"); a
document's `id` is stored as `_id` and given back as `id`. The client is made on first
use, inside the running loop, never at import or construction time.

Documents must be JSON-ready (`model.model_dump(mode="json")`), exactly as for SQLite, so
both adapters store and compare the same values.
"""
from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from . import checks
from .port import UpsertResult, Where

DEFAULT_DATABASE = "llmtwin"


class MongoWarehouse:
    def __init__(self, url: str) -> None:
        self.url = url
        self._client: AsyncMongoClient[dict[str, Any]] | None = None

    async def upsert(self, collection: str, doc: dict[str, Any]) -> UpsertResult:
        doc_id, text = checks.document_id(doc), checks.json_text(doc)
        stored = {"_id": doc_id, **{key: value for key, value in doc.items() if key != "id"}}
        # One atomic round trip that also hands back the previous version to compare with.
        # (A plain replace_one's modified_count cannot tell "unchanged" on every server.)
        before = await self._collection(collection).find_one_and_replace(
            {"_id": doc_id}, stored, upsert=True, return_document=ReturnDocument.BEFORE)
        if before is None:
            return UpsertResult.INSERTED
        return UpsertResult.UNCHANGED if checks.json_text(_as_doc(before)) == text else UpsertResult.UPDATED

    async def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        found = await self._collection(collection).find_one({"_id": doc_id})
        return _as_doc(found) if found is not None else None

    async def find(self, collection: str, where: Where | None = None, *,
                   order_by: str | None = None, descending: bool = False,
                   limit: int | None = None) -> list[dict[str, Any]]:
        docs, query = self._collection(collection), _query(where)
        if checks.limit(limit) == 0:  # Mongo reads limit 0 as "no limit"
            return []
        # Without order_by, id order; ties are broken by id, ascending: results are deterministic.
        field = _mongo_field(checks.field_name(order_by)) if order_by else "_id"
        sort = [(field, DESCENDING if descending else ASCENDING)]
        if field != "_id":
            sort.append(("_id", ASCENDING))
        cursor = docs.find(query).sort(sort)
        if limit is not None:
            cursor = cursor.limit(limit)
        return [_as_doc(found) async for found in cursor]

    async def count(self, collection: str, where: Where | None = None) -> int:
        # $match + $count rather than count_documents ($match + $group): the same on MongoDB,
        # and nx-27017 (the test server) miscounts count_documents with a null in the filter.
        cursor = await self._collection(collection).aggregate([{"$match": _query(where)}, {"$count": "n"}])
        counted = await cursor.to_list()
        return counted[0]["n"] if counted else 0  # MongoDB yields no row when nothing matched

    async def ids(self, collection: str, where: Where | None = None) -> set[str]:
        cursor = self._collection(collection).find(_query(where), projection={"_id": 1})
        return {found["_id"] async for found in cursor}

    async def delete(self, collection: str, doc_id: str) -> bool:
        result = await self._collection(collection).delete_one({"_id": doc_id})
        return result.deleted_count == 1

    async def ensure_index(self, collection: str, field: str) -> None:
        """An index on one top-level field, used by find/count/ids on that field and by order_by."""
        field = _mongo_field(checks.field_name(field))
        if field != "_id":  # always indexed
            await self._collection(collection).create_index(field)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def _collection(self, name: str) -> AsyncCollection[dict[str, Any]]:
        if self._client is None:
            # Constructing the client does no I/O; it connects in the background on first use.
            self._client = AsyncMongoClient(self.url)
        database = self._client.get_default_database(default=DEFAULT_DATABASE)
        return database[checks.collection_name(name)]


def _mongo_field(field: str) -> str:
    return "_id" if field == "id" else field


def _query(where: Where | None) -> dict[str, Any]:
    """Equality per field, a list meaning any of ($in); None matches null or missing."""
    return {_mongo_field(field): {"$in": value} if isinstance(value, list) else value
            for field, value in checks.where(where).items()}


def _as_doc(stored: dict[str, Any]) -> dict[str, Any]:
    doc = dict(stored)
    return {"id": doc.pop("_id"), **doc}
