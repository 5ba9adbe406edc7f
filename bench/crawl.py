"""Crawling a blog on loopback with politeness off: how fast pages come in, what share of that is
extraction, and whether a re-crawl is idempotent.

The site is generated: ARTICLES blog-shaped pages (navigation, header, an article with headings,
paragraphs, lists and code, an aside, a footer), an index announcing an RSS feed that lists them
all, and a robots.txt. It is served by `python -m http.server` in its own process, so the server
does not share the crawl's interpreter lock.

Baselines, measured in the same run: the web source crawling in this process (the worker-process
and service-path figures are compared with it), and the in-process crawl time (the share of it
spent in `extract_article`). Idempotency goes through `CrawlerProcessor` with its real crawl
worker process and a SQLite warehouse: an unchanged site emits nothing, one changed page emits
exactly one update.
"""
from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

from llmtwin.domain import Platform, Profile, RawDocument
from llmtwin.events import CrawlRequested
from llmtwin.infra.process import free_port, port_open
from llmtwin.warehouse import open_warehouse
from twin_crawler.config import CrawlConfig
from twin_crawler.extract import extract_article
from twin_crawler.items import CrawlTarget
from twin_crawler.service import CrawlerProcessor
from twin_crawler.worker import CrawlWorker, collect

from .report import Result

ARTICLES = 200
TWIN = "bench"
FIRST_DAY = datetime(2023, 1, 2, 9, 0, tzinfo=UTC)
WORDS = (
    "data", "pipeline", "model", "training", "batch", "schema", "column", "file", "event", "broker",
    "retry", "offset", "replay", "checkpoint", "lineage", "dataset", "feature", "vector", "index",
    "query", "latency", "budget", "cache", "queue", "worker", "process", "thread", "commit",
    "release", "review", "test", "failure", "alert", "metric", "dashboard", "contract", "version",
    "small", "large", "fast", "slow", "careful", "simple", "honest", "boring", "reliable", "the",
    "a", "of", "to", "in", "on", "for", "with", "and", "but", "because", "when", "every", "each",
    "most", "some", "one", "two", "three", "rows", "values", "errors", "people", "teams",
)
CODE = '''def load(path):
    """Read one export; every bad row is reported, not raised."""
    rows, errors = [], []

    for line, raw in enumerate(path.read_text().splitlines(), start=2):
        try:
            rows.append(parse(raw))
        except ValueError as exc:
            errors.append((line, str(exc)))
    return rows, errors
'''
SITE_HEADER = """<header class="site-header">
  <a class="brand" href="/index.html">Bench Writer &middot; Notes on pipelines</a>
  <nav class="site-nav"><a href="/index.html">Home</a> <a href="/index.html#archive">Archive</a>
    <a href="/about.html">About</a> <a href="/feed.xml">RSS</a></nav>
</header>"""
SITE_FOOTER = """<footer class="site-footer">
  <p>&copy; 2024 Bench Writer. Subscribe via RSS.</p>
  <p>Built with plain HTML. <a href="/about.html">About this site</a></p>
</footer>"""


def slug(number: int) -> str:
    return f"post-{number:03d}"


def published(number: int) -> datetime:
    return FIRST_DAY + timedelta(days=2 * number, minutes=7 * number)


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 22))]
    return " ".join(words).capitalize() + "."


def paragraph(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(3, 6)))


def article_page(number: int, edited: bool = False) -> tuple[str, str]:
    """(title, html) of one article, the same every time for a number; `edited` adds one sentence."""
    rng = random.Random(number)
    title = f"{sentence(rng)[:-1]} ({number})"
    opening = paragraph(rng) + (" This sentence was added after publication." if edited else "")
    sections = [f"<p>{opening}</p>"]
    for section in range(rng.randint(4, 6)):
        sections.append(f"<h2>{escape(sentence(rng)[:-1])}</h2>")
        sections += [f"<p>{paragraph(rng)}</p>" for _ in range(rng.randint(2, 4))]
        if section == 1:
            tag = rng.choice(("ul", "ol"))
            items = "".join(f"<li>{sentence(rng)}</li>" for _ in range(rng.randint(3, 5)))
            sections.append(f"<{tag}>{items}</{tag}>")
        if section == 2 and number % 2 == 0:
            sections.append(f'<pre><code class="language-python">{escape(CODE)}</code></pre>')
    date = published(number).isoformat()
    body = "\n".join(sections)
    html = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{escape(title)} | Bench Writer</title>
  <meta name="author" content="Bench Writer">
  <link rel="alternate" type="application/rss+xml" title="Bench Writer" href="/feed.xml">
  <meta property="article:published_time" content="{date}">
  <link rel="canonical" href="/posts/{slug(number)}.html">
</head>
<body>
{SITE_HEADER}
<main>
  <article>
    <h1>{escape(title)}</h1>
    <p class="byline">By Bench Writer &middot; <time datetime="{date}">{date[:10]}</time></p>
{body}
  </article>
  <aside class="related"><h3>Keep reading</h3><a href="/index.html#archive">All articles</a></aside>
