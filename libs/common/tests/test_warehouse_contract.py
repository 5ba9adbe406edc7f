"""The warehouse contract: every test here runs against SQLite and against a real
Mongo-wire server (nx-27017) through the `warehouse` fixture, so both adapters behave alike."""
from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from llmtwin.domain import DocumentKind, Platform, RawDocument
from llmtwin.settings import Settings
from llmtwin.warehouse import Collection, UpsertResult, open_warehouse
from llmtwin.warehouse.mongo import MongoWarehouse
from llmtwin.warehouse.repository import Repository
from llmtwin.warehouse.sqlite import SqliteWarehouse

DOCS = "docs"


async def put_all(warehouse, docs, collection=DOCS):
    for doc in docs:
        await warehouse.upsert(collection, doc)


PEOPLE = [
    {"id": "p1", "name": "Ada", "team": "core", "age": 36, "active": True},
    {"id": "p2", "name": "Grace", "team": "core", "age": 45, "active": False},
    {"id": "p3", "name": "Alan", "team": "lab", "age": 41, "active": True},
    {"id": "p4", "name": "Edsger", "team": "lab", "age": 36, "active": True, "note": None},
    {"id": "p5", "name": "Barbara", "team": None, "age": 29, "active": False},
    {"id": "p6", "name": "Ken", "age": 45, "active": True},  # no team at all
]


def names(docs):
    return [doc["name"] for doc in docs]


async def test_upsert_says_inserted_then_unchanged_then_updated(warehouse):
    doc = {"id": "a", "title": "first", "tags": ["x", "y"]}
    assert await warehouse.upsert(DOCS, doc) is UpsertResult.INSERTED
    assert await warehouse.upsert(DOCS, dict(doc)) is UpsertResult.UNCHANGED
    # The same content with keys in another order is the same document.
    assert await warehouse.upsert(DOCS, {"tags": ["x", "y"], "title": "first", "id": "a"}) is UpsertResult.UNCHANGED
    assert await warehouse.upsert(DOCS, {**doc, "title": "second"}) is UpsertResult.UPDATED
    assert await warehouse.upsert(DOCS, {**doc, "title": "second", "tags": ["y", "x"]}) is UpsertResult.UPDATED
    assert await warehouse.get(DOCS, "a") == {"id": "a", "title": "second", "tags": ["y", "x"]}
    assert await warehouse.count(DOCS) == 1


async def test_update_replaces_the_whole_document(warehouse):
    await warehouse.upsert(DOCS, {"id": "a", "old": 1, "kept": "no"})
    await warehouse.upsert(DOCS, {"id": "a", "new": 2})
    assert await warehouse.get(DOCS, "a") == {"id": "a", "new": 2}


async def test_get_missing_is_none(warehouse):
    assert await warehouse.get(DOCS, "nope") is None
    await warehouse.upsert(DOCS, {"id": "a"})
    assert await warehouse.get(DOCS, "nope") is None
    assert await warehouse.get(DOCS, "a") == {"id": "a"}


async def test_find_by_equality_on_every_field_given(warehouse):
    await put_all(warehouse, PEOPLE)
    assert names(await warehouse.find(DOCS, {"team": "core"})) == ["Ada", "Grace"]
    assert names(await warehouse.find(DOCS, {"team": "lab", "age": 36})) == ["Edsger"]
    assert names(await warehouse.find(DOCS, {"active": False})) == ["Grace", "Barbara"]
    assert names(await warehouse.find(DOCS, {"age": 36.0})) == ["Ada", "Edsger"]
    assert names(await warehouse.find(DOCS, {"id": "p3"})) == ["Alan"]
    assert await warehouse.find(DOCS, {"team": "nobody"}) == []
    assert len(await warehouse.find(DOCS)) == len(await warehouse.find(DOCS, {})) == len(PEOPLE)


async def test_none_matches_null_or_missing(warehouse):
    await put_all(warehouse, PEOPLE)
    assert names(await warehouse.find(DOCS, {"team": None})) == ["Barbara", "Ken"]
    assert await warehouse.count(DOCS, {"note": None}) == len(PEOPLE)
    assert await warehouse.count(DOCS, {"team": None, "note": None}) == 2
    assert await warehouse.count(DOCS, {"team": None, "age": 45}) == 1


