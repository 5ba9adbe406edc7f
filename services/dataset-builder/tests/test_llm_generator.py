"""The OpenAI-compatible generator against a fake endpoint served on loopback by the test."""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from llmtwin.testing.served import ServedApp
from twin_dataset_builder.generators import OpenAICompatibleGenerator, offline_instruction
from twin_dataset_builder.sections import split_sections

CONCURRENCY = 3


@dataclass
class FakeEndpoint:
    """Answers chat completions; fails the first call for texts marked flaky; refuses texts marked refused.

    A request with the instruction alone (no "Text:") asks for a base answer; those whose
    instruction contains `unanswered` get a 400."""

    flaky: str = "## Keep raw data immutable"
    refused: str = "def merge_configs"
    unanswered: str = "\x00never"
    always_status: int | None = None
    answered: Counter = field(default_factory=Counter)
    hold_first_wave: bool = True
    calls: Counter = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    auth: set = field(default_factory=set)
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()
        wave = asyncio.Event()

        @app.post("/v1/chat/completions")
        async def complete(request: Request):
            body = await request.json()
            if len(body["messages"]) == 1:
                return self.base_answer(body)
            text = body["messages"][-1]["content"].split("Text:\n", 1)[1]
            self.calls[text] += 1
            self.auth.add(request.headers.get("authorization"))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                # Hold the first requests until as many as the client may send at once have arrived.
                if self.in_flight >= CONCURRENCY or not self.hold_first_wave:
                    wave.set()
                try:
                    await asyncio.wait_for(wave.wait(), 5)
                except TimeoutError:
                    pass
                if self.always_status:
                    return JSONResponse({"error": "down"}, status_code=self.always_status)
                if text.startswith(self.flaky) and self.calls[text] == 1:
                    return JSONResponse({"error": "overloaded"}, status_code=503)
                answer = ("I'm sorry, but I can't help with that." if text.startswith(self.refused)
                          else f"Instruction: Write about {' '.join(text.split()[:4])}.")
                return {"id": "x", "object": "chat.completion", "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                     "finish_reason": "stop"}]}
            finally:
                self.in_flight -= 1

        return app

    def base_answer(self, body: dict):
        instruction = body["messages"][0]["content"]
        self.answered[instruction] += 1
        if self.unanswered in instruction:
            return JSONResponse({"error": "bad request"}, status_code=400)
        return {"id": "y", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant",
                                                     "content": f"As a language model, here is a generic take. "
                                                                f"({body['max_tokens']} tokens at most)"},
                             "finish_reason": "stop"}]}


@pytest.fixture
def endpoint():
    fake = FakeEndpoint()
    served = ServedApp(fake.app()).start()
    fake.url = f"{served.url}/v1"
    yield fake
    served.stop()


def generator(endpoint: FakeEndpoint, tmp_path, **options) -> OpenAICompatibleGenerator:
    return OpenAICompatibleGenerator(endpoint.url, "fake-model", "sk-test", cache_dir=tmp_path / "cache",
                                     concurrency=CONCURRENCY, backoff_seconds=0.01, **options)


async def test_batched_retried_validated_and_cached(endpoint, tmp_path, post_doc, article_doc, code_doc):
    docs = [post_doc, article_doc, code_doc]
    sections = [s for d in docs for s in split_sections(d)]
    llm = generator(endpoint, tmp_path)
    try:
        samples = await llm.generate(docs)
    finally:
        await llm.close()

    assert len(samples) == len(sections) == 7
    assert endpoint.max_in_flight == CONCURRENCY  # concurrent, and never more than allowed
    assert endpoint.auth == {"Bearer sk-test"}
    by_answer = {s.answer: s for s in samples}
    flaky = next(s for s in sections if s.text.startswith(endpoint.flaky))
    assert endpoint.calls[flaky.text] == 2  # a 503, then a retry that worked
    assert by_answer[flaky.text].instruction == "Write about ## Keep raw data."
    assert by_answer[flaky.text].generator == "llm:fake-model"
    refused = next(s for s in sections if s.text.startswith(endpoint.refused))
    assert by_answer[refused.text].instruction == offline_instruction(refused)
    assert by_answer[refused.text].generator == "offline"
    assert all(s.answer in d.content for s in samples for d in docs if d.id == s.document_id)

    calls_before = sum(endpoint.calls.values())
    rerun = generator(endpoint, tmp_path)
    try:
        again = await rerun.generate(docs)
    finally:
        await rerun.close()
    assert sum(endpoint.calls.values()) == calls_before  # every answer came from the cache
    assert [s.model_dump() for s in again] == [s.model_dump() for s in samples]


