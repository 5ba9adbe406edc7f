"""Answering one request: the twin, its passages and links, the model's streamed text, the sources.

Shared by the OpenAI-compatible and the native endpoint; each only formats the stream.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from llmtwin.copying import copied_words
from llmtwin.domain import DocumentKind, Twin
from llmtwin.warehouse import Collection, Warehouse
from llmtwin.warehouse.repository import Repository

from .auth import KeyScope
from .chaining import draft_spec, outline_spec
from .backends import (
    GenerationBackend,
    GenerationReport,
    GenerationSettings,
    PromptSpec,
)
from .links import LinkedMaterial, LinkFetcher
from .metrics import REQUEST_SECONDS, REQUESTS, TIME_TO_FIRST_TOKEN, TOKENS
from .models import ModelManager, ModelNotReady
from .retrieval import Passage, Retriever
from .tracing import AnswerTracer

trace_log = logging.getLogger("twin_inference.trace")


class UnknownTwin(LookupError):
    """The request names a twin that does not exist (404)."""


# Which of the twin's writing informs each output format.
KINDS_FOR_FORMAT: dict[DocumentKind, tuple[DocumentKind, ...]] = {
    DocumentKind.POST: (DocumentKind.POST, DocumentKind.ARTICLE),
    DocumentKind.ARTICLE: (DocumentKind.ARTICLE, DocumentKind.POST),
    DocumentKind.CODE: (DocumentKind.CODE,),
}


@dataclass(frozen=True)
class Sources:
    """What a generation may draw on, in prompt order: the user's links first, then passages."""

    links: Sequence[LinkedMaterial]
    passages: Sequence[Passage]

    @property
    def context(self) -> list[str]:
        return [m.text for m in self.links] + [p.chunk.text for p in self.passages]

    def citations(self, used: int, answer: str) -> dict[str, list[dict[str, Any]]]:
        """The sources among the first `used` context items (those that fitted the model's window),
        each with how many words of `answer` it quoted word for word (`llmtwin.copying`)."""
        links = self.links[:used]
        passages = self.passages[:max(0, used - len(self.links))]
        return {"documents": [{**passage_citation(p), "copied_words": len(copied_words(answer, [p.chunk.text]))}
                              for p in passages],
                "links": [{"link": m.link, "final_url": m.final_url, "title": m.title,
                           "copied_words": len(copied_words(answer, [m.text]))} for m in links]}


def passage_citation(passage: Passage) -> dict[str, Any]:
    chunk = passage.chunk
    return {"chunk_id": chunk.id, "document_id": chunk.document_id, "link": chunk.link,
            "title": chunk.title, "score": round(passage.score, 4)}


@dataclass(frozen=True)
class RequestInfo:
    """When a request arrived, under which id it is traced."""

    id: str
    received_at: float  # time.perf_counter(), for durations
    received_ns: int  # time.time_ns(), for traces

    @classmethod
    def now(cls, request_id: str) -> RequestInfo:
        return cls(request_id, time.perf_counter(), time.time_ns())


@dataclass
class Answer:
    """One generation in progress: iterate `outline_text()` (when chained) then `text()`; then
    `report`, `usage` and `citations()` are complete."""

    endpoint: str
    request: RequestInfo
    twin: Twin
    sources: Sources
    spec: PromptSpec  # what was asked
    settings: GenerationSettings
    backend: GenerationBackend
    version: str  # of the model that answers
    outline_settings: GenerationSettings | None = None  # set: an outline is written first, the draft follows it
    report: GenerationReport = field(default_factory=GenerationReport)  # of the draft
    outline_report: GenerationReport = field(default_factory=GenerationReport)
    outline: str | None = None  # once written
    first_token_at: float | None = None
    pieces: list[str] = field(default_factory=list)

    async def outline_text(self) -> AsyncIterator[str]:
        """The outline, streamed as it is written, when this answer is chained; nothing otherwise."""
        if self.outline_settings is None or self.outline is not None:
            return
        pieces = []
        async for piece in self.backend.stream(outline_spec(self.spec), self.outline_settings, self.outline_report):
            pieces.append(piece)
            yield piece
        self.outline = "".join(pieces)

    async def text(self) -> AsyncIterator[str]:
        async for _ in self.outline_text():  # a caller that does not show the outline still needs it
            pass
        draft = draft_spec(self.spec, self.outline) if self.outline is not None else self.spec
        async for piece in self.backend.stream(draft, self.settings, self.report):
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
                TIME_TO_FIRST_TOKEN.labels(self.endpoint).observe(self.first_token_at - self.request.received_at)
            self.pieces.append(piece)
            yield piece

    @property
    def usage(self) -> dict[str, int]:
        """Tokens of every step, in the OpenAI API's shape."""
        prompt = self.report.prompt_tokens + self.outline_report.prompt_tokens
        completion = self.report.completion_tokens + self.outline_report.completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def citations(self) -> dict[str, list[dict[str, Any]]]:
        return self.sources.citations(self.report.context_used, "".join(self.pieces))


