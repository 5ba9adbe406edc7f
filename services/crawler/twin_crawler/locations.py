"""Local locations in profile URLs: `file://` URLs and plain paths name uploaded archives and repositories."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from .items import CrawlRefused


def local_path(url: str) -> Path | None:
    """The local file or folder a URL names (file://... or a plain path), else None."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise CrawlRefused(f"file URLs must name a local path: {url}")
        return Path(unquote(parts.path))
    if parts.scheme == "":
        return Path(url).expanduser()
    return None
