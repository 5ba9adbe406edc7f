"""Blogs, Medium and Substack pages: find the feed, list its articles, fetch and extract each.

Scrapy does the fetching, without a Twisted reactor (`TWISTED_REACTOR_ENABLED=False`, on
its own asyncio loop) and only ever inside the crawl worker process, never on a
service's event loop. Politeness is Scrapy's: robots.txt obeyed, a per-domain delay
(autothrottled), a clear user agent, retries (with the backoff below), and the page
and depth caps. A site without a feed is walked by its same-site links instead. A Substack
publication's older posts, past its feed's latest ~20, come from its archive API.
"""
from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.exceptions import IgnoreRequest
from scrapy.spidermiddlewares.httperror import HttpError

from llmtwin.addresses import is_public_address
from llmtwin.domain import DocumentKind, Platform, RawDocument

from ..config import CrawlConfig
from ..extract import (MIN_ARTICLE_CHARS, ExtractionError, FeedEntry, discover_feeds, discover_links,
                       extract_article, looks_like_feed, parse_date, parse_feed)
from ..items import CrawlTarget, Failed, Item, Skipped

HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_PAGE_BYTES = 10 * 1024 * 1024
# Substack's feed holds only the latest ~20 posts; its archive API lists the older ones, a page at a time.
SUBSTACK_ARCHIVE_PAGE = 12


def feed_candidates(url: str, platform: Platform) -> list[str]:
    """Where feeds usually live when a page does not announce one."""
    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}"
    guesses = []
    segments = [s for s in parts.path.split("/") if s]
    if platform is Platform.MEDIUM and segments and segments[0].startswith("@"):
        guesses.append(f"{root}/feed/{segments[0]}")  # medium.com/feed/@user
    guesses += [f"{root}/feed", f"{root}/feed.xml", f"{root}/rss.xml", f"{root}/atom.xml"]
    return list(dict.fromkeys(guesses))