</main>
{SITE_FOOTER}
</body>
</html>
"""
    return title, html


def write_site(root: Path, articles: int) -> list[Path]:
    """The blog under `root`; returns the article pages."""
    (root / "posts").mkdir(parents=True)
    pages, listing, items = [], [], []
    for number in range(articles):
        title, html = article_page(number)
        page = root / "posts" / f"{slug(number)}.html"
        page.write_text(html)
        pages.append(page)
        link = f"/posts/{slug(number)}.html"
        listing.append(f'<li><a href="{link}">{escape(title)}</a></li>')
        items.append(f"<item><title>{escape(title)}</title><link>{link}</link>"
                     f"<pubDate>{format_datetime(published(number))}</pubDate></item>")
    (root / "index.html").write_text(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Home | Bench Writer</title>'
        '<link rel="alternate" type="application/rss+xml" title="Bench Writer" href="/feed.xml"></head>'
        f'<body>{SITE_HEADER}<main><section id="archive"><h2>Articles</h2><ul class="post-list">'
        f'{"".join(listing)}</ul></section></main>{SITE_FOOTER}</body></html>')
    (root / "feed.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Bench Writer</title>'
        f'<link>/index.html</link>{"".join(items)}</channel></rss>')
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /drafts/\n")
    return pages


@contextmanager
def served(root: Path) -> Iterator[str]:
    """The folder over HTTP on loopback, from its own process; yields the base URL."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the fixture site's HTTP server did not start on port {port}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def documents(items: list) -> list[RawDocument]:
    return [i for i in items if isinstance(i, RawDocument)]


def timed(work, *args):
    started = time.perf_counter()
    value = work(*args)
    return value, time.perf_counter() - started


async def crawl_through_worker(config: CrawlConfig, target: CrawlTarget) -> list:
    worker = CrawlWorker(config)
    try:
        return await worker.run(target)
    finally:
        worker.close()


async def idempotency(config: CrawlConfig, warehouse_url: str, url: str, site: Path,
                      changed_number: int) -> tuple[int, float, int, int, bool]:
    """(documents on the first crawl, its seconds, events on an unchanged re-crawl, events after one
    page changed, whether that one event is an update of the changed page's document)."""
    processor = CrawlerProcessor(open_warehouse(warehouse_url), CrawlWorker(config))
    profile = Profile.of(TWIN, Platform.BLOG, url)

    async def crawl() -> list:
        return await processor.handle([CrawlRequested.now(TWIN, profile.id, Platform.BLOG, url)])

    try:
        started = time.perf_counter()
        first = await crawl()
        first_seconds = time.perf_counter() - started
        again = await crawl()
        page = f"posts/{slug(changed_number)}.html"
        (site / page).write_text(article_page(changed_number, edited=True)[1])
        changed = await crawl()
        changed_link = f"{url.rsplit('/', 1)[0]}/{page}"
        [changed_doc] = await processor.raw_docs.list({"link": changed_link})
    finally:
        await processor.close()
    same_document = [e.id for e in changed] == [changed_doc.id] and changed_doc.id in {e.id for e in first}
    return len(first), first_seconds, len(again), len(changed), same_document


def run() -> list[Result]:
    # Politeness off: no delay, no autothrottle; the page cap leaves room for the index and the feed.
    config = CrawlConfig(user_agent="LLMTwinBot-bench/0.1", download_delay=0.0, autothrottle=False,
                         max_pages=ARTICLES + 10, retry_backoff=0.05, timeout_seconds=30.0)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        pages = write_site(site, ARTICLES)
        with served(site) as base:
            url = f"{base}/index.html"
            target = CrawlTarget(TWIN, Platform.BLOG, url)
            in_process, in_process_seconds = timed(collect, target, config)
            via_worker, worker_seconds = timed(asyncio.run, crawl_through_worker(config, target))

            # Extraction alone, on the very pages the crawl fetched, after the crawl warmed it up.
            bodies = [(page.read_text(), f"{base}/posts/{page.name}") for page in pages]
            started = time.perf_counter()
            for html, link in bodies:
                extract_article(html, link)
            extract_seconds = time.perf_counter() - started

            first, first_seconds, again, changed, same_document = asyncio.run(idempotency(
                config, f"sqlite:///{Path(tmp) / 'warehouse.db'}", url, site, changed_number=7))

    fetched, fetched_by_worker = len(documents(in_process)), len(documents(via_worker))
    in_process_rate = fetched / in_process_seconds
    per_second = "in-process pages/s"
    return [
        Result("crawl", f"pages/s, source in-process ({fetched}/{ARTICLES})", in_process_rate, "pages/s"),
        Result("crawl", f"pages/s, worker process incl. spawn ({fetched_by_worker}/{ARTICLES})",
               fetched_by_worker / worker_seconds, "pages/s", baseline=in_process_rate, baseline_label=per_second),
        Result("crawl", f"pages/s, CrawlerProcessor + SQLite ({first}/{ARTICLES})", first / first_seconds, "pages/s",
               baseline=in_process_rate, baseline_label=per_second),
        Result("crawl", "extract_article per page", 1000 * extract_seconds / len(bodies), "ms/page"),
        Result("crawl", "extraction share of the crawl", extract_seconds, "s",
               baseline=in_process_seconds, baseline_label="in-process crawl s"),
        Result("crawl", "unchanged re-crawl: raw_docs emitted", again, "docs",
               baseline=first, baseline_label="first crawl docs", goal="0"),
        Result("crawl", "one page changed: raw_docs emitted" + ("" if same_document else " (NOT that page's id)"),
               changed, "docs", baseline=1, baseline_label="pages changed", goal="exactly 1"),
    ]
