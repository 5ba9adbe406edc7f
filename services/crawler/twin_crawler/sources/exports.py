"""What export-archive sources share: opening the archive, synthetic links, parsing CSV members."""
from __future__ import annotations

import csv
import io

from llmtwin.domain import Platform, content_hash

from ..archive import DecodedText, ExportArchive
from ..config import CrawlConfig
from ..items import CrawlRefused
from ..locations import local_path


def export_link(platform: Platform, *parts: str) -> str:
    """A stable link for an item the export gives no URL for (same item, same link, same id)."""
    return f"{platform.value}-export://" + "/".join(parts)


def text_key(*parts: str) -> str:
    return content_hash("\x1f".join(parts))


def open_archive(location: str, config: CrawlConfig) -> ExportArchive:
    path = local_path(location)
    if path is None:
        raise CrawlRefused(f"an export archive must be a local .zip file or folder, not {location}")
    return ExportArchive(path, config)


def read_csv(decoded: DecodedText, name: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of an export CSV (quoted fields may span lines, "" is a quote); checks the columns it needs."""
    reader = csv.DictReader(io.StringIO(decoded.text, newline=""))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise CrawlRefused(f"{name}: missing column(s) {', '.join(missing)} (found {reader.fieldnames})")
    try:
        return [{key: (value or "") for key, value in row.items() if key is not None} for row in reader]
    except csv.Error as exc:
        raise CrawlRefused(f"{name}: not a readable CSV file ({exc})") from exc
