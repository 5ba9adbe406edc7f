"""Near-duplicates: a cross-post is found, a different text on the same topic is not."""
from __future__ import annotations

import re

from llmtwin.domain import DocumentKind
from twin_cleaner.cleaning import CleaningPolicy, clean_text
from twin_cleaner.near_duplicates import NearDuplicateIndex, minhash, similarity

MEDIUM_ARTICLE = """Why your RAG system retrieves the wrong chunks

Most retrieval failures are not model failures. They are chunking failures: the chunk
that holds the answer was cut in half, or it was longer than the embedding model's window
and its second half was silently truncated. Measure the tokens of every chunk with the
model's own tokenizer, cut along paragraphs and sentences, and keep a small overlap so a
sentence split between two chunks still appears whole in one of them.

The second culprit is duplicated content. A post that was cross-posted to two platforms
is retrieved twice and crowds out the context the model needed."""

# The same text as a LinkedIn cross-post: styled bold title, hashtags, a call to action.
LINKEDIN_CROSS_POST = """𝗪𝗵𝘆 𝘆𝗼𝘂𝗿 𝗥𝗔𝗚 𝘀𝘆𝘀𝘁𝗲𝗺 𝗿𝗲𝘁𝗿𝗶𝗲𝘃𝗲𝘀 𝘁𝗵𝗲 𝘄𝗿𝗼𝗻𝗴 𝗰𝗵𝘂𝗻𝗸𝘀 👇

Most retrieval failures are not model failures. They are chunking failures: the chunk that holds the answer was cut in half, or it was longer than the embedding model's window and its second half was silently truncated. Measure the tokens of every chunk with the model's own tokenizer, cut along paragraphs and sentences, and keep a small overlap so a sentence split between two chunks still appears whole in one of them.

The second culprit is duplicated content. A post that was cross-posted to two platforms is retrieved twice and crowds out the context the model needed.

Follow me for more content like this
#RAG #LLM"""

SAME_TOPIC_OTHER_TEXT = """Chunking for RAG, the short version

Split documents by structure first: paragraphs, then sentences. Count tokens with the
tokenizer of the embedding model you actually use. Overlap consecutive chunks a little.
Deduplicate reposts before indexing. Store the model's name with the collection so two
models' vectors never mix. That is most of what matters for retrieval quality."""


def _clean(text: str, kind: DocumentKind) -> str:
    return clean_text(text, kind, CleaningPolicy())


def test_cross_post_is_a_near_duplicate_and_a_different_text_is_not():
    article = minhash(_clean(MEDIUM_ARTICLE, DocumentKind.ARTICLE))
    cross_post = minhash(_clean(LINKEDIN_CROSS_POST, DocumentKind.POST))
    other = minhash(_clean(SAME_TOPIC_OTHER_TEXT, DocumentKind.ARTICLE))
    assert similarity(article, cross_post) >= 0.8
    assert similarity(article, other) < 0.2

    index = NearDuplicateIndex(threshold=0.8)
    index.add("medium-1", article)
    assert index.original_of("linkedin-1", cross_post) == "medium-1"
    assert index.original_of("medium-2", other) is None
    # A document is never a duplicate of itself (re-processing the original).
    assert index.original_of("medium-1", article) is None


def shingles(text: str) -> set[tuple[str, ...]]:
    """What a signature stands for: the text's word 3-grams, casefolded."""
    words = re.findall(r"\w+", text.casefold())
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def test_signature_estimates_jaccard_and_is_stable():
    a = "the quick brown fox jumps over the lazy dog " * 3 + "and then it rests"
    b = "the quick brown fox jumps over the lazy dog " * 3 + "and then it runs away fast"
    exact = len(shingles(a) & shingles(b)) / len(shingles(a) | shingles(b))
    assert abs(similarity(minhash(a), minhash(b)) - exact) < 0.15
    assert (minhash(a) == minhash(a)).all()
    assert minhash("   ...  ") is None
    assert similarity(minhash("two words"), minhash("Two, words!")) == 1.0  # shorter than a shingle: one shingle
    assert similarity(minhash("alpha beta gamma delta"), minhash("delta gamma beta alpha")) == 0.0  # order counts


def test_most_similar_original_wins():
    base = " ".join(f"word{i}" for i in range(200))
    near = base.replace("word5 ", "x ").replace("word50 ", "x ").replace("word100 ", "x ").replace("word150 ", "x ")
    nearer = base.replace("word199", "changed")
    index = NearDuplicateIndex(threshold=0.8)
    index.add("a", minhash(near))
    index.add("b", minhash(nearer))
    assert index.original_of("new", minhash(base)) == "b"
