"""Writing with the twin: the inference API's answer stream, relayed event by event.

The inference API answers `POST /v1/generate` with server-sent events whose data is JSON:
`token` ({text}), `citations` ({documents, links}), `done` ({model_version, usage...}) or
`error` ({message, type, code}). This module reads that stream and yields the page's own
events: `token` (the plain piece of text), `citations` (one JSON list), `done`, `error` (a
sentence), turning every way the call can fail into an `error` a person can understand,
so the browser only ever has one simple stream to read.
"""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from .validation import WritingRequest

TOKEN, CITATIONS, DONE, ERROR = "token", "citations", "done", "error"
DEFAULT_TEMPERATURE = 0.7


class Citation(BaseModel):
    chunk_id: str = ""
    document_id: str = ""
    link: str = ""
    title: str = ""
    score: float | None = None
    copied_words: int = 0  # words of the answer quoted word for word from this source


_CITATIONS = TypeAdapter(list[Citation])


@dataclass(frozen=True)
class StreamEvent:
    event: str
    data: str

    def as_sse(self) -> dict[str, str]:
        return {"event": self.event, "data": self.data}


def http_client_for_inference() -> httpx.AsyncClient:
    # A small model on CPU can think for minutes before its first token: long reads, short connects.
    return httpx.AsyncClient(timeout=httpx.Timeout(connect=5.0, read=300.0, write=30.0, pool=10.0))


class InferenceClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + "/v1/generate"

    async def stream(self, twin_id: str, request: WritingRequest, *, max_new_tokens: int,
                     temperature: float) -> AsyncIterator[StreamEvent]:
        body = {"twin_id": twin_id, "prompt": request.prompt, "links": request.links, "format": request.format.value,
                "max_new_tokens": max_new_tokens, "temperature": temperature}
        try:
            async with self._http.stream("POST", self._url, json=body,
                                         headers={"Accept": "text/event-stream"}) as response:
                if response.status_code != 200:
                    yield StreamEvent(ERROR, await _refusal(response))
                    return
                async for event in _relay(parse_sse(response.aiter_lines())):
                    yield event
                    if event.event in (DONE, ERROR):
                        return
                yield StreamEvent(ERROR, "The writing service stopped before finishing the answer.")
        except httpx.ConnectError:
            yield StreamEvent(ERROR, f"The writing service is not reachable at {self._url}. "
                                     "Start the inference API, then try again.")
        except httpx.TimeoutException:
            yield StreamEvent(ERROR, "The writing service took too long to answer. Try again in a moment, "
                                     "or ask for a shorter answer.")
        except httpx.HTTPError as exc:
            yield StreamEvent(ERROR, f"The connection to the writing service broke ({type(exc).__name__}). "
                                     "Try again.")


async def _relay(events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    async for event in events:
        if event.event == TOKEN:
            yield StreamEvent(TOKEN, str(_json_object(event.data).get("text", "")))
        elif event.event == CITATIONS:
            try:
                citations = _citations(_json_object(event.data))
            except ValidationError:
                continue  # the answer is still worth having without its sources
            yield StreamEvent(CITATIONS, json.dumps([c.model_dump() for c in citations]))
        elif event.event == DONE:
            yield event
        elif event.event == ERROR:
            error = _json_object(event.data)
            yield StreamEvent(ERROR, str(error.get("message") or event.data or "The writing service failed."))


def _json_object(data: str) -> dict:
    try:
        value = json.loads(data or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _citations(sources: dict) -> list[Citation]:
    """The twin's own documents first, then the pages the person handed in for this answer; each
    source once (the inference API cites every passage, and two may come from one document), at
    its best-scored passage, which the API lists first, with the words quoted from all of them."""
    documents = _CITATIONS.validate_python(sources.get("documents") or [])
    links = [Citation(link=item.get("final_url") or item.get("link") or "", title=item.get("title") or "",
                      copied_words=item.get("copied_words") or 0)
             for item in sources.get("links") or [] if isinstance(item, dict)]
    by_source: dict[str, Citation] = {}
    for citation in [*documents, *links]:
        source = citation.document_id or citation.link
        if source in by_source:
            first = by_source[source]
            by_source[source] = first.model_copy(update={"copied_words": first.copied_words + citation.copied_words})
        else:
            by_source[source] = citation
    return list(by_source.values())


async def _refusal(response: httpx.Response) -> str:
    raw = (await response.aread()).decode("utf-8", "replace")
    try:
        refusal = json.loads(raw)
        detail = refusal.get("detail") or (refusal.get("error") or {}).get("message") or raw
    except (json.JSONDecodeError, AttributeError):
        detail = raw
    if not isinstance(detail, str):
        detail = json.dumps(detail)
    detail = detail.strip()[:300] or response.reason_phrase
    return f"The writing service could not answer (HTTP {response.status_code}): {detail}"


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[StreamEvent]:
    """Server-sent events from a text stream (the WHATWG rules that matter here)."""
    name, data, seen = "", [], False
    async for line in lines:
        if not line:
            if seen:
                yield StreamEvent(name or "message", "\n".join(data))
            name, data, seen = "", [], False
            continue
        if line.startswith(":"):
            continue  # a comment, such as a keep-alive ping
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "event":
            name, seen = value, True
        elif key == "data":
            data.append(value)
            seen = True
    if seen:
        yield StreamEvent(name or "message", "\n".join(data))


@dataclass
class Answer:
    """A whole answer, for the page that works without JavaScript."""

    text: str = ""
    citations: list[Citation] = field(default_factory=list)
    error: str | None = None


async def collect(events: AsyncIterator[StreamEvent]) -> Answer:
    answer, pieces = Answer(), []
    async for event in events:
        if event.event == TOKEN:
            pieces.append(event.data)
        elif event.event == CITATIONS:
            answer.citations = _CITATIONS.validate_json(event.data)
        elif event.event == ERROR:
            answer.error = event.data
    answer.text = "".join(pieces)
    return answer
