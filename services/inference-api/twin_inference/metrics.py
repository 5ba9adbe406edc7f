"""Prometheus metrics of the inference API (served on /metrics with the shared ones)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)

REQUESTS = Counter("twin_inference_requests_total", "Generation requests, by endpoint and outcome",
                   ["endpoint", "outcome"])
REQUEST_SECONDS = Histogram("twin_inference_request_seconds", "From request to the answer's last token",
                            ["endpoint"], buckets=_LATENCY_BUCKETS)
TIME_TO_FIRST_TOKEN = Histogram("twin_inference_time_to_first_token_seconds",
                                "From request to the answer's first text", ["endpoint"],
                                buckets=_LATENCY_BUCKETS)
TOKENS = Counter("twin_inference_tokens_total", "Tokens read (prompt) and written (completion)", ["kind"])
RETRIEVAL_SECONDS = Histogram("twin_inference_retrieval_seconds", "Embedding the query and searching",
                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
RERANK_SECONDS = Histogram("twin_inference_rerank_seconds", "Reranking the candidates (when a reranker is set)",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
MODEL_LOADS = Counter("twin_inference_model_loads_total", "Model loads, by outcome", ["outcome"])
