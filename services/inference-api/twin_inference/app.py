"""The inference API: OpenAI-compatible chat completions, a native generation endpoint, health.

    GET  /v1/models             the twins (a model is a twin; `model` names the twin's id)
    POST /v1/chat/completions   OpenAI convention, JSON or server-sent events (`stream: true`);
                                extra fields: `model_version` ("base" before a twin's first
                                champion) and `citations`. The last user message is the
                                instruction; the system prompt is the twin's own (the one
                                training used), so other messages are not part of the prompt.
    POST /v1/generate           native: prompt, links, format; SSE `token`... `citations`, `done`;
                                formats in `settings.outline_formats` (or `outline: true`) are
                                chained: `outline`... events first, then the draft follows it
    GET  /healthz /readyz /metrics, /docs (OpenAPI)

Every /v1 request spends one of its API key's requests (`settings.api_rate_limit_per_minute`);
past the limit it gets a 429 in OpenAI's error shape with `Retry-After` (health never counts).

`create_app` opens nothing itself: whatever is not handed in is built from settings when the
app starts (its lifespan) and closed when it stops.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from llmtwin import registry
from llmtwin.domain import DocumentKind, Twin
from llmtwin.observability import mount_observability
from llmtwin.settings import Settings
from llmtwin.warehouse import Collection, Warehouse, open_warehouse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from .answers import Answerer, RequestInfo, UnknownTwin
from .auth import (
    ApiKeys,
    Forbidden,
    KeyScope,
    RateLimited,
    RateLimiter,
    Unauthorized,
    key_digest,
)
from .backends import GenerationError, GenerationSettings, PromptTooLong
from .links import LinkError, LinkFetcher
from .models import ModelManager, ModelNotReady, loader_for
from .promotions import PromotionListener
from .retrieval import Retriever
from .tracing import AnswerTracer, MlflowTracer

log = logging.getLogger(__name__)

MAX_NEW_TOKENS_LIMIT = 4096


# --- request bodies --------------------------------------------------------------------------

class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "\n".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingRequest(BaseModel):
    """How to pick the answer's tokens, as in the OpenAI API; a penalty left out is the server's
    (settings.frequency_penalty, settings.presence_penalty)."""

    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)

    def generation(self, max_new_tokens: int, settings: Settings) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens, self.temperature, self.top_p,
            settings.frequency_penalty if self.frequency_penalty is None else self.frequency_penalty,
            settings.presence_penalty if self.presence_penalty is None else self.presence_penalty)


class ChatCompletionRequest(SamplingRequest):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(description="the twin's id (GET /v1/models)")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    n: Literal[1] = 1


class GenerateRequest(SamplingRequest):
    twin_id: str
    prompt: str = Field(min_length=1, max_length=8000)
    links: list[str] = Field(default_factory=list, max_length=5, description="new material to draw on")
    format: DocumentKind = DocumentKind.POST
    outline: bool | None = Field(None, description="outline first, then the draft that follows it "
                                                   "(default: per format, as the server is configured)")
    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS_LIMIT)


class BadRequest(ValueError):
    pass


# Every failure a client can cause or meet, as (status, OpenAI error type, code).
ERRORS: dict[type[Exception], tuple[int, str, str]] = {
    Unauthorized: (401, "authentication_error", "invalid_api_key"),
    Forbidden: (403, "permission_error", "twin_not_allowed"),
    RateLimited: (429, "requests", "rate_limit_exceeded"),
    UnknownTwin: (404, "invalid_request_error", "model_not_found"),
    LinkError: (400, "invalid_request_error", "bad_link"),
    PromptTooLong: (400, "invalid_request_error", "context_length_exceeded"),
    BadRequest: (400, "invalid_request_error", "bad_request"),
    ModelNotReady: (503, "server_error", "model_not_ready"),
    GenerationError: (502, "server_error", "generation_failed"),
}


def error_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    status, kind, code = next((v for cls, v in ERRORS.items() if isinstance(exc, cls)),
                              (500, "server_error", "internal_error"))
    if status >= 500:
        log.error("request failed: %s", exc, exc_info=exc)
    message = str(exc) if status != 500 else "internal error; see the server's log"
    return status, {"error": {"message": message, "type": kind, "code": code}}


async def _error_response(_: Request, exc: Exception) -> JSONResponse:
    status, body = error_body(exc)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return JSONResponse(body, status_code=status, headers=headers)


class RequestIdMiddleware:
    """Every request is traced under an id: the caller's X-Request-ID, or a new one (echoed back)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["info"] = RequestInfo.now(request_id)

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        await self.app(scope, receive, send_with_id)