class Answerer:
    def __init__(self, warehouse: Warehouse, manager: ModelManager, retriever: Retriever,
                 links: LinkFetcher, tracer: AnswerTracer, top_k: int) -> None:
        self.twins = Repository(warehouse, Collection.TWINS, Twin)
        self.manager, self.retriever, self.links, self.tracer = manager, retriever, links, tracer
        self.top_k = top_k

    async def list_twins(self, scope: KeyScope) -> list[Twin]:
        return [twin for twin in await self.twins.list(order_by="id") if scope.allows(twin.id)]

    async def twin(self, twin_id: str, scope: KeyScope) -> Twin:
        scope.require(twin_id)
        twin = await self.twins.get(twin_id)
        if twin is None:
            raise UnknownTwin(f"there is no twin {twin_id!r}; GET /v1/models lists the twins")
        if not self.manager.can_serve(twin_id):
            raise ModelNotReady("no model is loaded yet; try again shortly (see /readyz)")
        return twin

    async def sources(self, twin: Twin, instruction: str, kind: DocumentKind | None,
                      links: Sequence[str] = ()) -> Sources:
        kinds = KINDS_FOR_FORMAT[kind] if kind is not None else None
        fetched, passages = await asyncio.gather(self.links.fetch_all(list(links)),
                                                 self.retriever.retrieve(twin.id, instruction, self.top_k, kinds))
        return Sources(fetched, passages)

    @asynccontextmanager
    async def answer(self, endpoint: str, request: RequestInfo, twin: Twin, instruction: str,
                     kind: DocumentKind | None, sources: Sources, settings: GenerationSettings,
                     outline: GenerationSettings | None = None) -> AsyncIterator[Answer]:
        """Lease the twin's model for the whole answer (both steps, when `outline` asks for an
        outline first); count and trace it when it ends."""
        spec = PromptSpec(instruction, twin.name, kind, sources.context)
        outcome = "error"
        async with self.manager.lease(twin.id) as served:
            answer = Answer(endpoint, request, twin, sources, spec, settings, served.backend, served.version,
                            outline_settings=outline)
            try:
                yield answer
                outcome = "ok"
            finally:
                self._record(answer, outcome)

    def _record(self, answer: Answer, outcome: str) -> None:
        seconds = time.perf_counter() - answer.request.received_at
        report, usage = answer.report, answer.usage
        REQUESTS.labels(answer.endpoint, outcome).inc()
        REQUEST_SECONDS.labels(answer.endpoint).observe(seconds)
        TOKENS.labels("prompt").inc(usage["prompt_tokens"])
        TOKENS.labels("completion").inc(usage["completion_tokens"])
        ttft = None if answer.first_token_at is None else answer.first_token_at - answer.request.received_at
        summary = {"request_id": answer.request.id, "endpoint": answer.endpoint, "outcome": outcome,
                   "twin_id": answer.twin.id, "model_version": answer.version, "seconds": round(seconds, 4),
                   "time_to_first_token": None if ttft is None else round(ttft, 4),
                   "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                   "finish_reason": report.finish_reason, "citations": answer.citations()}
        trace_log.info(json.dumps(summary))
        trace = {**summary, "instruction": answer.spec.instruction, "text": "".join(answer.pieces),
                 "format": answer.spec.kind, "outline": answer.outline,
                 "retrieved_chunk_ids": [passage.chunk.id for passage in answer.sources.passages],
                 "started_ns": answer.request.received_ns,
                 "ended_ns": answer.request.received_ns + int(seconds * 1e9)}
        # Written off the loop; the tracer never raises.
        asyncio.get_running_loop().run_in_executor(None, self.tracer.record, trace)
