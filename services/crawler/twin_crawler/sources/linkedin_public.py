"""A public LinkedIn post or article, fetched on its own, best-effort.

LinkedIn shows most posts only to signed-in members; we never sign in. One page is
fetched through the web source's politeness (robots.txt, user agent, no cookies) and
no link on it is followed. A login wall fails the item with a reason that points to
the data export, which is the reliable route.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.spidermiddlewares.httperror import HttpError

from llmtwin.domain import DocumentKind

from ..config import CrawlConfig
from ..extract import MIN_ARTICLE_CHARS, FeedEntry
from ..items import CrawlTarget, Failed, Item
from .web import SiteSpider, failure_reason, run_spider

LOGIN_WALL = "LinkedIn shows this post only to signed-in members; upload your data export instead"
POST_PATHS = (re.compile(r"/posts/[^/]+/?"), re.compile(r"/feed/update/urn:li:(activity|share|ugcPost):\d+/?"))
ARTICLE_PATH = re.compile(r"/pulse/[^/]+/?")
LOGIN_PATHS = ("/authwall", "/login", "/uas/login", "/checkpoint", "/signup")
# LinkedIn answers 999 to clients it will not serve; 401/403 are the plain forms of the same wall.
LOGIN_STATUSES = {401, 403, 999}
# A post can be a couple of sentences; a login wall's own text is shorter still.
MIN_POST_CHARS = 40


def linkedin_page_kind(path: str) -> DocumentKind | None:
    """What a LinkedIn URL path holds, when it is a single public post or article; None otherwise."""
    if ARTICLE_PATH.fullmatch(path):
        return DocumentKind.ARTICLE
    if any(shape.fullmatch(path) for shape in POST_PATHS):
        return DocumentKind.POST
    return None


def is_linkedin_host(host: str, config: CrawlConfig) -> bool:
    return host == config.linkedin_host or host.endswith("." + config.linkedin_host)


class LinkedInPageSpider(SiteSpider):
    """Fetches the one page it is given; follows nothing."""

    name = "twin-linkedin-page"

    def __init__(self, target: CrawlTarget, config: CrawlConfig, kind: DocumentKind, **kwargs: Any) -> None:
        super().__init__(target, config, **kwargs)
        self.kind = kind

    async def start(self):
        request = self._page(self.target.url, self.on_post)
        if request is not None:
            yield request

    def on_post(self, response: scrapy.http.Response):
        # Redirects were followed: a sign-in page is where a private post ends up.
        if urlsplit(response.url).path.startswith(LOGIN_PATHS):
            self.items.append(Failed(self.target.url, LOGIN_WALL))
            return
        if not self._is_html(response):
            return
        # The target's own URL is the link: a redirect to another LinkedIn host must not change the id.
        self._store(response, FeedEntry(self.target.url), required=True, kind=self.kind,
                    min_chars=MIN_POST_CHARS if self.kind is DocumentKind.POST else MIN_ARTICLE_CHARS)
        if isinstance(self.items[-1], Failed):  # a page without the post text is a sign-in prompt
            self.items[-1] = Failed(self.target.url, f"{LOGIN_WALL} (no post text on the page)")

    def on_page_error(self, failure: Any):
        exc = failure.value
        if isinstance(exc, HttpError) and exc.response.status in LOGIN_STATUSES:
            self.items.append(Failed(self.target.url, f"{LOGIN_WALL} (HTTP {exc.response.status})"))
        else:
            self.items.append(Failed(self.target.url, failure_reason(failure)))


@dataclass(frozen=True)
class LinkedInPublicPost:
    config: CrawlConfig

    def collect(self, target: CrawlTarget) -> Iterator[Item]:
        kind = linkedin_page_kind(urlsplit(target.url).path)
        yield from run_spider(target, self.config, LinkedInPageSpider, kind=kind)
