"""A generated person's writing for the fault suites: LinkedIn export archives of short, distinct posts,
with what the system must end up holding computed from the corpus alone.

Each post is plain prose (no PII, no markup, nothing cleaning would change), short enough to be one
chunk and one instruct sample, and random enough that no two posts are near-duplicates.
"""
from __future__ import annotations

import csv
import io
import random
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from llmtwin.domain import Platform, chunk_id, stable_id

NOUNS = ("pipeline", "model", "dataset", "feature", "vector", "stream", "batch", "schema", "topic", "consumer",
         "producer", "warehouse", "embedding", "prompt", "adapter", "checkpoint", "metric", "dashboard",
         "replica", "partition", "offset", "index", "query", "sample", "version", "registry", "tokenizer",
         "crawler", "archive", "benchmark", "deadline", "review", "release", "incident", "budget", "roadmap")
VERBS = ("breaks", "feeds", "shapes", "slows", "guards", "tests", "drives", "hides", "reveals", "replaces",
         "measures", "teaches", "follows", "outgrows", "rewrites", "protects", "simplifies", "doubles")
ADJECTIVES = ("quiet", "stale", "fresh", "noisy", "small", "brittle", "honest", "careful", "cheap", "slow",
              "fast", "shared", "private", "boring", "clever", "tired", "steady", "curious")
OPENERS = ("I learned that", "Last week", "In my experience", "Every time", "My team found that",
           "It turns out", "Nobody tells you that", "Today")


@dataclass(frozen=True)
class Post:
    link: str
    date: str
    text: str


def sentence(rng: random.Random) -> str:
    a, b, c = rng.sample(NOUNS, 3)
    return (f"{rng.choice(OPENERS)} the {rng.choice(ADJECTIVES)} {a} {rng.choice(VERBS)} the {b} "
            f"and it is the {rng.choice(ADJECTIVES)} {c} that we {rng.choice(('trust', 'fear', 'ignore', 'need'))}.")


def make_posts(count: int, seed: int) -> list[Post]:
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, 8, 0, 0)
    return [Post(link=f"https://www.linkedin.com/feed/update/urn:li:activity:{seed:03d}{i:07d}",
                 date=(start + timedelta(hours=7 * i + seed)).strftime("%Y-%m-%d %H:%M:%S"),
                 text=" ".join(sentence(rng) for _ in range(rng.randint(3, 5))))
            for i in range(count)]


def linkedin_export(posts: list[Post], archive: Path) -> Path:
    """A LinkedIn "Get a copy of your data" ZIP holding the posts as Shares.csv."""
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["Date", "ShareLink", "ShareCommentary", "SharedUrl", "MediaUrl", "Visibility"])
    for post in posts:
        writer.writerow([post.date, post.link, post.text, "", "", "MEMBER_NETWORK"])
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Shares.csv", table.getvalue())
    return archive


@dataclass(frozen=True)
class Expected:
    """What the stores must hold for a twin's posts: ids from the deterministic id functions."""

    documents: dict[str, Post]  # document id -> the post

    @classmethod
    def of(cls, twin_id: str, posts: list[Post]) -> "Expected":
        return cls({stable_id(twin_id, Platform.LINKEDIN, post.link): post for post in posts})

    @property
    def document_ids(self) -> set[str]:
        return set(self.documents)

    @property
    def point_ids(self) -> set[str]:
        """One chunk per post, the whole post: its id from the document id, position 0 and the text."""
        return {chunk_id(doc_id, 0, post.text) for doc_id, post in self.documents.items()}

    @property
    def samples(self) -> set[tuple[str, str]]:
        """One instruct sample per post whose answer is the post itself: (document id, answer)."""
        return {(doc_id, post.text) for doc_id, post in self.documents.items()}