async def test_a_list_means_any_of(warehouse):
    await put_all(warehouse, PEOPLE)
    assert names(await warehouse.find(DOCS, {"team": ["lab", "nobody"]})) == ["Alan", "Edsger"]
    assert names(await warehouse.find(DOCS, {"age": [45, 29], "active": True})) == ["Ken"]
    assert names(await warehouse.find(DOCS, {"team": ["core", None]})) == ["Ada", "Grace", "Barbara", "Ken"]
    assert await warehouse.ids(DOCS, {"id": ("p2", "p4", "zz")}) == {"p2", "p4"}
    assert await warehouse.find(DOCS, {"team": []}) == []
    # Longer than SQLite's limit on bound parameters.
    many_ids = [f"x{i}" for i in range(40_000)] + ["p1"]
    assert await warehouse.ids(DOCS, {"id": many_ids}) == {"p1"}


async def test_enum_values_match_their_value(warehouse):
    await warehouse.upsert(DOCS, {"id": "a", "platform": "github"})
    await warehouse.upsert(DOCS, {"id": "b", "platform": "medium"})
    assert await warehouse.ids(DOCS, {"platform": Platform.GITHUB}) == {"a"}
    assert await warehouse.ids(DOCS, {"platform": [Platform.MEDIUM, Platform.X]}) == {"b"}


async def test_order_by_descending_and_limit(warehouse):
    await put_all(warehouse, PEOPLE)
    # Ties are broken by id, ascending, in both directions.
    assert names(await warehouse.find(DOCS, order_by="age")) == ["Barbara", "Ada", "Edsger", "Alan", "Grace", "Ken"]
    assert names(await warehouse.find(DOCS, order_by="age", descending=True)) == [
        "Grace", "Ken", "Alan", "Ada", "Edsger", "Barbara"]
    assert names(await warehouse.find(DOCS, {"active": True}, order_by="name", limit=2)) == ["Ada", "Alan"]
    assert names(await warehouse.find(DOCS, order_by="name", descending=True, limit=1)) == ["Ken"]
    assert names(await warehouse.find(DOCS, order_by="id", descending=True, limit=2)) == ["Ken", "Barbara"]
    # Null and missing values sort first.
    assert names(await warehouse.find(DOCS, order_by="team", limit=3)) == ["Barbara", "Ken", "Ada"]
    # Without order_by, documents come in id order.
    assert names(await warehouse.find(DOCS, limit=3)) == ["Ada", "Grace", "Alan"]
    assert names(await warehouse.find(DOCS, descending=True, limit=2)) == ["Ken", "Barbara"]
    assert await warehouse.find(DOCS, limit=0) == []
    assert len(await warehouse.find(DOCS, limit=100)) == len(PEOPLE)


async def test_iso_datetimes_order_in_time(warehouse):
    start = datetime(2026, 1, 31, 23, 0, tzinfo=timezone.utc)
    stamps = {f"d{i}": (start + timedelta(hours=h)).isoformat() for i, h in enumerate([5, 1, 30, 0])}
    await put_all(warehouse, [{"id": doc_id, "at": at} for doc_id, at in stamps.items()])
    found = await warehouse.find(DOCS, order_by="at", descending=True)
    assert [doc["id"] for doc in found] == ["d2", "d0", "d1", "d3"]


async def test_count_and_ids(warehouse):
    assert await warehouse.count(DOCS) == 0
    assert await warehouse.ids(DOCS) == set()
    await put_all(warehouse, PEOPLE)
    assert await warehouse.count(DOCS) == 6
    assert await warehouse.count(DOCS, {"active": True}) == 4
    assert await warehouse.count(DOCS, {"team": ["core", "lab"], "age": 36}) == 2
    assert await warehouse.ids(DOCS) == {doc["id"] for doc in PEOPLE}
    assert await warehouse.ids(DOCS, {"team": "lab"}) == {"p3", "p4"}


async def test_delete(warehouse):
    await put_all(warehouse, PEOPLE)
    assert await warehouse.delete(DOCS, "p2") is True
    assert await warehouse.delete(DOCS, "p2") is False
    assert await warehouse.delete(DOCS, "never") is False
    assert await warehouse.get(DOCS, "p2") is None
    assert "p2" not in await warehouse.ids(DOCS)
    assert await warehouse.count(DOCS) == 5
    # A deleted document comes back as a new one.
    assert await warehouse.upsert(DOCS, PEOPLE[1]) is UpsertResult.INSERTED


