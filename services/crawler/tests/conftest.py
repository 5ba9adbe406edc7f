"""Fixtures for the crawler's tests: loopback sites over real HTTP, crawl settings without delays."""
from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from twin_crawler.config import CrawlConfig
from devstack.demo_sources import SAMPLES


class Site:
    """A folder served over HTTP on loopback; records every path asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requested: list[str] = []
        self.fail_once: set[str] = set()  # paths that answer 503 the first time (to test retries)
        handler = partial(_Handler, self, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, site: Site, *args, **kwargs) -> None:
        self.site = site
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.site.requested.append(self.path)
        if self.path in self.site.fail_once:
            self.site.fail_once.discard(self.path)
            self.send_error(503, "try again")
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve():
    """serve(folder) -> Site; every site is stopped after the test."""
    sites: list[Site] = []

    def start(root: Path) -> Site:
        sites.append(Site(root))
        return sites[-1]

    yield start
    for site in sites:
        site.stop()


Answer = tuple[int, dict[str, str], str]  # status, headers, body


class RoutedSite:
    """Answers each path (query included) from a function, for sites a folder cannot imitate:
    redirects, odd statuses, JSON APIs with paging. Records every path asked for."""

    def __init__(self, answer: Callable[["RoutedSite", str], Answer]) -> None:
        self.requested: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requested.append(self.path)
                status, headers, body = answer(site, self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve_routes():
    """serve_routes(answer) -> RoutedSite, where answer(site, path) -> (status, headers, body); stopped after the test."""
    sites: list[RoutedSite] = []

    def start(answer: Callable[[RoutedSite, str], Answer]) -> RoutedSite:
        sites.append(RoutedSite(answer))
        return sites[-1]

    yield start
    for site in sites:
        site.stop()


@pytest.fixture
def blog_copy(tmp_path) -> Path:
    """A copy of the demo blog that a test may change."""
    return Path(shutil.copytree(SAMPLES / "blog", tmp_path / "blog"))


@pytest.fixture
def config() -> CrawlConfig:
    # Politeness off for loopback tests: no delay, no autothrottle, retries that barely wait.
    return CrawlConfig(user_agent="LLMTwinBot-test/0.1", download_delay=0.0, autothrottle=False,
                       retry_backoff=0.05, timeout_seconds=10.0)