async def test_an_endpoint_that_keeps_failing_gives_offline_instructions_and_caches_nothing(
        endpoint, tmp_path, post_doc):
    endpoint.always_status, endpoint.hold_first_wave = 500, False
    llm = generator(endpoint, tmp_path, max_retries=2)
    try:
        [sample] = await llm.generate([post_doc])
        assert sample.generator == "offline"
        assert sample.instruction == offline_instruction(split_sections(post_doc)[0])
        assert sum(endpoint.calls.values()) == 3  # the first try and two retries
        await llm.generate([post_doc])
        assert sum(endpoint.calls.values()) == 6  # failures are not cached: asked again
    finally:
        await llm.close()


async def test_a_client_error_is_not_retried(endpoint, tmp_path, post_doc):
    endpoint.always_status, endpoint.hold_first_wave = 401, False
    llm = generator(endpoint, tmp_path)
    try:
        [sample] = await llm.generate([post_doc])
    finally:
        await llm.close()
    assert sample.generator == "offline"
    assert sum(endpoint.calls.values()) == 1


# --- preference pairs: the real text against the configured model's own answer ------------------

async def test_the_builder_stores_a_preference_pair_for_each_kept_sample(endpoint, tmp_path, sqlite_url,
                                                                         post_doc, article_doc):
    from llmtwin.domain import CleanDocument, InstructSample, PreferencePair, content_hash
    from llmtwin.events import CleanDocStored
    from llmtwin.warehouse import Collection, open_warehouse
    from llmtwin.warehouse.repository import Repository
    from twin_dataset_builder.service import DatasetBuilder

    endpoint.hold_first_wave = False
    warehouse = open_warehouse(sqlite_url)
    docs = Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument)
    pairs = Repository(warehouse, Collection.PREFERENCE_PAIRS, PreferencePair)
    llm = generator(endpoint, tmp_path)
    builder = DatasetBuilder(warehouse, llm)

    def stored(doc: CleanDocument) -> CleanDocStored:
        return CleanDocStored(id=doc.id, twin_id=doc.twin_id, kind=doc.kind, platform=doc.platform,
                              content_hash=doc.content_hash)

    try:
        for doc in (post_doc, article_doc):
            await docs.add(doc)
        await builder.handle([stored(post_doc), stored(article_doc)])
        samples = await Repository(warehouse, Collection.INSTRUCT_SAMPLES, InstructSample).list()
        by_sample = {p.sample_id: p for p in await pairs.list()}
        assert len(samples) == 4 and set(by_sample) == {s.id for s in samples}
        for sample in samples:
            pair = by_sample[sample.id]
            assert (pair.twin_id, pair.document_id, pair.kind) == (sample.twin_id, sample.document_id, sample.kind)
            assert (pair.prompt, pair.chosen) == (sample.instruction, sample.answer)
            assert pair.rejected == "As a language model, here is a generic take. (512 tokens at most)"
            assert pair.model == "fake-model"
            assert endpoint.answered[sample.instruction] == 1

        # The article changes: its changed section's sample gets a new pair; its old sample loses its pair.
        # The endpoint refuses to answer the new one: no pair for it, the unchanged samples keep theirs.
        endpoint.unanswered = "Version your datasets"  # in the instruction the endpoint made for it
        changed_text = article_doc.content.replace("## Version the datasets, not only the models",
                                                   "## Version your datasets as well as your models")
        changed = article_doc.model_copy(update={"content": changed_text,
                                                 "content_hash": content_hash(changed_text)})
        await docs.add(changed)
        await builder.handle([stored(changed)])
        samples = await Repository(warehouse, Collection.INSTRUCT_SAMPLES, InstructSample).list(
            {"document_id": article_doc.id})
        [new_sample] = [s for s in samples if "as well as your models" in s.answer]
        assert endpoint.answered[new_sample.instruction] == 1
        after = {p.sample_id for p in await pairs.list({"document_id": article_doc.id})}
        assert after == {s.id for s in samples} - {new_sample.id}
        assert sum(endpoint.answered.values()) == 5  # the unchanged samples' answers came from the cache
    finally:
        await builder.close()