async def test_collections_are_isolated(warehouse):
    await warehouse.upsert(Collection.RAW_DOCUMENTS, {"id": "same", "stage": "raw"})
    await warehouse.upsert(Collection.CLEAN_DOCUMENTS, {"id": "same", "stage": "clean"})
    assert (await warehouse.get(Collection.RAW_DOCUMENTS, "same"))["stage"] == "raw"
    assert (await warehouse.get(Collection.CLEAN_DOCUMENTS, "same"))["stage"] == "clean"
    assert await warehouse.delete(Collection.RAW_DOCUMENTS, "same") is True
    assert await warehouse.count(Collection.RAW_DOCUMENTS) == 0
    assert await warehouse.ids(Collection.CLEAN_DOCUMENTS) == {"same"}
    assert await warehouse.count(Collection.TWINS) == 0


async def test_nested_values_and_unicode_round_trip(warehouse):
    doc = {
        "id": "ünï-😀",
        "text": "Grüße, 世界! 𝐁𝐨𝐥𝐝 — “quotes” and\nline breaks\tand tabs \\ \"",
        "metadata": {"tags": ["a", "β"], "depth": {"level": 2, "ok": True, "none": None}},
        "numbers": [1, 2.5, -3, 0, 10**15],
        "rows": [{"k": "v"}, [], {}],
        "empty": "",
    }
    assert await warehouse.upsert(DOCS, doc) is UpsertResult.INSERTED
    assert await warehouse.get(DOCS, doc["id"]) == doc
    assert await warehouse.find(DOCS, {"text": doc["text"]}) == [doc]
    assert await warehouse.ids(DOCS) == {doc["id"]}
    assert await warehouse.upsert(DOCS, doc) is UpsertResult.UNCHANGED


async def test_concurrent_upserts(warehouse):
    docs = [{"id": f"c{i:03d}", "n": i} for i in range(60)]
    results = await asyncio.gather(*(warehouse.upsert(DOCS, doc) for doc in docs))
    assert results == [UpsertResult.INSERTED] * 60
    assert await warehouse.count(DOCS) == 60
    # The same document from many writers at once: exactly one of them inserted it.
    same = await asyncio.gather(*(warehouse.upsert(DOCS, {"id": "hot", "v": 1}) for _ in range(20)))
    assert sorted(same) == sorted([UpsertResult.INSERTED] + [UpsertResult.UNCHANGED] * 19)
    assert [doc["n"] for doc in await warehouse.find(DOCS, order_by="n", descending=True, limit=3)] == [59, 58, 57]


async def test_ensure_index_keeps_answers_the_same(warehouse):
    await put_all(warehouse, PEOPLE)
    await warehouse.ensure_index(DOCS, "team")
    await warehouse.ensure_index(DOCS, "team")  # idempotent
    await warehouse.ensure_index(DOCS, "id")
    assert names(await warehouse.find(DOCS, {"team": "lab"}, order_by="team")) == ["Alan", "Edsger"]
    assert await warehouse.count(DOCS, {"team": ["core", None]}) == 4


@pytest.mark.parametrize("call, message", [
    (lambda w: w.upsert(DOCS, {"title": "no id"}), "non-empty string 'id'"),
    (lambda w: w.upsert(DOCS, {"id": 7}), "non-empty string 'id'"),
    (lambda w: w.upsert(DOCS, {"id": "a", "at": datetime.now()}), "model_dump"),
    (lambda w: w.upsert("bad name; drop", {"id": "a"}), "collection name"),
    (lambda w: w.find(DOCS, {"a.b": 1}), "field name"),
    (lambda w: w.find(DOCS, order_by="x') --"), "field name"),
    (lambda w: w.find(DOCS, {"meta": {"k": 1}}), "where\\['meta'\\]"),
    (lambda w: w.count(DOCS, {"at": datetime.now()}), "isoformat"),
    (lambda w: w.find(DOCS, limit=-1), "limit"),
])
async def test_bad_input_is_a_clear_error(warehouse, call, message):
    with pytest.raises(ValueError, match=message):
        await call(warehouse)
    # The warehouse still works afterwards.
    assert await warehouse.upsert(DOCS, {"id": "fine"}) is UpsertResult.INSERTED


