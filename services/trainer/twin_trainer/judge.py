"""An LLM judge for the evaluation gate: how much do generated answers sound like the person?

For each held-out sample the judge (any OpenAI-compatible chat endpoint) sees the
instruction, the person's real answer as the style reference and the generated answer,
and answers a score from 1 to 10. Scores are parsed from JSON or, failing that, the first
number in the reply; replies without a usable score, and requests that still fail after
the retries, are skipped and counted rather than guessed.
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import httpx
from llmtwin.settings import Settings

log = logging.getLogger(__name__)

MIN_SCORE, MAX_SCORE = 1, 10

SYSTEM_PROMPT = (
    "You judge writing style. You are shown an instruction, a reference answer written by a person, "
    "and a candidate answer. Rate from 1 to 10 how much the candidate sounds like the same person "
    "wrote it: voice, tone, sentence shapes, formatting habits and vocabulary. Do not rate correctness "
    "or whether it covers the same facts. Reply with JSON only: {\"score\": <integer 1-10>}."
)

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_JSON_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


@dataclass(frozen=True)
class JudgeResult:
    score: float | None  # mean score scaled to 0-1 (1 -> 0.0, 10 -> 1.0); None when nothing was scored
    scored: int
    skipped: int


def parse_score(reply: str) -> int | None:
    """A 1-10 score from the judge's reply: a JSON {"score": n} (bare or inside text), else the first number."""
    for candidate in (reply.strip(), *_JSON_OBJECT.findall(reply)):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict) and "score" in value:
            return _valid(value["score"])
    match = _NUMBER.search(reply)
    return _valid(float(match.group())) if match else None


def _valid(value: object) -> int | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not number.is_integer() or not MIN_SCORE <= number <= MAX_SCORE:
        return None
    return int(number)


class JudgeRequestFailed(RuntimeError):
    """The endpoint gave no usable reply for one sample (after the retries, where retrying made sense)."""


class StyleJudge:
    """A blocking client (evaluation runs in a worker thread); close it, or use it as a context manager."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout_seconds: float = 60.0,
                 retries: int = 2, backoff_seconds: float = 1.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                    timeout=httpx.Timeout(timeout_seconds, connect=10.0))
        self._model = model
        self._retries = retries
        self._backoff_seconds = backoff_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> StyleJudge | None:
        if not settings.eval_judge_url:
            return None
        if not settings.eval_judge_model:
            raise ValueError("TWIN_EVAL_JUDGE_URL is set but TWIN_EVAL_JUDGE_MODEL is empty")
        key = settings.eval_judge_api_key.get_secret_value() if settings.eval_judge_api_key else None
        return cls(settings.eval_judge_url, settings.eval_judge_model, key)

    def score(self, instructions: Sequence[str], references: Sequence[str], generated: Sequence[str]) -> JudgeResult:
        if not len(instructions) == len(references) == len(generated):
            raise ValueError("instructions, references and generated answers must pair up")
        scores: list[int] = []
        for instruction, reference, answer in zip(instructions, references, generated):
            try:
                reply = self._complete(_user_prompt(instruction, reference, answer))
            except JudgeRequestFailed as exc:
                log.warning("judge request skipped: %s", exc)
                continue
            score = parse_score(reply)
            if score is None:
                log.warning("judge reply without a 1-10 score skipped: %.200r", reply)
                continue
            scores.append(score)
        mean = (sum(scores) / len(scores) - MIN_SCORE) / (MAX_SCORE - MIN_SCORE) if scores else None
        return JudgeResult(score=mean, scored=len(scores), skipped=len(generated) - len(scores))

    def _complete(self, user_prompt: str) -> str:
        body = {"model": self._model, "temperature": 0, "max_tokens": 32,
                "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_prompt}]}
        for attempt in range(self._retries + 1):
            try:
                response = self._client.post("/chat/completions", json=body)
            except httpx.TransportError as exc:  # timeouts and refused connections: worth another try
                failure = f"{type(exc).__name__}: {exc}"
            else:
                # Overload and server errors pass; any other error would only repeat.
                if response.status_code != 429 and response.status_code < 500:
                    return _reply_text(response)
                failure = f"HTTP {response.status_code}"
            if attempt < self._retries:
                time.sleep(self._backoff_seconds * 2 ** attempt)
        raise JudgeRequestFailed(f"{failure} after {self._retries + 1} attempts")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _reply_text(response: httpx.Response) -> str:
    if response.is_error:
        raise JudgeRequestFailed(f"HTTP {response.status_code}: {response.text[:200]}")
    try:
        return response.json()["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise JudgeRequestFailed(f"not a chat completion: {response.text[:200]}") from exc


def _user_prompt(instruction: str, reference: str, answer: str) -> str:
    return (f"Instruction:\n{instruction}\n\nReference answer (the person's own words):\n{reference}\n\n"
            f"Candidate answer:\n{answer}\n\nHow much does the candidate sound like the person, 1-10?")
