"""The Grafana dashboards, as code: `python deploy/grafana/dashboards.py` writes them to
deploy/grafana/dashboards/*.json, which Grafana provisions (deploy/grafana/provisioning).

Every query is plain PromQL over metrics the services export (no Grafana macros), so
tests/deploy/test_dashboards.py can check each one with promtool, match its metric and
label names against the code, and run it against a real Prometheus.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUT_DIR = Path(__file__).with_name("dashboards")
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yml
WINDOW = "5m"  # rate window: a few scrapes at the 15 s interval, smooth enough to read


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = field(default=("llmtwin",))


def rate(metric: str, by: str = "", where: str = "") -> str:
    selector = f"{metric}{{{where}}}" if where else metric
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({selector}[{WINDOW}]))"


def quantile(q: float, histogram: str, by: str = "") -> str:
    grouping = ", ".join(filter(None, ["le", by]))
    return f"histogram_quantile({q}, sum by ({grouping}) (rate({histogram}_bucket[{WINDOW}])))"


def ratio(numerator: str, denominator: str) -> str:
    # clamp_min: no traffic reads as 0, not as a division by zero.
    return f"{numerator} / clamp_min({denominator}, 1e-9)"


PIPELINE = Dashboard(
    uid="llmtwin-pipeline", title="LLM Twin: pipeline throughput and lag",
    description="Messages through the Kafka stages (crawler, cleaner, embedder, dataset-builder, trainer).",
    panels=(
        Panel("Messages handled per second", (Query(rate("twin_stage_messages_total", "stage, outcome"),
                                                    "{{stage}} {{outcome}}"),), unit="ops"),
        Panel("Consumer lag", (Query("max by (stage) (twin_stage_consumer_lag)", "{{stage}}"),),
              description="Messages in a stage's source topic not yet handled."),
        Panel("Messages emitted per second, by topic",
              (Query(rate("twin_stage_emitted_total", "topic"), "{{topic}}"),), unit="ops"),
        Panel("Dead-lettered per second",
              (Query(rate("twin_stage_messages_total", "stage", 'outcome="dead_lettered"'), "{{stage}}"),),
              unit="ops", description="The reasons are in the source topic's .dlq topic."),
        Panel("Batches retried per second",
              (Query(rate("twin_stage_retries_total", "stage, cause"), "{{stage}} {{cause}}"),), unit="ops",
              description="cause=outage: a store was down and the stage waits for it, acknowledging nothing."),
        Panel("Batch time p50 / p95", (Query(quantile(0.5, "twin_stage_batch_seconds", "stage"), "{{stage}} p50"),
                                       Query(quantile(0.95, "twin_stage_batch_seconds", "stage"), "{{stage}} p95")),
              unit="s"),
        Panel("Documents cleaned per second",
              (Query(rate("twin_cleaner_documents_total", "kind, outcome"), "{{kind}} {{outcome}}"),), unit="ops"),
        Panel("Characters removed by cleaning per second",
              (Query(rate("twin_cleaner_chars_removed_total", "kind"), "{{kind}}"),), unit="ops"),
        Panel("Documents embedded per second",
              (Query(rate("twin_embedder_documents_total", "outcome"), "{{outcome}}"),), unit="ops"),
        Panel("Chunks embedded per second", (Query(rate("twin_embedder_chunks_total"), "chunks"),
                                             Query("max(twin_embedder_chunks_per_second)", "last batch")),
              unit="ops"),
        Panel("Tokens embedded per second", (Query(rate("twin_embedder_tokens_total"), "embedded"),), unit="ops",
              description="Every token of every chunk: chunks are cut to fit the model's window, never truncated."),
        Panel("Embedding model busy (cores)",
              (Query(rate("twin_embedding_model_cpu_seconds_total", "job"), "{{job}}"),),
              description="CPU seconds per second the embedding model's batches took: against the cores a "
                          "service has, how much of them the model itself gets (onnx runtime)."),
        Panel("Vector store requests per second (embedded Qdrant server)",
              (Query(rate("twin_qdrant_requests_total", "endpoint, status"), "{{endpoint}} {{status}}"),),
              unit="reqps"),
        Panel("Vector store p95 (embedded Qdrant server)",
              (Query(quantile(0.95, "twin_qdrant_request_seconds", "endpoint"), "{{endpoint}}"),), unit="s"),
    ),
)

CRAWL = Dashboard(
    uid="llmtwin-crawl", title="LLM Twin: crawl health",
    description="What the crawler reads, stores and fails on, by platform.",
    panels=(
        Panel("Items fetched per second", (Query(rate("twin_crawler_pages_fetched_total", "platform"),
                                                 "{{platform}}"),), unit="ops"),
        Panel("Documents stored per second", (Query(rate("twin_crawler_documents_stored_total", "platform"),
                                                    "{{platform}}"),), unit="ops"),
        Panel("Failures per second", (Query(rate("twin_crawler_failures_total", "platform"), "{{platform}}"),),
              unit="ops"),
        Panel("Failed share of fetched items",
              (Query(ratio(rate("twin_crawler_failures_total", "platform"),
                           rate("twin_crawler_pages_fetched_total", "platform")), "{{platform}}"),),
              unit="percentunit"),
        Panel("Documents forgotten at their author's request",
              (Query("sum by (platform) (increase(twin_crawler_documents_forgotten_total[1h]))", "{{platform}}"),),
              description="Per hour: each one's text, passages and samples are deleted, and training runs without it."),
        Panel("Crawl requests handled",
              (Query(rate("twin_stage_messages_total", "outcome", 'stage="crawler"'), "{{outcome}}"),), unit="ops"),
        Panel("Crawl requests waiting", (Query('max(twin_stage_consumer_lag{stage="crawler"})', "waiting"),)),
    ),
)

TRAINING = Dashboard(
    uid="llmtwin-training", title="LLM Twin: training runs",
    description="Instruction data coming in, the training jobs it triggers, and the models they turn into.",
    panels=(
        Panel("Training jobs, by outcome",
              (Query("sum by (outcome) (increase(twin_trigger_jobs_total[1h]))", "{{outcome}}"),),
              description="Started, succeeded, failed (the job's error says why) per hour."),
        Panel("Samples waiting for the next dataset version",
              (Query("sum by (twin) (twin_trigger_pending_samples)", "{{twin}}"),),
              description="A job starts when a twin has enough new samples and none came for a while."),
        Panel("Instruct samples per second",
              (Query(rate("twin_dataset_samples_total", "outcome"), "{{outcome}}"),
               Query(rate("twin_dataset_samples_rejected_total", "reason"), "rejected: {{reason}}")), unit="ops"),
        Panel("Instructions and preference pairs made",
              (Query(rate("twin_dataset_instructions_total", "source"), "{{source}}"),
               Query(rate("twin_dataset_llm_requests_total", "outcome"), "LLM {{outcome}}"),
               Query(rate("twin_dataset_preference_pairs_total", "outcome"), "preference pairs {{outcome}}")),
              unit="ops"),
        Panel("Samples the training trigger handled",
              (Query(rate("twin_stage_messages_total", "outcome", 'stage="trainer-trigger"'), "{{outcome}}"),),
              unit="ops"),
        Panel("Model loads in the inference API",
              (Query("sum by (outcome) (increase(twin_inference_model_loads_total[1h]))", "{{outcome}}"),),
              description="A promoted model shows up here when the inference API hot-loads it."),
    ),
)

INFERENCE = Dashboard(
    uid="llmtwin-inference", title="LLM Twin: inference latency, tokens and errors",
    description="The inference API: answer time, time to first token, tokens and failures.",
    panels=(
        Panel("Answer time p50 / p99",
              (Query(quantile(0.5, "twin_inference_request_seconds", "endpoint"), "{{endpoint}} p50"),
               Query(quantile(0.99, "twin_inference_request_seconds", "endpoint"), "{{endpoint}} p99")), unit="s"),
        Panel("Time to first token p50 / p99",
              (Query(quantile(0.5, "twin_inference_time_to_first_token_seconds", "endpoint"), "{{endpoint}} p50"),
               Query(quantile(0.99, "twin_inference_time_to_first_token_seconds", "endpoint"),
                     "{{endpoint}} p99")), unit="s"),
        Panel("Tokens per second", (Query(rate("twin_inference_tokens_total", "kind"), "{{kind}}"),), unit="ops"),
        Panel("Requests per second", (Query(rate("twin_inference_requests_total", "endpoint, outcome"),
                                            "{{endpoint}} {{outcome}}"),), unit="reqps"),
        Panel("Error share",
              (Query(ratio(rate("twin_inference_requests_total", "endpoint", 'outcome="error"'),
                           rate("twin_inference_requests_total", "endpoint")), "{{endpoint}}"),),
              unit="percentunit"),
        Panel("Retrieval and reranking p95",
              (Query(quantile(0.95, "twin_inference_retrieval_seconds"), "retrieval"),
               Query(quantile(0.95, "twin_inference_rerank_seconds"), "reranking")), unit="s",
              description="Retrieval: embedding the request's forms and searching; reranking only where a "
                          "reranker is configured."),
    ),
)

DASHBOARDS = (PIPELINE, CRAWL, TRAINING, INFERENCE)


def panel_json(panel: Panel, panel_id: int) -> dict:
    width, height = 12, 8
    index = panel_id - 1
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": (index % 2) * width, "y": (index // 2) * height, "w": width, "h": height},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": q.expr,
                     "legendFormat": q.legend or "__auto", "range": True}
                    for i, q in enumerate(panel.queries)],
    }


def dashboard_json(dashboard: Dashboard) -> dict:
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "timezone": "browser",
        "schemaVersion": 41,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": [panel_json(panel, i) for i, panel in enumerate(dashboard.panels, start=1)],
    }


def render() -> dict[str, str]:
    """File name -> JSON text, exactly as written to OUT_DIR."""
    return {f"{d.uid.removeprefix('llmtwin-')}.json": json.dumps(dashboard_json(d), indent=2) + "\n"
            for d in DASHBOARDS}


def main() -> None:
    OUT_DIR.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT_DIR / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
