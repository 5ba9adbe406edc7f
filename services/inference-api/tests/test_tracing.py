"""Prompt monitoring: a deterministic, sampled share of answered requests becomes an evaluation set."""
from __future__ import annotations

import time

import httpx
from llmtwin.settings import Settings
from twin_inference.tracing import MlflowTracer, eval_set_name, kept_for_evaluation


def request_ids(rate: float, kept: bool, count: int = 1) -> list[str]:
    """Request ids that the sampling at `rate` keeps (or drops)."""
    ids = (f"request-{n}" for n in range(10_000))
    return [i for i in ids if kept_for_evaluation(i, rate) == kept][:count]


def eval_records(settings: Settings, twin_id: str) -> list[dict]:
    import mlflow
    from mlflow.genai import datasets

    mlflow.set_tracking_uri(settings.tracking_uri)
    return datasets.get_dataset(name=eval_set_name(twin_id)).to_df().to_dict("records")


def test_sampling_keeps_the_configured_share_and_decides_the_same_way_every_time():
    ids = [f"request-{n}" for n in range(20_000)]

    kept = [i for i in ids if kept_for_evaluation(i, 0.1)]
    assert 0.09 < len(kept) / len(ids) < 0.11
    assert kept == [i for i in ids if kept_for_evaluation(i, 0.1)]
    assert set(kept) <= {i for i in ids if kept_for_evaluation(i, 0.3)}  # a larger share keeps these too
    assert not any(kept_for_evaluation(i, 0.0) for i in ids) and all(kept_for_evaluation(i, 1.0) for i in ids)


def answer_trace(request_id: str, outcome: str = "ok") -> dict:
    """A trace as Answerer._record hands it to the tracer."""
    now = time.time_ns()
    return {"request_id": request_id, "endpoint": "generate", "outcome": outcome, "twin_id": "ada",
            "model_version": "3", "seconds": 0.5, "time_to_first_token": 0.1, "prompt_tokens": 40,
            "completion_tokens": 12, "finish_reason": "stop", "instruction": f"An article ({request_id})",
            "format": "article", "outline": "1. Replays\n2. Ids", "text": "Idempotent consumers make replays harmless.",
            "retrieved_chunk_ids": ["c1", "c2", "c3"],
            "citations": {"documents": [{"chunk_id": "c1"}, {"chunk_id": "c2"}], "links": []},
            "started_ns": now - 500_000_000, "ended_ns": now}


def test_kept_answers_land_in_the_twins_evaluation_dataset_with_their_trace(tmp_path):
    store = Settings(data_dir=tmp_path, eval_set_sample_rate=0.5)
    tracer = MlflowTracer.open(store)
    [kept, also_kept] = request_ids(0.5, kept=True, count=2)
    [dropped] = request_ids(0.5, kept=False)

    for request_id in (kept, dropped):
        tracer.record(answer_trace(request_id))
    tracer.record(answer_trace(also_kept, outcome="error"))  # nothing worth evaluating against

    [record] = eval_records(store, "ada")
    assert record["inputs"] == {"twin_id": "ada", "instruction": f"An article ({kept})", "format": "article"}
    assert record["outputs"] == {"text": "Idempotent consumers make replays harmless.", "outline": "1. Replays\n2. Ids",
                                 "retrieved_chunk_ids": ["c1", "c2", "c3"], "cited_chunk_ids": ["c1", "c2"]}
    assert record["tags"]["model_version"] == "3" and record["tags"]["request_id"] == kept
    assert record["source_type"] == "TRACE" and record["source_id"].startswith("tr-")

    # The dataset outlives the tracer: a new one (a restart) adds to it.
    MlflowTracer.open(store.model_copy(update={"eval_set_sample_rate": 1.0})).record(answer_trace(dropped))
    assert {r["tags"]["request_id"] for r in eval_records(store, "ada")} == {kept, dropped}


def test_a_served_request_in_the_sample_is_kept_with_what_it_retrieved_and_answered(api, settings, corpus):
    [request_id] = request_ids(settings.eval_set_sample_rate, kept=True)

    response = httpx.post(f"{api.url}/v1/chat/completions", timeout=60,
                          headers={"Authorization": f"Bearer {api.key}", "X-Request-ID": request_id},
                          json={"model": "ada", "messages": [{"role": "user", "content": "Idempotent consumers"}],
                                "max_tokens": 3})
    assert response.status_code == 200

    # Written after the answer, on a worker thread.
    deadline = time.monotonic() + 60
    while not (records := [r for r in _records_or_none(settings, "ada") if r["tags"]["request_id"] == request_id]):
        assert time.monotonic() < deadline, "the sampled request was not kept"
        time.sleep(0.1)
    [record] = records
    assert record["inputs"]["instruction"] == "Idempotent consumers"
    assert record["outputs"]["text"] == response.json()["choices"][0]["message"]["content"]
    assert record["tags"]["model_version"] == response.json()["model_version"] == "1"
    retrieved = record["outputs"]["retrieved_chunk_ids"]
    assert retrieved and set(retrieved) <= {chunk.id for chunk in corpus["ada"]}
    assert record["outputs"]["cited_chunk_ids"] == [c["chunk_id"] for c in response.json()["citations"]]


def _records_or_none(settings: Settings, twin_id: str) -> list[dict]:
    from mlflow.exceptions import MlflowException

    try:
        return eval_records(settings, twin_id)
    except MlflowException:  # not created yet
        return []
