"""Column schemas: a column name maps to a parser that turns text into a value or raises ValueError."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

Parser = Callable[[str], Any]


def parse_date(text: str) -> date:
    """ISO dates only (YYYY-MM-DD): ambiguous formats are rejected, not guessed."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"expected YYYY-MM-DD, got {text!r}") from None


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "yes", "1"}:
        return True
    if lowered in {"false", "no", "0"}:
        return False
    raise ValueError(f"expected true/false, got {text!r}")


NAMED_PARSERS: dict[str, Parser] = {
    "date": parse_date,
    "bool": parse_bool,
    "str":  str.strip,
}


class Schema:
    """The shape a file must have: which columns, parsed how."""

    def __init__(self, columns: Mapping[str, Parser | str]) -> None:
        self.columns: dict[str, Parser] = {
            name: NAMED_PARSERS[parser] if isinstance(parser, str) else parser
            for name, parser in columns.items()
        }

    def missing(self, header: list[str]) -> list[str]:
        """Columns the schema needs that the header lacks: a contract problem, not a row problem."""
        return [name for name in self.columns if name not in header]
