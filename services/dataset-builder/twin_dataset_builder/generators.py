"""Instruction generators: the person's own text is the answer; the instruction is what would have asked for it.

Two generators behind one interface:
- `OfflineGenerator` derives the instruction from the text itself (title, heading,
  key phrases, first sentence, code symbol and docstring, platform and kind); no model.
- `OpenAICompatibleGenerator` asks an LLM behind any OpenAI-compatible endpoint, with
  bounded concurrency, retries with backoff, a disk cache (a re-run costs nothing) and
  validation; an item it cannot get a valid instruction for gets the offline one.

Where a model is configured it also makes preference pairs for a later DPO stage: the
model's own answer to each sample's instruction is the rejected side, the person's text
the chosen one. The offline generator has no model, hence no pairs.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import httpx
from prometheus_client import Counter

from llmtwin.domain import CleanDocument, DocumentKind, InstructSample, Platform, PreferencePair, stable_id
from llmtwin.settings import Settings

from .keywords import first_sentence, join_phrases, key_phrases
from .sections import Section, split_sections

log = logging.getLogger(__name__)

LLM_REQUESTS = Counter("twin_dataset_llm_requests_total", "Instruction requests to the LLM, by outcome",
                       ["outcome"])
INSTRUCTIONS = Counter("twin_dataset_instructions_total", "Instructions made, by source", ["source"])
PREFERENCE_PAIRS = Counter("twin_dataset_preference_pairs_total", "Preference pairs, by outcome", ["outcome"])


class InstructionGenerator(Protocol):
    name: str  # recorded with each document's samples: a new generator regenerates them

    async def generate(self, docs: list[CleanDocument]) -> list[InstructSample]: ...

    async def preference_pairs(self, samples: list[InstructSample]) -> list[PreferencePair]:
        """A pair for each sample the generator's model answered; none without a model."""

    async def close(self) -> None: ...


# --- offline ---------------------------------------------------------------------------------

POST_NOUNS = {
    Platform.LINKEDIN: "LinkedIn post", Platform.X: "post on X", Platform.MEDIUM: "short Medium post",
    Platform.SUBSTACK: "Substack note", Platform.BLOG: "short blog post", Platform.GITHUB: "short post",
}
POST_TEMPLATES = (
    "Write a {noun} about {topic}.",
    "Draft a {noun} on {topic}.",
    "Write a {noun} sharing your take on {topic}.",
    "Write a {noun} that makes this point: {opening}",
)
SECTION_TEMPLATES = (
    'Write an article section titled "{heading}" about {topic}.',
    'Write the section "{heading}" of your article "{title}", covering {topic}.',
    'Explain {topic} in an article section headed "{heading}".',
    'For your article "{title}", write the part on "{heading}": {topic}.',
)
OPENING_TEMPLATES = (
    'Write the opening of your article "{title}", about {topic}.',
    'Start an article titled "{title}": introduce {topic}.',
)
CONTINUATION_TEMPLATES = (
    'Continue the section "{heading}" of your article "{title}", now covering {topic}.',
    'In your article "{title}", go on with "{heading}" and explain {topic}.',
)
UNTITLED_SECTION_TEMPLATES = (
    "Write an article section about {topic}.",
    "Explain {topic} in a section of an article.",
    "Write a passage for an article that starts from this idea: {opening}",
)
PYTHON_DOCUMENTED_TEMPLATES = (
    "Implement the {what} `{signature}` in Python: {doc}",
    "Write a Python {what} `{name}`. {doc}",
    "Write a Python {what} `{name}` to {doc_lower}.",
)
PYTHON_UNDOCUMENTED_TEMPLATES = (
    "Implement the Python {what} `{signature}` for `{file}`.",
    "Write the {what} `{name}` in Python, as it belongs in `{file}`.",
)
CODE_BLOCK_TEMPLATES = (
    "Implement this part of `{file}` in {language}: {topic}.",
    "Write the {language} code in `{file}` that deals with {topic}.",
)


