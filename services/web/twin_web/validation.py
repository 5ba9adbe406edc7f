"""What a person typed, checked and normalised: pure functions, no I/O beyond `Path.exists`.

Every refusal names the field it belongs to and says, in plain words, what to do,
so the page can show it next to that field and the API can return it as is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from llmtwin.addresses import is_public_address, literal_address
from llmtwin.domain import DocumentKind, Platform, slugify

MAX_URL_LENGTH = 2000
MAX_NAME_LENGTH = 80
MAX_PROMPT_LENGTH = 4000
MAX_WRITING_LINKS = 5
MAX_CADENCE_MINUTES = 60 * 24 * 30  # a month

PLATFORM_LABELS: dict[Platform, str] = {
    Platform.LINKEDIN: "LinkedIn",
    Platform.MEDIUM: "Medium",
    Platform.SUBSTACK: "Substack",
    Platform.GITHUB: "GitHub",
    Platform.X: "X (Twitter)",
    Platform.BLOG: "Any blog or website",
}

# The hosts a platform's public pages live on; a blog may live anywhere.
PLATFORM_HOSTS: dict[Platform, tuple[str, ...]] = {
    Platform.LINKEDIN: ("linkedin.com",),
    Platform.MEDIUM: ("medium.com",),
    Platform.SUBSTACK: ("substack.com",),
    Platform.GITHUB: ("github.com",),
    Platform.X: ("x.com", "twitter.com"),
    Platform.BLOG: (),
}

PLATFORM_EXAMPLES: dict[Platform, str] = {
    Platform.LINKEDIN: "https://www.linkedin.com/in/your-name",
    Platform.MEDIUM: "https://medium.com/@your-name",
    Platform.SUBSTACK: "https://your-name.substack.com",
    Platform.GITHUB: "https://github.com/your-name",
    Platform.X: "https://x.com/your-name",
    Platform.BLOG: "https://your-blog.example.com",
}

FORMAT_LABELS: dict[DocumentKind, str] = {
    DocumentKind.POST: "LinkedIn post",
    DocumentKind.ARTICLE: "Article",
    DocumentKind.CODE: "Code",
}

# Export archives as the platforms hand them out, or a single file taken from one.
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".csv", ".js", ".json", ".html", ".htm", ".md", ".txt")


class InputError(ValueError):
    """Input a person can fix: `field` is the form field it belongs to."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ProfileLink:
    platform: Platform
    url: str
    cadence_minutes: int | None


def twin_name(raw: str) -> str:
    name = " ".join((raw or "").split())
    if not name:
        raise InputError("name", "Give the twin a name, for example the person's name.")
    if len(name) > MAX_NAME_LENGTH:
        raise InputError("name", f"Keep the name under {MAX_NAME_LENGTH} characters.")
    if not re.search(r"[A-Za-z0-9]", name):
        raise InputError("name", "The name needs at least one Latin letter (A to Z) or digit: "
                                 "it also becomes the twin's web address.")
    return name


def twin_id_for(name: str) -> str:
    return slugify(name)


def platform(raw: str) -> Platform:
    try:
        return Platform((raw or "").strip().lower())
    except ValueError:
        known = ", ".join(PLATFORM_LABELS[p] for p in Platform)
        raise InputError("platform", f"Choose one of the platforms: {known}.") from None