BEARER = HTTPBearer(auto_error=False, description="An API key (when keys are configured)")


async def key_scope(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> KeyScope:
    """The caller's scope, once its key is valid and within its rate limit (every /v1 endpoint)."""
    api_keys: ApiKeys = request.app.state.api_keys
    presented = credentials.credentials if credentials else None
    scope = api_keys.scope_of(presented)
    # Only valid keys reach here, so the buckets stay one per configured key (named by its
    # digest: keys are never held in clear); an open API limits each client address instead.
    if api_keys.required:
        caller = f"key:{key_digest(presented).hex()}"
    else:
        caller = f"client:{request.client.host if request.client else ''}"
    request.app.state.rate_limiter.take(caller)
    return scope


Scope = Annotated[KeyScope, Depends(key_scope)]


@dataclass
class Runtime:
    """What the endpoints use, in place once the lifespan has started."""

    answerer: Answerer
    manager: ModelManager


def create_app(settings: Settings, *, manager: ModelManager | None = None, retriever: Retriever | None = None,
               warehouse: Warehouse | None = None, link_fetcher: LinkFetcher | None = None,
               tracer: AnswerTracer | None = None, listen_for_promotions: bool = True) -> FastAPI:
    """The API. Parts not handed in are built from `settings` at start-up and closed at shutdown;
    a manager built here loads the base model and every twin's champion in the background.
    A manager handed in is the caller's to load and close (with the registry configured)."""
    runtime: Runtime | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        nonlocal runtime
        async with AsyncExitStack() as stack:
            store = warehouse or open_warehouse(settings.warehouse)
            if warehouse is None:
                stack.push_async_callback(store.close)
            search = retriever or await Retriever.open(settings)
            if retriever is None:
                stack.callback(search.client.close)
            fetcher = link_fetcher or LinkFetcher.from_settings(settings)
            if link_fetcher is None:
                stack.push_async_callback(fetcher.aclose)
            models = manager
            if models is None:
                await asyncio.to_thread(registry.configure, settings)
                models = ModelManager(loader_for(settings))
                stack.push_async_callback(models.close)
                models.load_all_in_background(await store.ids(Collection.TWINS))
            if listen_for_promotions:
                listener = PromotionListener(settings, models)
                await listener.start()
                stack.push_async_callback(listener.stop)
            monitor = tracer or await asyncio.to_thread(MlflowTracer.open, settings)
            runtime = Runtime(Answerer(store, models, search, fetcher, monitor, settings.retrieval_top_k), models)
            yield
            runtime = None

    app = FastAPI(title="LLM Twin inference API", version="0.1.0", lifespan=lifespan,
                  description="Generation in a person's voice, grounded in their own writing. "
                              "OpenAI-compatible: `model` names the twin.")
    app.state.api_keys = ApiKeys.from_settings(settings.api_keys)
    app.state.rate_limiter = RateLimiter(settings.api_rate_limit_per_minute)
    mount_observability(app, ready=lambda: runtime is not None and runtime.manager.ready())

    def current() -> Runtime:
        if runtime is None:
            raise ModelNotReady("the service is starting")
        return runtime

    app.add_middleware(RequestIdMiddleware)
    for error_type in (*ERRORS, Exception):
        app.add_exception_handler(error_type, _error_response)

    @app.get("/v1/models", tags=["openai"])
    async def list_models(scope: Scope) -> dict[str, Any]:
        rt = current()
        twins = await rt.answerer.list_twins(scope)
        return {"object": "list", "data": [_model_card(twin, rt.manager.version_of(twin.id)) for twin in twins]}

    @app.get("/v1/models/{twin_id}", tags=["openai"])
    async def get_model(twin_id: str, scope: Scope) -> dict[str, Any]:
        rt = current()
        scope.require(twin_id)
        twin = await rt.answerer.twins.get(twin_id)
        if twin is None:
            raise UnknownTwin(f"there is no twin {twin_id!r}; GET /v1/models lists the twins")
        return _model_card(twin, rt.manager.version_of(twin_id))

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat_completions(body: ChatCompletionRequest, request: Request,
                               scope: Scope):
        rt = current()
        instruction = next((m.text() for m in reversed(body.messages) if m.role == "user"), "").strip()
        if not instruction:
            raise BadRequest("the messages hold no user message with text: the last one is the instruction")
        twin = await rt.answerer.twin(body.model, scope)
        sources = await rt.answerer.sources(twin, instruction, None)
        gen = body.generation(body.max_completion_tokens or body.max_tokens or settings.max_new_tokens, settings)
        answering = rt.answerer.answer("chat", request.state.info, twin, instruction, None, sources, gen)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(_chat_chunks(answering, completion_id, include_usage))
        async with answering as answer:
            text = "".join([piece async for piece in answer.text()])
        return {"id": completion_id, "object": "chat.completion", "created": int(time.time()),
                "model": twin.id, "model_version": answer.version, "system_fingerprint": answer.version,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": answer.report.finish_reason, "logprobs": None}],
                "usage": answer.usage, "citations": answer.citations()["documents"]}

    @app.post("/v1/generate", tags=["native"],
              responses={200: {"content": {"text/event-stream": {}},
                               "description": "SSE: when chained, `outline` events ({text}) first; `token` "
                                              "events ({text}), then `citations` ({documents, links}), then "
                                              "`done` ({model_version, usage})"}})
    async def generate(body: GenerateRequest, request: Request, scope: Scope):
        rt = current()
        twin = await rt.answerer.twin(body.twin_id, scope)
        sources = await rt.answerer.sources(twin, body.prompt, body.format, body.links)
        gen = body.generation(body.max_new_tokens or settings.max_new_tokens, settings)
        chained = body.outline if body.outline is not None else body.format in settings.outline_formats
        outline = body.generation(settings.outline_max_new_tokens, settings) if chained else None
        answering = rt.answerer.answer("generate", request.state.info, twin, body.prompt, body.format,
                                       sources, gen, outline)
        return _sse(_native_events(answering))

    return app


def _model_card(twin: Twin, version: str | None) -> dict[str, Any]:
    return {"id": twin.id, "object": "model", "created": int(twin.created_at.timestamp()),
            "owned_by": "llm-twin", "name": twin.name, "model_version": version}


def _sse(events: AsyncIterator[dict[str, str]]) -> EventSourceResponse:
    return EventSourceResponse(events, sep="\n")


async def _chat_chunks(answering, completion_id: str, include_usage: bool) -> AsyncIterator[dict[str, str]]:
    """OpenAI chat.completion.chunk events, then `data: [DONE]`."""
    created = int(time.time())
    try:
        async with answering as answer:
            def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any) -> dict[str, str]:
                body: dict[str, Any] = {
                    "id": completion_id, "object": "chat.completion.chunk", "created": created,
                    "model": answer.twin.id, "model_version": answer.version,
                    "system_fingerprint": answer.version,
                    "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                                          "finish_reason": finish_reason}]}
                if include_usage:
                    body["usage"] = None
                body.update(extra)
                return {"data": json.dumps(body)}

            yield chunk({"role": "assistant", "content": ""})
            async for piece in answer.text():
                yield chunk({"content": piece})
            yield chunk({}, answer.report.finish_reason, citations=answer.citations()["documents"])
            if include_usage:
                yield chunk(None, usage=answer.usage)
    except Exception as exc:  # noqa: BLE001 - the headers are sent: the error travels as an event
        yield {"data": json.dumps(error_body(exc)[1])}
    yield {"data": "[DONE]"}


async def _native_events(answering) -> AsyncIterator[dict[str, str]]:
    try:
        async with answering as answer:
            async for piece in answer.outline_text():
                yield {"event": "outline", "data": json.dumps({"text": piece})}
            async for piece in answer.text():
                yield {"event": "token", "data": json.dumps({"text": piece})}
            yield {"event": "citations", "data": json.dumps(answer.citations())}
            yield {"event": "done", "data": json.dumps({
                "model": answer.twin.id, "model_version": answer.version,
                "finish_reason": answer.report.finish_reason, "usage": answer.usage})}
    except Exception as exc:  # noqa: BLE001 - the headers are sent: the error travels as an event
        yield {"event": "error", "data": json.dumps(error_body(exc)[1]["error"])}
