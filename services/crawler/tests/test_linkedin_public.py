"""A public LinkedIn post or article fetched best-effort from a loopback stand-in for linkedin.com;
login walls fail the item with a reason pointing to the export; profiles stay refused."""
from __future__ import annotations

import pytest

from llmtwin.domain import DocumentKind, Platform, RawDocument
from twin_crawler.config import CrawlConfig
from twin_crawler.items import CrawlRefused, CrawlTarget, Failed
from twin_crawler.routing import source_for
from twin_crawler.sources.linkedin_public import LOGIN_WALL, LinkedInPublicPost
from twin_crawler.worker import collect

POST_TEXT = ("Shipping a data contract taught me one thing: validate at the door, not in the warehouse. "
             "Three rules we now keep for every CSV that reaches us.")
ARTICLE_TEXT = " ".join(f"Lineage is a promise about where each number came from, paragraph {i}." for i in range(12))


def page(title: str, body: str) -> str:
    return (f"<html><head><title>{title}</title></head><body><nav><a href='/in/ada'>Ada Quill</a> "
            f"<a href='/posts/ada_other-activity-2'>More posts</a></nav><main><article><h1>{title}</h1>"
            f"<p>{body}</p></article></main><footer>LinkedIn Corporation 2026</footer></body></html>")


HTML = {"Content-Type": "text/html; charset=utf-8"}
ROUTES = {
    "/robots.txt": (200, {"Content-Type": "text/plain"}, "User-agent: *\nDisallow: /posts/hidden\n"),
    "/posts/ada_data-contracts-activity-1": (200, HTML, page("Ada Quill on LinkedIn", POST_TEXT)),
    "/pulse/on-lineage-ada-quill": (200, HTML, page("On lineage", ARTICLE_TEXT)),
    "/feed/update/urn:li:activity:7": (302, {"Location": "/authwall?trk=public_post&sessionRedirect=x"}, ""),
    "/authwall?trk=public_post&sessionRedirect=x": (200, HTML, page("Sign in", "Join now to see this post. " * 20)),
    "/posts/ada_members-only-activity-3": (200, HTML, "<html><body><h1>Sign in</h1><p>Join now</p></body></html>"),
    "/posts/ada_bot-denied-activity-4": (999, HTML, ""),
    "/posts/hidden-activity-5": (200, HTML, page("Hidden", POST_TEXT)),
}


@pytest.fixture
def linkedin(serve_routes):
    return serve_routes(lambda site, path: ROUTES.get(path, (404, HTML, "not found")))


@pytest.fixture
def local_linkedin(config) -> CrawlConfig:
    return CrawlConfig(**{**config.__dict__, "linkedin_host": "127.0.0.1"})


def crawl(url: str, config: CrawlConfig) -> list:
    return collect(CrawlTarget("ada", Platform.LINKEDIN, url), config)


def test_a_public_post_and_article_become_one_document_each_and_no_link_is_followed(linkedin, local_linkedin):
    post_url = linkedin.url("/posts/ada_data-contracts-activity-1")
    [post] = crawl(post_url, local_linkedin)
    assert isinstance(post, RawDocument) and post.platform is Platform.LINKEDIN and post.kind is DocumentKind.POST
    assert post.link == post_url and POST_TEXT in post.content and "LinkedIn Corporation" not in post.content

    [article] = crawl(linkedin.url("/pulse/on-lineage-ada-quill"), local_linkedin)
    assert isinstance(article, RawDocument) and article.kind is DocumentKind.ARTICLE
    assert article.title == "On lineage" and "paragraph 11." in article.content

    assert sorted(set(linkedin.requested)) == ["/posts/ada_data-contracts-activity-1", "/pulse/on-lineage-ada-quill",
                                               "/robots.txt"]  # the nav links were not followed


@pytest.mark.parametrize(("path", "why"), [
    ("/feed/update/urn:li:activity:7", ""),  # redirected to the authwall
    ("/posts/ada_members-only-activity-3", " (no post text on the page)"),
    ("/posts/ada_bot-denied-activity-4", " (HTTP 999)"),
])
def test_a_login_wall_fails_the_post_with_a_reason_pointing_to_the_export(linkedin, local_linkedin, path, why):
    url = linkedin.url(path)
    assert crawl(url, local_linkedin) == [Failed(url, LOGIN_WALL + why)]
    assert "upload your data export" in LOGIN_WALL


def test_robots_txt_is_obeyed_for_linkedin_posts(linkedin, local_linkedin):
    url = linkedin.url("/posts/hidden-activity-5")
    assert crawl(url, local_linkedin) == [Failed(url, "disallowed by robots.txt")]
    assert "/posts/hidden-activity-5" not in linkedin.requested


@pytest.mark.parametrize("url", ["https://www.linkedin.com/posts/ada_data-contracts-activity-7123",
                                 "https://linkedin.com/feed/update/urn:li:activity:7123456789/",
                                 "https://uk.linkedin.com/pulse/on-lineage-ada-quill"])
def test_post_and_article_urls_route_to_the_public_page_fetch(config, url):
    assert type(source_for(Platform.LINKEDIN, url, config)) is LinkedInPublicPost


@pytest.mark.parametrize(("url", "message"), [
    ("https://www.linkedin.com/in/ada", "upload your data export"),
    ("https://www.linkedin.com/in/ada/recent-activity/all/", "upload your data export"),
    ("https://www.linkedin.com/feed/", "upload your data export"),
    ("https://notlinkedin.com/posts/ada_x-activity-1", "not a LinkedIn URL"),
])
def test_profiles_and_other_pages_stay_refused(config, url, message):
    with pytest.raises(CrawlRefused, match=message):
        source_for(Platform.LINKEDIN, url, config)
