"""Chunking per document kind, measured in the embedding model's own tokens. Pure, no I/O.

The document comes with its tokens (`Tokenized`): the id and character span of every token of
its text, special tokens left out. A document is tokenized once; every split below is a
character span of it, so counting the tokens of any span is two binary searches, and a
chunk's tokens are the document's tokens inside its span: what the model embeds is exactly
what was counted, so no chunk is ever truncated.

- posts and articles: paragraphs, then sentences, then (for a sentence longer than the
  window) token windows cut between words; packed greedily up to `max_tokens`. A chunk that
  starts inside a paragraph starts with the last `overlap` tokens of the one before; one that
  starts a paragraph does not. A post that fits is one chunk.
- code: top-level definitions (Python through `ast`, a class too big for one chunk by its
  members; other languages by blank lines and closing braces at column 0), packed without
  overlap; what is still too long falls back to windows of whole lines, then of tokens.
"""
from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from llmtwin.domain import Chunk, CleanDocument, DocumentKind

Span = tuple[int, int]  # a character range [start, end) of the document

PYTHON_SUFFIXES = (".py", ".pyi", ".pyw")


@dataclass(frozen=True)
class Tokenized:
    """A text in the model's tokens, special tokens excluded: each token's id and character span."""

    ids: Sequence[int]
    spans: Sequence[Span]


@dataclass(frozen=True)
class TokenizedChunk:
    chunk: Chunk
    token_ids: Sequence[int]  # the document's tokens inside the chunk, special tokens excluded


def chunk_document(doc: CleanDocument, tokenized: Tokenized, max_tokens: int, overlap: int) -> list[TokenizedChunk]:
    """The document's chunks, in order, none longer than `max_tokens` tokens (special tokens excluded);
    `tokenized` is its content in the model's tokens."""
    if max_tokens < 1 or not 0 <= overlap < max_tokens:
        raise ValueError(f"need max_tokens >= 1 and 0 <= overlap < max_tokens, got {max_tokens}, {overlap}")
    text = doc.content
    tokens = Tokens(text, tokenized)
    if not tokens.starts:
        return []
    if doc.kind is DocumentKind.CODE:
        spans = _pack(tokens, _code_units(tokens, max_tokens, is_python(doc)), max_tokens, overlap=0)
        spans = [_trim_code(text, span) for span in spans]
    else:
        spans = _pack(tokens, _prose_units(tokens, max_tokens), max_tokens, overlap)
    pieces = [(span, ids) for span in spans if (ids := tokens.ids_within(span))]
    return [TokenizedChunk(Chunk.create(doc, position, text[start:end], token_count=len(ids)), ids)
            for position, ((start, end), ids) in enumerate(pieces)]


def is_python(doc: CleanDocument) -> bool:
    return any(name.lower().endswith(PYTHON_SUFFIXES) for name in (doc.link, doc.title))


@dataclass
class Tokens:
    """A text's tokens, for counting and taking the tokens inside any character span."""

    text: str
    tokenized: Tokenized

    def __post_init__(self) -> None:
        kept = [i for i, (start, end) in enumerate(self.tokenized.spans) if end > start]  # no zero-width tokens
        self.ids = [self.tokenized.ids[i] for i in kept]
        self.starts = [self.tokenized.spans[i][0] for i in kept]
        self.ends = [self.tokenized.spans[i][1] for i in kept]

    def first(self, position: int) -> int:
        """Index of the first token that starts at or after `position`."""
        return bisect.bisect_left(self.starts, position)

    def stop(self, position: int) -> int:
        """Index after the last token that ends at or before `position`."""
        return bisect.bisect_right(self.ends, position)

    def count(self, start: int, end: int) -> int:
        return max(0, self.stop(end) - self.first(start))

    def ids_within(self, span: Span) -> list[int]:
        return self.ids[self.first(span[0]):self.stop(span[1])]

    def can_cut_before(self, index: int) -> bool:
        """A cut before this token splits no word: whitespace or punctuation lies between."""
        if index <= 0 or index >= len(self.starts):
            return True
        before, after = self.text[self.starts[index] - 1], self.text[self.starts[index]]
        return self.ends[index - 1] < self.starts[index] or not before.isalnum() or not after.isalnum()

    def windows(self, span: Span, max_tokens: int) -> list[Span]:
        """Split a span into consecutive pieces of at most `max_tokens` tokens, cut between words."""
        first, stop = self.first(span[0]), self.stop(span[1])
        pieces: list[Span] = []
        start_char = span[0]
        while stop - first > max_tokens:
            cut = first + max_tokens
            while cut > first + 1 and not self.can_cut_before(cut):
                cut -= 1
            if not self.can_cut_before(cut):
                cut = first + max_tokens  # one word longer than the window: cut inside it
            pieces.append((start_char, self.ends[cut - 1]))
            first, start_char = cut, self.starts[cut]
        pieces.append((start_char, span[1]))
        return pieces


