"""Prompt chaining: an outline first, then the draft that follows it.

A long piece (an article) holds together better when its structure is settled before its
sentences: the model first outlines the piece from the same material, then writes the draft
with that outline in its instruction. Each step is an ordinary `PromptSpec` that the backend
renders with the one prompt builder (`llmtwin.prompts`, the one training used): the twin's
system prompt, the material, the format hint; only the instruction differs.
"""
from __future__ import annotations

from dataclasses import replace

from .backends import PromptSpec

OUTLINE_REQUEST = ("Before writing, outline the piece this request asks for: 3 to 6 numbered points, "
                   "one short line each, no prose.\n\nThe request: {instruction}")
DRAFT_REQUEST = "{instruction}\n\nFollow this outline:\n{outline}"


def outline_spec(request: PromptSpec) -> PromptSpec:
    """The first step: an outline of what `request` asks for, drawn from the same material."""
    return replace(request, instruction=OUTLINE_REQUEST.format(instruction=request.instruction.strip()))


def draft_spec(request: PromptSpec, outline: str) -> PromptSpec:
    """The second step: the request itself, following the outline (the request alone when none came)."""
    if not outline.strip():
        return request
    return replace(request, instruction=DRAFT_REQUEST.format(instruction=request.instruction.strip(),
                                                             outline=outline.strip()))
