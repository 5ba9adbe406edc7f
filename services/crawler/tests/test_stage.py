"""The crawler stage as a real process over a real broker: crawl requests in, raw_docs events and
raw documents in a SQLite warehouse out; /healthz and /metrics served."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
from kafka import KafkaConsumer

from llmtwin.bus.producer import SyncEventProducer
from llmtwin.domain import CrawlJob, JobState, Platform, Profile
from llmtwin.events import CrawlRequested, RawDocStored, Topic, decode
from llmtwin.infra.process import free_port
from llmtwin.warehouse import Collection, open_warehouse
from llmtwin.warehouse.repository import Repository
from devstack.demo_sources import SAMPLES


def request(url: str, platform: Platform) -> CrawlRequested:
    return CrawlRequested.now("ada", Profile.of("ada", platform, url).id, platform, url)


def distinct_events(bootstrap: str, want: int, timeout: float = 120.0) -> dict[str, RawDocStored]:
    consumer = KafkaConsumer(Topic.RAW_DOCS.value, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             group_id=None, consumer_timeout_ms=1000)
    events: dict[str, RawDocStored] = {}
    deadline = time.monotonic() + timeout
    while len(events) < want and time.monotonic() < deadline:
        for record in consumer:
            event = decode(Topic.RAW_DOCS, record.value)
            events[event.id] = event
    consumer.close()
    return events


async def crawl_jobs(url: str) -> dict[str, CrawlJob]:
    warehouse = open_warehouse(url)
    try:
        return {job.id: job for job in await Repository(warehouse, Collection.CRAWL_JOBS, CrawlJob).list()}
    finally:
        await warehouse.close()


async def raw_document_ids(url: str) -> set[str]:
    warehouse = open_warehouse(url)
    try:
        return await warehouse.ids(Collection.RAW_DOCUMENTS)
    finally:
        await warehouse.close()


def test_crawl_requests_in_raw_documents_and_events_out(bus_settings, serve, tmp_path):
    site = serve(SAMPLES / "blog")
    port = free_port()
    env = {**os.environ, "TWIN_KAFKA_BOOTSTRAP": bus_settings.kafka_bootstrap,
           "TWIN_DATA_DIR": str(bus_settings.data_dir), "TWIN_CRAWLER_PORT": str(port),
           "TWIN_CRAWL_DOWNLOAD_DELAY": "0", "TWIN_CRAWL_AUTOTHROTTLE": "false"}
    log_path = tmp_path / "crawler.log"
    with open(log_path, "wb") as log:
        stage = subprocess.Popen([sys.executable, "-m", "twin_crawler", "serve"], env=env,
                                 stdout=log, stderr=subprocess.STDOUT)
    blog = request(site.url("/index.html"), Platform.BLOG)
    linkedin = request(str(SAMPLES / "linkedin"), Platform.LINKEDIN)
    refused = request("https://www.linkedin.com/in/ada", Platform.LINKEDIN)
    try:
        producer = SyncEventProducer(bus_settings)
        for crawl in (blog, refused, linkedin):
            producer.send(crawl)
        producer.close()
        events = distinct_events(bus_settings.kafka_bootstrap, want=5 + 15)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stage.terminate()
        stage.wait(30)

    assert len(events) == 20, log_path.read_text()[-3000:]
    assert sorted(e.platform.value for e in events.values()).count("blog") == 5
    assert set(events) == asyncio.run(raw_document_ids(bus_settings.warehouse))

    jobs = asyncio.run(crawl_jobs(bus_settings.warehouse))
    assert (jobs[blog.id].state, jobs[blog.id].stored) == (JobState.SUCCEEDED, 5)
    assert (jobs[linkedin.id].state, jobs[linkedin.id].stored, jobs[linkedin.id].skipped) == (JobState.SUCCEEDED, 15, 1)
    assert jobs[refused.id].state is JobState.FAILED and "data export" in jobs[refused.id].errors[0]

    assert health["status"] == "ok"
    assert 'twin_crawler_documents_stored_total{platform="blog"} 5.0' in metrics
    assert 'twin_crawler_failures_total{platform="linkedin"} 1.0' in metrics
