"""The feature pipeline at the speed of the model: the Handbook corpus (76 real articles, two
authors) through the bus, the cleaner and the embedder into the vector store.

Baselines, measured in the same run: encoding exactly the chunks the pipeline stored,
directly with the same model in this process; and the reference implementation's
2.8 documents/s on these machines (from the corpus README, every long chunk truncated).
"""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from devstack.stack import SERVICES, Stack
from llmtwin import vectors
from llmtwin.bus.producer import SyncEventProducer
from llmtwin.domain import DocumentKind, Platform, RawDocument, slugify
from llmtwin.embeddings import embed, embedding_dimension, embedding_model_name, load_embedding_model
from llmtwin.events import RawDocStored
from llmtwin.infra.process import free_port
from llmtwin.settings import Settings
from llmtwin.warehouse import Collection, open_warehouse

from .report import Result

CORPUS = Path(os.environ.get("TWIN_BENCH_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpora"
                             / "handbook-articles" / "ArticleDocument.json"))
REFERENCE_DOCS_PER_SECOND = 2.8
FEATURE_SERVICES = tuple(s for s in SERVICES if s.name in {"cleaner", "embedder"})


def corpus_documents() -> list[RawDocument]:
    platforms = {"medium": Platform.MEDIUM}
    return [RawDocument.create(twin_id=slugify(item["author_full_name"]),
                               platform=platforms.get(item["platform"], Platform.SUBSTACK if "substack" in item["platform"] else Platform.BLOG),
                               kind=DocumentKind.ARTICLE, link=item["link"], title=item["content"]["Title"] or "",
                               content=item["content"]["Content"])
            for item in json.loads(CORPUS.read_text())]


async def store(settings: Settings, docs: list[RawDocument]) -> None:
    warehouse = open_warehouse(settings.warehouse)
    try:
        for doc in docs:
            await warehouse.upsert(Collection.RAW_DOCUMENTS, doc.model_dump(mode="json"))
    finally:
        await warehouse.close()


async def progress(settings: Settings) -> tuple[int, int, int]:
    """(documents cleaned, of which not near-duplicates, documents embedded)."""
    warehouse = open_warehouse(settings.warehouse)
    try:
        return (await warehouse.count(Collection.CLEAN_DOCUMENTS),
                await warehouse.count(Collection.CLEAN_DOCUMENTS, {"duplicate_of": None}),
                await warehouse.count(Collection.CHUNK_RECORDS))
    finally:
        await warehouse.close()


def run() -> list[Result]:
    docs = corpus_documents()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", kafka_bootstrap=f"127.0.0.1:{free_port()}",
                            qdrant_url=f"http://127.0.0.1:{free_port()}", cleaner_port=free_port(),
                            embedder_port=free_port())
        with Stack(settings, services=FEATURE_SERVICES):
            asyncio.run(store(settings, docs))
            started = time.perf_counter()
            producer = SyncEventProducer(settings)
            for doc in docs:
                producer.send(RawDocStored(id=doc.id, twin_id=doc.twin_id, kind=doc.kind, platform=doc.platform,
                                           content_hash=doc.content_hash))
            producer.close()
            while True:
                cleaned, needed, embedded = asyncio.run(progress(settings))
                if cleaned == len(docs) and embedded >= needed:
                    break
                if time.perf_counter() - started > 1800:
                    raise TimeoutError(f"embedded {embedded} of {needed} documents in 30 minutes")
                time.sleep(0.5)
            pipeline_seconds = time.perf_counter() - started
            model = load_embedding_model(settings)
            collection = vectors.collection_name(embedding_model_name(settings), embedding_dimension(model))
            points, _ = vectors.open_vector_client(settings).scroll(collection, limit=1_000_000, with_payload=True)
        texts = [p.payload["text"] for p in points]
        window = model.max_seq_length
        token_counts = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        dropped = sum(max(0, n - window) for n in token_counts)
        encode_started = time.perf_counter()
        embed(model, texts, settings.embedding_batch_size)
        encode_seconds = time.perf_counter() - encode_started

    pipeline_rate, direct_rate = len(texts) / pipeline_seconds, len(texts) / encode_seconds
    return [
        Result("features", f"chunks/s through bus + services ({len(texts)} chunks)", pipeline_rate, "chunks/s",
               baseline=direct_rate, baseline_label="direct encode, same chunks", goal=">= 0.95"),
        Result("features", f"documents/s fully embedded ({len(docs)} docs)", len(docs) / pipeline_seconds, "docs/s",
               baseline=REFERENCE_DOCS_PER_SECOND, baseline_label="reference, truncating", goal=">= 1.5"),
        Result("features", f"tokens dropped by truncation (of {sum(token_counts)})", dropped, "tokens", goal="0"),
    ]
