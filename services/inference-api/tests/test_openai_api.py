"""The OpenAI-compatible API, driven by the official openai client against a real server."""
from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai import OpenAI


def client(api, key: str) -> OpenAI:
    return OpenAI(base_url=f"{api.url}/v1", api_key=key, max_retries=0, timeout=60)


def chunk_ids(corpus, twin_id: str) -> set[str]:
    return {chunk.id for chunk in corpus[twin_id]}


def test_lists_the_twins_as_models_with_their_served_version(api):
    models = {m.id: m for m in client(api, api.key).models.list()}

    assert set(models) == {"ada", "grace"}
    assert models["ada"].model_extra["model_version"] == "1"
    assert models["grace"].model_extra["model_version"] == "base"  # no champion yet: the base model answers
    assert models["ada"].model_extra["name"] == "Ada Lovelace"


def test_streams_a_chat_completion_with_usage_and_only_the_twins_citations(api, corpus):
    stream = client(api, api.key).chat.completions.create(
        model="ada", messages=[{"role": "system", "content": "ignored"},
                               {"role": "user", "content": "Write about Kafka and idempotent consumers"}],
        stream=True, stream_options={"include_usage": True}, max_tokens=6, temperature=0)
    chunks = list(stream)

    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert content, "no content arrived"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason in ("stop", "length")
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens == 6 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert {c.model_extra["model_version"] for c in chunks} == {"1"}
    citations = finish[0].model_extra["citations"]
    assert citations, "retrieval found none of ada's passages"
    assert {c["chunk_id"] for c in citations} <= chunk_ids(corpus, "ada")
    # The same sentence is stored in two of ada's documents: it is cited once.
    texts = {c.id: c.text for c in corpus["ada"]}
    assert len({texts[c["chunk_id"]] for c in citations}) == len(citations)


def test_a_query_about_another_twins_topic_still_cites_only_the_requested_twin(api, corpus):
    completion = client(api, api.key).chat.completions.create(
        model="ada", messages=[{"role": "user", "content": "COBOL, compilers and the moth in the relay"}],
        max_tokens=4, temperature=0)

    citations = completion.model_extra["citations"]
    assert citations and {c["chunk_id"] for c in citations} <= chunk_ids(corpus, "ada")
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens == 4
    assert completion.model == "ada" and completion.model_extra["model_version"] == "1"


def test_the_base_model_answers_for_a_twin_without_a_champion(api, corpus):
    completion = client(api, api.key).chat.completions.create(
        model="grace", messages=[{"role": "user", "content": "Why should programs read like English?"}],
        max_tokens=3, temperature=0)

    assert completion.model_extra["model_version"] == "base"
    assert {c["chunk_id"] for c in completion.model_extra["citations"]} <= chunk_ids(corpus, "grace")


def test_an_unknown_twin_is_a_clear_404(api):
    with pytest.raises(openai.NotFoundError) as caught:
        client(api, api.key).chat.completions.create(model="nobody", messages=[{"role": "user", "content": "hi"}])

    assert "no twin 'nobody'" in caught.value.message
    assert caught.value.code == "model_not_found"


def test_keys_are_required_and_a_bound_key_serves_only_its_twin(api):
    with pytest.raises(openai.AuthenticationError):
        client(api, "wrong-key").models.list()
    no_key = httpx.post(f"{api.url}/v1/chat/completions", json={"model": "ada", "messages": []})
    assert no_key.status_code == 401

    ada_only = client(api, api.ada_only_key)
    assert [m.id for m in ada_only.models.list()] == ["ada"]
    with pytest.raises(openai.PermissionDeniedError) as caught:
        ada_only.chat.completions.create(model="grace", messages=[{"role": "user", "content": "hi"}])
    assert "limited to the twin 'ada'" in caught.value.message
    allowed = ada_only.chat.completions.create(model="ada", messages=[{"role": "user", "content": "hi"}],
                                               max_tokens=2)
    assert allowed.usage.completion_tokens == 2


def test_health_and_docs_need_no_key_and_requests_are_traced(api):
    assert httpx.get(f"{api.url}/healthz").status_code == 200
    assert httpx.get(f"{api.url}/readyz").status_code == 200
    schema = httpx.get(f"{api.url}/openapi.json").json()
    assert {"/v1/models", "/v1/chat/completions", "/v1/generate"} <= set(schema["paths"])
    response = httpx.get(f"{api.url}/v1/models", headers={"Authorization": f"Bearer {api.key}",
                                                          "X-Request-ID": "trace-me"})
    assert response.headers["x-request-id"] == "trace-me"


def test_metrics_count_requests_tokens_and_time_to_first_token(api):
    client(api, api.key).chat.completions.create(model="ada", messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=3)

    metrics = httpx.get(f"{api.url}/metrics").text
    assert 'twin_inference_requests_total{endpoint="chat",outcome="ok"}' in metrics
    assert "twin_inference_time_to_first_token_seconds_count" in metrics
    completion_tokens = next(line for line in metrics.splitlines()
                             if line.startswith('twin_inference_tokens_total{kind="completion"}'))
    assert float(completion_tokens.split()[-1]) >= 3


def test_every_answer_is_recorded_as_an_mlflow_trace(api):
    import mlflow
    from twin_inference.tracing import INFERENCE_EXPERIMENT

    httpx.post(f"{api.url}/v1/chat/completions", timeout=60,
               headers={"Authorization": f"Bearer {api.key}", "X-Request-ID": "monitor-me"},
               json={"model": "ada", "messages": [{"role": "user", "content": "Kafka"}], "max_tokens": 2})
    experiment = mlflow.MlflowClient().get_experiment_by_name(INFERENCE_EXPERIMENT)

    # The trace is written after the answer, on a worker thread, then exported in the background.
    deadline = time.monotonic() + 30
    while not (traced := [t for t in mlflow.search_traces(locations=[experiment.experiment_id], return_type="list")
                          if t.info.tags.get("request_id") == "monitor-me"]):
        assert time.monotonic() < deadline, "no trace recorded"
        mlflow.flush_trace_async_logging()
        time.sleep(0.05)
    [trace] = traced
    assert trace.info.tags["twin_id"] == "ada"
    [span] = trace.data.spans
    assert span.inputs["instruction"] == "Kafka" and span.attributes["model_version"] == "1"
    assert span.outputs["citations"]["documents"] and span.attributes["completion_tokens"] == 2