@lru_cache(maxsize=256)
def is_private_host(host: str) -> bool:
    """Loopback, private, link-local: places a public crawler must not be pointed at."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False  # unresolvable: the fetch fails with its own reason
    return any(not is_public_address(a) for a in addresses)


def failure_reason(failure: Any) -> str:
    exc = failure.value
    if isinstance(exc, HttpError):
        return f"HTTP {exc.response.status}"
    if isinstance(exc, IgnoreRequest):
        return "disallowed by robots.txt" if "robots" in str(exc).lower() or not str(exc) else str(exc)
    return f"{type(exc).__name__}: {exc}"


class PrivateHostGuard:
    """Refuses every request to a private or loopback host unless allowed: `SiteSpider._page` checks
    the pages the spider asks for, but Scrapy follows redirects (and fetches robots.txt) on its own."""

    def __init__(self, allow_private_hosts: bool) -> None:
        self.allow_private_hosts = allow_private_hosts

    @classmethod
    def from_crawler(cls, crawler: Any) -> "PrivateHostGuard":
        return cls(crawler.settings.getbool("TWIN_ALLOW_PRIVATE_HOSTS"))

    def process_request(self, request: scrapy.Request) -> None:
        host = urlsplit(request.url).hostname
        if not self.allow_private_hosts and host and is_private_host(host):
            raise IgnoreRequest(f"refused: {host} is a private or loopback address")


class RetryBackoff:
    """Waits before each retry, twice as long each time (Scrapy's own retries do not wait)."""

    def __init__(self, base: float) -> None:
        self.base = base

    @classmethod
    def from_crawler(cls, crawler: Any) -> "RetryBackoff":
        return cls(crawler.settings.getfloat("TWIN_RETRY_BACKOFF"))

    async def process_request(self, request: scrapy.Request) -> None:
        retries = request.meta.get("retry_times", 0)
        if retries and self.base > 0:
            await asyncio.sleep(self.base * 2 ** (retries - 1))


def scrapy_settings(config: CrawlConfig) -> dict[str, Any]:
    return {
        "TWISTED_REACTOR_ENABLED": False,
        "USER_AGENT": config.user_agent,
        "ROBOTSTXT_OBEY": True,
        "DOWNLOAD_DELAY": config.download_delay,
        "AUTOTHROTTLE_ENABLED": config.autothrottle,
        "AUTOTHROTTLE_START_DELAY": max(config.download_delay, 0.1),
        "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
        "RETRY_ENABLED": config.retry_times > 0,
        "RETRY_TIMES": config.retry_times,
        "TWIN_RETRY_BACKOFF": config.retry_backoff,
        "TWIN_ALLOW_PRIVATE_HOSTS": config.allow_private_hosts,
        # The guard runs first, so no redirect hop reaches a private address.
        "DOWNLOADER_MIDDLEWARES": {f"{__name__}.PrivateHostGuard": 50, f"{__name__}.RetryBackoff": 560},
        "DOWNLOAD_TIMEOUT": config.timeout_seconds,
        "DOWNLOAD_MAXSIZE": MAX_PAGE_BYTES,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
    }


class SiteSpider(scrapy.Spider):
    """Collects `Item`s into `self.items`; every page that fails becomes a `Failed` with its reason."""

    name = "twin-site"

    def __init__(self, target: CrawlTarget, config: CrawlConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target, self.config = target, config
        self.items: list[Item] = []
        self.pages_left = config.max_pages
        self.scheduled: set[str] = set()
        self.site = urlsplit(target.url).netloc
        self.start_links: list[str] = []

    # -- requests ----------------------------------------------------------------------------
    def _page(self, url: str, callback: Any, **meta: Any) -> scrapy.Request | None:
        """A request for one page, or None (recorded as failed or skipped) when it may not be fetched."""
        if url in self.scheduled:
            return None
        self.scheduled.add(url)
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError as exc:
            self.items.append(Failed(url, f"malformed URL: {exc}"))
            return None
        if parts.scheme not in ("http", "https") or not host:
            self.items.append(Failed(url, "malformed or unsupported URL"))
            return None
        if not self.config.allow_private_hosts and is_private_host(host):
            self.items.append(Failed(url, "refused: the host is a private or loopback address"))
            return None
        if self.pages_left <= 0:
            self.items.append(Skipped(url, f"page cap reached ({self.config.max_pages} pages)"))
            return None
        self.pages_left -= 1
        try:
            return scrapy.Request(url, callback=callback, errback=self.on_page_error, meta=meta, dont_filter=True)
        except ValueError as exc:
            self.items.append(Failed(url, f"malformed URL: {exc}"))
            return None

    def _probe(self, candidates: list[str]) -> scrapy.Request | None:
        """A request for the first of the candidate feed URLs, or None when none is left."""
        if candidates:
            return scrapy.Request(candidates[0], callback=self.on_feed, errback=self.on_probe_error,
                                  meta={"candidates": candidates[1:]}, dont_filter=True)
        return None

    async def start(self):
        request = self._page(self.target.url, self.on_start, hops=0)
        if request is not None:
            yield request

    # -- callbacks ---------------------------------------------------------------------------
    def on_start(self, response: scrapy.http.Response):
        if looks_like_feed(response.body):
            yield from self._follow_feed(response)
            return
        if not self._is_html(response):
            return
        html = response.text
        self.start_links = discover_links(html, response.url)
        announced = discover_feeds(html, response.url)
        probe = self._probe(announced + [c for c in feed_candidates(response.url, self.target.platform)
                                         if c not in announced and c != response.url])
        if probe is not None:
            yield probe

    def on_feed(self, response: scrapy.http.Response):
        if looks_like_feed(response.body):
            yield from self._follow_feed(response)
        else:
            yield from self._next_probe(response.meta["candidates"])

    def on_probe_error(self, failure: Any):
        # A missing feed is not a failure of the crawl: try the next place.
        yield from self._next_probe(failure.request.meta["candidates"])

    def _next_probe(self, candidates: list[str]):
        probe = self._probe(candidates)
        if probe is not None:
            yield probe
        else:
            yield from self._follow_links(self.start_links, hops=1)

    def _follow_feed(self, response: scrapy.http.Response):
        try:
            entries = parse_feed(response.body, response.url)
        except ExtractionError as exc:
            self.items.append(Failed(response.url, str(exc)))
            return
        for entry in entries:
            request = self._page(entry.link, self.on_article, entry=entry)
            if request is not None:
                yield request
        if self.target.platform is Platform.SUBSTACK:
            parts = urlsplit(response.url)
            yield self._archive_page(f"{parts.scheme}://{parts.netloc}", offset=0)

    def _archive_page(self, root: str, offset: int) -> scrapy.Request:
        url = f"{root}/api/v1/archive?sort=new&offset={offset}&limit={SUBSTACK_ARCHIVE_PAGE}"
        return scrapy.Request(url, callback=self.on_archive, errback=self.on_archive_error,
                              meta={"root": root, "offset": offset}, dont_filter=True)

    def on_archive(self, response: scrapy.http.Response):
        """One page of a Substack archive listing: the posts the feed no longer holds."""
        try:
            posts = json.loads(response.body)
        except ValueError:
            return  # not a Substack archive after all: the feed's posts are all there is
        if not isinstance(posts, list):
            return
        for post in posts:
            link = post.get("canonical_url") if isinstance(post, dict) else None
            if isinstance(link, str) and link:
                entry = FeedEntry(link, str(post.get("title") or ""), parse_date(str(post.get("post_date") or "")))
                request = self._page(link, self.on_article, entry=entry)
                if request is not None:
                    yield request
        # An empty page is the end (a host may send fewer than asked for); listing beyond max_pages
        # posts could add nothing the page cap would let us fetch.
        next_offset = response.meta["offset"] + len(posts)
        if posts and next_offset < self.config.max_pages and self.pages_left > 0:
            yield self._archive_page(response.meta["root"], next_offset)

    def on_archive_error(self, failure: Any) -> None:
        """Not every Substack-like host has the archive API (a 404, robots.txt): the feed is enough."""

    def _follow_links(self, links: list[str], hops: int):
        if hops > self.config.max_depth:
            return
        for link in links:
            if urlsplit(link).netloc == self.site:
                request = self._page(link, self.on_linked_page, hops=hops)
                if request is not None:
                    yield request

    def on_article(self, response: scrapy.http.Response):
        """A page a feed listed: it must be an article."""
        if self._is_html(response):
            self._store(response, response.meta.get("entry"), required=True)

    def on_linked_page(self, response: scrapy.http.Response):
        """A page found by walking links: an article or an index page; follow its links either way."""
        if not self._is_html(response):
            return
        self._store(response, None, required=False)
        yield from self._follow_links(discover_links(response.text, response.url), response.meta["hops"] + 1)

    def on_page_error(self, failure: Any):
        self.items.append(Failed(failure.request.url, failure_reason(failure)))

    # -- helpers -----------------------------------------------------------------------------
    def _is_html(self, response: scrapy.http.Response) -> bool:
        content_type = response.headers.get(b"Content-Type", b"").decode("latin-1").split(";")[0].strip().lower()
        if content_type in HTML_TYPES or (not content_type and isinstance(response, scrapy.http.HtmlResponse)):
            return True
        self.items.append(Failed(response.url, f"not an HTML page ({content_type or 'unknown type'})"))
        return False

    def _store(self, response: scrapy.http.Response, entry: FeedEntry | None, *, required: bool,
               kind: DocumentKind = DocumentKind.ARTICLE, min_chars: int = MIN_ARTICLE_CHARS) -> None:
        try:
            article = extract_article(response.text, response.url, min_chars=min_chars)
        except ExtractionError as exc:
            self.items.append(Failed(response.url, str(exc)) if required else Skipped(response.url, str(exc)))
            return
        self.items.append(RawDocument.create(
            twin_id=self.target.twin_id, platform=self.target.platform, kind=kind,
            link=entry.link if entry else response.url, content=article.text,
            title=article.title or (entry.title if entry else ""),
            # A feed's date carries the time of day; a page's often only the day.
            published_at=(entry.published_at if entry else None) or article.published_at,
            metadata={"fetched_from": response.url}))


async def _crawl(target: CrawlTarget, config: CrawlConfig, spider: type[SiteSpider], **spider_args: Any) -> list[Item]:
    from scrapy.crawler import AsyncCrawlerRunner

    runner = AsyncCrawlerRunner(settings=scrapy_settings(config))
    crawler = runner.create_crawler(spider)
    await crawler.crawl_async(target=target, config=config, **spider_args)
    return crawler.spider.items


def run_spider(target: CrawlTarget, config: CrawlConfig, spider: type[SiteSpider], **spider_args: Any) -> list[Item]:
    """A whole crawl on its own asyncio loop: this runs in the crawl worker process, never on a service's loop."""
    return asyncio.run(_crawl(target, config, spider, **spider_args))


@dataclass(frozen=True)
class WebSite:
    config: CrawlConfig

    def collect(self, target: CrawlTarget) -> Iterator[Item]:
        yield from run_spider(target, self.config, SiteSpider)
