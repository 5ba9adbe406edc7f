"""The one prompt builder: training renders samples with it, serving renders requests with it.

A chat model's own chat template is used when the tokenizer has one; otherwise a
plain fallback template. Either way, training and serving produce byte-identical
prompts for the same instruction and context.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .domain import DocumentKind

SYSTEM_PROMPT = (
    "You are {name}'s writing twin. Write in {name}'s own voice, style and point of view."
)

FORMAT_HINTS: dict[DocumentKind, str] = {
    DocumentKind.POST: "Write a LinkedIn-style post.",
    DocumentKind.ARTICLE: "Write an article section.",
    DocumentKind.CODE: "Write code.",
}

FALLBACK_TEMPLATE_ROLE = "### {role}\n{content}\n\n"

# Retrieved or linked material opens the user's turn, as data (never in the system message: crawled
# or linked text must not speak with the twin's own instructions). Unnumbered: numbered passages came
# back as "[5] [6] ..." in 12 of 18 of the demo twin's answers, none so.
MATERIAL_INTRO = "Material to draw on, from your own writing and the links you were given:"
MATERIAL_SEPARATOR = "\n\n---\n\n"


class ChatTokenizer(Protocol):
    chat_template: Any

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def build_messages(instruction: str, *, twin_name: str, kind: DocumentKind | None = None,
                   context: Sequence[str] = ()) -> list[dict[str, str]]:
    """System + user messages for one request. `context` is retrieved or linked material."""
    system = SYSTEM_PROMPT.format(name=twin_name)
    user_parts = []
    if context:
        user_parts.append(f"{MATERIAL_INTRO}\n\n{MATERIAL_SEPARATOR.join(text.strip() for text in context)}")
    if kind is not None:
        user_parts.append(FORMAT_HINTS[DocumentKind(kind)])
    user_parts.append(instruction.strip())
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(user_parts)}]


def control_tokens(tokenizer: Any) -> list[str]:
    """The strings a tokenizer reads as control tokens (turn markers, end of text), longest first."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    tokens = {token.content for token in added.values() if getattr(token, "special", False)}
    tokens.update(getattr(tokenizer, "all_special_tokens", None) or ())
    return sorted((token for token in tokens if token), key=len, reverse=True)


def defuse(text: str, tokens: Sequence[str]) -> str:
    """`text` without control tokens, so that crawled or typed text cannot open a turn of its own
    (a fake system message) in the rendered prompt: it stays data."""
    while any(token in text for token in tokens):  # again: a removal may join the halves of another
        for token in tokens:
            text = text.replace(token, "")
    return text


def render_prompt(tokenizer: ChatTokenizer | None, messages: list[dict[str, str]]) -> str:
    """The text the model sees before its answer (generation prompt included)."""
    if tokenizer is not None:
        tokens = control_tokens(tokenizer)
        messages = [{**message, "content": defuse(message["content"], tokens)} for message in messages]
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    body = "".join(FALLBACK_TEMPLATE_ROLE.format(role=m["role"], content=m["content"]) for m in messages)
    return body + "### assistant\n"


def build_prompt(tokenizer: ChatTokenizer | None, instruction: str, *, twin_name: str,
                 kind: DocumentKind | None = None, context: Sequence[str] = ()) -> str:
    return render_prompt(tokenizer, build_messages(instruction, twin_name=twin_name, kind=kind, context=context))


def encode_prompt_within(tokenizer: Any, instruction: str, *, twin_name: str, budget: int,
                         kind: DocumentKind | None = None, context: Sequence[str] = ()) -> tuple[list[int], int]:
    """(token ids, context items kept): the prompt with as many of its context items as fit in
    `budget` tokens, the last ones going first; with none fitting, the prompt without context,
    however long. Ids as serving encodes them: the template wrote its own special tokens."""
    used = len(context)
    while True:
        prompt = build_prompt(tokenizer, instruction, twin_name=twin_name, kind=kind, context=context[:used])
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) <= budget or used == 0:
            return ids, used
        used -= 1
