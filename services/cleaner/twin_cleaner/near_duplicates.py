"""Near-duplicate detection: MinHash over word shingles. Pure, no I/O.

A person cross-posts: the same text on LinkedIn and Medium, a repost with a new
first line. Such a text must not be learned or retrieved twice. Two texts whose
shingle sets have an estimated Jaccard similarity of at least the threshold are
near-duplicates; the later one points at the earlier one (`duplicate_of`).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

NUM_PERMUTATIONS = 128
SHINGLE_WORDS = 3
_rng = np.random.default_rng(20240611)  # fixed seed: signatures must compare across processes and runs
_A = _rng.integers(0, 1 << 63, NUM_PERMUTATIONS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_B = _rng.integers(0, 1 << 63, NUM_PERMUTATIONS, dtype=np.uint64)
_WORD = re.compile(r"\w+")


def shingles(text: str, size: int = SHINGLE_WORDS) -> set[str]:
    """Word n-grams of the casefolded words: formatting, punctuation and emphasis do not count."""
    words = _WORD.findall(text.casefold())
    if len(words) < size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def minhash(text: str) -> np.ndarray | None:
    """The MinHash signature of a text's shingles; None for a text without words."""
    grams = shingles(text)
    if not grams:
        return None
    hashes = np.fromiter((int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little")
                          for g in grams), dtype=np.uint64, count=len(grams))
    # 128 hash functions: multiply-add modulo 2^64 (uint64 arithmetic wraps), odd multipliers.
    with np.errstate(over="ignore"):
        permuted = hashes[:, None] * _A[None, :] + _B[None, :]
    return permuted.min(axis=0)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The estimated Jaccard similarity of the two texts' shingle sets."""
    return float(np.mean(a == b))


@dataclass
class NearDuplicateIndex:
    """Signatures of one twin's original documents (not of its duplicates), by document id."""

    threshold: float
    signatures: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, doc_id: str, signature: np.ndarray | None) -> None:
        if signature is not None:
            self.signatures[doc_id] = signature

    def discard(self, doc_id: str) -> None:
        self.signatures.pop(doc_id, None)

    def original_of(self, doc_id: str, signature: np.ndarray | None) -> str | None:
        """The most similar other document at or above the threshold, if any (ties: the smallest id)."""
        if signature is None or not self.signatures:
            return None
        best_id, best = None, self.threshold
        for other_id in sorted(self.signatures):
            if other_id == doc_id:
                continue
            score = similarity(signature, self.signatures[other_id])
            if score > best or (score >= self.threshold and best_id is None):
                best_id, best = other_id, score
        return best_id
