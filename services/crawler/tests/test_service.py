"""The crawler processor over a real SQLite warehouse: jobs, idempotent storing, events, schedules."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from llmtwin.domain import CrawlJob, JobState, Platform, Profile, RawDocument, utcnow
from llmtwin.events import BadMessage, CrawlRequested, ForgetRequested, RawDocStored
from llmtwin.warehouse import Collection, open_warehouse
from llmtwin.warehouse.repository import Repository
from twin_crawler.config import CrawlConfig
from twin_crawler.items import CrawlTarget, Item
from twin_crawler.service import CrawlerProcessor
from twin_crawler.worker import collect


class ThreadWorker:
    """CrawlWorker's interface on a thread, to keep these tests quick; the stage test uses the process worker."""

    def __init__(self, config: CrawlConfig) -> None:
        self.config = config

    async def run(self, target: CrawlTarget) -> list[Item]:
        return await asyncio.to_thread(collect, target, self.config)

    def close(self) -> None:
        pass


@pytest.fixture
async def processor(tmp_path, config):
    crawler = CrawlerProcessor(open_warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}"), ThreadWorker(config))
    yield crawler
    await crawler.close()


def request(url: str, platform: Platform = Platform.BLOG) -> CrawlRequested:
    profile = Profile.of("ada", platform, url)
    return CrawlRequested.now("ada", profile.id, platform, url)


def stored_total(platform: str) -> float:
    return REGISTRY.get_sample_value("twin_crawler_documents_stored_total", {"platform": platform}) or 0.0


async def test_a_recrawl_stores_nothing_new_and_a_changed_page_is_an_update(processor, serve, blog_copy):
    site = serve(blog_copy)
    url = site.url("/index.html")
    before = stored_total("blog")

    first = await processor.handle([request(url)])
    assert len(first) == 5 and all(isinstance(e, RawDocStored) for e in first)
    assert await processor.raw_docs.count({"twin_id": "ada"}) == 5
    assert stored_total("blog") - before == 5

    again = request(url)
    assert await processor.handle([again]) == []  # unchanged site: nothing emitted
    job = await processor.jobs.get(again.id)
    assert (job.state, job.found, job.stored, job.skipped, job.failed) == (JobState.SUCCEEDED, 5, 0, 5, 0)

    page = blog_copy / "posts" / "idempotent-pipelines.html"
    page.write_text(page.read_text().replace("It is a slot machine.", "It is a slot machine with a logo."))
    changed = await processor.handle([request(url)])
    [update] = changed
    previous = next(e for e in first if e.id == update.id)
    assert update.content_hash != previous.content_hash
    stored = await processor.raw_docs.get(update.id)
    assert "slot machine with a logo" in stored.content and stored.link.endswith("/posts/idempotent-pipelines.html")
    assert await processor.raw_docs.count() == 5

    redelivered = CrawlRequested.model_validate_json(again.encode())
    assert await processor.handle([redelivered]) == []  # its job already ran
    assert (await processor.jobs.get(again.id)).updated_at == job.updated_at


async def test_a_crawl_cut_short_announces_what_it_had_stored_unannounced_when_redelivered(processor, serve,
                                                                                          blog_copy):
    url = serve(blog_copy).url("/index.html")
    cut_short = request(url)
    announced = await processor.handle([cut_short])
    # As if the crawler died after storing the documents, before the stage sent their events.
    job = await processor.jobs.get(cut_short.id)
    await processor.jobs.add(job.model_copy(update={"state": JobState.RUNNING}))

    redelivered = CrawlRequested.model_validate_json(cut_short.encode())
    again = await processor.handle([redelivered])
    assert sorted(e.id for e in again) == sorted(e.id for e in announced) and len(again) == 5
    job = await processor.jobs.get(cut_short.id)
    assert (job.state, job.found, job.stored, job.skipped) == (JobState.SUCCEEDED, 5, 0, 5)


async def test_a_refused_crawl_fails_its_job_with_the_reason(processor):
    refused = request("https://www.linkedin.com/in/ada", Platform.LINKEDIN)
    assert await processor.handle([refused]) == []
    job = await processor.jobs.get(refused.id)
    assert job.state is JobState.FAILED and "upload your data export" in job.errors[0]


async def test_failed_items_are_counted_and_a_crawl_where_everything_failed_fails(processor, serve, tmp_path):
    root = tmp_path / "site"
    (root / "posts").mkdir(parents=True)
    (root / "posts" / "ok.html").write_text("<html><body><article>" + "<p>Real words in a real post.</p>" * 20
                                            + "</article></body></html>")
    items = "".join(f"<item><link>/posts/{name}.html</link></item>" for name in ("ok", "missing"))
    (root / "feed.xml").write_text(f"<?xml version='1.0'?><rss><channel>{items}</channel></rss>")
    (root / "only-missing.xml").write_text("<?xml version='1.0'?><rss><channel>"
                                           "<item><link>/posts/missing.html</link></item></channel></rss>")
    site = serve(root)

    partly = request(site.url("/feed.xml"))
    assert len(await processor.handle([partly])) == 1
    job = await processor.jobs.get(partly.id)
    assert (job.state, job.found, job.stored, job.failed) == (JobState.SUCCEEDED, 2, 1, 1)
    assert job.errors == [f"{site.url('/posts/missing.html')}: HTTP 404"]

    nothing = request(site.url("/only-missing.xml"))
    assert await processor.handle([nothing]) == []
    assert (await processor.jobs.get(nothing.id)).state is JobState.FAILED

    (root / "empty.xml").write_text("<?xml version='1.0'?><rss><channel><title>No posts yet</title></channel></rss>")
    empty = request(site.url("/empty.xml"))
    assert await processor.handle([empty]) == []
    job = await processor.jobs.get(empty.id)
    assert job.state is JobState.FAILED and job.errors == [f"nothing to crawl found at {site.url('/empty.xml')}"]


