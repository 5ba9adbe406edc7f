"""Turning fetched bytes into text: article extraction (trafilatura), link and feed discovery
(selectolax), RSS/Atom parsing (defusedxml). Pure functions, used by every page-like source."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urldefrag, urljoin, urlsplit

import trafilatura
from defusedxml import ElementTree
from selectolax.lexbor import LexborHTMLParser

FEED_TYPES = ("application/rss+xml", "application/atom+xml")
ATOM = "{http://www.w3.org/2005/Atom}"
MIN_ARTICLE_CHARS = 200


class ExtractionError(ValueError):
    pass


@dataclass(frozen=True)
class Article:
    title: str
    text: str  # markdown-ish: paragraphs, headings, lists and fenced code kept
    published_at: datetime | None


@dataclass(frozen=True)
class FeedEntry:
    link: str
    title: str = ""
    published_at: datetime | None = None


def parse_date(value: str | None) -> datetime | None:
    """ISO 8601, RFC 822 (RSS) or a bare date; None when it is none of them."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def extract_article(html: str, url: str = "", *, min_chars: int = MIN_ARTICLE_CHARS) -> Article:
    """The main text of a page without its navigation, header, footer and comments."""
    text = trafilatura.extract(html, url=url or None, output_format="markdown", include_formatting=True,
                               include_links=False, include_images=False, include_comments=False,
                               include_tables=True, favor_recall=True, deduplicate=False)
    if not text or len(text.strip()) < min_chars:
        raise ExtractionError(f"no article text found ({len((text or '').strip())} characters)")
    meta = trafilatura.extract_metadata(html, default_url=url or None)
    title = (meta.title if meta and meta.title else "").strip()
    published = parse_date(meta.date) if meta and meta.date else None
    return Article(title=title, text=restore_code_blocks(text, html).strip(), published_at=published)


FENCED = re.compile(r"```([^\n]*)\n(.*?)\n?```\n?", re.S)


def _code_lines(code: str) -> tuple[str, ...]:
    return tuple(line for line in code.splitlines() if line.strip())


def restore_code_blocks(text: str, html: str) -> str:
    """Put each code block back exactly as the page had it: extraction drops its blank lines."""
    originals = {_code_lines(code): code for code in
                 (node.text(deep=True) for node in _tree(html).css("pre")) if code.strip()}

    def original(match: re.Match[str]) -> str:
        code = originals.get(_code_lines(match.group(2)))
        if code is None:
            return match.group(0)
        return f"```{match.group(1)}\n{code.strip(chr(10))}\n```\n\n"

    return FENCED.sub(original, text)


def _tree(html: str) -> LexborHTMLParser:
    return LexborHTMLParser(html)


def absolute(base_url: str, link: str) -> str:
    """`link` resolved against the page; left as it is when it is malformed (its fetch fails with the reason)."""
    try:
        return urljoin(base_url, link)
    except ValueError:
        return link


def discover_feeds(html: str, base_url: str) -> list[str]:
    """Feeds the page announces with <link rel="alternate" type="application/rss+xml">."""
    feeds = []
    for node in _tree(html).css("link[rel~=alternate][href]"):
        if (node.attributes.get("type") or "").lower() in FEED_TYPES:
            feeds.append(absolute(base_url, node.attributes["href"] or ""))
    return list(dict.fromkeys(feeds))


def discover_links(html: str, base_url: str) -> list[str]:
    """Absolute http(s) links of a page, fragments dropped, in page order, without repeats."""
    links = []
    for node in _tree(html).css("a[href]"):
        href = (node.attributes.get("href") or "").strip()
        if not href or href.startswith(("mailto:", "javascript:", "tel:")):
            continue
        try:
            link = urldefrag(urljoin(base_url, href)).url
            if urlsplit(link).scheme in ("http", "https"):
                links.append(link)
        except ValueError:  # a malformed href on someone's page is not worth following
            continue
    return list(dict.fromkeys(links))


def canonical_link(html: str) -> str | None:
    """The page's own URL as it states it (<link rel=canonical>, or Medium exports' a.p-canonical)."""
    tree = _tree(html)
    for selector in ("link[rel=canonical][href]", "a.p-canonical[href]"):
        node = tree.css_first(selector)
        if node is not None and node.attributes.get("href"):
            return node.attributes["href"]
    return None


def looks_like_feed(body: bytes) -> bool:
    head = body[:2048].lstrip().lower()
    if head.startswith(b"<?xml"):
        return b"<rss" in head or b"<feed" in head
    return head.startswith((b"<rss", b"<feed"))


def _text(node, tag: str) -> str:
    child = node.find(tag)
    return (child.text or "").strip() if child is not None else ""


def parse_feed(body: bytes, base_url: str) -> list[FeedEntry]:
    """Entries of an RSS 2.0 or Atom feed. Raises ExtractionError if the body is neither."""
    try:
        root = ElementTree.fromstring(body)
    except Exception as exc:  # defusedxml raises its own errors for entity attacks
        raise ExtractionError(f"not a valid feed: {exc}") from exc
    entries: list[FeedEntry] = []
    if root.tag == "rss" or root.find("channel") is not None:
        for item in root.iter("item"):
            link = _text(item, "link") or _text(item, "guid")
            if link:
                entries.append(FeedEntry(absolute(base_url, link), _text(item, "title"), parse_date(_text(item, "pubDate"))))
    elif root.tag == f"{ATOM}feed":
        for entry in root.iter(f"{ATOM}entry"):
            links = entry.findall(f"{ATOM}link")
            href = next((l.get("href") for l in links if l.get("rel", "alternate") == "alternate" and l.get("href")), None)
            if href:
                date = _text(entry, f"{ATOM}published") or _text(entry, f"{ATOM}updated")
                entries.append(FeedEntry(absolute(base_url, href), _text(entry, f"{ATOM}title"), parse_date(date)))
    else:
        raise ExtractionError(f"not an RSS or Atom feed (root element {root.tag!r})")
    return entries
