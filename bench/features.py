"""The feature pipeline at the speed of the model: the Handbook corpus (76 real articles, two
authors) through the bus, the cleaner and the embedder into the vector store.

Baselines, measured in the same run: encoding exactly the chunks the pipeline stored,
directly with the same model in this process, after each pipeline run (each run is compared
with the encodes just before and just after it); and the reference implementation's path on
this machine, after each run: its chunks of the corpus, encoded as it does, in fp32, every long
chunk truncated (the corpus README's 2.8 documents/s were measured on other machines: int8
gains less on CPUs without VNNI, so the goal is judged against the reference on the same one). The
pipeline runs three times (TWIN_BENCH_FEATURE_ROUNDS), each on a fresh stack: the rows give
the median and every run's figure. The machine's speed drifts between two encodes by as much
as the pipeline costs, so a second row estimates the same ratio without it: the share of the
cores the model's own batches got (their CPU time over cores x wall) in the pipeline and in
the direct encode, each measured within its own run. For the run with the median share, a further
row says where the rest of the cores' time went: each process's CPU seconds beside the model.

When the configured runtime is quantised (onnx-int8), the same chunks are also encoded in
fp32, for its speed and for retrieval recall@10 under both: the query is one sentence of a
chunk, searched among its twin's chunks; a hit is any chunk of the same document in the top 10.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import psutil
from prometheus_client import REGISTRY

from devstack.stack import SERVICES, Stack
from llmtwin import vectors
from llmtwin.bus.producer import SyncEventProducer
from llmtwin.domain import DocumentKind, Platform, RawDocument, slugify
from llmtwin.embeddings import embed, embedding_dimension, embedding_model_name, load_embedding_model
from llmtwin.events import RawDocStored, Topic, decode
from llmtwin.infra.process import free_port
from llmtwin.settings import Settings
from llmtwin.warehouse import Collection, open_warehouse

from .report import Result

CORPUS = Path(os.environ.get("TWIN_BENCH_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpora"
                             / "handbook-articles" / "ArticleDocument.json"))
# The reference's chunker: sentences (split after . ? !, not inside "e.g." or after "Mr.")
# packed into pieces of at most 2,000 characters; pieces under 1,000 are dropped.
REFERENCE_SENTENCE_END = re.compile(r"(?<!\w\.\w.)(?<![A-Z][a-z]\.)(?<=\.|\?|\!)\s")
REFERENCE_CHUNK_CHARS = (1000, 2000)
REFERENCE_BATCH = 10  # chunks the reference hands its model at a time
RECALL_QUERIES = 300
# Pipeline runs, each on a fresh stack and followed by its direct encode.
ROUNDS = max(1, int(os.environ.get("TWIN_BENCH_FEATURE_ROUNDS", "3")))
FEATURE_SERVICES = tuple(s for s in SERVICES if s.name in {"cleaner", "embedder"})
MODEL_SECONDS = "twin_embedding_model_cpu_seconds_total"
CORES = len(os.sched_getaffinity(0))
# The stack's processes by what their command line runs; this process sends and reads the events.
ROLES = {"tansu": "broker", "llmtwin.infra.qdrant_server": "vector store", "twin_cleaner": "cleaner",
         "twin_embedder": "embedder"}
BENCH_ROLE = "bench's sender and reader"


def corpus_documents() -> list[RawDocument]:
    platforms = {"medium": Platform.MEDIUM}
    return [RawDocument.create(twin_id=slugify(item["author_full_name"]),
                               platform=platforms.get(item["platform"], Platform.SUBSTACK if "substack" in item["platform"] else Platform.BLOG),
                               kind=DocumentKind.ARTICLE, link=item["link"], title=item["content"]["Title"] or "",
                               content=item["content"]["Content"])
            for item in json.loads(CORPUS.read_text())]


def reference_chunks() -> list[str]:
    """The corpus as the reference implementation chunks it: each article's content fields joined
    by " #### ", non-word characters other than .,!? to spaces, whitespace collapsed, then its
    sentence packing. Gives the corpus README's figures: 500 chunks, 209,910 tokens, 82,317 of
    them past the model's window."""
    shortest, longest = REFERENCE_CHUNK_CHARS
    chunks = []
    for item in json.loads(CORPUS.read_text()):
        text = " #### ".join(str(value) for value in item["content"].values() if value)
        text = re.sub(r"\s+", " ", re.sub(r"[^\w\s.,!?]", " ", text)).strip()
        piece = ""
        for sentence in filter(None, (s.strip() for s in REFERENCE_SENTENCE_END.split(text))):
            if len(piece) + len(sentence) > longest:
                if len(piece) >= shortest:
                    chunks.append(piece.strip())
                piece = ""
            piece += sentence + " "
        if len(piece) >= shortest:
            chunks.append(piece.strip())
    return chunks


