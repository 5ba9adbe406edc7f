"""Prompt monitoring: every answer becomes an MLflow trace (what was asked, by which model and
with which sources it was answered, how long it took), beside the training runs in the same
tracking store. The trace is written on a worker thread after the answer has ended.

A sampled share of the answered requests (settings.eval_set_sample_rate) is also kept as an
evaluation set: one MLflow evaluation dataset per twin (`eval_set_name`), each record the
request (inputs), what was retrieved and written (outputs), the model version and the trace
it came from. Future model versions can be judged on what people really ask.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any, Protocol

from llmtwin.settings import Settings

log = logging.getLogger(__name__)

INFERENCE_EXPERIMENT = "llm-twin-inference"


def eval_set_name(twin_id: str) -> str:
    return f"llm-twin-eval-{twin_id}"


def kept_for_evaluation(request_id: str, rate: float) -> bool:
    """Whether a request joins the evaluation set: decided by its id's hash, so every replica
    (and a test) decides the same way, and the kept share is `rate` over many requests."""
    position = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2 ** 64
    return position < rate


class AnswerTracer(Protocol):
    def record(self, trace: dict[str, Any]) -> None:
        """Blocking: store one answer's trace (see `Answerer._record` for its fields)."""


class MlflowTracer:
    def __init__(self, experiment_id: str, eval_sample_rate: float = 0.0) -> None:
        self.experiment_id, self.eval_sample_rate = experiment_id, eval_sample_rate
        self._eval_sets: dict[str, Any] = {}  # twin id -> its evaluation dataset
        self._eval_lock = threading.Lock()  # records are written from several worker threads

    @classmethod
    def open(cls, settings: Settings) -> MlflowTracer:
        """Blocking: the inference experiment in the settings' tracking store (created once)."""
        import mlflow

        mlflow.set_tracking_uri(settings.tracking_uri)
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name(INFERENCE_EXPERIMENT)
        if experiment is not None:
            return cls(experiment.experiment_id, settings.eval_set_sample_rate)
        # A local store keeps artifacts in the embedded data folder, not in ./mlruns.
        local = settings.tracking_uri.startswith(("sqlite:", "file:"))
        location = settings.artifact_root.as_uri() if local else None
        if local:
            settings.artifact_root.mkdir(parents=True, exist_ok=True)
        return cls(client.create_experiment(INFERENCE_EXPERIMENT, artifact_location=location),
                   settings.eval_set_sample_rate)

    def record(self, trace: dict[str, Any]) -> None:
        import mlflow

        keep = trace["outcome"] == "ok" and kept_for_evaluation(trace["request_id"], self.eval_sample_rate)
        try:
            span = mlflow.start_span_no_context(
                trace["endpoint"], span_type="LLM", experiment_id=self.experiment_id,
                start_time_ns=trace["started_ns"],
                inputs={"instruction": trace["instruction"], "twin_id": trace["twin_id"]},
                attributes={key: trace[key] for key in ("request_id", "model_version", "outcome", "prompt_tokens",
                                                        "completion_tokens", "time_to_first_token", "finish_reason")},
                tags={"request_id": trace["request_id"], "twin_id": trace["twin_id"],
                      "eval_set": str(keep).lower()})
            span.set_outputs({"text": trace["text"], "outline": trace["outline"], "citations": trace["citations"],
                              "retrieved_chunk_ids": trace["retrieved_chunk_ids"]})
            span.end(end_time_ns=trace["ended_ns"])
            if keep:
                self._keep_for_evaluation(trace, span.trace_id)
        except Exception:
            log.exception("could not record the trace of request %s", trace["request_id"])

    def _keep_for_evaluation(self, trace: dict[str, Any], trace_id: str) -> None:
        record = {
            "inputs": {"twin_id": trace["twin_id"], "instruction": trace["instruction"], "format": trace["format"]},
            "outputs": {"text": trace["text"], "outline": trace["outline"],
                        "retrieved_chunk_ids": trace["retrieved_chunk_ids"],
                        "cited_chunk_ids": [c["chunk_id"] for c in trace["citations"]["documents"]]},
            "tags": {"model_version": trace["model_version"], "request_id": trace["request_id"],
                     "endpoint": trace["endpoint"]},
            "source": {"source_type": "TRACE", "source_data": {"trace_id": trace_id}},
        }
        with self._eval_lock:
            self._eval_set(trace["twin_id"]).merge_records([record])

    def _eval_set(self, twin_id: str) -> Any:
        from mlflow.exceptions import MlflowException
        from mlflow.genai import datasets

        if twin_id not in self._eval_sets:
            name = eval_set_name(twin_id)
            try:
                self._eval_sets[twin_id] = datasets.get_dataset(name=name)
            except MlflowException:  # the twin's first kept request (another replica may create it too)
                try:
                    self._eval_sets[twin_id] = datasets.create_dataset(name=name, experiment_id=self.experiment_id,
                                                                       tags={"twin_id": twin_id})
                except MlflowException:
                    self._eval_sets[twin_id] = datasets.get_dataset(name=name)
        return self._eval_sets[twin_id]