async def test_repository_round_trips_domain_models(warehouse):
    raw = Repository(warehouse, Collection.RAW_DOCUMENTS, RawDocument)
    published = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
    docs = [RawDocument.create(twin_id="ada", platform=platform, kind=DocumentKind.POST,
                               link=f"https://example.com/{i}", content=f"post {i} ✍️",
                               published_at=published + timedelta(days=i), metadata={"likes": i})
            for i, platform in enumerate([Platform.LINKEDIN, Platform.MEDIUM, Platform.LINKEDIN])]
    assert [await raw.add(doc) for doc in docs] == [UpsertResult.INSERTED] * 3
    assert await raw.add(docs[0]) is UpsertResult.UNCHANGED
    assert await raw.add(docs[0].model_copy(update={"title": "retitled"})) is UpsertResult.UPDATED

    loaded = await raw.get(docs[1].id)
    assert isinstance(loaded, RawDocument) and loaded == docs[1]
    assert loaded.published_at == published + timedelta(days=1)
    assert await raw.get("missing") is None

    newest_linkedin = await raw.list({"platform": Platform.LINKEDIN}, order_by="published_at",
                                     descending=True, limit=1)
    assert newest_linkedin == [docs[2]]
    assert await raw.count({"twin_id": "ada"}) == 3
    assert await raw.ids({"platform": Platform.MEDIUM}) == {docs[1].id}
    assert await raw.delete(docs[1].id) is True
    assert {doc.id for doc in await raw.list()} == {docs[0].id, docs[2].id}


# --- adapter-specific ----------------------------------------------------------------


async def test_mongo_stores_id_as_underscore_id(mongo_url):
    from pymongo import AsyncMongoClient

    warehouse = open_warehouse(mongo_url)
    assert isinstance(warehouse, MongoWarehouse)
    await warehouse.upsert(DOCS, {"id": "a", "x": 1})
    client = AsyncMongoClient(mongo_url)
    try:
        assert await client.get_default_database()[DOCS].find_one({}) == {"_id": "a", "x": 1}
    finally:
        await client.close()
    assert await warehouse.find(DOCS) == [{"id": "a", "x": 1}]
    await warehouse.close()


async def test_sqlite_processes_sharing_a_file_see_each_others_writes(sqlite_url):
    crawler, cleaner = open_warehouse(sqlite_url), open_warehouse(sqlite_url)
    assert isinstance(crawler, SqliteWarehouse) and isinstance(cleaner, SqliteWarehouse)
    try:
        assert await crawler.upsert(DOCS, {"id": "a", "v": 1}) is UpsertResult.INSERTED
        assert await cleaner.get(DOCS, "a") == {"id": "a", "v": 1}
        assert await cleaner.upsert(DOCS, {"id": "a", "v": 1}) is UpsertResult.UNCHANGED
        assert await cleaner.upsert(DOCS, {"id": "a", "v": 2}) is UpsertResult.UPDATED
        assert await crawler.get(DOCS, "a") == {"id": "a", "v": 2}
        # Both writing at once: the busy timeout makes them wait for each other, nothing is lost.
        await asyncio.gather(*(writer.upsert(DOCS, {"id": f"{name}{i}"})
                               for i in range(30) for name, writer in [("x", crawler), ("y", cleaner)]))
        assert await crawler.count(DOCS) == await cleaner.count(DOCS) == 61
        assert await crawler.delete(DOCS, "a") is True
        assert await cleaner.get(DOCS, "a") is None
    finally:
        await crawler.close()
        await cleaner.close()
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_sqlite_filters_use_an_ensured_index(tmp_path):
    warehouse = SqliteWarehouse(tmp_path / "w.db")
    await warehouse.ensure_index(DOCS, "team")
    await warehouse.close()
    conn = sqlite3.connect(tmp_path / "w.db")
    plan = " ".join(row[-1] for row in conn.execute(
        f"EXPLAIN QUERY PLAN SELECT doc FROM {DOCS} WHERE json_extract(doc, '$.team') = 'lab'"))
    conn.close()
    assert f"{DOCS}__team" in plan


async def test_sqlite_refuses_calls_after_close(tmp_path):
    warehouse = SqliteWarehouse(tmp_path / "nested" / "w.db")  # folders are made on first use
    await warehouse.upsert(DOCS, {"id": "a"})
    await warehouse.close()
    await warehouse.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        await warehouse.get(DOCS, "a")


@pytest.mark.parametrize("url", ["postgres://host/db", "sqlite://relative.db", "sqlite:///", "", "/tmp/w.db"])
def test_open_warehouse_rejects_unknown_urls(url):
    with pytest.raises(ValueError, match="unsupported warehouse URL"):
        open_warehouse(url)


def test_open_warehouse_picks_the_adapter_by_scheme(tmp_path):
    sqlite_warehouse = open_warehouse(Settings(data_dir=tmp_path, warehouse_url="").warehouse)
    assert isinstance(sqlite_warehouse, SqliteWarehouse) and sqlite_warehouse.path == tmp_path / "warehouse.db"
    assert isinstance(open_warehouse("mongodb://127.0.0.1:1/llmtwin"), MongoWarehouse)
