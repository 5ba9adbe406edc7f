"""Prompt chaining: an outline first, then a draft whose instruction carries it."""
from __future__ import annotations

from llmtwin.domain import DocumentKind, Twin
from twin_inference.answers import Answer, RequestInfo, Sources
from twin_inference.backends import GenerationReport, GenerationSettings, PromptSpec
from twin_inference.chaining import draft_spec, outline_spec

REQUEST = PromptSpec("An article about feature stores", "Ada", DocumentKind.ARTICLE,
                     ["A feature store keeps clean text.", "Chunks carry their embeddings."])


class ScriptedBackend:
    """Unit-test backend: keeps every step's spec and settings; answers each step with its script's words."""

    description = "scripted"

    def __init__(self, *scripts: list[str]) -> None:
        self.scripts = list(scripts)
        self.steps: list[tuple[PromptSpec, GenerationSettings]] = []

    async def stream(self, spec: PromptSpec, settings: GenerationSettings, report: GenerationReport):
        self.steps.append((spec, settings))
        words = self.scripts.pop(0)
        report.prompt_tokens, report.completion_tokens, report.context_used = 100, len(words), len(spec.context)
        for word in words:
            yield word

    async def aclose(self) -> None:
        pass


def answer_with(backend: ScriptedBackend, outline: GenerationSettings | None) -> Answer:
    return Answer("generate", RequestInfo.now("r1"), Twin(id="ada", name="Ada"), Sources([], []), REQUEST,
                  GenerationSettings(50, 0.7), backend, "1", outline_settings=outline)


async def test_the_draft_follows_the_outline_written_first_from_the_same_material():
    backend = ScriptedBackend(["1. What it keeps\n", "2. Why"], ["Feature ", "stores ", "matter."])
    answer = answer_with(backend, GenerationSettings(20, 0.7))

    outline = [piece async for piece in answer.outline_text()]
    draft = [piece async for piece in answer.text()]

    assert outline == ["1. What it keeps\n", "2. Why"] and draft == ["Feature ", "stores ", "matter."]
    [(first, first_settings), (second, second_settings)] = backend.steps
    # Both steps are the same kind of request on the same material; only the instruction differs.
    assert (first.twin_name, first.kind, first.context) == (second.twin_name, second.kind, second.context) \
        == (REQUEST.twin_name, REQUEST.kind, REQUEST.context)
    assert REQUEST.instruction in first.instruction and "outline" in first.instruction
    assert REQUEST.instruction in second.instruction and "1. What it keeps\n2. Why" in second.instruction
    assert first_settings.max_new_tokens == 20 and second_settings.max_new_tokens == 50
    assert answer.usage == {"prompt_tokens": 200, "completion_tokens": 5, "total_tokens": 205}
    assert answer.outline == "1. What it keeps\n2. Why"


async def test_a_caller_that_only_reads_the_text_still_gets_a_draft_that_follows_the_outline():
    backend = ScriptedBackend(["1. Point"], ["Draft."])

    assert [piece async for piece in answer_with(backend, GenerationSettings(20)).text()] == ["Draft."]
    assert "1. Point" in backend.steps[1][0].instruction


async def test_without_chaining_the_request_goes_to_the_model_as_asked():
    backend = ScriptedBackend(["Just ", "the draft."])
    answer = answer_with(backend, None)

    assert [piece async for piece in answer.outline_text()] == []
    assert [piece async for piece in answer.text()] == ["Just ", "the draft."]
    assert [spec for spec, _ in backend.steps] == [REQUEST] and answer.outline is None


def test_an_empty_outline_leaves_the_request_as_it_was():
    assert draft_spec(REQUEST, " \n") == REQUEST
    assert outline_spec(REQUEST).context == REQUEST.context
