"""Generation backends behind one interface: in-process transformers, or any OpenAI-compatible server.

A backend takes what to write (`PromptSpec`), renders it with THE prompt builder of
`llmtwin.prompts` (the one training used), and streams the answer's text. It fills a
`GenerationReport` as it goes: token counts for usage, how many context items fitted
the model's window (so citations name only what the model really saw), why it stopped.
"""
from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from llmtwin.domain import DocumentKind
from llmtwin.models import context_window, used_token_penalties
from llmtwin.prompts import build_messages, encode_prompt_within


class GenerationError(RuntimeError):
    """Generation could not run; the message says why."""


class PromptTooLong(GenerationError):
    """The instruction alone does not fit the model's window."""


@dataclass(frozen=True)
class PromptSpec:
    """What to write: the pieces `llmtwin.prompts` builds the prompt from."""

    instruction: str
    twin_name: str
    kind: DocumentKind | None = None
    context: Sequence[str] = ()


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    frequency_penalty: float = 0.0  # as in the OpenAI API: see UsedTokenPenalty
    presence_penalty: float = 0.0


@dataclass
class GenerationReport:
    """Filled while an answer streams; complete once the stream has ended."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    context_used: int = 0
    finish_reason: str = "stop"  # "stop" or "length", as in the OpenAI API

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class GenerationBackend(Protocol):
    description: str

    def stream(self, spec: PromptSpec, settings: GenerationSettings,
               report: GenerationReport) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


# --- transformers, in process --------------------------------------------------------------

_END = object()


class TransformersBackend:
    """A causal LM (a twin's LoRA merged into its base, or the base alone) in this process.

    `generate` runs on the backend's own worker thread and hands text to the event loop
    through `call_soon_threadsafe`, so the loop never waits on the model. One generation
    at a time per loaded model: on CPU, concurrent calls would only share the same cores
    (batching servers are the scale path: see `OpenAICompatibleBackend`)."""

    def __init__(self, model: Any, tokenizer: Any, description: str) -> None:
        self.model, self.tokenizer, self.description = model, tokenizer, description
        self.context_window = context_window(model)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")

    @classmethod
    def from_base(cls, path_or_id: str | Path, device: str | None = None) -> TransformersBackend:
        """Blocking: the base model alone (served before a twin's first training)."""
        from llmtwin.models import load_causal_lm, load_tokenizer

        model = load_causal_lm(path_or_id, device)
        model.eval()
        return cls(model, load_tokenizer(path_or_id), f"base {path_or_id}")

    @classmethod
    def from_twin_folder(cls, folder: Path, device: str | None = None, settings: Any = None) -> TransformersBackend:
        """Blocking: a registered twin model folder (adapter + tokenizer + twin_model.json)."""
        from llmtwin.models import load_twin_model

        model, tokenizer, info = load_twin_model(folder, device, settings)
        # Merged LoRA weights generate as fast as the base; the adapter is never trained here.
        model = model.merge_and_unload()
        model.eval()
        return cls(model, tokenizer, f"twin {info.twin_id} on {info.base_model}")

    async def stream(self, spec: PromptSpec, settings: GenerationSettings,
                     report: GenerationReport) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def hand_over(item: object) -> None:
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, item)
            except RuntimeError:  # the loop has closed: nobody is listening any more
                cancelled.set()

        job = loop.run_in_executor(self._executor, self._generate, spec, settings, report, hand_over, cancelled)
        try:
            while (piece := await pieces.get()) is not _END:
                yield piece  # type: ignore[misc]
            await job  # raises what generation raised
        finally:
            # A client that went away stops the model at its next token.
            cancelled.set()

    def _generate(self, spec: PromptSpec, settings: GenerationSettings, report: GenerationReport,
                  hand_over, cancelled: threading.Event) -> None:
        try:
            import torch
            from transformers import StoppingCriteria, StoppingCriteriaList

            class StopWhenCancelled(StoppingCriteria):
                def __call__(self, input_ids, scores, **kwargs):
                    return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool,
                                      device=input_ids.device)

            max_new_tokens = min(settings.max_new_tokens, self.context_window - 1)
            input_ids, report.context_used = self._fit_prompt(spec, max_new_tokens)
            report.prompt_tokens = input_ids.shape[1]
            sampling: dict[str, Any] = ({"do_sample": True, "temperature": settings.temperature,
                                         "top_p": settings.top_p} if settings.temperature > 0
                                        else {"do_sample": False})
            penalties = used_token_penalties(input_ids.shape[1], settings.frequency_penalty,
                                             settings.presence_penalty)
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids.to(self.model.device), attention_mask=torch.ones_like(input_ids).to(self.model.device),
                    max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                    streamer=TokenStreamer(self.tokenizer, hand_over),
                    stopping_criteria=StoppingCriteriaList([StopWhenCancelled()]), logits_processor=penalties,
                    **sampling)
            report.completion_tokens = output.shape[1] - input_ids.shape[1]
            report.finish_reason = "length" if report.completion_tokens >= max_new_tokens else "stop"
        finally:
            hand_over(_END)

    def _fit_prompt(self, spec: PromptSpec, max_new_tokens: int):
        """Token ids of the prompt with as many context items as fit beside the answer."""
        import torch

        budget = self.context_window - max_new_tokens
        ids, used = encode_prompt_within(self.tokenizer, spec.instruction, twin_name=spec.twin_name, kind=spec.kind,
                                         context=spec.context, budget=budget)
        if len(ids) > budget:
            raise PromptTooLong(f"the prompt takes {len(ids)} tokens; with {max_new_tokens} new tokens it "
                                f"exceeds the model's window of {self.context_window}")
        return torch.tensor([ids]), used

    async def aclose(self) -> None:
        # Work already handed to the thread finishes; the weights go with the last reference.
        self._executor.shutdown(wait=False)


