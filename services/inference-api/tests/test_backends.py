"""Backends: the OpenAI-compatible one against a real OpenAI-compatible server (this API itself),
and the in-process one's window fitting."""
from __future__ import annotations

import httpx
from twin_inference.backends import (
    GenerationReport,
    GenerationSettings,
    OpenAICompatibleBackend,
    PromptSpec,
)


async def test_the_openai_compatible_backend_streams_and_reports_usage(api):
    backend = OpenAICompatibleBackend(f"{api.url}/v1", "ada", api_key=api.key)
    report = GenerationReport()

    pieces = [piece async for piece in backend.stream(PromptSpec("Write about Kafka", "Ada Lovelace"),
                                                      GenerationSettings(5, temperature=0), report)]
    await backend.aclose()

    assert "".join(pieces)
    assert report.completion_tokens == 5 and report.prompt_tokens > 0 and report.finish_reason == "length"


async def test_the_openai_compatible_backend_says_why_the_server_refused(api):
    backend = OpenAICompatibleBackend(f"{api.url}/v1", "nobody", api_key=api.key)
    try:
        pieces = backend.stream(PromptSpec("hi", "Ada"), GenerationSettings(2), GenerationReport())
        error = None
        try:
            await anext(pieces)
        except Exception as exc:  # noqa: BLE001 - the assertion below names what is expected
            error = exc
    finally:
        await backend.aclose()

    assert type(error).__name__ == "GenerationError" and "404" in str(error) and "no twin 'nobody'" in str(error)


def test_context_is_dropped_to_fit_the_window_and_a_prompt_that_cannot_fit_is_a_clear_400(api):
    headers = {"Authorization": f"Bearer {api.key}"}
    # The tiny model's window is 1024 tokens: after 950 new tokens only the bare prompt (65) fits.
    roomy = httpx.post(f"{api.url}/v1/chat/completions", headers=headers, timeout=60,
                       json={"model": "ada", "messages": [{"role": "user", "content": "Kafka"}], "max_tokens": 4})
    tight = httpx.post(f"{api.url}/v1/chat/completions", headers=headers, timeout=60,
                       json={"model": "ada", "messages": [{"role": "user", "content": "Kafka"}], "max_tokens": 950})
    too_long = httpx.post(f"{api.url}/v1/chat/completions", headers=headers, timeout=60,
                          json={"model": "ada", "messages": [{"role": "user", "content": "Kafka " * 1000}]})

    assert roomy.json()["citations"] and tight.json()["citations"] == []
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"


def test_penalties_reach_the_model_and_a_request_can_switch_them_off(api):
    headers = {"Authorization": f"Bearer {api.key}"}

    def answer(**penalties) -> str:
        response = httpx.post(f"{api.url}/v1/chat/completions", headers=headers, timeout=60, json={
            "model": "ada", "messages": [{"role": "user", "content": "Kafka"}], "max_tokens": 24,
            "temperature": 0, **penalties})
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]

    plain = answer(frequency_penalty=0, presence_penalty=0)

    # Greedy, so only the penalties can change the answer: the tiny model repeats itself without them.
    assert answer(frequency_penalty=2, presence_penalty=2) != plain
    assert answer(frequency_penalty=0, presence_penalty=0) == plain
    refused = httpx.post(f"{api.url}/v1/chat/completions", headers=headers, timeout=60, json={
        "model": "ada", "messages": [{"role": "user", "content": "Kafka"}], "frequency_penalty": 3})
    assert refused.status_code == 422 and "frequency_penalty" in refused.text  # OpenAI's range: -2 to 2


async def test_the_openai_compatible_backend_sends_the_penalties(api):
    backend = OpenAICompatibleBackend(f"{api.url}/v1", "ada", api_key=api.key)

    async def answer(penalty: float) -> str:
        settings = GenerationSettings(24, temperature=0, frequency_penalty=penalty, presence_penalty=penalty)
        return "".join([piece async for piece in backend.stream(PromptSpec("Kafka", "Ada Lovelace"), settings,
                                                                GenerationReport())])
    try:
        plain, penalised = await answer(0), await answer(2)
    finally:
        await backend.aclose()

    assert penalised != plain  # greedy: only the penalties, sent to the server, can change it