# --- prose -----------------------------------------------------------------------------

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# After sentence punctuation, any closing quotes or brackets, and whitespace.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_LINE_BREAK = re.compile(r"\n")
# Where an overlap may start: after a sentence or a blank line (a hard-wrapped line is no sentence).
_OVERLAP_BREAK = re.compile(rf"{_SENTENCE_BREAK.pattern}|\n[ \t]*\n")
# Ever finer pieces for a text too long for the window: paragraphs, sentences, lines (a post's
# unpunctuated list items), and last token windows cut between words.
_PROSE_LEVELS = (_PARAGRAPH_BREAK, _SENTENCE_BREAK, _LINE_BREAK)


def _prose_units(tokens: Tokens, max_tokens: int, span: Span | None = None, level: int = 0) -> list[Span]:
    if level == len(_PROSE_LEVELS):
        return tokens.windows(span, max_tokens)
    units: list[Span] = []
    for piece in _split(tokens.text, span or (0, len(tokens.text)), _PROSE_LEVELS[level]):
        units += [piece] if tokens.count(*piece) <= max_tokens else _prose_units(tokens, max_tokens, piece, level + 1)
    return units


def _split(text: str, span: Span, separator: re.Pattern[str]) -> list[Span]:
    """The span cut at each separator, each piece stripped of surrounding whitespace; empty pieces dropped."""
    pieces: list[Span] = []
    start = span[0]
    for match in separator.finditer(text, span[0], span[1]):
        pieces.append((start, match.start()))
        start = match.end()
    pieces.append((start, span[1]))
    return [stripped for piece in pieces if (stripped := _strip(text, piece))[1] > stripped[0]]


def _strip(text: str, span: Span) -> Span:
    start, end = span
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _pack(tokens: Tokens, units: list[Span], max_tokens: int, overlap: int) -> list[Span]:
    """Greedily join consecutive units (each within the window) into chunks of at most `max_tokens`."""
    chunks: list[Span] = []
    current: Span | None = None
    for unit in units:
        if current is None:
            current = unit
        elif tokens.count(current[0], unit[1]) <= max_tokens:
            current = (current[0], unit[1])
        else:
            chunks.append(current)
            if _PARAGRAPH_BREAK.search(tokens.text, current[1], unit[0]):
                current = unit  # a paragraph stands on its own: repeating the last one's end adds nothing
            else:  # cut inside a paragraph: carry its context over
                room = max_tokens - tokens.count(*unit)
                current = (_overlap_start(tokens, current, min(overlap, room), unit[0]), unit[1])
    if current is not None:
        chunks.append(current)
    return chunks


def _overlap_start(tokens: Tokens, previous: Span, overlap: int, next_start: int) -> int:
    """Where the next chunk starts: at most the last `overlap` tokens of the previous one, from a word start."""
    stop = tokens.stop(previous[1])
    index = max(tokens.first(previous[0]) + 1, stop - overlap)
    if index < stop:
        # Prefer to repeat whole sentences: start after the first sentence break in the overlap.
        sentence_break = _OVERLAP_BREAK.search(tokens.text, tokens.starts[index], previous[1])
        if sentence_break:
            index = tokens.first(sentence_break.end())
    while index < stop and not tokens.can_cut_before(index):
        index += 1
    return tokens.starts[index] if index < stop else next_start


