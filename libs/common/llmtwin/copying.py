"""What a generation copied word for word from the material in its prompt.

A small model leans on its material: given passages of the person's own writing, it may
quote them instead of writing. The trainer's gate measures it, and the API tells the
reader which cited passage an answer quoted, and how much.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

COPY_RUN_WORDS = 8  # a run this long, found word for word in one passage, is a quote, not phrasing


def copied_words(text: str, material: Sequence[str], run_words: int = COPY_RUN_WORDS) -> list[tuple[int, int]]:
    """Character spans of the words of `text` that sit in a run of `run_words` or more words found
    word for word (whitespace aside) in one passage of `material`."""
    words = [(match.start(), match.end(), match.group()) for match in re.finditer(r"\S+", text)]
    seen = {tuple(source[i:i + run_words]) for source in (passage.split() for passage in material)
            for i in range(len(source) - run_words + 1)}
    covered = [False] * len(words)
    for start in range(len(words) - run_words + 1):
        if tuple(word for _, _, word in words[start:start + run_words]) in seen:
            covered[start:start + run_words] = [True] * run_words
    return [(begin, end) for (begin, end, _), copied in zip(words, covered) if copied]
