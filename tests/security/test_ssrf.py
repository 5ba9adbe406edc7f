"""Server-side request forgery: a link or profile URL may not send the services to a private address.

Loopback, private ranges, link-local and cloud metadata, IPv6 loopback and ULA, IPv4 spelled as
one integer or in hex or octal, IPv6 wrapping a private IPv4, a redirect into a private address,
and schemes other than http(s): refused with a clear message by the inference API's link fetcher,
the web's profile URL check (private hosts not allowed) and the crawler."""
from __future__ import annotations

import httpx
import pytest
import scrapy
from llmtwin.addresses import is_public_address, literal_address
from llmtwin.domain import Platform
from llmtwin.testing.pages import serve_pages
from scrapy.exceptions import IgnoreRequest
from twin_crawler.config import CrawlConfig
from twin_crawler.items import CrawlRefused, CrawlTarget, Failed
from twin_crawler.routing import source_for
from twin_crawler.sources.web import PrivateHostGuard, WebSite
from twin_inference.links import LinkError, LinkFetcher, LinkRefused
from twin_web.validation import InputError, profile_url

from .conftest import ALL_TWINS_KEY

# Hosts that all denote a private, loopback or metadata address.
PRIVATE_HOSTS = [
    "127.0.0.1", "localhost", "10.0.0.8", "172.16.5.4", "192.168.1.1", "100.64.0.1", "0.0.0.0",
    "169.254.169.254",  # cloud metadata (link-local)
    "[::1]", "[fd00::1]", "[fe80::1]", "[::ffff:127.0.0.1]", "[::ffff:169.254.169.254]", "[64:ff9b::a9fe:a9fe]",
    "2130706433", "0x7f000001", "017700000001", "0177.0.0.1", "127.1",  # 127.0.0.1 spelled otherwise
    "2852039166",  # 169.254.169.254 as one integer
]
OTHER_SCHEMES = ["file:///etc/passwd", "ftp://example.com/file", "gopher://example.com:70/_x",
                 "data:text/html,<p>hi</p>", "javascript:alert(1)", "dict://127.0.0.1:11211/stats"]


@pytest.fixture(scope="module")
def loopback_site():
    """A real page on loopback, and redirects from it into private addresses and other schemes."""
    redirects = {"/to-metadata": "http://169.254.169.254/latest/meta-data/", "/to-ipv6-loopback": "http://[::1]/",
                 "/to-decimal": "http://2852039166/", "/to-file": "file:///etc/passwd"}
    page = b"<html><head><title>Hello</title></head><body><article><p>" + b"A page. " * 40 + \
        b"</p></article></body></html>"
    with serve_pages({}, default=page, redirects=redirects) as url:
        yield url


# --- the shared policy -----------------------------------------------------------------------

@pytest.mark.parametrize("host", PRIVATE_HOSTS)
def test_every_spelling_of_a_private_address_is_recognised(host):
    if host == "localhost":
        return  # a name: the fetchers resolve it (covered below)
    address = literal_address(host)
    assert address is not None and not is_public_address(address)


@pytest.mark.parametrize("host", ["93.184.215.14", "[2606:4700::1111]", "8.8.8.8", "[2002:808:808::1]"])
def test_public_addresses_stay_allowed(host):
    assert is_public_address(literal_address(host))


# --- the inference API's link fetcher --------------------------------------------------------

@pytest.mark.parametrize("host", PRIVATE_HOSTS)
async def test_the_link_fetcher_refuses_private_hosts(host):
    fetcher = LinkFetcher()
    try:
        with pytest.raises(LinkRefused, match="private, loopback or metadata"):
            await fetcher.fetch(f"http://{host}/latest/meta-data/")
    finally:
        await fetcher.aclose()


@pytest.mark.parametrize("link", OTHER_SCHEMES)
async def test_the_link_fetcher_refuses_other_schemes(link):
    fetcher = LinkFetcher()
    try:
        with pytest.raises(LinkRefused, match="only http and https|no host"):
            await fetcher.fetch(link)
    finally:
        await fetcher.aclose()


