"""The one prompt builder: where retrieved material goes, and how it reads."""
from __future__ import annotations

from llmtwin.domain import DocumentKind
from llmtwin.models import load_tokenizer
from llmtwin.prompts import FORMAT_HINTS, MATERIAL_INTRO, build_messages, build_prompt, encode_prompt_within

PASSAGES = ["Idempotent writes make retries safe.", "Hash the natural key to get the id."]


def test_material_opens_the_users_turn_unnumbered_and_the_instruction_closes_it():
    system, user = build_messages("Write about retries.", twin_name="Ada", kind=DocumentKind.POST,
                                  context=[f"  {PASSAGES[0]}\n", PASSAGES[1]])
    assert system == {"role": "system", "content": "You are Ada's writing twin. Write in Ada's own voice, "
                                                   "style and point of view."}
    assert user["role"] == "user"
    parts = user["content"].split("\n\n")
    assert parts[0] == MATERIAL_INTRO
    assert parts[-2:] == [FORMAT_HINTS[DocumentKind.POST], "Write about retries."]
    material = user["content"][len(MATERIAL_INTRO):user["content"].index(FORMAT_HINTS[DocumentKind.POST])]
    # Each passage once, stripped, in the order given; no "[1]"-style numbers for a small model to echo.
    assert material.index(PASSAGES[0]) < material.index(PASSAGES[1])
    assert "[1]" not in material and "[2]" not in material and "  Idempotent" not in material


def test_without_material_the_users_turn_is_the_format_hint_and_the_instruction():
    _, user = build_messages(" Write about retries. ", twin_name="Ada", kind=DocumentKind.ARTICLE)
    assert user["content"] == f"{FORMAT_HINTS[DocumentKind.ARTICLE]}\n\nWrite about retries."


def test_a_tokenizer_without_a_chat_template_gets_the_plain_roles():
    prompt = build_prompt(None, "Write about retries.", twin_name="Ada", context=PASSAGES)
    assert prompt.startswith("### system\nYou are Ada's writing twin.")
    assert prompt.index("### user\n" + MATERIAL_INTRO) < prompt.index("Write about retries.")
    assert prompt.endswith("Write about retries.\n\n### assistant\n")


def test_a_prompt_keeps_as_much_material_as_fits_its_budget_the_last_passages_going_first(tiny_base_model):
    tokenizer = load_tokenizer(tiny_base_model)

    def ids(context):
        prompt = build_prompt(tokenizer, "Write about retries.", twin_name="Ada", context=context)
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def fitted(budget):
        return encode_prompt_within(tokenizer, "Write about retries.", twin_name="Ada", context=PASSAGES,
                                    budget=budget)

    assert fitted(len(ids(PASSAGES))) == (ids(PASSAGES), 2)
    assert fitted(len(ids(PASSAGES)) - 1) == (ids(PASSAGES[:1]), 1)
    assert fitted(len(ids([]))) == (ids([]), 0)
    assert fitted(1) == (ids([]), 0)  # nothing fits: the bare prompt, for the caller to refuse or cut
