"""Input checks shared by the warehouse adapters, so both reject bad input the same way.

Names end up inside SQL (table names, JSON paths) and Mongo queries, so they are
restricted to plain identifiers; values must already be JSON-ready.
"""
from __future__ import annotations

import json
import re
from enum import Enum
from typing import Any

from .port import Where

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
Scalar = str | int | float | bool | None


def collection_name(name: str) -> str:
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"collection name must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*), got {name!r}")
    return str(name)


def field_name(name: str) -> str:
    # Only top-level fields: a dot would mean a nested path in Mongo but not in SQLite.
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"field name must be a top-level identifier ([A-Za-z_][A-Za-z0-9_]*), got {name!r}")
    return str(name)


def document_id(doc: dict[str, Any]) -> str:
    if not isinstance(doc, dict):
        raise TypeError(f"a document must be a dict, got {type(doc).__name__}")
    doc_id = doc.get("id")
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError(f"a document needs a non-empty string 'id', got {doc_id!r}")
    return doc_id


def json_text(doc: dict[str, Any]) -> str:
    """The canonical JSON of a document (sorted keys): equal text means equal content."""
    try:
        return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"document {doc.get('id')!r} is not JSON-ready ({exc}); "
                         "dump models with model_dump(mode='json')") from exc


def limit(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"limit must be a non-negative int or None, got {value!r}")
    return value


def scalar(field: str, value: Any) -> Scalar:
    """A where value as a plain JSON scalar (enums become their value)."""
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, bool):
        return value
    for plain in (str, int, float):  # str/int subclasses become the plain type both drivers bind
        if isinstance(value, plain):
            return plain(value)
    raise ValueError(f"where[{field!r}]: expected str, int, float, bool, None or a list of them, "
                     f"got {type(value).__name__} (pass JSON-ready values, e.g. datetime.isoformat())")


def where(clause: Where | None) -> dict[str, Scalar | list[Scalar]]:
    """Checked copy of a where clause: field -> scalar (equality) or list of scalars (any of)."""
    if clause is None:
        return {}
    if not isinstance(clause, dict):
        raise TypeError(f"where must be a dict of field -> value, got {type(clause).__name__}")
    checked: dict[str, Scalar | list[Scalar]] = {}
    for field, value in clause.items():
        field_name(field)
        if isinstance(value, (list, tuple, set, frozenset)):
            checked[field] = [scalar(field, item) for item in value]
        else:
            checked[field] = scalar(field, value)
    return checked
