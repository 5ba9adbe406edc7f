"""End-to-end ingest of the demo corpus through the real services and broker, time per stage.

Baseline, measured in the same run: encoding the very chunks the pipeline stored,
directly with the same embedding model in this process — the physical cost that
the bus, crawling, cleaning, chunking and storage come on top of.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx

from devstack.demo import MILESTONES, follow_pipeline, seed_demo
from devstack.demo_sources import demo_blog, prepare_demo
from devstack.stack import SERVICES, Stack
from llmtwin import vectors
from llmtwin.embeddings import embed, embedding_dimension, embedding_model_name, load_embedding_model
from llmtwin.infra.process import free_port
from llmtwin.settings import Settings

from .report import Result

INGEST_SERVICES = tuple(s for s in SERVICES if s.name in {"crawler", "cleaner", "embedder", "dataset-builder", "web"})
INGEST_MILESTONES = MILESTONES[:4]  # crawled, cleaned, embedded, samples built


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        ports = {name: free_port() for name in ("web_port", "crawler_port", "cleaner_port", "embedder_port",
                                                "dataset_builder_port")}
        settings = Settings(data_dir=Path(tmp) / "data", kafka_bootstrap=f"127.0.0.1:{free_port()}",
                            qdrant_url=f"http://127.0.0.1:{free_port()}", **ports)
        with Stack(settings, services=INGEST_SERVICES) as stack, demo_blog(settings, free_port()) as blog:
            with httpx.Client(base_url=stack.url(INGEST_SERVICES[-1]), timeout=30) as web:
                twin_id = seed_demo(web, f"http://{blog.host}:{blog.port}/", prepare_demo(settings.data_dir / "demo"))
                reached = follow_pipeline(web, twin_id, timeout=600, milestones=INGEST_MILESTONES)
            client = vectors.open_vector_client(settings)
            model = load_embedding_model(settings)
            collection = vectors.collection_name(embedding_model_name(settings), embedding_dimension(model))
            points, _ = client.scroll(collection, limit=100_000, with_payload=True)
            texts = [p.payload["text"] for p in points]
        started = time.perf_counter()
        embed(model, texts, settings.embedding_batch_size)
        encode_seconds = time.perf_counter() - started

    results, previous = [], 0.0
    for name, seconds in reached.items():
        results.append(Result("ingest", f"stage: {name}", seconds - previous, "s"))
        previous = seconds
    results.append(Result("ingest", f"end to end ({len(texts)} chunks)", previous, "s",
                          baseline=encode_seconds, baseline_label="direct encode of the same chunks"))
    return results
