"""Fetching the links a user hands in, safely: new material for one generation.

Only http and https; every host is resolved first and refused when any of its addresses
is not public (loopback, private, link-local and cloud metadata, carrier NAT, multicast,
reserved), unless settings allow private links. The connection then goes to the very
address that was checked (the Host header and TLS name stay the original host), so a DNS
answer that changes between check and connect cannot slip past. Redirects are followed
by hand and every hop is checked again. Timeouts and a size cap always apply.
"""
from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx
from llmtwin.addresses import is_public_address
from llmtwin.settings import Settings

MAX_REDIRECTS = 5
MAX_BYTES = 2_000_000
MAX_TEXT_CHARS = 4_000  # of extracted text kept as context: a link informs, it does not fill the window
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "text/markdown")


class LinkError(ValueError):
    """A link that cannot be used; the message says which and why."""


class LinkRefused(LinkError):
    """A link the policy forbids (scheme, address)."""


@dataclass(frozen=True)
class LinkedMaterial:
    link: str  # as the user gave it
    final_url: str  # after redirects
    title: str
    text: str


class LinkFetcher:
    def __init__(self, *, address_allowed: Callable[[str], bool] | None = None, user_agent: str = "LLMTwinBot/0.1",
                 max_bytes: int = MAX_BYTES, max_text_chars: int = MAX_TEXT_CHARS,
                 timeout: httpx.Timeout = TIMEOUT) -> None:
        self.address_allowed = address_allowed or is_public_address
        self.max_bytes, self.max_text_chars = max_bytes, max_text_chars
        # trust_env off: a proxy would connect on our behalf, to addresses we never checked.
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False,
                                         headers={"User-Agent": user_agent})

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkFetcher:
        allowed = any_address if settings.allow_private_links else is_public_address
        return cls(address_allowed=allowed, user_agent=settings.crawl_user_agent)

    async def fetch_all(self, links: list[str]) -> list[LinkedMaterial]:
        return list(await asyncio.gather(*(self.fetch(link) for link in links)))

    async def fetch(self, link: str) -> LinkedMaterial:
        url = link.strip()
        for _ in range(MAX_REDIRECTS + 1):
            response_url, status, location, content_type, body = await self._get(url)
            if status in (301, 302, 303, 307, 308) and location:
                url = urljoin(response_url, location)
                continue
            if status != 200:
                raise LinkError(f"{link}: the server answered {status}")
            title, text = await asyncio.to_thread(extract_text, body, content_type, url)
            if not text.strip():
                raise LinkError(f"{link}: no readable text found")
            return LinkedMaterial(link, url, title, text[:self.max_text_chars])
        raise LinkError(f"{link}: more than {MAX_REDIRECTS} redirects")

    async def _get(self, url: str) -> tuple[str, int, str | None, str, bytes]:
        try:
            parts = urlsplit(url)
            port = parts.port  # raises on a port that is not a number in range
        except ValueError as exc:
            raise LinkError(f"{url}: not a valid link ({exc})") from None
        if parts.scheme not in ("http", "https"):
            raise LinkRefused(f"{url}: only http and https links are fetched")
        if not parts.hostname:
            raise LinkRefused(f"{url}: no host")
        address = await self._checked_address(parts.hostname, port or (443 if parts.scheme == "https" else 80))
        # Connect to the checked address; keep the name for the Host header and TLS.
        ip_host = f"[{address}]" if ":" in address else address
        netloc = f"{ip_host}:{port}" if port else ip_host
        pinned = parts._replace(netloc=netloc).geturl()
        host_header = parts.hostname + (f":{port}" if port else "")
        try:
            request = self._client.build_request("GET", pinned, headers={"Host": host_header},
                                                 extensions={"sni_hostname": parts.hostname})
            response = await self._client.send(request, stream=True)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise LinkError(f"{url}: cannot be fetched ({type(exc).__name__})") from exc
        try:
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if response.status_code == 200 and content_type not in _TEXT_TYPES:
                raise LinkError(f"{url}: {content_type or 'unknown content type'} is not a page of text")
            declared = int(response.headers.get("content-length") or 0)
            if declared > self.max_bytes:
                raise LinkError(f"{url}: larger than {self.max_bytes} bytes")
            body = bytearray()
            async for block in response.aiter_bytes():
                body += block
                if len(body) > self.max_bytes:
                    raise LinkError(f"{url}: larger than {self.max_bytes} bytes")
        except httpx.HTTPError as exc:
            raise LinkError(f"{url}: cannot be read ({type(exc).__name__})") from exc
        finally:
            await response.aclose()
        return url, response.status_code, response.headers.get("location"), content_type, bytes(body)

    async def _checked_address(self, host: str, port: int) -> str:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:  # UnicodeError: a name no DNS label can hold
            raise LinkError(f"{host}: cannot be resolved") from exc
        addresses = [info[4][0] for info in infos]
        for address in addresses:
            if not self.address_allowed(address):
                raise LinkRefused(f"{host}: resolves to {address}, a private, loopback or metadata "
                                  "address; such links are not fetched")
        return addresses[0]

    async def aclose(self) -> None:
        await self._client.aclose()


def any_address(address: str) -> bool:
    return True


def extract_text(body: bytes, content_type: str, url: str) -> tuple[str, str]:
    """(title, main text) of a fetched page. CPU-bound: call it off the loop."""
    if content_type in ("text/plain", "text/markdown"):
        return "", body.decode("utf-8", "replace")
    import trafilatura

    html = body.decode("utf-8", "replace")
    document = trafilatura.bare_extraction(html, url=url, include_comments=False, with_metadata=True)
    if document is None:
        return "", ""
    return (document.title or ""), (document.text or "")
