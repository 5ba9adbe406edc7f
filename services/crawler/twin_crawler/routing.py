"""Which source reads a profile: by its platform and the shape of its URL."""
from __future__ import annotations

from urllib.parse import urlsplit

from llmtwin.domain import Platform

from .config import CrawlConfig
from .items import CrawlRefused, Source
from .locations import local_path
from .sources.article_exports import MediumExport, SubstackExport
from .sources.github import GitHubProfile, GitRepository, github_user
from .sources.linkedin import LinkedInExport
from .sources.linkedin_public import LinkedInPublicPost, is_linkedin_host, linkedin_page_kind
from .sources.web import WebSite
from .sources.x_archive import XArchive

EXPORTS: dict[Platform, type] = {Platform.LINKEDIN: LinkedInExport, Platform.X: XArchive,
                                 Platform.MEDIUM: MediumExport, Platform.SUBSTACK: SubstackExport}
NO_PUBLIC_PAGES = {Platform.X: "X pages need a login: upload your X archive (data/tweets.js) instead"}
LINKEDIN_EXPORT = ("LinkedIn profiles and feeds need a login: upload your data export "
                   "(Settings > Get a copy of your data) instead; only a single public post "
                   "(linkedin.com/posts/..., /feed/update/urn:li:activity:..., /pulse/...) can be fetched")


def source_for(platform: Platform | str, url: str, config: CrawlConfig) -> Source:
    """The source for a profile; raises CrawlRefused with a message a person can act on."""
    try:
        platform = Platform(platform)
    except ValueError:
        raise CrawlRefused(f"unknown platform {platform!r} (known: {', '.join(p.value for p in Platform)})") from None
    url = (url or "").strip()
    if not url:
        raise CrawlRefused("no URL given")
    path = local_path(url)
    if path is not None:
        if not path.exists():
            raise CrawlRefused(f"{path} does not exist")
        if (path / ".git").exists() or path.suffix == ".git":
            if platform is not Platform.GITHUB:
                raise CrawlRefused(f"{path} is a git repository: crawl it as platform github")
            return GitRepository(config)
        if platform in EXPORTS and (path.is_dir() or path.suffix.lower() == ".zip"):
            return EXPORTS[platform](config)
        raise CrawlRefused(f"{path} is neither a git repository nor a {platform.value} export archive (.zip or folder)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CrawlRefused(f"malformed URL {url!r}: expected http(s)://host/..., file://... or a path")
    if platform in NO_PUBLIC_PAGES:
        raise CrawlRefused(NO_PUBLIC_PAGES[platform])
    if platform is Platform.LINKEDIN:
        if not is_linkedin_host(parts.hostname, config):
            raise CrawlRefused(f"not a LinkedIn URL: {url}")
        if linkedin_page_kind(parts.path) is None:
            raise CrawlRefused(LINKEDIN_EXPORT)
        return LinkedInPublicPost(config)
    if platform is Platform.GITHUB:
        if parts.hostname != "github.com":
            raise CrawlRefused(f"not a GitHub URL: {url}")
        return GitHubProfile(config) if github_user(url) else GitRepository(config)
    return WebSite(config)
