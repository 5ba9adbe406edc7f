"""The warehouse: the port, its two adapters, and `open_warehouse(url)` to pick one from settings.

    sqlite:////abs/path/warehouse.db   embedded default: f"sqlite:///{path}" with an absolute
                                       path (four slashes), as `Settings.warehouse` builds it;
                                       three slashes and a relative path are relative to the cwd
    mongodb://host:27017/llmtwin       MongoDB (also mongodb+srv://); the path names the database
"""
from __future__ import annotations

from .port import Collection, UpsertResult, Warehouse, Where

__all__ = ["Collection", "UpsertResult", "Warehouse", "Where", "open_warehouse"]

_SQLITE_PREFIX = "sqlite:///"
_MONGO_PREFIXES = ("mongodb://", "mongodb+srv://")


def open_warehouse(url: str) -> Warehouse:
    """The adapter for `url`. Opening does no I/O: connections are made on first use."""
    # Adapters are imported here, so a process that uses one never loads the other's driver.
    if url.startswith(_SQLITE_PREFIX) and len(url) > len(_SQLITE_PREFIX):
        from .sqlite import SqliteWarehouse

        return SqliteWarehouse(url[len(_SQLITE_PREFIX):])
    if url.startswith(_MONGO_PREFIXES):
        from .mongo import MongoWarehouse

        return MongoWarehouse(url)
    raise ValueError(f"unsupported warehouse URL {url!r}: expected sqlite:///<path to .db file> "
                     "or mongodb://host:port/<database>")