# --- code ------------------------------------------------------------------------------

def _code_units(tokens: Tokens, max_tokens: int, python: bool) -> list[Span]:
    lines = _line_starts(tokens.text)
    if python:
        try:
            body = ast.parse(tokens.text).body
        except (SyntaxError, ValueError):
            body = None
        if body:
            return _python_units(tokens, lines, body, 0, len(lines) - 1, max_tokens)
    return [unit for block in _heuristic_blocks(tokens.text, lines) for unit in _fit(tokens, block, lines, max_tokens)]


def _line_starts(text: str) -> list[int]:
    return [0] + [match.end() for match in re.finditer("\n", text)]


def _lines_span(text: str, lines: list[int], first_line: int, last_line: int) -> Span:
    """Characters of lines first_line..last_line (0-based, inclusive)."""
    end = lines[last_line + 1] if last_line + 1 < len(lines) else len(text)
    return lines[first_line], end


def _first_line(node: ast.stmt) -> int:
    """0-based first line of a statement, its decorators included."""
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1


def _python_units(tokens: Tokens, lines: list[int], body: list[ast.stmt], first_line: int, last_line: int,
                  max_tokens: int) -> list[Span]:
    """One unit per statement, with the comments and blank lines above it; a class too big for the
    window is split into its header and its members, anything else too big into line windows."""
    units: list[Span] = []
    for i, node in enumerate(body):
        start = first_line if i == 0 else _first_line(node)
        end = _first_line(body[i + 1]) - 1 if i + 1 < len(body) else last_line
        span = _lines_span(tokens.text, lines, start, end)
        if isinstance(node, ast.ClassDef) and tokens.count(*span) > max_tokens:
            members_start = _first_line(node.body[0])
            if members_start > start:
                units += _fit(tokens, _lines_span(tokens.text, lines, start, members_start - 1), lines, max_tokens)
            units += _python_units(tokens, lines, node.body, members_start, end, max_tokens)
        else:
            units += _fit(tokens, span, lines, max_tokens)
    return units


def _heuristic_blocks(text: str, lines: list[int]) -> list[Span]:
    """Blocks of other languages: a block starts at column 0 after a blank line or a closing-brace line."""
    raw = text.split("\n")
    boundaries = [0]
    for i in range(1, len(raw)):
        line, previous = raw[i], raw[i - 1].strip()
        starts_top_level = bool(line) and not line[0].isspace() and line[0] not in "})]"
        if starts_top_level and previous in ("", "}", "};", "end"):
            boundaries.append(i)
    ends = [b - 1 for b in boundaries[1:]] + [len(raw) - 1]
    return [_lines_span(text, lines, start, end) for start, end in zip(boundaries, ends)]


def _fit(tokens: Tokens, block: Span, lines: list[int], max_tokens: int) -> list[Span]:
    return [block] if tokens.count(*block) <= max_tokens else _line_windows(tokens, block, lines, max_tokens)


def _line_windows(tokens: Tokens, block: Span, lines: list[int], max_tokens: int) -> list[Span]:
    """A block too big for one chunk: whole lines packed up to the window, token windows for a longer line."""
    first = bisect.bisect_right(lines, block[0]) - 1
    last = bisect.bisect_left(lines, block[1]) - 1
    units: list[Span] = []
    for index in range(first, last + 1):
        line = _lines_span(tokens.text, lines, index, index)
        line = (max(line[0], block[0]), min(line[1], block[1]))
        if tokens.count(*line) > max_tokens:
            units.extend(tokens.windows(line, max_tokens))
        elif line[1] > line[0]:
            units.append(line)
    return _pack(tokens, units, max_tokens, overlap=0)


def _trim_code(text: str, span: Span) -> Span:
    """Drop blank lines around a code chunk and trailing whitespace; keep the first line's indentation."""
    start, end = span
    while end > start and text[end - 1].isspace():
        end -= 1
    while start < end:
        newline = text.find("\n", start, end)
        if newline == -1 or text[start:newline].strip():
            break
        start = newline + 1
    return start, end