def pick(templates: Sequence[str], *key: object) -> str:
    """A template chosen by hash: deterministic, and varied across sections."""
    return templates[int(stable_id(*key)[:8], 16) % len(templates)]


def offline_instruction(section: Section) -> str:
    # Styled letters (𝗯𝗼𝗹𝗱 headings) belong to the answer's style; the instruction gets plain ones.
    return unicodedata.normalize("NFKC", _offline_instruction(section))


def _offline_instruction(section: Section) -> str:
    doc = section.document
    key = (doc.id, section.position)
    if doc.kind == DocumentKind.POST:
        topic = doc.title or join_phrases(key_phrases(section.text)) or "something you care about"
        return pick(POST_TEMPLATES, *key).format(noun=POST_NOUNS.get(doc.platform, "short post"), topic=topic,
                                                 opening=first_sentence(section.text))
    if doc.kind == DocumentKind.ARTICLE:
        return _article_instruction(section, key)
    return _code_instruction(section, key)


def _article_instruction(section: Section, key: tuple[object, ...]) -> str:
    doc = section.document
    body = section.text.split("\n", 1)[1] if section.heading and section.part == 0 and "\n" in section.text \
        else section.text
    topic = join_phrases(key_phrases(body)) or section.heading or doc.title or "your subject"
    heading = section.heading or doc.title
    if not heading:
        return pick(UNTITLED_SECTION_TEMPLATES, *key).format(topic=topic, opening=first_sentence(body))
    if section.part:
        templates = CONTINUATION_TEMPLATES
    elif heading == doc.title:  # the article's own title heads its first section
        templates = OPENING_TEMPLATES
    else:
        templates = SECTION_TEMPLATES
    return pick(templates, *key).format(heading=heading, title=doc.title or heading, topic=topic)


def _code_instruction(section: Section, key: tuple[object, ...]) -> str:
    file_name = section.file_name or "the module"
    if section.symbol:
        what, name = section.symbol.split(" ", 1)
        if section.docstring:
            doc_text = section.docstring.rstrip(".") + "."
            doc_lower = doc_text[0].lower() + doc_text[1:-1]
            return pick(PYTHON_DOCUMENTED_TEMPLATES, *key).format(
                what=what, name=name, signature=section.signature, doc=doc_text, doc_lower=doc_lower)
        return pick(PYTHON_UNDOCUMENTED_TEMPLATES, *key).format(
            what=what, name=name, signature=section.signature, file=file_name)
    identifiers = key_phrases(re.sub(r"[_]", " ", re.sub(r"([a-z])([A-Z])", r"\1 \2", section.text)))
    return pick(CODE_BLOCK_TEMPLATES, *key).format(
        file=file_name, language=section.language or "code", topic=join_phrases(identifiers) or "its logic")


def sample_of(section: Section, instruction: str, generator: str) -> InstructSample:
    doc = section.document
    return InstructSample.create(twin_id=doc.twin_id, document_id=doc.id, kind=doc.kind,
                                 instruction=instruction, answer=section.text, generator=generator)


def all_sections(docs: list[CleanDocument]) -> list[Section]:
    return [section for doc in docs for section in split_sections(doc)]


class OfflineGenerator:
    name = "offline"

    async def generate(self, docs: list[CleanDocument]) -> list[InstructSample]:
        # Parsing and keyword extraction are CPU work: keep them off the event loop.
        return await asyncio.to_thread(self.generate_now, docs)

    def generate_now(self, docs: list[CleanDocument]) -> list[InstructSample]:
        samples = [sample_of(s, offline_instruction(s), self.name) for s in all_sections(docs)]
        INSTRUCTIONS.labels("offline").inc(len(samples))
        return samples

    async def preference_pairs(self, samples: list[InstructSample]) -> list[PreferencePair]:
        return []  # no model: nothing to prefer the person's text to

    async def close(self) -> None:
        return None


# --- LLM through an OpenAI-compatible endpoint ----------------------------------------------

