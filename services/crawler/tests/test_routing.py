"""Which source reads which profile, and the clear refusals for what no source can read."""
from __future__ import annotations

import pytest

from llmtwin.domain import Platform
from devstack.demo_sources import SAMPLES, git_repository, zip_folder
from twin_crawler.items import CrawlRefused
from twin_crawler.routing import source_for
from twin_crawler.sources.article_exports import SubstackExport
from twin_crawler.sources.github import GitHubProfile, GitRepository
from twin_crawler.sources.linkedin import LinkedInExport
from twin_crawler.sources.web import WebSite


def test_profiles_route_by_platform_and_url_shape(config, tmp_path):
    archive = zip_folder(SAMPLES / "linkedin", tmp_path / "export.zip")
    repo = git_repository(SAMPLES / "code", tmp_path / "repo")
    routes = {
        (Platform.LINKEDIN, str(SAMPLES / "linkedin")): LinkedInExport,
        (Platform.LINKEDIN, archive.as_uri()): LinkedInExport,
        (Platform.SUBSTACK, str(archive)): SubstackExport,
        (Platform.GITHUB, repo.as_uri()): GitRepository,
        (Platform.GITHUB, "https://github.com/ada-quill"): GitHubProfile,
        (Platform.GITHUB, "https://github.com/ada-quill/csvguard"): GitRepository,
        (Platform.MEDIUM, "https://medium.com/@ada"): WebSite,
        (Platform.SUBSTACK, "https://ada.substack.com"): WebSite,
        (Platform.BLOG, "http://127.0.0.1:8080/index.html"): WebSite,
    }
    for (platform, url), kind in routes.items():
        assert type(source_for(platform, url, config)) is kind, (platform, url)


@pytest.mark.parametrize(("platform", "url", "message"), [
    ("myspace", "https://myspace.com/ada", "unknown platform 'myspace'"),
    (Platform.BLOG, "", "no URL given"),
    (Platform.BLOG, "ftp://ada.example/posts", "malformed URL 'ftp://ada.example/posts'"),
    (Platform.BLOG, "http:///posts", "malformed URL"),
    (Platform.LINKEDIN, "https://www.linkedin.com/in/ada", "upload your data export"),
    (Platform.X, "https://x.com/ada", "upload your X archive"),
    (Platform.GITHUB, "https://gitlab.com/ada", "not a GitHub URL"),
    (Platform.LINKEDIN, "/nowhere/export.zip", "/nowhere/export.zip does not exist"),
])
def test_what_no_source_can_read_is_refused_with_a_reason(config, platform, url, message):
    with pytest.raises(CrawlRefused, match=message.replace("(", r"\(").replace(".", r"\.")):
        source_for(platform, url, config)


def test_a_git_repository_is_crawled_only_as_github(config, tmp_path):
    repo = git_repository(SAMPLES / "code", tmp_path / "repo")
    with pytest.raises(CrawlRefused, match="crawl it as platform github"):
        source_for(Platform.BLOG, repo.as_uri(), config)
