"""A typed repository over the warehouse port: domain models in, domain models out.

    raw_docs = Repository(warehouse, Collection.RAW_DOCUMENTS, RawDocument)
    await raw_docs.add(doc)                                   # -> UpsertResult
    await raw_docs.list({"twin_id": "ada"}, order_by="fetched_at", descending=True, limit=10)

Models are stored as `model_dump(mode="json")`, so datetimes become ISO strings and enums
their values; `where` takes the same JSON-ready values (enums are accepted as they are).
"""
from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

from .port import UpsertResult, Warehouse, Where

Model = TypeVar("Model", bound=BaseModel)


class Repository(Generic[Model]):
    def __init__(self, warehouse: Warehouse, collection: str, model: type[Model]) -> None:
        self.warehouse, self.collection, self.model = warehouse, collection, model

    async def add(self, item: Model) -> UpsertResult:
        """Insert or replace by the model's id; says whether anything changed."""
        return await self.warehouse.upsert(self.collection, item.model_dump(mode="json"))

    async def get(self, item_id: str) -> Model | None:
        doc = await self.warehouse.get(self.collection, item_id)
        return self.model.model_validate(doc) if doc is not None else None

    async def list(self, where: Where | None = None, *, order_by: str | None = None,
                   descending: bool = False, limit: int | None = None) -> list[Model]:
        docs = await self.warehouse.find(self.collection, where, order_by=order_by,
                                         descending=descending, limit=limit)
        return [self.model.model_validate(doc) for doc in docs]

    async def count(self, where: Where | None = None) -> int:
        return await self.warehouse.count(self.collection, where)

    async def ids(self, where: Where | None = None) -> set[str]:
        return await self.warehouse.ids(self.collection, where)

    async def delete(self, item_id: str) -> bool:
        return await self.warehouse.delete(self.collection, item_id)