async def test_a_forgotten_document_loses_its_text_and_a_recrawl_does_not_bring_it_back(processor, serve,
                                                                                       blog_copy):
    url = serve(blog_copy).url("/index.html")
    first = await processor.handle([request(url)])
    links = {doc.id: doc.link for doc in await processor.raw_docs.list()}
    post = next(e for e in first if links[e.id].endswith("/idempotent-pipelines.html"))
    title = (await processor.raw_docs.get(post.id)).title

    [announced] = await processor.handle([ForgetRequested.now("ada", post.id)])
    forgotten = await processor.raw_docs.get(post.id)
    assert announced.id == post.id and announced.content_hash == forgotten.content_hash != post.content_hash
    assert forgotten.content == "" and forgotten.metadata == {} and forgotten.withdrawn_at is not None
    assert forgotten.title == title  # the page still says what was forgotten

    again = request(url)
    assert await processor.handle([again]) == []  # the page is still online: it is skipped, not collected
    assert (await processor.raw_docs.get(post.id)) == forgotten
    job = await processor.jobs.get(again.id)
    assert (job.found, job.stored, job.skipped) == (5, 0, 5)
    # A redelivered request changes nothing and is announced again, for a stage that missed it.
    [again_announced] = await processor.handle([ForgetRequested.now("ada", post.id)])
    assert (again_announced.id, again_announced.content_hash) == (announced.id, announced.content_hash)
    assert (await processor.raw_docs.get(post.id)) == forgotten


async def test_forgetting_a_document_of_another_twin_or_none_is_refused(processor):
    doc = RawDocument.create(twin_id="grace", platform=Platform.BLOG, kind="article", link="https://g.example/p",
                             content="Grace's text")
    await processor.store_document(doc)
    with pytest.raises(BadMessage, match="the twin ada has no document"):
        await processor.handle([ForgetRequested.now("ada", doc.id)])
    with pytest.raises(BadMessage, match="no document nope"):
        await processor.handle([ForgetRequested.now("ada", "nope")])
    assert (await processor.raw_docs.get(doc.id)).content == "Grace's text"


async def test_only_crawl_and_forget_requests_are_accepted(processor):
    with pytest.raises(BadMessage, match="not RawDocStored"):
        await processor.handle([RawDocStored(id="x", twin_id="ada", kind="post", platform="blog", content_hash="h")])


async def test_tick_requests_crawls_for_profiles_whose_cadence_has_passed(processor):
    profiles = Repository(processor.warehouse, Collection.PROFILES, Profile)
    never = Profile.of("ada", Platform.BLOG, "https://ada.example/never-crawled", cadence_minutes=60)
    recent = Profile.of("ada", Platform.BLOG, "https://ada.example/recent", cadence_minutes=60)
    stale = Profile.of("ada", Platform.BLOG, "https://ada.example/stale", cadence_minutes=60)
    on_request = Profile.of("ada", Platform.BLOG, "https://ada.example/on-request")
    for profile in (never, recent, stale, on_request):
        await profiles.add(profile)
    for profile, age in ((recent, timedelta(minutes=30)), (stale, timedelta(hours=2))):
        await processor.jobs.add(CrawlJob(id=f"job-{profile.id}", twin_id="ada", profile_id=profile.id,
                                          platform=profile.platform, url=profile.url, state=JobState.SUCCEEDED,
                                          created_at=utcnow() - age))

    due = await processor.tick()
    assert sorted(r.url for r in due) == [never.url, stale.url]
    assert all(isinstance(r, CrawlRequested) and r.profile_id in {never.id, stale.id} for r in due)
    queued = [await processor.jobs.get(r.id) for r in due]
    assert all(job is not None and job.state is JobState.QUEUED for job in queued)
    assert await processor.tick() == []  # the queued jobs start the next period


async def test_a_document_whose_only_change_is_the_fetch_time_is_unchanged(processor):
    doc = RawDocument.create(twin_id="ada", platform=Platform.BLOG, kind="article", link="https://a.example/p",
                             content="text", title="T")
    assert (await processor.store_document(doc)).value == "inserted"
    refetched = doc.model_copy(update={"fetched_at": utcnow() + timedelta(hours=1)})
    assert (await processor.store_document(refetched)).value == "unchanged"
    retitled = refetched.model_copy(update={"title": "T2"})
    assert (await processor.store_document(retitled)).value == "updated"
