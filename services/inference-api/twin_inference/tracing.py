"""Prompt monitoring: every answer becomes an MLflow trace (what was asked, by which model and
with which sources it was answered, how long it took), beside the training runs in the same
tracking store. The trace is written on a worker thread after the answer has ended."""
from __future__ import annotations

import logging
from typing import Any, Protocol

from llmtwin.settings import Settings

log = logging.getLogger(__name__)

INFERENCE_EXPERIMENT = "llm-twin-inference"


class AnswerTracer(Protocol):
    def record(self, trace: dict[str, Any]) -> None:
        """Blocking: store one answer's trace (see `Answerer._record` for its fields)."""


class MlflowTracer:
    def __init__(self, experiment_id: str) -> None:
        self.experiment_id = experiment_id

    @classmethod
    def open(cls, settings: Settings) -> MlflowTracer:
        """Blocking: the inference experiment in the settings' tracking store (created once)."""
        import mlflow

        mlflow.set_tracking_uri(settings.tracking_uri)
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name(INFERENCE_EXPERIMENT)
        if experiment is not None:
            return cls(experiment.experiment_id)
        # A local store keeps artifacts in the embedded data folder, not in ./mlruns.
        local = settings.tracking_uri.startswith(("sqlite:", "file:"))
        location = settings.artifact_root.as_uri() if local else None
        if local:
            settings.artifact_root.mkdir(parents=True, exist_ok=True)
        return cls(client.create_experiment(INFERENCE_EXPERIMENT, artifact_location=location))

    def record(self, trace: dict[str, Any]) -> None:
        import mlflow

        try:
            span = mlflow.start_span_no_context(
                trace["endpoint"], span_type="LLM", experiment_id=self.experiment_id,
                start_time_ns=trace["started_ns"],
                inputs={"instruction": trace["instruction"], "twin_id": trace["twin_id"]},
                attributes={key: trace[key] for key in ("request_id", "model_version", "outcome", "prompt_tokens",
                                                        "completion_tokens", "time_to_first_token", "finish_reason")},
                tags={"request_id": trace["request_id"], "twin_id": trace["twin_id"]})
            span.set_outputs({"text": trace["text"], "citations": trace["citations"]})
            span.end(end_time_ns=trace["ended_ns"])
        except Exception:
            log.exception("could not record the trace of request %s", trace["request_id"])