class TokenStreamer:
    """Hands each new token's text over as soon as it decodes to whole characters.

    (transformers' TextStreamer waits for a space: code and unspaced text would arrive in one
    piece at the end.) The text is decoded from the start of the line, since a token's text
    can depend on its neighbours, and only what was not handed over yet is passed on."""

    def __init__(self, tokenizer: Any, hand_over) -> None:
        self.tokenizer, self.hand_over = tokenizer, hand_over
        self._prompt_seen = False
        self._line_tokens: list[int] = []
        self._line_sent = 0

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt
            self._prompt_seen = True
            return
        self._line_tokens.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self._line_tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a character split across tokens: wait for the rest
            return
        if text[self._line_sent:]:
            self.hand_over(text[self._line_sent:])
        if text.endswith("\n"):
            self._line_tokens, self._line_sent = [], 0
        else:
            self._line_sent = len(text)

    def end(self) -> None:
        text = self.tokenizer.decode(self._line_tokens, skip_special_tokens=True)
        if text[self._line_sent:]:
            self.hand_over(text[self._line_sent:])


# --- any OpenAI-compatible server (vLLM, TGI, llama.cpp server...) ---------------------------

@dataclass
class OpenAICompatibleBackend:
    """Streams from `{base_url}/chat/completions`, where `model` names what the server serves.

    The server applies the model's own chat template to the same messages
    `llmtwin.prompts.build_messages` gives the in-process backend."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(120.0, connect=10.0))

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.AsyncClient(base_url=self.base_url.rstrip("/"), headers=headers, timeout=self.timeout)
        self.description = f"{self.model} at {self.base_url}"

    async def stream(self, spec: PromptSpec, settings: GenerationSettings,
                     report: GenerationReport) -> AsyncIterator[str]:
        messages = build_messages(spec.instruction, twin_name=spec.twin_name, kind=spec.kind, context=spec.context)
        body = {"model": self.model, "messages": messages, "stream": True,
                "stream_options": {"include_usage": True}, "max_tokens": settings.max_new_tokens,
                "temperature": settings.temperature, "top_p": settings.top_p,
                "frequency_penalty": settings.frequency_penalty, "presence_penalty": settings.presence_penalty}
        report.context_used = len(spec.context)
        try:
            async with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    detail = (await response.aread()).decode("utf-8", "replace")[:500]
                    raise GenerationError(f"{self.description} answered {response.status_code}: {detail}")
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:"):].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise GenerationError(f"{self.description}: {chunk['error']}")
                    if usage := chunk.get("usage"):
                        report.prompt_tokens = usage.get("prompt_tokens", 0)
                        report.completion_tokens = usage.get("completion_tokens", 0)
                    for choice in chunk.get("choices") or ():
                        if choice.get("finish_reason"):
                            report.finish_reason = choice["finish_reason"]
                        if text := (choice.get("delta") or {}).get("content"):
                            yield text
        except httpx.HTTPError as exc:
            raise GenerationError(f"{self.description} unreachable: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()
