"""X (Twitter) archive: data/tweets.js, a JavaScript assignment around a JSON list of tweets."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmtwin.domain import DocumentKind, Platform, RawDocument

from ..config import CrawlConfig
from ..items import CrawlRefused, CrawlTarget, Failed, Item, Skipped
from .exports import export_link, open_archive

TWEET_TIME = "%a %b %d %H:%M:%S %z %Y"  # "Wed Oct 10 20:19:24 +0000 2018"


def parse_js_assignment(script: str, name: str) -> list[Any]:
    """`window.YTD.tweets.part0 = [...]` -> the list."""
    _, sep, body = script.partition("=")
    try:
        data = json.loads(body if sep else script)
    except json.JSONDecodeError as exc:
        raise CrawlRefused(f"{name}: not a JavaScript assignment around JSON ({exc})") from exc
    if not isinstance(data, list):
        raise CrawlRefused(f"{name}: expected a list of tweets")
    return data


def expand_links(text: str, tweet: dict[str, Any]) -> str:
    """Put back the real URLs that t.co shortened."""
    for url in (tweet.get("entities") or {}).get("urls") or []:
        if url.get("url") and url.get("expanded_url"):
            text = text.replace(url["url"], url["expanded_url"])
    return text


@dataclass(frozen=True)
class XArchive:
    config: CrawlConfig

    def collect(self, target: CrawlTarget) -> Iterator[Item]:
        with open_archive(target.url, self.config) as archive:
            members = archive.matching("tweets.js", "tweet.js", "tweets-part*.js", "tweet-part*.js")
            if not members:
                raise CrawlRefused("not an X archive: no data/tweets.js inside")
            for name in members:
                for position, entry in enumerate(parse_js_assignment(archive.read_text(name).text, name)):
                    yield self._tweet(entry, target, f"{name}[{position}]")

    def _tweet(self, entry: Any, target: CrawlTarget, where: str) -> Item:
        tweet = entry.get("tweet", entry) if isinstance(entry, dict) else None
        if not isinstance(tweet, dict) or not tweet.get("id_str") or "full_text" not in tweet:
            return Failed(export_link(Platform.X, where), f"{where}: not a tweet (needs id_str and full_text)")
        link = f"https://x.com/i/web/status/{tweet['id_str']}"
        text = expand_links(tweet["full_text"], tweet).strip()
        if text.startswith("RT @"):
            return Skipped(link, "a retweet: someone else's words")
        try:
            published = datetime.strptime(tweet["created_at"], TWEET_TIME) if tweet.get("created_at") else None
        except ValueError:
            published = None
        return RawDocument.create(twin_id=target.twin_id, platform=Platform.X, kind=DocumentKind.POST, link=link,
                                  content=text, published_at=published,
                                  metadata={"source_file": where.split("[")[0],
                                            "reply_to": tweet.get("in_reply_to_status_id_str") or ""})
