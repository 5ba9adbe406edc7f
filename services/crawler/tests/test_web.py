"""Feeds and pages over real HTTP on loopback: discovery, extraction, politeness, failures that stay alone."""
from __future__ import annotations

import re
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser

from llmtwin.domain import DocumentKind, Platform, RawDocument
from twin_crawler.config import CrawlConfig
from devstack.demo_sources import SAMPLES
from twin_crawler.items import CrawlTarget, Failed, Skipped
from twin_crawler.worker import collect

BOILERPLATE = ("Notes on data and small models", "Subscribe via RSS", "Built with plain HTML", "Keep reading",
               "All articles", "About this site")


def crawl(platform: Platform, url: str, config: CrawlConfig) -> list:
    return collect(CrawlTarget("ada", platform, url), config)


def by_path(items: list) -> dict[str, RawDocument]:
    return {re.sub(r"^http://[^/]+", "", i.link): i for i in items if isinstance(i, RawDocument)}


def article_words(page: Path) -> list[str]:
    article = LexborHTMLParser(page.read_text()).css_first("article")
    return article.text(separator=" ").split()


def test_the_demo_blog_is_found_through_its_feed_and_extracted_whole(serve, config):
    site = serve(SAMPLES / "blog")
    items = crawl(Platform.BLOG, site.url("/index.html"), config)
    docs = by_path(items)
    posts = sorted(p.name for p in (SAMPLES / "blog" / "posts").glob("*.html"))
    assert sorted(docs) == [f"/posts/{p}" for p in posts] and len(items) == 5

    for path, doc in docs.items():
        page = SAMPLES / "blog" / path.lstrip("/")
        source_words = article_words(page)
        text_words = doc.content.split()
        assert len(text_words) >= 0.95 * len(source_words), path  # complete, not a summary
        assert " ".join(source_words[-8:]) in " ".join(text_words), path  # to the last sentence
        assert not [b for b in BOILERPLATE if b in doc.content], path
        assert doc.kind is DocumentKind.ARTICLE and doc.title and doc.published_at is not None

    lineage = docs["/posts/lineage-without-a-platform.html"]
    assert lineage.title == "Data lineage without buying a platform"
    assert lineage.published_at.isoformat() == "2024-09-23T10:00:00+00:00"  # the feed's time of day
    assert "- from a model version to its dataset hash;" in lineage.content  # lists stay lists

    # The code block keeps its blank lines and indentation exactly.
    page = LexborHTMLParser((SAMPLES / "blog/posts/validating-csv-at-the-door.html").read_text())
    code = page.css_first("pre").text(deep=True).strip("\n")
    assert f"```\n{code}\n```" in docs["/posts/validating-csv-at-the-door.html"].content
    assert "\n\n\n@dataclass\nclass RowError:\n    line: int\n" in code

    assert "/robots.txt" in site.requested and not any(p.startswith("/drafts/") for p in site.requested)


FEED = """<?xml version="1.0"?><rss version="2.0"><channel><title>Fixture</title>
<item><title>Good</title><link>/posts/good.html</link><pubDate>Tue, 02 Jan 2024 10:00:00 +0000</pubDate></item>
<item><title>Flaky</title><link>/posts/flaky.html</link></item>
<item><title>Slides</title><link>/files/slides.pdf</link></item>
<item><title>Gone</title><link>/posts/gone.html</link></item>
<item><title>Private</title><link>/private/secret.html</link></item>
<item><title>Broken</title><link>http://[not-a-host/post</link></item>
</channel></rss>"""


def article(title: str, words: str) -> str:
    body = "".join(f"<p>{words} Sentence {i} goes on for a while so the page has real text.</p>" for i in range(8))
    return (f"<html><head><title>{title}</title></head><body><nav><a href='/'>Home</a></nav>"
            f"<article><h1>{title}</h1>{body}</article><footer>Footer text</footer></body></html>")


