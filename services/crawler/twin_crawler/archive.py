"""Reading an export archive (a ZIP file or an unpacked folder) without trusting it.

Exports are uploaded by people, so the archive is hostile until checked: members
that escape the folder, zip bombs (total size and compression ratio) and huge
members are refused before anything is read, and reads never go past the caps
even if a member's header lies about its size.
"""
from __future__ import annotations

import fnmatch
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .config import CrawlConfig
from .items import CrawlRefused

TEXT_ENCODINGS = ("utf-8-sig", "cp1252")


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str

    @property
    def note(self) -> str | None:
        return None if self.encoding == "utf-8-sig" else f"not UTF-8; decoded as {self.encoding}"


def decode_text(data: bytes) -> DecodedText:
    """UTF-8 (with or without BOM) first; Windows exports are often cp1252."""
    try:
        return DecodedText(data.decode("utf-8-sig"), "utf-8-sig")
    except UnicodeDecodeError:
        return DecodedText(data.decode("cp1252", errors="replace"), "cp1252")


def _safe_member_name(name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]) \
            or ".." in path.parts:
        raise CrawlRefused(f"archive refused: member {name!r} escapes the archive folder")
    return str(path)


class ExportArchive:
    """The files of an export, by their path inside it ('posts/1.html'), with safe reads."""

    def __init__(self, location: Path, config: CrawlConfig) -> None:
        self.location, self.config = location, config
        self._zip: zipfile.ZipFile | None = None
        self._sizes: dict[str, int] = {}
        if location.is_dir():
            self._index_folder()
        elif location.is_file():
            try:
                self._index_zip()
            except CrawlRefused:
                self.close()
                raise
        else:
            raise CrawlRefused(f"export archive not found: {location}")

    def _index_zip(self) -> None:
        try:
            self._zip = zipfile.ZipFile(self.location)
        except (zipfile.BadZipFile, OSError) as exc:
            raise CrawlRefused(f"not a ZIP archive: {self.location.name} ({exc})") from exc
        cfg, total = self.config, 0
        for info in self._zip.infolist():
            name = _safe_member_name(info.filename)
            if info.is_dir():
                continue
            if info.file_size > cfg.max_member_bytes:
                raise CrawlRefused(f"archive refused: member {name!r} is {info.file_size} bytes "
                                   f"(limit {cfg.max_member_bytes})")
            # Tiny members compress well legitimately; a high ratio on a big one is a bomb.
            if info.file_size > 1024 * 1024 and info.file_size > cfg.max_compression_ratio * max(info.compress_size, 1):
                raise CrawlRefused(f"archive refused: member {name!r} expands {info.file_size // max(info.compress_size, 1)}x "
                                   f"(limit {cfg.max_compression_ratio}x): looks like a zip bomb")
            total += info.file_size
            if total > cfg.max_archive_bytes:
                raise CrawlRefused(f"archive refused: more than {cfg.max_archive_bytes} bytes uncompressed")
            self._sizes[name] = info.file_size

    def _index_folder(self) -> None:
        root, cfg, total = self.location.resolve(), self.config, 0
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            if not path.resolve().is_relative_to(root):
                raise CrawlRefused(f"archive refused: {path.relative_to(root)} links outside the export folder")
            size = path.stat().st_size
            if size > cfg.max_member_bytes:
                raise CrawlRefused(f"archive refused: {path.relative_to(root)} is {size} bytes "
                                   f"(limit {cfg.max_member_bytes})")
            total += size
            if total > cfg.max_archive_bytes:
                raise CrawlRefused(f"archive refused: more than {cfg.max_archive_bytes} bytes")
            self._sizes[path.relative_to(root).as_posix()] = size

    @property
    def names(self) -> list[str]:
        return sorted(self._sizes)

    def matching(self, *patterns: str) -> list[str]:
        """Members whose file name (any folder) matches one of the patterns, case-insensitively."""
        return [n for n in self.names
                if any(fnmatch.fnmatch(PurePosixPath(n).name.lower(), p.lower()) for p in patterns)]

    def under(self, folder: str, pattern: str = "*") -> list[str]:
        """Members directly inside `folder` (at any depth of the archive) matching the pattern."""
        return [n for n in self.names if PurePosixPath(n).parent.name.lower() == folder.lower()
                and fnmatch.fnmatch(PurePosixPath(n).name.lower(), pattern.lower())]

    def read_bytes(self, name: str) -> bytes:
        limit = self.config.max_member_bytes
        if self._zip is not None:
            with self._zip.open(name) as member:
                data = member.read(limit + 1)
        else:
            with open(self.location / name, "rb") as handle:
                data = handle.read(limit + 1)
        if len(data) > limit:  # the header lied about the size
            raise CrawlRefused(f"archive refused: member {name!r} is larger than {limit} bytes")
        return data

    def read_text(self, name: str) -> DecodedText:
        return decode_text(self.read_bytes(name))

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> "ExportArchive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