def reference_seconds(fp32, chunks: list[str]) -> float:
    """Seconds the reference's path takes here: its encode in fp32, ten chunks at a time (99% of
    its time, per the corpus README)."""
    return timed(lambda: [fp32.model.encode(chunks[start:start + REFERENCE_BATCH])
                          for start in range(0, len(chunks), REFERENCE_BATCH)])


def tokens_past_window(model, texts: list[str]) -> tuple[int, int]:
    """The texts' tokens (special tokens included), and how many of them lie past the model's window."""
    counts = [len(ids) for ids in model.tokenizer(texts, verbose=False)["input_ids"]]
    return sum(counts), sum(max(0, n - model.max_seq_length) for n in counts)


async def store(settings: Settings, docs: list[RawDocument]) -> None:
    warehouse = open_warehouse(settings.warehouse)
    try:
        for doc in docs:
            await warehouse.upsert(Collection.RAW_DOCUMENTS, doc.model_dump(mode="json"))
    finally:
        await warehouse.close()


def seconds_until_embedded(settings: Settings, doc_ids: set[str], started_at: float) -> float:
    """Seconds from `started_at` (epoch) until the embedder announced the last document's chunks.

    Timed by the ChunksStored events' own `emitted_at` (stamped once the chunks and their record
    are stored), read from the bus: nothing polls the stores while the pipeline runs (polling
    the warehouse every 0.1 s took half a core-second from the two the pipeline runs on). Since
    the stamps time the run, the reader may see them late: its fetches wait up to 3 s on the
    broker and its loop wakes every 5 s, so it takes 0.03 CPU-s per 15 s instead of 0.09."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(Topic.CHUNKS.value, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             auto_offset_reset="earliest", fetch_max_wait_ms=3000, consumer_timeout_ms=5000)
    announced: dict[str, float] = {}
    deadline = time.monotonic() + 1800
    try:
        while len(announced) < len(doc_ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(announced)} of {len(doc_ids)} documents embedded in 30 minutes")
            for record in consumer:
                event = decode(Topic.CHUNKS, record.value)
                if event.document_id in doc_ids:
                    announced.setdefault(event.document_id, event.emitted_at.timestamp())
                if len(announced) == len(doc_ids):
                    break
    finally:
        consumer.close()
    return max(announced.values()) - started_at


def run() -> list[Result]:
    docs = corpus_documents()
    model = load_embedding_model(Settings())
    fp32 = load_embedding_model(Settings(embedding_runtime="torch"))
    reference = reference_chunks()
    fp32.model.encode(reference[:REFERENCE_BATCH])  # its first call is slower: not the reference's speed
    pipeline_rates, direct_rates, docs_per_second, model_shares, cpu_beside = [], [], [], [], []
    reference_rates = []  # the reference's path after each run: fp32 speed drifts most of all
    model_seconds = []  # the model's CPU seconds on the same chunks: (pipeline, direct)
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp) / "data", kafka_bootstrap=f"127.0.0.1:{free_port()}",
                                qdrant_url=f"http://127.0.0.1:{free_port()}", cleaner_port=free_port(),
                                embedder_port=free_port())
            with Stack(settings, services=FEATURE_SERVICES):
                pipeline_seconds, cpu_seconds = pipeline_run(settings, docs)
                pipeline_model_seconds = embedder_model_seconds(settings)
                collection = vectors.collection_name(embedding_model_name(settings), embedding_dimension(model))
                points, _ = vectors.open_vector_client(settings).scroll(collection, limit=1_000_000,
                                                                         with_payload=True, with_vectors=True)
        texts = [p.payload["text"] for p in points]
        model_seconds_before = own_model_seconds()
        direct_seconds = timed(lambda: embed(model, texts, settings.embedding_batch_size))
        direct_model_seconds = own_model_seconds() - model_seconds_before
        pipeline_rates.append(len(texts) / pipeline_seconds)
        direct_rates.append(len(texts) / direct_seconds)
        docs_per_second.append(len(docs) / pipeline_seconds)
        reference_rates.append(len(docs) / reference_seconds(fp32, reference))
        model_seconds.append((pipeline_model_seconds, direct_model_seconds))
        model_shares.append((pipeline_model_seconds / (CORES * pipeline_seconds),
                             direct_model_seconds / (CORES * direct_seconds)))
        cpu_seconds["embedder"] -= pipeline_model_seconds  # what runs beside the model in its process
        cpu_beside.append((cpu_seconds, CORES * pipeline_seconds - pipeline_model_seconds,
                           CORES * direct_seconds - direct_model_seconds))

    tokens, dropped = tokens_past_window(model, texts)
    reference_tokens, reference_truncated = tokens_past_window(fp32, reference)
    # The machine's speed drifts by 10% from one encode to the next, so each run is compared with
    # the direct encodes on both sides of it (the first run, whose chunks they encode, with the one
    # after it), and the row shows the run with the median ratio and lists every run's.
    baselines = [statistics.mean(direct_rates[max(0, i - 1):i + 1]) for i in range(ROUNDS)]
    ratios, (pipeline_rate, direct_rate) = median_run(list(zip(pipeline_rates, baselines)))
    docs_ratios, (pipeline_docs_rate, reference_rate) = median_run(list(zip(docs_per_second, reference_rates)))
    results = [
        Result("features", f"chunks/s through bus + services ({len(texts)} chunks, {settings.embedding_runtime}; "
               f"{spread(ratios)})", pipeline_rate, "chunks/s", baseline=direct_rate,
               baseline_label="direct encode, same chunks", goal=">= 0.95"),
        Result("features", f"documents/s fully embedded ({len(docs)} docs; {spread(docs_ratios)})",
               pipeline_docs_rate, "docs/s", baseline=reference_rate,
               baseline_label=f"reference's path here, fp32 ({len(reference)} chunks, {reference_truncated:,} of "
                              f"{reference_tokens:,} tokens truncated)", goal=">= 1.5"),
        Result("features", f"tokens dropped by truncation (of {tokens})", dropped, "tokens", goal="0"),
    ]
    if settings.embedding_runtime != "torch":  # onnx: each batch on one thread, so its CPU time is measured
        share_ratios, (pipeline_share, direct_share) = median_run(model_shares)
        model_work = [pipeline / direct for pipeline, direct in model_seconds]
        results.append(Result(
            "features", f"model's share of the {CORES} cores: its CPU time / (cores x wall), so the machine's "
            f"speed cancels ({spread(share_ratios)}; assumes the model's CPU time for the same chunks is the same in "
            f"both, pipeline / direct: {spread(model_work)})", pipeline_share * 100, "%", baseline=direct_share * 100,
            baseline_label="direct encode", goal=">= 0.95"))
        cpu_seconds, pipeline_beside, direct_beside = cpu_beside[model_shares.index((pipeline_share, direct_share))]
        # The cores' time no process of the stack or the bench used: idle, or other work on the machine.
        unused = pipeline_beside - sum(cpu_seconds.values())
        breakdown = ", ".join(f"{role} {seconds:.2f}"
                              for role, seconds in [*cpu_seconds.most_common(), ("unused", unused)])
        results.append(Result(
            "features", f"core-seconds beside the model's, in the median run ({breakdown})", pipeline_beside,
            "core-s", baseline=direct_beside, baseline_label="direct encode"))
        results += compare_with_fp32(settings, model, fp32, points, direct_rate)
    return results


def embedder_model_seconds(settings: Settings) -> float:
    """CPU seconds the embedder's model has run (its /metrics): on a fresh stack, this run's chunks."""
    from prometheus_client.parser import text_string_to_metric_families

    page = httpx.get(f"http://127.0.0.1:{settings.embedder_port}/metrics", timeout=10).text
    return next(sample.value for family in text_string_to_metric_families(page) for sample in family.samples
                if sample.name == MODEL_SECONDS)


def own_model_seconds() -> float:
    return REGISTRY.get_sample_value(MODEL_SECONDS) or 0.0


def median_run(runs: list[tuple[float, float]]) -> tuple[list[float], tuple[float, float]]:
    """Each run's figure over its baseline, and the (figure, baseline) of the run with the median ratio."""
    ratios = [figure / baseline for figure, baseline in runs]
    return ratios, runs[ratios.index(statistics.median_low(ratios))]


