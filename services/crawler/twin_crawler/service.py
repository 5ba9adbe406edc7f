"""The crawler stage: crawl requests in, raw documents (warehouse) and `raw_docs` events out.

Per request it keeps a CrawlJob up to date (state and counts), runs the source in the
crawl worker process, upserts each document and announces only what was inserted or
changed: a re-crawl of an unchanged site emits nothing, a changed page emits an update
under the same id. Profiles with a cadence are re-crawled on schedule by `tick()`.

A forget request empties the raw document and announces it; downstream stages then delete its
chunks and samples. The emptied record stays, so later crawls skip its link (counted as skipped).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from prometheus_client import Counter

from llmtwin.bus.stage import StageSpec
from llmtwin.domain import CrawlJob, JobState, Profile, RawDocument, utcnow
from llmtwin.events import BadMessage, CrawlRequested, Event, ForgetRequested, RawDocStored, Topic
from llmtwin.settings import Settings
from llmtwin.warehouse import Collection, UpsertResult, Warehouse, open_warehouse
from llmtwin.warehouse.repository import Repository

from .config import CrawlConfig
from .items import CrawlRefused, CrawlTarget, Failed, Item, Skipped
from .worker import CrawlWorker

PAGES_FETCHED = Counter("twin_crawler_pages_fetched_total", "Pages, files and export entries the crawler read",
                        ["platform"])
DOCS_STORED = Counter("twin_crawler_documents_stored_total", "Raw documents inserted or changed", ["platform"])
FAILURES = Counter("twin_crawler_failures_total", "Items, and whole crawls, that failed", ["platform"])
FORGOTTEN = Counter("twin_crawler_documents_forgotten_total", "Documents emptied at their author's request",
                    ["platform"])

MAX_ERRORS_KEPT = 50  # a job record stays small; the counts keep the totals
PROGRESS_EVERY = 25  # documents between saves of a running job's counts
ProgressCallback = Callable[[CrawlJob, int], None]


def job_for(request: CrawlRequested) -> CrawlJob:
    return CrawlJob(id=request.id, twin_id=request.twin_id, profile_id=request.profile_id,
                    platform=request.platform, url=request.url)


def stored_event(doc: RawDocument) -> RawDocStored:
    return RawDocStored(id=doc.id, twin_id=doc.twin_id, kind=doc.kind, platform=doc.platform,
                        content_hash=doc.content_hash)


class CrawlerProcessor:
    def __init__(self, warehouse: Warehouse, worker: CrawlWorker) -> None:
        self.warehouse, self.worker = warehouse, worker
        self.jobs = Repository(warehouse, Collection.CRAWL_JOBS, CrawlJob)
        self.raw_docs = Repository(warehouse, Collection.RAW_DOCUMENTS, RawDocument)
        self.profiles = Repository(warehouse, Collection.PROFILES, Profile)

    async def handle(self, events: list[Event]) -> list[Event]:
        emitted: list[Event] = []
        for event in events:
            if isinstance(event, CrawlRequested):
                emitted += await self.crawl(event)
            elif isinstance(event, ForgetRequested):
                emitted.append(await self.forget(event))
            else:
                raise BadMessage(f"the crawler takes crawl and forget requests, not {type(event).__name__}")
        return emitted

    async def forget(self, request: ForgetRequested) -> RawDocStored:
        """Empty the document; announced even when it already was (a request redelivered after a crash)."""
        doc = await self.raw_docs.get(request.document_id)
        if doc is None or doc.twin_id != request.twin_id:
            raise BadMessage(f"the twin {request.twin_id} has no document {request.document_id} to forget")
        if doc.withdrawn_at is None:
            doc = doc.as_withdrawn(utcnow())
            await self.raw_docs.add(doc)
            FORGOTTEN.labels(doc.platform.value).inc()
        return stored_event(doc)

    async def crawl(self, request: CrawlRequested, on_progress: ProgressCallback | None = None) -> list[RawDocStored]:
        """Run one crawl request; returns the events for documents that are new or changed."""
        job = await self.jobs.get(request.id) or job_for(request)
        if job.state in (JobState.SUCCEEDED, JobState.FAILED):
            return []  # a redelivered request: its crawl already ran
        # A redelivered request whose crawl was cut short (the crawler died) may have stored documents
        # it never announced: this run announces the unchanged ones too.
        resumed = job.state is JobState.RUNNING
        job.found = job.stored = job.skipped = job.failed = 0
        await self._save(job, state=JobState.RUNNING)
        try:
            items = await self.worker.run(CrawlTarget(request.twin_id, request.platform, request.url))
        except Exception as exc:  # the target is unusable, or its source broke: this job fails, the stage goes on
            FAILURES.labels(request.platform.value).inc()
            reason = str(exc) if isinstance(exc, CrawlRefused) else f"crawl failed: {type(exc).__name__}: {exc}"
            await self._save(job, state=JobState.FAILED, errors=[reason])
            return []
        events = await self._store(job, items, on_progress, announce_unchanged=resumed)
        if not items:
            await self._save(job, state=JobState.FAILED, errors=[f"nothing to crawl found at {request.url}"])
        else:
            nothing_read = job.failed and not (job.stored or job.skipped)
            await self._save(job, state=JobState.FAILED if nothing_read else JobState.SUCCEEDED)
        return events

    async def _store(self, job: CrawlJob, items: list[Item], on_progress: ProgressCallback | None, *,
                     announce_unchanged: bool = False) -> list[RawDocStored]:
        events: list[RawDocStored] = []
        platform = job.platform.value
        for item in items:
            job.found += 1
            if isinstance(item, Skipped):
                job.skipped += 1
            elif isinstance(item, Failed):
                PAGES_FETCHED.labels(platform).inc()
                FAILURES.labels(platform).inc()
                job.failed += 1
                if len(job.errors) < MAX_ERRORS_KEPT:
                    job.errors.append(f"{item.link}: {item.reason}")
            else:
                PAGES_FETCHED.labels(platform).inc()
                if await self.store_document(item) is UpsertResult.UNCHANGED:
                    job.skipped += 1
                    if announce_unchanged:
                        events.append(stored_event(item))
                else:
                    job.stored += 1
                    DOCS_STORED.labels(platform).inc()
                    events.append(stored_event(item))
            if job.found % PROGRESS_EVERY == 0:
                await self.jobs.add(job)  # so a long crawl's counts can be watched as they grow
            if on_progress is not None:
                on_progress(job, len(items))
        return events

    async def store_document(self, doc: RawDocument) -> UpsertResult:
        """Upsert, but a document whose only change is when it was fetched is unchanged, and one its
        author asked to forget stays forgotten."""
        previous = await self.raw_docs.get(doc.id)
        if previous is not None and (previous.withdrawn_at is not None
                                     or previous.model_copy(update={"fetched_at": doc.fetched_at}) == doc):
            return UpsertResult.UNCHANGED
        return await self.raw_docs.add(doc)

    async def _save(self, job: CrawlJob, *, state: JobState, errors: list[str] | None = None) -> None:
        job.state, job.updated_at = state, utcnow()
        if errors:
            job.errors = errors
        await self.jobs.add(job)

    async def backlog(self) -> AsyncIterator[Event]:
        # Nothing to replay here: unprocessed raw documents are the cleaner's backlog.
        return
        yield

    async def tick(self) -> list[Event]:
        """Crawl requests for profiles whose last crawl is older than their cadence."""
        now, due = utcnow(), []
        for profile in await self.profiles.list():
            if not profile.cadence_minutes:
                continue
            last = await self.jobs.list({"profile_id": profile.id}, order_by="created_at", descending=True, limit=1)
            if last and last[0].created_at > now - timedelta(minutes=profile.cadence_minutes):
                continue
            request = CrawlRequested.now(profile.twin_id, profile.id, profile.platform, profile.url)
            await self.jobs.add(job_for(request))  # queued now: the next period counts from here
            due.append(request)
        return due

    async def close(self) -> None:
        await asyncio.to_thread(self.worker.close)
        await self.warehouse.close()


async def build_processor(settings: Settings) -> CrawlerProcessor:
    return CrawlerProcessor(open_warehouse(settings.warehouse), CrawlWorker(CrawlConfig.from_settings(settings)))


def stage_spec(settings: Settings) -> StageSpec:
    # Schedules are checked every 15 s: cadences are minutes, the warehouse need not be polled each second.
    return StageSpec(name="crawler", source=Topic.CRAWL_REQUESTS, port=settings.crawler_port,
                     build=build_processor, tick_seconds=15.0)
