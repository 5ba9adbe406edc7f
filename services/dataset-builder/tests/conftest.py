"""Documents a person could have written: a LinkedIn post, a markdown article, a Python module."""
from __future__ import annotations

import pytest

from llmtwin.domain import CleanDocument, DocumentKind, Platform, content_hash, stable_id

POST = """Most teams I talk to think their retrieval pipeline is the problem. It rarely is.

When we audited our RAG system last quarter, the vector search was fine. The chunking was not:
half of our chunks were cut in the middle of a table, and the embedding model never saw the
header row. Fixing the chunking strategy did more for answer quality than any reranker we tried.

Three things that worked for us:
- chunk at headings and paragraphs, never at a fixed character count
- keep the table header with every table chunk
- measure retrieval quality on real questions before touching the model

What has your experience been with chunking strategy in RAG systems?"""

ARTICLE = """# Why your feature pipeline needs a warehouse

Every machine learning system I have built ended up needing a place where raw data could be kept
exactly as it arrived. The feature pipeline reads from it, the training pipeline reads from it, and
when something goes wrong, it is the one place where you can replay what happened. A feature pipeline
without a warehouse forces you to crawl the sources again, which is slow and often impossible.

## Keep raw data immutable

The first rule is simple: never change raw data in place. When a document changes at the source, you
store a new version next to the old one and let the cleaning step decide what is current. This makes
every downstream step reproducible, because the input of any run can be found again by its content hash.
It also makes debugging much calmer, since you can always compare what the crawler saw with what the
cleaner produced.

Immutable raw data costs some disk space, but storage is cheap compared with the hours spent chasing a
bug that only happened on data that no longer exists. In my experience the warehouse pays for itself the
first time a model behaves strangely and you need to know exactly which documents it was trained on.

## Version the datasets, not only the models

Model registries are common now, but dataset versions are still rare. A dataset version should be an
immutable list of samples whose id is a hash of its contents, so that the same samples always give the
same version. When you register a model, tag it with the dataset version it was trained on. Then you
can walk back from any model to the samples and from the samples to the source documents.
"""

CODE = '''"""Small helpers for reading configuration files."""
import json
from pathlib import Path


def load_config(path: Path, strict: bool = False) -> dict:
    """Read a JSON configuration file and return its settings as a dict.

    Unknown keys are kept unless strict is set.
    """
    data = json.loads(Path(path).read_text())
    if strict:
        data = {k: v for k, v in data.items() if k in KNOWN_KEYS}
    return data


def merge_configs(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_configs(merged[key], value)
        else:
            merged[key] = value
    return merged


class ConfigCache:
    """Keep parsed configuration files in memory, keyed by path and modification time."""

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[float, dict]] = {}

    def get(self, path: Path) -> dict:
        mtime = path.stat().st_mtime
        cached = self._entries.get(path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, load_config(path))
            self._entries[path] = cached
        return cached[1]


KNOWN_KEYS = {"name", "version", "paths"}
'''


def make_doc(kind: DocumentKind, content: str, *, twin_id: str = "ada", title: str = "",
             platform: Platform | None = None, link: str | None = None,
             duplicate_of: str | None = None) -> CleanDocument:
    platform = platform or {DocumentKind.POST: Platform.LINKEDIN, DocumentKind.ARTICLE: Platform.MEDIUM,
                            DocumentKind.CODE: Platform.GITHUB}[kind]
    link = link or f"https://example.com/{kind.value}/{content_hash(content)}"
    if kind == DocumentKind.CODE and link.startswith("https://example.com"):
        link = "https://github.com/ada/tools/blob/main/config_tools.py"
    return CleanDocument(id=stable_id(twin_id, platform, link), twin_id=twin_id, platform=platform, kind=kind,
                         link=link, title=title, content=content, content_hash=content_hash(content),
                         raw_hash=content_hash(content), duplicate_of=duplicate_of)


@pytest.fixture
def post_doc() -> CleanDocument:
    return make_doc(DocumentKind.POST, POST)


@pytest.fixture
def article_doc() -> CleanDocument:
    return make_doc(DocumentKind.ARTICLE, ARTICLE, title="Why your feature pipeline needs a warehouse")


@pytest.fixture
def code_doc() -> CleanDocument:
    return make_doc(DocumentKind.CODE, CODE)


@pytest.fixture
def new_doc():
    """The document factory, for tests that need documents of their own."""
    return make_doc
