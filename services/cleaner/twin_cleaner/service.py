"""The cleaner stage: raw_docs -> (warehouse: clean documents) -> clean_docs.

For each RawDocStored it loads the raw document, cleans it (cleaning.py), marks it as a
near-duplicate of an earlier clean document of the same twin when it is one
(near_duplicates.py), stores the CleanDocument under the raw document's id and emits
CleanDocStored.

Near-duplicates are stored and forwarded WITH `duplicate_of` set, and downstream stages
skip them (the embedder deletes any chunks they had): forwarding, rather than dropping
the message, lets a document that turns into a duplicate retract what it left downstream.
A document its author withdrew (emptied by the crawler) goes the same way, `withdrawn` set.

CleanDocStored is emitted for every handled message, changed or not: a batch retried after
a partial failure finds its first documents already stored, and must still announce them.
Downstream stages compare content hashes, so a repeated notification costs a lookup.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from llmtwin.domain import (
    CleanDocument,
    DocumentKind,
    Profile,
    RawDocument,
    Twin,
    content_hash,
)
from llmtwin.events import BadMessage, CleanDocStored, Event, RawDocStored
from llmtwin.settings import Settings
from llmtwin.warehouse import Collection, UpsertResult, Warehouse, open_warehouse
from llmtwin.warehouse.repository import Repository
from prometheus_client import Counter

from .cleaning import CleaningPolicy, clean_text
from .near_duplicates import NearDuplicateIndex, minhash

log = logging.getLogger(__name__)

CLEANED = Counter("twin_cleaner_documents_total", "Documents cleaned, by kind and outcome", ["kind", "outcome"])
CHARS_REMOVED = Counter("twin_cleaner_chars_removed_total", "Characters removed by cleaning", ["kind"])


class Cleaner:
    """The cleaner's Processor (see llmtwin.bus.stage)."""

    def __init__(self, warehouse: Warehouse, *, scrub_pii: bool, scrub_handles: bool,
                 near_duplicate_threshold: float) -> None:
        self.warehouse = warehouse
        self.raw = Repository(warehouse, Collection.RAW_DOCUMENTS, RawDocument)
        self.clean = Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument)
        self.twins = Repository(warehouse, Collection.TWINS, Twin)
        self.profiles = Repository(warehouse, Collection.PROFILES, Profile)
        self.scrub_pii, self.scrub_handles = scrub_pii, scrub_handles
        self.threshold = near_duplicate_threshold
        # Signatures of each twin's original documents, code and prose apart; kept in step
        # with the warehouse (other instances may have written since) before each use.
        self._indexes: dict[tuple[str, bool], NearDuplicateIndex] = {}
        self._seen: set[str] = set()  # clean document ids already in the indexes (or known duplicates)

    @classmethod
    def from_settings(cls, settings: Settings, warehouse: Warehouse) -> Cleaner:
        return cls(warehouse, scrub_pii=settings.pii_scrub, scrub_handles=settings.pii_scrub_handles,
                   near_duplicate_threshold=settings.near_duplicate_threshold)

    async def handle(self, events: list[Event]) -> list[Event]:
        raws: list[RawDocument] = []
        # Load everything first: a missing document fails the batch before anything is written.
        for event in events:
            if not isinstance(event, RawDocStored):
                raise BadMessage(f"the cleaner takes raw_docs messages, got {type(event).__name__}")
            raw = await self.raw.get(event.id)
            if raw is None:
                raise BadMessage(f"raw document {event.id} is not in the warehouse")
            raws.append(raw)
        raws += await self._copies_of_withdrawn(raws)
        policies = {twin_id: await self._policy(twin_id) for twin_id in {raw.twin_id for raw in raws}}
        for twin_id in policies:
            await self._sync_index(twin_id)
        emitted: list[Event] = []
        for raw in raws:
            clean = await asyncio.to_thread(self._clean, raw, policies[raw.twin_id])
            result = await self.clean.add(clean)
            CLEANED.labels(raw.kind.value, outcome(clean, result)).inc()
            if result is not UpsertResult.UNCHANGED:
                CHARS_REMOVED.labels(raw.kind.value).inc(max(0, len(raw.content) - len(clean.content)))
            emitted.append(CleanDocStored(id=clean.id, twin_id=clean.twin_id, kind=clean.kind,
                                          platform=clean.platform, content_hash=clean.content_hash))
        return emitted

    async def _copies_of_withdrawn(self, raws: list[RawDocument]) -> list[RawDocument]:
        """Documents folded in as near-duplicates of a withdrawn one: cleaned again after it, so that
        a copy the person did not withdraw (a cross-post) is learned in its place."""
        withdrawn = [raw.id for raw in raws if raw.withdrawn_at is not None]
        if not withdrawn:
            return []
        copies = await self.clean.ids({"duplicate_of": withdrawn})
        in_batch = {raw.id for raw in raws}
        return await self.raw.list({"id": sorted(copies - in_batch)}, order_by="fetched_at") if copies else []

    def _clean(self, raw: RawDocument, policy: CleaningPolicy) -> CleanDocument:
        """Clean and look for an earlier near-duplicate (CPU work: runs off the event loop)."""
        index = self._index(raw.twin_id, raw.kind)
        index.discard(raw.id)
        withdrawn = raw.withdrawn_at is not None
        text = "" if withdrawn else clean_text(raw.content, raw.kind, policy)
        original = None
        if not withdrawn:  # a withdrawn text is no one's original
            signature = minhash(text)
            original = index.original_of(raw.id, signature)
            if original is None:
                index.add(raw.id, signature)
        clean = CleanDocument(id=raw.id, twin_id=raw.twin_id, platform=raw.platform, kind=raw.kind,
                              link=raw.link, title=raw.title, content=text, content_hash=content_hash(text),
                              raw_hash=raw.content_hash or content_hash(raw.content), duplicate_of=original,
                              withdrawn=withdrawn)
        self._seen.add(clean.id)
        return clean

    def _index(self, twin_id: str, kind: DocumentKind) -> NearDuplicateIndex:
        key = (twin_id, kind is DocumentKind.CODE)
        if key not in self._indexes:
            self._indexes[key] = NearDuplicateIndex(self.threshold)
        return self._indexes[key]

    async def _sync_index(self, twin_id: str) -> None:
        """Index the twin's clean documents that this process has not seen (written by another, or before)."""
        known = await self.clean.ids({"twin_id": twin_id})
        unseen = sorted(known - self._seen)
        if not unseen:
            return
        docs = await self.clean.list({"id": unseen})
        signatures = await asyncio.to_thread(lambda: [(doc, minhash(doc.content)) for doc in docs])
        for doc, signature in signatures:
            if doc.feeds_features:
                self._index(doc.twin_id, doc.kind).add(doc.id, signature)
            self._seen.add(doc.id)

    async def _policy(self, twin_id: str) -> CleaningPolicy:
        return CleaningPolicy(scrub_emails=self.scrub_pii, scrub_phones=self.scrub_pii,
                              scrub_handles=self.scrub_pii and self.scrub_handles,
                              own_handles=frozenset(await self._own_handles(twin_id)))

    async def _own_handles(self, twin_id: str) -> set[str]:
        """The person's own names: the twin's id and name, and the account names in its profile URLs."""
        handles = {twin_id}
        twin = await self.twins.get(twin_id)
        if twin is not None:
            handles.add(twin.name)
        for profile in await self.profiles.list({"twin_id": twin_id}):
            handles.update(account_names(profile.url))
        return handles

    async def backlog(self) -> AsyncIterator[Event]:
        """Raw documents whose clean version is missing or was made from other raw content."""
        cleaned = {doc.id: doc.raw_hash for doc in await self.clean.list()}
        for raw in await self.raw.list(order_by="fetched_at"):
            if cleaned.get(raw.id) != raw.content_hash:
                yield RawDocStored(id=raw.id, twin_id=raw.twin_id, kind=raw.kind, platform=raw.platform,
                                   content_hash=raw.content_hash)

    async def close(self) -> None:
        await self.warehouse.close()


def outcome(clean: CleanDocument, stored: UpsertResult) -> str:
    if clean.withdrawn:
        return "withdrawn"
    return "duplicate" if clean.duplicate_of else stored.value


def account_names(url: str) -> set[str]:
    """Likely account names in a profile URL: path parts ('in/ada-l', '@ada') and a blog's subdomain."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    names = {segment.lstrip("@") for segment in parts.path.split("/") if len(segment.lstrip("@")) >= 3}
    labels = (parts.hostname or "").split(".")
    if len(labels) > 2 and labels[0] != "www":
        names.add(labels[0])  # ada.substack.com
    return names


async def build_cleaner(settings: Settings) -> Cleaner:
    return Cleaner.from_settings(settings, open_warehouse(settings.warehouse))
