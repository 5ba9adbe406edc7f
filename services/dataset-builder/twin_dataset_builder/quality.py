"""Quality filters for instruct samples: each rejected sample carries the reason.

Checks run on the answer (the person's own text): length, language (prose only),
boilerplate (newsletter plugs, menus, link dumps), and near-duplicates of answers
the twin already has (word-shingle Jaccard similarity through an inverted index).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from llmtwin.domain import DocumentKind, InstructSample

from .keywords import STOPWORDS, URL, words

BOILERPLATE = re.compile(
    r"subscribe (to|for)|thanks? (you )?for reading|follow me (on|for)|sign up (for|to)|all rights reserved|"
    r"cookie(s)? (policy|settings)|click here|originally published (at|on)|share this (post|article)|"
    r"like and (share|subscribe)|join my newsletter|leave a comment|read more on|privacy policy|"
    r"terms of (service|use)|download (the|our) app|unsubscribe",
    re.IGNORECASE)
HASHTAG = re.compile(r"(?<!\w)#\w+")


@dataclass(frozen=True)
class QualityPolicy:
    min_words: int = 12  # prose answers
    min_code_lines: int = 3
    max_chars: int = 8000
    # Natural-language check for prose: share of ASCII among letters, share of English stopwords among words.
    min_ascii_letter_share: float = 0.85
    min_stopword_share: float = 0.12
    english_only: bool = True
    # Word 3-gram shingles: one edited word in a 30-word post still leaves a Jaccard similarity of 0.8.
    near_duplicate_jaccard: float = 0.75
    shingle_words: int = 3


@dataclass(frozen=True)
class Rejected:
    sample: InstructSample
    reason: str


@dataclass
class QualityReport:
    kept: list[InstructSample] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def reasons(self) -> Counter[str]:
        return Counter(r.reason.split(":")[0] for r in self.rejected)


def shingles(text: str, size: int) -> set[int]:
    tokens = [w.lower() for w in words(text)]
    if len(tokens) < size:
        tokens_grams = [" ".join(tokens)] if tokens else []
    else:
        tokens_grams = [" ".join(tokens[i:i + size]) for i in range(len(tokens) - size + 1)]
    return {int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "big") for g in tokens_grams}


class NearDuplicateIndex:
    """Answers seen so far; finds the most similar one above a Jaccard threshold without comparing all pairs."""

    def __init__(self, threshold: float, shingle_words: int) -> None:
        self.threshold, self.size = threshold, shingle_words
        self._shingles: dict[str, set[int]] = {}
        self._postings: dict[int, set[str]] = {}

    def add(self, sample_id: str, text: str) -> None:
        grams = shingles(text, self.size)
        self._shingles[sample_id] = grams
        for g in grams:
            self._postings.setdefault(g, set()).add(sample_id)

    def most_similar(self, text: str) -> tuple[str, float] | None:
        grams = shingles(text, self.size)
        if not grams:
            return None
        shared: Counter[str] = Counter()
        for g in grams:
            shared.update(self._postings.get(g, ()))
        best: tuple[str, float] | None = None
        for sample_id, common in shared.items():
            similarity = common / len(grams | self._shingles[sample_id])
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (sample_id, similarity)
        return best


def answer_problem(sample: InstructSample, policy: QualityPolicy) -> str | None:
    """Why this answer should not be trained on, or None when it is fine."""
    answer = sample.answer
    if len(answer) > policy.max_chars:
        return f"too_long: {len(answer)} chars > {policy.max_chars}"
    if sample.kind == DocumentKind.CODE:
        lines = [line for line in answer.splitlines() if line.strip()]
        if len(lines) < policy.min_code_lines:
            return f"too_short: {len(lines)} code lines < {policy.min_code_lines}"
        return None
    tokens = words(URL.sub(" ", HASHTAG.sub(" ", answer)))
    if len(tokens) < policy.min_words:
        return f"too_short: {len(tokens)} words < {policy.min_words}"
    if policy.english_only:
        # NFKC first: Unicode-styled letters (𝗯𝗼𝗹𝗱, 𝘪𝘵𝘢𝘭𝘪𝘤) are part of a person's style, not another language.
        plain = unicodedata.normalize("NFKC", answer)
        letters = [c for c in plain if c.isalpha()]
        ascii_share = sum(c.isascii() for c in letters) / len(letters)
        plain_tokens = words(URL.sub(" ", HASHTAG.sub(" ", plain)))
        stop_share = sum(t.lower() in STOPWORDS for t in plain_tokens) / len(plain_tokens)
        if ascii_share < policy.min_ascii_letter_share or stop_share < policy.min_stopword_share:
            return f"language: not English prose (ascii letters {ascii_share:.2f}, stopwords {stop_share:.2f})"
    return _boilerplate(answer, tokens)


def _boilerplate(answer: str, tokens: list[str]) -> str | None:
    lines = [line.strip() for line in answer.splitlines() if line.strip()]
    short_lines = [line for line in lines if len(line.split()) <= 3]
    if len(short_lines) >= 5 and len(short_lines) > 0.6 * len(lines):
        return f"boilerplate: menu-like ({len(short_lines)} of {len(lines)} lines have 3 words or fewer)"
    links = len(URL.findall(answer)) + len(HASHTAG.findall(answer))
    if links and links >= len(tokens) / 2:
        return f"boilerplate: mostly links or hashtags ({links} against {len(tokens)} words)"
    hits = [m.group(0) for m in BOILERPLATE.finditer(answer)]
    if hits and len(tokens) < 40 * len(hits):
        return f"boilerplate: {', '.join(sorted(set(h.lower() for h in hits)))}"
    return None


def filter_samples(samples: Iterable[InstructSample], existing: NearDuplicateIndex,
                   policy: QualityPolicy) -> QualityReport:
    """Keep the good samples; the ones kept join `existing`, so later duplicates of them are caught too."""
    report = QualityReport()
    for sample in samples:
        problem = answer_problem(sample, policy)
        if problem is None:
            similar = existing.most_similar(sample.answer)
            if similar is not None and similar[0] != sample.id:
                problem = f"near_duplicate: of sample {similar[0]} (Jaccard {similar[1]:.2f})"
        if problem is None:
            existing.add(sample.id, sample.answer)
            report.kept.append(sample)
        else:
            report.rejected.append(Rejected(sample, problem))
    return report