def spread(values: list[float]) -> str:
    return f"median of {len(values)}: " + " ".join(f"{value:.2f}" for value in sorted(values))


def pipeline_run(settings: Settings, docs: list[RawDocument]) -> tuple[float, Counter[str]]:
    """Seconds from announcing the stored documents until the last one's chunks are stored, and the
    CPU seconds each process spent meanwhile, by role (read once the reader has seen the last
    chunks, up to 1.5 s later: the idle stack's few hundredths of a CPU-second more)."""
    asyncio.run(store(settings, docs))
    producer = SyncEventProducer(settings)  # connected before the clock, as a crawler's would be
    cpu_before = cpu_seconds_by_role()
    started_at = time.time()
    producer.send_all(RawDocStored(id=doc.id, twin_id=doc.twin_id, kind=doc.kind, platform=doc.platform,
                                   content_hash=doc.content_hash) for doc in docs)
    producer.close()
    seconds = seconds_until_embedded(settings, {doc.id for doc in docs}, started_at)
    return seconds, cpu_seconds_by_role() - cpu_before


def cpu_seconds_by_role() -> Counter[str]:
    """CPU seconds so far of this process and of the stack's (its children), by role."""
    me = psutil.Process()
    spent = Counter({BENCH_ROLE: sum(me.cpu_times()[:2])})
    for child in me.children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            spent[next((role for marker, role in ROLES.items() if marker in command), "other")] += \
                sum(child.cpu_times()[:2])
        except psutil.Error:  # a process that ended between the listing and the reading
            continue
    return spent


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def compare_with_fp32(settings: Settings, model, fp32, points, quantised_rate: float) -> list[Result]:
    """fp32's speed on the same chunks, and recall@10 of both runtimes' vectors."""
    texts = [p.payload["text"] for p in points]
    fp32_vectors: list = []
    fp32_seconds = timed(lambda: fp32_vectors.extend(embed(fp32, texts, settings.embedding_batch_size)))
    queries = recall_queries(points)
    query_texts = [sentence for sentence, _ in queries]
    recall_fp32 = recall_at_10(points, np.array(fp32_vectors), np.array(embed(fp32, query_texts, 32)), queries)
    recall_quantised = recall_at_10(points, np.array([p.vector for p in points]),
                                    np.array(embed(model, query_texts, 32)), queries)
    return [
        Result("features", f"direct encode, {settings.embedding_runtime} vs fp32", quantised_rate, "chunks/s",
               baseline=len(texts) / fp32_seconds, baseline_label="fp32 (torch)"),
        Result("features", f"recall@10, {settings.embedding_runtime} ({len(queries)} queries)", recall_quantised * 100,
               "%", baseline=recall_fp32 * 100, baseline_label="fp32", goal="within 2 points"),
    ]


def recall_queries(points) -> list[tuple[str, int]]:
    """One sentence (8+ words) from each of a fixed sample of chunks, with the chunk's index."""
    rng = random.Random(7)
    queries = []
    for index in rng.sample(range(len(points)), len(points)):
        sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", points[index].payload["text"])
                     if len(s.split()) >= 8]
        if sentences:
            queries.append((rng.choice(sentences), index))
        if len(queries) == RECALL_QUERIES:
            break
    return queries


def recall_at_10(points, chunk_vectors: np.ndarray, query_vectors: np.ndarray, queries) -> float:
    """Share of queries whose 10 nearest chunks of the same twin include one of the source document."""
    twins = np.array([p.payload["twin_id"] for p in points])
    documents = [p.payload["document_id"] for p in points]
    hits = 0
    for (_, index), query in zip(queries, query_vectors):
        scores = np.where(twins == twins[index], chunk_vectors @ query, -np.inf)
        top = np.argpartition(-scores, 10)[:10]
        hits += any(documents[i] == documents[index] for i in top)
    return hits / len(queries)
