"""Cut a clean document into answer-sized sections of the person's own text, verbatim.

Posts stay whole; articles are cut at their headings and, inside a long section,
at paragraph breaks into parts of a few hundred words; Python code is cut into its
top-level functions and classes (methods of long classes on their own); other code
into blocks of lines. Every section's text is an exact slice of the document.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from llmtwin.domain import CleanDocument, DocumentKind

from .keywords import words

ARTICLE_TARGET_WORDS = 250
ARTICLE_MAX_WORDS = 450
ARTICLE_MIN_WORDS = 40
CODE_MAX_LINES = 120
CODE_BLOCK_LINES = 60

BLOCK = re.compile(r"\S[\s\S]*?(?=\n[ \t]*\n|\Z)")
MARKDOWN_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
CAPTION = re.compile(r"^(image|figure|fig\.|photo|source|credit|table)\b", re.IGNORECASE)
LIST_ITEM = re.compile(r"^\s*([-*+•]|\d+[.)])\s")

LANGUAGES = {
    ".py": "Python", ".pyi": "Python", ".js": "JavaScript", ".jsx": "JavaScript", ".ts": "TypeScript",
    ".tsx": "TypeScript", ".go": "Go", ".rs": "Rust", ".java": "Java", ".kt": "Kotlin", ".c": "C",
    ".h": "C", ".cc": "C++", ".cpp": "C++", ".hpp": "C++", ".cs": "C#", ".rb": "Ruby", ".php": "PHP",
    ".swift": "Swift", ".scala": "Scala", ".sh": "shell", ".sql": "SQL", ".r": "R", ".jl": "Julia",
    ".ipynb": "Python", ".md": "Markdown", ".yaml": "YAML", ".yml": "YAML", ".toml": "TOML",
}


@dataclass(frozen=True)
class Section:
    document: CleanDocument
    position: int
    text: str
    heading: str = ""  # articles: the heading the section sits under
    symbol: str = ""  # code: "function parse_config", "class Cache", "method Cache.get"
    signature: str = ""  # code: "parse_config(path, strict=False)"
    docstring: str = ""  # code: the first paragraph of the docstring
    part: int = 0  # articles: the part's number inside a long heading's section (0: the first)

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.document.link.split("?")[0].rstrip("/")).name

    @property
    def language(self) -> str:
        return LANGUAGES.get(PurePosixPath(self.file_name).suffix.lower(), "")


def split_sections(doc: CleanDocument) -> list[Section]:
    if doc.kind == DocumentKind.POST:
        text = doc.content.strip()
        return [Section(doc, 0, text)] if text else []
    if doc.kind == DocumentKind.ARTICLE:
        return _article_sections(doc)
    return _code_sections(doc)


# --- articles ------------------------------------------------------------------------------

@dataclass
class _Block:
    start: int
    end: int
    words: int
    heading: str | None


def _heading_of(block: str) -> str | None:
    if "\n" in block.strip():
        return None
    line = block.strip()
    if match := MARKDOWN_HEADING.match(line):
        return _plain(match.group(1))
    # Exports that lost their markup still keep headings as short lines of their own.
    bare = line.strip("*_ ")
    if (bare and len(bare) <= 80 and len(bare.split()) <= 10 and bare[0].isupper()
            and bare[-1] not in ".!?:,;" and not LIST_ITEM.match(line) and not CAPTION.match(bare)
            and not bare.startswith(("http", "!["))):
        return _plain(bare)
    return None


def _plain(heading: str) -> str:
    """A heading without its markdown: no emphasis marks, no backslash escapes."""
    return re.sub(r"\\(.)", r"\1", heading.replace("**", "")).strip("*_ ")


def _article_sections(doc: CleanDocument) -> list[Section]:
    blocks = [block for m in BLOCK.finditer(doc.content) for block in _blocks_of(m.start(), m.group())]
    parts: list[tuple[str, int, list[_Block]]] = []  # (heading, part number, blocks)
    heading, part_no, current, current_words = "", 0, [], 0
    for block in blocks:
        starts_part = block.heading is not None or (
            current_words >= ARTICLE_TARGET_WORDS or current_words + block.words > ARTICLE_MAX_WORDS)
        if current and starts_part and _body_words(current) > 0:
            parts.append((heading, part_no, current))
            part_no = 0 if block.heading is not None else part_no + 1
            current, current_words = [], 0
        if block.heading is not None and _body_words(current) == 0:
            # A new section; of headings that follow each other, the last names it.
            heading, part_no = block.heading, 0
        current.append(block)
        current_words += block.words
    if current:
        parts.append((heading, part_no, current))
    merged: list[tuple[str, int, list[_Block]]] = []
    for part in parts:
        # A short tail (or a lone heading) reads better as the end of the part before it.
        if merged and _body_words(part[2]) < ARTICLE_MIN_WORDS and \
                sum(b.words for b in merged[-1][2]) + sum(b.words for b in part[2]) <= ARTICLE_MAX_WORDS:
            merged[-1] = (merged[-1][0], merged[-1][1], merged[-1][2] + part[2])
        else:
            merged.append(part)
    return [Section(doc, i, doc.content[blocks_[0].start:blocks_[-1].end], heading=h, part=n)
            for i, (h, n, blocks_) in enumerate(merged)]


def _blocks_of(start: int, text: str) -> list[_Block]:
    """A paragraph as one block; a paragraph too long for one answer as runs of its lines or sentences."""
    count = len(words(text))
    if count <= ARTICLE_MAX_WORDS:
        return [_Block(start, start + len(text), count, _heading_of(text))]
    blocks: list[_Block] = []
    piece_start = 0
    for boundary in SENTENCE_END.finditer(text):
        piece = text[piece_start:boundary.start()]
        piece_words = len(words(piece))
        if piece_words >= ARTICLE_TARGET_WORDS:
            blocks.append(_Block(start + piece_start, start + boundary.start(), piece_words, None))
            piece_start = boundary.end()
    if piece_start < len(text):
        blocks.append(_Block(start + piece_start, start + len(text), len(words(text[piece_start:])), None))
    return blocks


def _body_words(blocks: list[_Block]) -> int:
    return sum(b.words for b in blocks if b.heading is None)


# --- code ------------------------------------------------------------------------------------

def _code_sections(doc: CleanDocument) -> list[Section]:
    lines = doc.content.splitlines(keepends=True)
    python = _python_sections(doc, lines)
    if python is not None:
        return python
    return _line_block_sections(doc, lines)


def _python_sections(doc: CleanDocument, lines: list[str]) -> list[Section] | None:
    try:
        tree = ast.parse(doc.content)
    except (SyntaxError, ValueError):
        return None
    nodes = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    if not nodes:
        return None
    sections: list[Section] = []
    for node in nodes:
        if isinstance(node, ast.ClassDef) and node.end_lineno - _first_line(node) + 1 > CODE_MAX_LINES:
            methods = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
            sections += [_python_section(doc, lines, m, len(sections) + i, owner=node.name)
                         for i, m in enumerate(methods)]
        else:
            sections.append(_python_section(doc, lines, node, len(sections)))
    return sections


def _first_line(node: ast.AST) -> int:
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])


def _python_section(doc: CleanDocument, lines: list[str], node: ast.AST, position: int,
                    owner: str = "") -> Section:
    text = "".join(lines[_first_line(node) - 1:node.end_lineno]).rstrip()
    docstring = (ast.get_docstring(node) or "").split("\n\n")[0]
    docstring = " ".join(docstring.split())
    if isinstance(node, ast.ClassDef):
        symbol, signature = f"class {node.name}", node.name
    else:
        args = ast.unparse(node.args)
        symbol = f"method {owner}.{node.name}" if owner else f"function {node.name}"
        signature = f"{node.name}({args})"
    return Section(doc, position, text, symbol=symbol, signature=signature, docstring=docstring)


def _line_block_sections(doc: CleanDocument, lines: list[str]) -> list[Section]:
    """Blocks of up to CODE_BLOCK_LINES lines, cut at blank lines where possible."""
    sections: list[Section] = []
    start = 0
    while start < len(lines):
        end = min(start + CODE_BLOCK_LINES, len(lines))
        if end < len(lines):
            blank = max((i for i in range(start + CODE_BLOCK_LINES // 2, end) if not lines[i].strip()), default=None)
            end = blank + 1 if blank is not None else end
        text = "".join(lines[start:end]).strip("\n")
        if text.strip():
            sections.append(Section(doc, len(sections), text))
        start = end
    return sections
