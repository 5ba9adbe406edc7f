"""The embedded warehouse: one SQLite file, one table per collection, documents as JSON text.

Several processes (crawler, cleaner, embedder, ...) open the same file, so it runs in
WAL mode with a busy timeout, and every read-compare-write takes the write lock first.
sqlite3 calls block, so they all run on ONE worker thread that owns the connection:
the event loop never waits on the disk, and the connection is never shared between threads.

Documents must be JSON-ready (`model.model_dump(mode="json")`: datetimes as ISO strings,
which also sort correctly as text when they share a time zone). Values of one field should
keep one type, as pydantic models do: SQLite's JSON1 compares `true` equal to `1`.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from . import checks
from .port import UpsertResult, Where

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000


class SqliteWarehouse:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"warehouse-{self.path.name}")
        self._conn: sqlite3.Connection | None = None  # opened and used only on the worker thread
        self._tables: set[str] = set()
        self._closed = False

    # --- the port -------------------------------------------------------------------

    async def upsert(self, collection: str, doc: dict[str, Any]) -> UpsertResult:
        table = checks.collection_name(collection)
        doc_id, text = checks.document_id(doc), checks.json_text(doc)
        return await self._run(self._upsert, table, doc_id, text)

    async def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        table = checks.collection_name(collection)
        rows = await self._run(self._select, table, "doc", "WHERE id = ?", [doc_id])
        return json.loads(rows[0][0]) if rows else None

    async def find(self, collection: str, where: Where | None = None, *,
                   order_by: str | None = None, descending: bool = False,
                   limit: int | None = None) -> list[dict[str, Any]]:
        table = checks.collection_name(collection)
        condition, params = _where_sql(where)
        # Without order_by, id order; ties are broken by id, ascending: results are deterministic.
        field = checks.field_name(order_by) if order_by else "id"
        order = f"ORDER BY {_field_sql(field)} {'DESC' if descending else 'ASC'}"
        if field != "id":
            order += ", id"
        if checks.limit(limit) is not None:
            order += f" LIMIT {limit}"
        rows = await self._run(self._select, table, "doc", f"{condition} {order}", params)
        return [json.loads(doc) for (doc,) in rows]

    async def count(self, collection: str, where: Where | None = None) -> int:
        table = checks.collection_name(collection)
        condition, params = _where_sql(where)
        rows = await self._run(self._select, table, "count(*)", condition, params)
        return rows[0][0]

    async def ids(self, collection: str, where: Where | None = None) -> set[str]:
        table = checks.collection_name(collection)
        condition, params = _where_sql(where)
        rows = await self._run(self._select, table, "id", condition, params)
        return {doc_id for (doc_id,) in rows}

    async def delete(self, collection: str, doc_id: str) -> bool:
        table = checks.collection_name(collection)
        return await self._run(self._delete, table, doc_id)

    async def ensure_index(self, collection: str, field: str) -> None:
        """An index on one top-level field, used by find/count/ids on that field and by order_by."""
        table, field = checks.collection_name(collection), checks.field_name(field)
        if field != "id":  # the primary key is indexed already
            await self._run(self._execute, table,
                            f'CREATE INDEX IF NOT EXISTS "{table}__{field}" ON "{table}" ({_field_sql(field)})')

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queued after any pending call on the same thread, so nothing is cut short.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=False)

    # --- the worker thread ----------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError(f"the warehouse at {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are begun explicitly where a read must precede a write.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode, much faster
            self._conn = conn
        return self._conn

    def _table(self, table: str) -> sqlite3.Connection:
        conn = self._connection()
        if table not in self._tables:
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (id TEXT PRIMARY KEY, doc TEXT NOT NULL)')
            self._tables.add(table)
        return conn

    def _upsert(self, table: str, doc_id: str, text: str) -> UpsertResult:
        conn = self._table(table)
        # Take the write lock before reading, so another process cannot slip in between.
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(f'SELECT doc FROM "{table}" WHERE id = ?', (doc_id,)).fetchone()
            if row is None:
                conn.execute(f'INSERT INTO "{table}" (id, doc) VALUES (?, ?)', (doc_id, text))
                result = UpsertResult.INSERTED
            elif row[0] == text:
                result = UpsertResult.UNCHANGED
            else:
                conn.execute(f'UPDATE "{table}" SET doc = ? WHERE id = ?', (text, doc_id))
                result = UpsertResult.UPDATED
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                conn.execute("ROLLBACK")
            raise
        return result

    def _select(self, table: str, columns: str, tail: str, params: list[Any]) -> list[tuple[Any, ...]]:
        return self._table(table).execute(f'SELECT {columns} FROM "{table}" {tail}', params).fetchall()

    def _delete(self, table: str, doc_id: str) -> bool:
        return self._table(table).execute(f'DELETE FROM "{table}" WHERE id = ?', (doc_id,)).rowcount == 1

    def _execute(self, table: str, sql: str) -> None:
        self._table(table).execute(sql)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _field_sql(field: str) -> str:
    # The path is written into the SQL (not bound) so it matches expression indexes;
    # field names are checked identifiers, so this is safe.
    return "id" if field == "id" else f"json_extract(doc, '$.{field}')"


def _where_sql(where: Where | None) -> tuple[str, list[Any]]:
    """A WHERE clause: equality per field, a list meaning any of; None matches null or missing."""
    terms: list[str] = []
    params: list[Any] = []
    for field, value in checks.where(where).items():
        column = _field_sql(field)
        if isinstance(value, list):
            present = [item for item in value if item is not None]
            # One JSON parameter, however long the list (SQLite caps bound variables).
            alternatives = [f"{column} IN (SELECT value FROM json_each(?))"]
            params.append(json.dumps(present))
            if len(present) < len(value):
                alternatives.append(f"{column} IS NULL")
            terms.append(f"({' OR '.join(alternatives)})")
        elif value is None:
            terms.append(f"{column} IS NULL")
        else:
            terms.append(f"{column} = ?")
            params.append(value)
    return ("WHERE " + " AND ".join(terms) if terms else ""), params
