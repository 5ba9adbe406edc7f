"""What every source yields: standardised raw documents, plus the items it skipped or failed on.

A source never raises for one bad item: it yields `Failed` and goes on. It raises
`CrawlRefused` only when the whole target is unusable (a hostile archive, a bad URL).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, Union

from llmtwin.domain import Platform, RawDocument


@dataclass(frozen=True)
class CrawlTarget:
    twin_id: str
    platform: Platform
    url: str


@dataclass(frozen=True)
class Skipped:
    """Left out on purpose (a lock file, a reshare without text, the page cap)."""

    link: str
    reason: str


@dataclass(frozen=True)
class Failed:
    """Could not be read; the rest of the crawl goes on."""

    link: str
    reason: str


Item = Union[RawDocument, Skipped, Failed]


class CrawlRefused(ValueError):
    """The whole target cannot be crawled; the message says why, for the person who asked."""


class Source(Protocol):
    """One kind of place a twin's writing comes from. Runs in a worker process: it may block."""

    def collect(self, target: CrawlTarget) -> Iterator[Item]: ...
