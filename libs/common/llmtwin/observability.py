"""Metrics and health: every service serves `/metrics` (Prometheus) and `/healthz`."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

STAGE_MESSAGES = Counter("twin_stage_messages_total", "Messages a pipeline stage finished, by outcome",
                         ["stage", "outcome"])
STAGE_BATCH_SECONDS = Histogram("twin_stage_batch_seconds", "Time to handle one batch", ["stage"],
                                buckets=(0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
STAGE_LAG = Gauge("twin_stage_consumer_lag", "Messages in the source topic not yet handled", ["stage"])
STAGE_EMITTED = Counter("twin_stage_emitted_total", "Messages a stage produced, by topic", ["stage", "topic"])
STAGE_RETRIES = Counter("twin_stage_retries_total",
                        "Batches a stage tried again, by cause: a store outage (waited out) or an error",
                        ["stage", "cause"])
# Each onnx batch runs on one thread, so its thread's CPU time is the model's own work: measured
# beside wall time it tells how much of the machine the model got, whatever the machine's speed.
EMBEDDING_MODEL_CPU_SECONDS = Counter("twin_embedding_model_cpu_seconds_total",
                                      "CPU time the onnx embedding model's batches took")


def metrics_payload() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


def mount_observability(app, *, ready=None) -> None:
    """Add `/metrics`, `/healthz` and `/readyz` to a FastAPI app. `ready()` says whether it can serve."""
    from fastapi import Response

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        ok = True if ready is None else bool(ready())
        return Response('{"ready": %s}' % str(ok).lower(), status_code=200 if ok else 503,
                        media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = metrics_payload()
        return Response(body, media_type=content_type)
