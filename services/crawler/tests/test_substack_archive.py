"""Substack: the feed's latest posts plus the older ones its archive API lists, page by page, each crawled once."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from llmtwin.domain import Platform, RawDocument
from twin_crawler.config import CrawlConfig
from twin_crawler.items import CrawlTarget, Failed, Skipped
from twin_crawler.worker import collect

SLUGS = ["five", "four", "three", "two", "one"]  # newest first, as the archive sorts them
HTML = {"Content-Type": "text/html; charset=utf-8"}
PAGE_SIZE = 2  # fewer than asked for, as a host may answer: paging must go on to an empty page


def post_page(slug: str) -> str:
    body = "".join(f"<p>Post {slug}, paragraph {i}, long enough to read as an article.</p>" for i in range(8))
    return f"<html><head><title>Post {slug}</title></head><body><article><h1>Post {slug}</h1>{body}</article></body></html>"


def substack(archive: str):
    """archive: 'json' (Substack's API), 'html' (a page where the API would be) or 'missing' (404)."""
    def answer(site, path: str):
        parts = urlsplit(path)
        if parts.path == "/":
            return 200, HTML, ("<html><head><link rel='alternate' type='application/rss+xml' href='/feed'></head>"
                               "<body><h1>Ada's letters</h1></body></html>")
        if parts.path == "/feed":  # the feed holds only the latest posts
            items = "".join(f"<item><title>Post {s}</title><link>{site.url(f'/p/{s}')}</link>"
                            f"<pubDate>Tue, 0{6 - i} Feb 2024 10:00:00 +0000</pubDate></item>"
                            for i, s in enumerate(SLUGS[:2]))
            return 200, {"Content-Type": "application/rss+xml"}, f"<?xml version='1.0'?><rss><channel>{items}</channel></rss>"
        if parts.path == "/api/v1/archive" and archive == "html":
            return 200, HTML, post_page("archive")
        if parts.path == "/api/v1/archive" and archive == "json":
            offset = int(parse_qs(parts.query)["offset"][0])
            posts = [{"canonical_url": site.url(f"/p/{s}"), "title": f"Post {s}", "slug": s,
                      "post_date": f"2024-02-0{5 - i}T08:30:00.000Z"}
                     for i, s in enumerate(SLUGS)][offset:offset + PAGE_SIZE]
            return 200, {"Content-Type": "application/json"}, json.dumps(posts)
        if parts.path.startswith("/p/") and parts.path[3:] in SLUGS:
            return 200, HTML, post_page(parts.path[3:])
        return 404, HTML, "not found"
    return answer


def crawl(url: str, config: CrawlConfig) -> list:
    return collect(CrawlTarget("ada", Platform.SUBSTACK, url), config)


def posts(items: list) -> dict[str, RawDocument]:
    return {re.sub(r"^http://[^/]+", "", i.link): i for i in items if isinstance(i, RawDocument)}


def archive_offsets(requested: list[str]) -> list[int]:
    return [int(parse_qs(urlsplit(p).query)["offset"][0]) for p in requested if p.startswith("/api/v1/archive?")]


def test_the_archive_reaches_the_posts_the_feed_no_longer_holds_each_crawled_once(serve_routes, config):
    site = serve_routes(substack("json"))
    items = crawl(site.url("/"), config)
    docs = posts(items)
    assert sorted(docs) == sorted(f"/p/{s}" for s in SLUGS) and len(items) == 5
    assert all(site.requested.count(f"/p/{s}") == 1 for s in SLUGS)
    assert archive_offsets(site.requested) == [0, 2, 4, 5]  # on to the empty page, then stop
    assert all("limit=12" in p and "sort=new" in p for p in site.requested if p.startswith("/api/"))
    assert docs["/p/five"].published_at.isoformat() == "2024-02-06T10:00:00+00:00"  # from the feed
    assert docs["/p/one"].published_at.isoformat() == "2024-02-01T08:30:00+00:00"  # from the archive
    assert docs["/p/one"].title == "Post one" and "paragraph 7" in docs["/p/one"].content


def test_the_archive_listing_stops_at_the_page_cap(serve_routes, config):
    site = serve_routes(substack("json"))
    items = crawl(site.url("/"), CrawlConfig(**{**config.__dict__, "max_pages": 4}))  # the home page and 3 posts
    assert sorted(posts(items)) == ["/p/five", "/p/four", "/p/three"]
    assert [i.link.rsplit("/", 1)[1] for i in items if isinstance(i, Skipped)] == ["two"]
    assert archive_offsets(site.requested) == [0, 2]
    assert "/p/one" not in site.requested and "/p/two" not in site.requested


@pytest.mark.parametrize("archive", ["missing", "html"])
def test_a_host_without_the_archive_api_keeps_its_feed_posts_and_no_failure(serve_routes, config, archive):
    site = serve_routes(substack(archive))
    items = crawl(site.url("/"), config)
    assert sorted(posts(items)) == ["/p/five", "/p/four"] and not [i for i in items if isinstance(i, Failed)]
    assert archive_offsets(site.requested) == [0]