@pytest.mark.parametrize("path", ["/to-metadata", "/to-ipv6-loopback", "/to-decimal", "/to-file"])
async def test_a_redirect_into_a_private_address_is_refused_at_that_hop(loopback_site, path):
    """The site itself is allowed here (only it), so the refusal can only come from the redirect's hop."""
    fetcher = LinkFetcher(address_allowed=lambda address: address == "127.0.0.1" or is_public_address(address))
    try:
        assert "A page." in (await fetcher.fetch(f"{loopback_site}/article")).text  # the site itself is fetched
        with pytest.raises(LinkRefused):
            await fetcher.fetch(f"{loopback_site}{path}")
    finally:
        await fetcher.aclose()


@pytest.mark.parametrize("link", ["http://[::1", "http://example.com:99999/", "http://" + "a" * 70 + ".com/"])
async def test_a_malformed_link_is_a_link_error_not_a_crash(link):
    fetcher = LinkFetcher()
    try:
        with pytest.raises(LinkError):
            await fetcher.fetch(link)
    finally:
        await fetcher.aclose()


@pytest.mark.parametrize("link", ["{site}/article", "http://169.254.169.254/latest/meta-data/",
                                  "http://2130706433/", "http://[::1]/", "file:///etc/passwd",
                                  "http://[::1", "http://example.com:99999/"])
def test_the_generate_endpoint_answers_a_bad_link_with_400(inference, loopback_site, link):
    """The API refuses before generating: the loopback site too, as private links are not allowed."""
    with httpx.Client(base_url=inference.url, timeout=60) as client:
        response = client.post("/v1/generate", headers={"Authorization": f"Bearer {ALL_TWINS_KEY}"},
                               json={"twin_id": "ada", "prompt": "Summarise", "links": [link.format(site=loopback_site)]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_link"


# --- the web's profile URLs ------------------------------------------------------------------

@pytest.mark.parametrize("host", PRIVATE_HOSTS + ["localhost.", "blog.localhost"])
def test_the_web_refuses_a_profile_url_on_a_private_host(host):
    with pytest.raises(InputError) as refused:
        profile_url(Platform.BLOG, f"http://{host}/feed", allow_private_hosts=False)
    assert refused.value.field == "url"
    assert "private or local address" in refused.value.message


@pytest.mark.parametrize("url", ["ftp://example.com/blog", "gopher://example.com/", "javascript:alert(1)",
                                 "dict://example.com:11211/"])
def test_the_web_refuses_a_profile_url_with_another_scheme(url):
    with pytest.raises(InputError, match="https://"):
        profile_url(Platform.BLOG, url, allow_private_hosts=False)


def test_the_embedded_demo_may_still_use_loopback_profiles():
    assert profile_url(Platform.BLOG, "http://127.0.0.1:8080/", allow_private_hosts=True) == "http://127.0.0.1:8080/"


# --- the crawler -----------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "2130706433:{port}", "169.254.169.254",
                                  "[::1]:{port}"])
def test_the_crawler_refuses_a_private_site_when_private_hosts_are_not_allowed(loopback_site, host):
    port = loopback_site.rsplit(":", 1)[1]
    url = f"http://{host.format(port=port)}/"
    items = list(WebSite(CrawlConfig(allow_private_hosts=False, retry_times=0)).collect(
        CrawlTarget("ada", Platform.BLOG, url)))
    assert items == [Failed(url, "refused: the host is a private or loopback address")]


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://2130706433/", "http://[fd00::1]/",
                                 "http://10.1.2.3/admin"])
def test_the_crawler_refuses_every_request_to_a_private_host_redirects_included(url):
    """Scrapy follows redirects without the spider: its downloader guard sees every request."""
    redirected = scrapy.Request(url, meta={"redirect_urls": ["https://public.example/"]})
    with pytest.raises(IgnoreRequest, match="private or loopback"):
        PrivateHostGuard(allow_private_hosts=False).process_request(redirected)
    PrivateHostGuard(allow_private_hosts=True).process_request(redirected)  # the embedded demo
    PrivateHostGuard(allow_private_hosts=False).process_request(scrapy.Request("http://93.184.215.14/"))


@pytest.mark.parametrize("url", OTHER_SCHEMES[1:])
def test_the_crawler_refuses_other_schemes(url):
    with pytest.raises(CrawlRefused, match="malformed URL"):
        source_for(Platform.BLOG, url, CrawlConfig(allow_private_hosts=False))