SYSTEM_PROMPT = (
    "You reconstruct writing prompts. Given a text that a person wrote, reply with the one instruction "
    "that would have asked for exactly this text, for example 'Write a LinkedIn post about ...', "
    "'Write an article section titled ... about ...' or 'Implement ... in Python'. Address the writer as "
    "'you'. Reply with the instruction only: one or two sentences, no quotes, no preamble."
)
KIND_LABELS = {DocumentKind.POST: "social media post", DocumentKind.ARTICLE: "article section",
               DocumentKind.CODE: "source code"}
MAX_TEXT_CHARS = 6000
MAX_INSTRUCTION_CHARS = 400
INSTRUCTION_MAX_TOKENS = 160
ANSWER_MAX_TOKENS = 512
REFUSAL = re.compile(r"^(i'?m sorry|sorry|i cannot|i can't|i am unable|i'm unable|as an ai|unfortunately)\b|"
                     r"\b(as an ai( language)? model|i cannot (help|assist|comply))\b", re.IGNORECASE)
PREFIX = re.compile(r"^\s*(instruction|prompt)\s*:\s*", re.IGNORECASE)


class LLMRequestError(RuntimeError):
    """The endpoint gave no usable answer (after retries, or a non-retryable status)."""


class InvalidInstruction(ValueError):
    pass


def validate_instruction(raw: str) -> str:
    text = PREFIX.sub("", raw.strip()).strip().strip("\"'“”").strip()
    if not text:
        raise InvalidInstruction("empty")
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise InvalidInstruction(f"too long ({len(text)} chars)")
    if len(text.split()) < 3:
        raise InvalidInstruction("fewer than 3 words")
    if REFUSAL.search(text):
        raise InvalidInstruction("a refusal")
    return text


def llm_messages(section: Section) -> list[dict[str, str]]:
    doc = section.document
    facts = [f"Kind: {KIND_LABELS[doc.kind]}", f"Platform: {doc.platform.value}"]
    if doc.title:
        facts.append(f"Title: {doc.title}")
    if section.heading:
        facts.append(f"Section heading: {section.heading}")
    if section.language:
        facts.append(f"Language: {section.language}")
    user = "\n".join(facts) + "\n\nText:\n" + section.text[:MAX_TEXT_CHARS]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