def cadence_minutes(raw: int | str | None) -> int | None:
    """Minutes between automatic crawls; empty means only on request."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        minutes = int(raw)
    except (TypeError, ValueError):
        raise InputError("cadence_minutes", "The crawl interval must be a whole number of minutes.") from None
    if minutes == 0:
        return None
    if not 1 <= minutes <= MAX_CADENCE_MINUTES:
        raise InputError("cadence_minutes",
                         f"The crawl interval must be between 1 minute and {MAX_CADENCE_MINUTES} minutes (30 days).")
    return minutes


def profile_link(raw_platform: str, raw_url: str, raw_cadence: int | str | None = None, *,
                 allow_private_hosts: bool) -> ProfileLink:
    chosen = platform(raw_platform)
    return ProfileLink(chosen, profile_url(chosen, raw_url, allow_private_hosts=allow_private_hosts),
                       cadence_minutes(raw_cadence))


def profile_url(chosen: Platform, raw: str, *, allow_private_hosts: bool) -> str:
    """An http(s) page of the person on that platform, or a file:// path to a local export or repository."""
    url = (raw or "").strip()
    if not url:
        raise InputError("url", f"Paste the link to the profile, for example {PLATFORM_EXAMPLES[chosen]}.")
    if len(url) > MAX_URL_LENGTH:
        raise InputError("url", f"That link is longer than {MAX_URL_LENGTH} characters.")
    if url.lower().startswith("file:"):
        return _local_path_url(url)
    if "://" not in url:
        url = "https://" + url  # people paste "github.com/me"
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise InputError("url", "Use a web link starting with https:// (or file:// for a file on this server).")
    host = (parts.hostname or "").lower()
    if host and _is_private(host):
        if not allow_private_hosts:
            raise InputError("url", "That link points to a private or local address, which this server may not crawl.")
        return url  # the embedded demo serves its sites on loopback, for any platform
    if "." not in host:
        raise InputError("url", f"That link has no valid web address; it should look like {PLATFORM_EXAMPLES[chosen]}.")
    hosts = PLATFORM_HOSTS[chosen]
    if hosts and not any(host == h or host.endswith("." + h) for h in hosts):
        raise InputError("url", f"That is not a {PLATFORM_LABELS[chosen]} link; it should look like "
                                f"{PLATFORM_EXAMPLES[chosen]}. For another site choose “{PLATFORM_LABELS[Platform.BLOG]}”.")
    if host in _HOSTS_NEEDING_AN_ACCOUNT[chosen] and parts.path.strip("/") == "":
        raise InputError("url", f"Add the account to the link, for example {PLATFORM_EXAMPLES[chosen]}.")
    return url


# On these hosts the bare site is everybody's: the path must name the person.
_HOSTS_NEEDING_AN_ACCOUNT: dict[Platform, tuple[str, ...]] = {
    Platform.LINKEDIN: ("linkedin.com", "www.linkedin.com"),
    Platform.MEDIUM: ("medium.com", "www.medium.com"),
    Platform.SUBSTACK: ("substack.com", "www.substack.com"),
    Platform.GITHUB: ("github.com", "www.github.com"),
    Platform.X: ("x.com", "www.x.com", "twitter.com", "www.twitter.com"),
    Platform.BLOG: (),
}


def _is_private(host: str) -> bool:
    """A name or literal address (in any spelling, 2130706433 included) that is not public.
    Names are not resolved here: the crawler checks every address it connects to."""
    host = host.rstrip(".")  # "localhost." is localhost
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = literal_address(host)
    return address is not None and not is_public_address(address)


def _local_path_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InputError("url", "A file:// link must point to a file on this server, like file:///home/me/export.zip.")
    path = Path(unquote(parts.path))
    if not path.is_absolute():
        raise InputError("url", "A file:// link needs an absolute path, like file:///home/me/export.zip.")
    if not path.exists():
        raise InputError("url", f"There is no file or folder at {path} on this server.")
    return path.resolve().as_uri()


def archive_filename(raw: str) -> str:
    """A safe file name for an uploaded export archive, keeping the part the importer reads (the suffix)."""
    name = Path((raw or "").replace("\\", "/")).name
    if not name:
        raise InputError("file", "Choose the export file to upload.")
    if not name.lower().endswith(ARCHIVE_SUFFIXES):
        raise InputError("file", "That does not look like an export archive; upload the .zip the platform "
                                 "gave you (or a .csv, .js, .json, .html or .tar.gz file from it).")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")
    return safe[-120:] or "export.zip"


@dataclass(frozen=True)
class WritingRequest:
    prompt: str
    links: list[str]
    format: DocumentKind


def writing_request(raw_prompt: str, raw_links: str | list[str] | None, raw_format: str) -> WritingRequest:
    prompt = (raw_prompt or "").strip()
    if not prompt:
        raise InputError("prompt", "Say what you would like the twin to write.")
    if len(prompt) > MAX_PROMPT_LENGTH:
        raise InputError("prompt", f"Keep the request under {MAX_PROMPT_LENGTH} characters.")
    try:
        kind = DocumentKind((raw_format or "").strip().lower())
    except ValueError:
        known = ", ".join(FORMAT_LABELS.values())
        raise InputError("format", f"Choose a format: {known}.") from None
    return WritingRequest(prompt, writing_links(raw_links), kind)


def writing_links(raw: str | list[str] | None) -> list[str]:
    """New material for one answer: web links, one per line in the form."""
    items = raw.split() if isinstance(raw, str) else list(raw or [])
    links = [item.strip() for item in items if item and item.strip()]
    if len(links) > MAX_WRITING_LINKS:
        raise InputError("links", f"Give at most {MAX_WRITING_LINKS} links.")
    for link in links:
        parts = urlsplit(link)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(link) > MAX_URL_LENGTH:
            raise InputError("links", f"“{link[:80]}” is not a web link; links must start with https://.")
    return links
