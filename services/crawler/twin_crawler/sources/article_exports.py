"""Article exports: Medium (posts/*.html) and Substack (posts.csv + posts/<id>.html).

Both go through the same extraction as crawled pages, so an article reads the same
whichever way it arrived.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from llmtwin.domain import DocumentKind, Platform, RawDocument

from ..config import CrawlConfig
from ..extract import ExtractionError, canonical_link, extract_article, parse_date
from ..items import CrawlRefused, CrawlTarget, Failed, Item, Skipped
from .exports import export_link, open_archive, read_csv


def article_document(target: CrawlTarget, link: str, html: str, *, title: str = "",
                     published: str = "", metadata: dict[str, str] | None = None) -> Item:
    """One HTML article as a raw document, or the reason it has no text."""
    try:
        article = extract_article(html, link)
    except ExtractionError as exc:
        return Failed(link, str(exc))
    return RawDocument.create(twin_id=target.twin_id, platform=target.platform, kind=DocumentKind.ARTICLE,
                              link=link, content=article.text, title=title or article.title,
                              published_at=parse_date(published) or article.published_at,
                              metadata=metadata or {})


@dataclass(frozen=True)
class MediumExport:
    config: CrawlConfig

    def collect(self, target: CrawlTarget) -> Iterator[Item]:
        with open_archive(target.url, self.config) as archive:
            posts = archive.under("posts", "*.html")
            if not posts:
                raise CrawlRefused("not a Medium export: no posts/*.html inside")
            for name in posts:
                html = archive.read_text(name).text
                link = canonical_link(html) or export_link(Platform.MEDIUM, name)
                if PurePosixPath(name).name.startswith("draft_"):
                    yield Skipped(link, "an unpublished draft")
                    continue
                yield article_document(target, link, html, metadata={"source_file": name})


@dataclass(frozen=True)
class SubstackExport:
    config: CrawlConfig

    def collect(self, target: CrawlTarget) -> Iterator[Item]:
        with open_archive(target.url, self.config) as archive:
            index = archive.matching("posts.csv")
            if not index:
                raise CrawlRefused("not a Substack export: no posts.csv inside")
            bodies = {PurePosixPath(n).stem: n for n in archive.under("posts", "*.html")}
            for row in read_csv(archive.read_text(index[0]), index[0], ("post_id", "title")):
                post_id = row["post_id"].strip()
                link = export_link(Platform.SUBSTACK, "posts", post_id)
                if row.get("is_published", "true").strip().lower() != "true":
                    yield Skipped(link, "not published")
                elif post_id not in bodies:
                    yield Failed(link, f"posts/{post_id}.html is missing from the export")
                else:
                    # Substack bodies are fragments: give extraction a whole page around them.
                    html = f"<html><body><article>{archive.read_text(bodies[post_id]).text}</article></body></html>"
                    yield article_document(target, link, html, title=row["title"].strip(),
                                           published=row.get("post_date", ""),
                                           metadata={"source_file": bodies[post_id],
                                                     "subtitle": row.get("subtitle", "")})
