"""What a crawl may do: the slice of the settings a source needs, small enough to send to a worker process."""
from __future__ import annotations

from dataclasses import dataclass

from llmtwin.settings import Settings

MiB = 1024 * 1024


@dataclass(frozen=True)
class CrawlConfig:
    user_agent: str = "LLMTwinBot/0.1"
    max_pages: int = 200
    max_depth: int = 2
    download_delay: float = 1.0
    autothrottle: bool = True
    retry_times: int = 2
    retry_backoff: float = 1.0
    timeout_seconds: float = 30.0
    allow_private_hosts: bool = True
    github_api_url: str = "https://api.github.com"
    # Public LinkedIn posts are fetched from this host and its subdomains (tests point it at loopback).
    linkedin_host: str = "linkedin.com"
    # Export archives: refuse what no real export looks like (zip bombs, giant members).
    max_archive_bytes: int = 512 * MiB  # total uncompressed
    max_member_bytes: int = 64 * MiB
    max_compression_ratio: int = 100
    # Code: files and repositories larger than these are not someone's hand-written source.
    max_code_file_bytes: int = 512 * 1024
    max_repo_bytes: int = 200 * MiB
    max_repos: int = 30

    @classmethod
    def from_settings(cls, settings: Settings) -> "CrawlConfig":
        return cls(user_agent=settings.crawl_user_agent, max_pages=settings.crawl_max_pages,
                   max_depth=settings.crawl_max_depth, download_delay=settings.crawl_download_delay,
                   autothrottle=settings.crawl_autothrottle, retry_backoff=settings.crawl_retry_backoff,
                   timeout_seconds=settings.crawl_timeout_seconds,
                   allow_private_hosts=settings.crawl_allow_private_hosts,
                   github_api_url=settings.github_api_url)