class ResponseCache:
    """Validated-or-not answers of the endpoint on disk, one JSON file per (model, prompt)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(model: str, messages: list[dict[str, str]]) -> str:
        return hashlib.sha256(json.dumps([model, messages], sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        try:
            return json.loads(self._path(key).read_text("utf-8"))["content"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return None

    def put(self, key: str, content: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{random.getrandbits(32):08x}.tmp")
        tmp.write_text(json.dumps({"content": content}), "utf-8")
        tmp.replace(path)  # atomic: a crash never leaves half a file behind


class OpenAICompatibleGenerator:
    RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))

    def __init__(self, url: str, model: str, api_key: str | None, *, cache_dir: Path, concurrency: int = 4,
                 timeout_seconds: float = 60.0, max_retries: int = 4, backoff_seconds: float = 1.0,
                 max_backoff_seconds: float = 30.0, temperature: float = 0.2) -> None:
        if not url or not model:
            raise ValueError("an OpenAI-compatible generator needs both a URL and a model name")
        self.name = f"llm:{model}"
        self.model, self.temperature = model, temperature
        self.endpoint = url.rstrip("/") + "/chat/completions"
        self.cache = ResponseCache(cache_dir)
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff_seconds, max_backoff_seconds
        self._limit = asyncio.Semaphore(concurrency)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_seconds, connect=10.0))

    async def generate(self, docs: list[CleanDocument]) -> list[InstructSample]:
        sections = await asyncio.to_thread(all_sections, docs)
        instructions = await asyncio.gather(*(self._instruction(s) for s in sections))
        return [sample_of(s, text, generator) for s, (text, generator) in zip(sections, instructions)]

    async def _instruction(self, section: Section) -> tuple[str, str]:
        try:
            content = await self._ask(llm_messages(section), INSTRUCTION_MAX_TOKENS)
        except LLMRequestError as exc:
            log.warning("no instruction from %s for %s#%d: %s; using the offline one",
                        self.endpoint, section.document.id, section.position, exc)
            return self._fallback(section)
        try:
            instruction = validate_instruction(content)
        except InvalidInstruction as exc:
            log.info("invalid instruction for %s#%d (%s); using the offline one",
                     section.document.id, section.position, exc)
            return self._fallback(section)
        INSTRUCTIONS.labels("llm").inc()
        return instruction, self.name

    async def preference_pairs(self, samples: list[InstructSample]) -> list[PreferencePair]:
        pairs = await asyncio.gather(*(self._preference_pair(s) for s in samples))
        return [pair for pair in pairs if pair is not None]

    async def _preference_pair(self, sample: InstructSample) -> PreferencePair | None:
        # The bare instruction, no persona: what the model writes on its own is what the twin should beat.
        try:
            answer = await self._ask([{"role": "user", "content": sample.instruction}], ANSWER_MAX_TOKENS)
        except LLMRequestError as exc:
            log.warning("no base answer from %s for sample %s: %s; no preference pair for it",
                        self.endpoint, sample.id, exc)
            PREFERENCE_PAIRS.labels("failed").inc()
            return None
        answer = answer.strip()
        if not answer or answer == sample.answer.strip():  # nothing to prefer the real text to
            PREFERENCE_PAIRS.labels("unusable").inc()
            return None
        PREFERENCE_PAIRS.labels("made").inc()
        return PreferencePair.of(sample, answer, self.model)

    async def _ask(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        """The endpoint's answer, from the cache when it gave one before; failures are not cached."""
        key = ResponseCache.key(self.model, messages)
        content = await asyncio.to_thread(self.cache.get, key)
        if content is not None:
            LLM_REQUESTS.labels("cached").inc()
            return content
        try:
            async with self._limit:
                content = await self._complete(messages, max_tokens)
        except LLMRequestError:
            LLM_REQUESTS.labels("failed").inc()
            raise
        await asyncio.to_thread(self.cache.put, key, content)
        LLM_REQUESTS.labels("answered").inc()
        return content

    @staticmethod
    def _fallback(section: Section) -> tuple[str, str]:
        INSTRUCTIONS.labels("offline_fallback").inc()
        return offline_instruction(section), OfflineGenerator.name

    async def _complete(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        body = {"model": self.model, "messages": messages, "temperature": self.temperature, "max_tokens": max_tokens}
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                response = await self._client.post(self.endpoint, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return self._content(response)
                if response.status_code not in self.RETRY_STATUSES:
                    raise LLMRequestError(f"HTTP {response.status_code}: {response.text[:200]}")
                problem = f"HTTP {response.status_code}"
                retry_after = _seconds(response.headers.get("retry-after"))
            if attempt == self.max_retries:
                raise LLMRequestError(f"{problem} after {attempt + 1} attempts")
            LLM_REQUESTS.labels("retried").inc()
            delay = retry_after if retry_after is not None else self.backoff * 2 ** attempt * random.uniform(0.8, 1.2)
            await asyncio.sleep(min(delay, self.max_backoff))
        raise AssertionError("unreachable")

    @staticmethod
    def _content(response: httpx.Response) -> str:
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMRequestError(f"malformed completion: {response.text[:200]}") from exc
        if not isinstance(content, str):
            raise LLMRequestError("completion content is not text")
        return content

    async def close(self) -> None:
        await self._client.aclose()


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def generator_from_settings(settings: Settings) -> InstructionGenerator:
    """The offline generator unless an LLM endpoint is configured."""
    if not settings.dataset_llm_url:
        return OfflineGenerator()
    key = settings.dataset_llm_api_key.get_secret_value() if settings.dataset_llm_api_key else None
    return OpenAICompatibleGenerator(
        settings.dataset_llm_url, settings.dataset_llm_model, key, cache_dir=settings.data_dir / "cache" / "instructions",
        concurrency=settings.dataset_llm_concurrency, timeout_seconds=settings.dataset_llm_timeout_seconds)
