"""Validation: every row is checked, every error is kept, a bad row never stops the good ones."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schema import Schema

ENCODINGS = ("utf-8-sig", "cp1252")


@dataclass(frozen=True)
class RowError:
    line: int      # as a spreadsheet shows it: the header is line 1
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column!r}: {self.message}"


@dataclass
class Report:
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    encoding: str = "utf-8-sig"

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        lines = [f"{len(self.rows)} good rows, {len(self.errors)} errors (read as {self.encoding})"]
        lines += [f"  - {error}" for error in self.errors[:20]]
        return "\n".join(lines)


def validate_rows(rows: list[dict[str, str]], schema: Schema) -> Report:
    report = Report()
    for line, row in enumerate(rows, start=2):
        clean: dict[str, Any] = {}
        for column, parse in schema.columns.items():
            raw = row.get(column)
            if raw is None:
                report.errors.append(RowError(line, column, "missing value"))
                continue
            try:
                clean[column] = parse(raw)
            except ValueError as exc:
                report.errors.append(RowError(line, column, str(exc)))
        if len(clean) == len(schema.columns):
            report.rows.append(clean)
    return report


def read_text(path: Path) -> tuple[str, str]:
    """Try UTF-8 first; old spreadsheet exports are often cp1252. Say which one was used."""
    data = path.read_bytes()
    for encoding in ENCODINGS:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise ValueError(f"{path}: not readable as any of {ENCODINGS}")


def validate_file(path: str | Path, schema: Schema) -> Report:
    text, encoding = read_text(Path(path))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = schema.missing(reader.fieldnames or [])
    if missing:
        raise ValueError(f"{path}: missing column(s): {', '.join(missing)}")
    report = validate_rows(list(reader), schema)
    report.encoding = encoding
    return report