def write_site(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def test_bad_pages_fail_alone_with_reasons_and_robots_txt_is_obeyed(serve, config, tmp_path):
    site = serve(write_site(tmp_path / "site", {
        "robots.txt": "User-agent: *\nDisallow: /private/\n",
        "feed.xml": FEED,
        "posts/good.html": article("Good", "A good page."),
        "posts/flaky.html": article("Flaky", "Second time lucky."),
        "private/secret.html": article("Secret", "Never fetched."),
        "files/slides.pdf": b"%PDF-1.4 not a page",
    }))
    site.fail_once.add("/posts/flaky.html")
    items = crawl(Platform.BLOG, site.url("/feed.xml"), config)

    docs = by_path(items)
    assert sorted(docs) == ["/posts/flaky.html", "/posts/good.html"]  # the 503 was retried
    assert docs["/posts/good.html"].published_at.isoformat() == "2024-01-02T10:00:00+00:00"
    assert "Footer text" not in docs["/posts/good.html"].content
    failed = {re.sub(r"^http://127\.0\.0\.1:\d+", "", f.link): f.reason for f in items if isinstance(f, Failed)}
    assert failed == {"/files/slides.pdf": "not an HTML page (application/pdf)",
                      "/posts/gone.html": "HTTP 404",
                      "/private/secret.html": "disallowed by robots.txt",
                      "http://[not-a-host/post": failed.get("http://[not-a-host/post", "missing")}
    assert "malformed" in failed["http://[not-a-host/post"]
    assert "/private/secret.html" not in site.requested
    assert site.requested.count("/posts/flaky.html") == 2


def test_a_medium_shaped_profile_finds_its_feed_at_the_usual_place(serve, config, tmp_path):
    atom = ("<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'><title>Ada</title>"
            "<entry><title>On lineage</title><link rel='alternate' href='/@ada/on-lineage-1a2b'/>"
            "<published>2024-03-01T12:00:00Z</published></entry></feed>")
    site = serve(write_site(tmp_path / "medium", {
        "@ada/index.html": "<html><body><h1>Ada Quill</h1><a href='/@ada/on-lineage-1a2b'>On lineage</a></body></html>",
        "feed/@ada": atom,  # no announced feed: found at medium.com/feed/@user
        "@ada/on-lineage-1a2b/index.html": article("On lineage", "Medium-shaped text."),
    }))
    items = crawl(Platform.MEDIUM, site.url("/@ada/"), config)
    [doc] = [i for i in items if isinstance(i, RawDocument)]
    assert doc.platform is Platform.MEDIUM and doc.link == site.url("/@ada/on-lineage-1a2b")
    assert doc.published_at.isoformat() == "2024-03-01T12:00:00+00:00" and "Medium-shaped text." in doc.content
    assert "/feed/@ada" in site.requested and "/feed" not in site.requested


def test_a_site_without_a_feed_is_walked_by_links_within_the_depth_and_page_caps(serve, config, tmp_path):
    chain = {"index.html": "<html><body><a href='/a.html'>A</a> <a href='https://elsewhere.example/x'>x</a></body></html>",
             "a.html": article("A", "Page A.").replace("</article>", "<a href='/b.html'>B</a></article>"),
             "b.html": article("B", "Page B.").replace("</article>", "<a href='/c.html'>C</a></article>"),
             "c.html": article("C", "Page C.")}
    site = serve(write_site(tmp_path / "nofeed", chain))
    deep = crawl(Platform.BLOG, site.url("/index.html"), CrawlConfig(**{**config.__dict__, "max_depth": 2}))
    assert sorted(by_path(deep)) == ["/a.html", "/b.html"]
    assert "/c.html" not in site.requested and "/feed.xml" in site.requested

    before = len(site.requested)
    capped = crawl(Platform.BLOG, site.url("/index.html"), CrawlConfig(**{**config.__dict__, "max_pages": 2}))
    assert sorted(by_path(capped)) == ["/a.html"]
    skipped = {re.sub(r"^http://[^/]+", "", s.link): s.reason for s in capped if isinstance(s, Skipped)}
    assert skipped["/b.html"] == "page cap reached (2 pages)" and set(skipped.values()) == {skipped["/b.html"]}
    assert "/b.html" not in site.requested[before:]  # the capped crawl never fetched it


def test_a_crawler_for_public_sites_refuses_loopback_addresses(serve, config):
    site = serve(SAMPLES / "blog")
    items = crawl(Platform.BLOG, site.url("/index.html"), CrawlConfig(**{**config.__dict__, "allow_private_hosts": False}))
    assert [(type(i).__name__, i.reason) for i in items] == [("Failed", "refused: the host is a private or loopback address")]
    assert site.requested == []
