"""Telling a store that is away for a moment from work that can never succeed.

A stage waits out an outage of the warehouse, Qdrant or another server (retrying with
backoff, acknowledging nothing meanwhile), however long it lasts: the message is fine,
only its destination is missing. Any other failure is retried a few times and then
dead-lettered.
"""
from __future__ import annotations

import sqlite3

import httpx
from pymongo.errors import ConnectionFailure
from qdrant_client.http.exceptions import UnexpectedResponse

# SQLite's own words for a database that another process holds or that the disk cannot reach now.
SQLITE_OUTAGES = ("database is locked", "database table is locked", "unable to open database file",
                  "disk i/o error")
UNAVAILABLE_STATUSES = {502, 503, 504}


def is_outage(exc: BaseException) -> bool:
    """True when `exc`, or an error it was raised from, says a store or server could not be reached."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if _is_outage(error):
            return True
        source = getattr(error, "source", None)  # qdrant-client wraps transport errors and keeps them here
        error = source if isinstance(source, BaseException) else error.__cause__ or error.__context__
    return False


def _is_outage(error: BaseException) -> bool:
    if isinstance(error, (ConnectionError, TimeoutError, httpx.TransportError, ConnectionFailure)):
        return True
    if isinstance(error, UnexpectedResponse):
        return error.status_code in UNAVAILABLE_STATUSES
    if isinstance(error, sqlite3.OperationalError):
        return str(error).lower().startswith(SQLITE_OUTAGES)
    return False
