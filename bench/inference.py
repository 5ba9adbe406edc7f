"""Serving: what the inference API adds on top of the model, how retrieval scales, how it shares.

- Time to first token and streaming tokens/s of a chat completion (SSE over HTTP, the API as
  its own process, as `devstack` runs it), against the same generation (same model files,
  prompt and retrieved context, greedy) called directly in this process; the time to first
  token also against retrieval + generation in process, which leaves only what serving adds
  (HTTP, SSE, the process boundary, tracing). Goal: under 10% overhead.
- Vector search latency, filtered to one of two twins, top 4, at 20,000 chunks in the local
  Qdrant server (random unit vectors: the engine's cost does not depend on the values),
  against the same searches in qdrant-client's local mode in process (the engine the local
  server ran before qdrant-edge; no HTTP, so the baseline is the faster side of that engine).
- Aggregate tokens/s of several concurrent streaming clients, against one client.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from devstack.stack import SERVICES, Stack
from llmtwin import vectors
from llmtwin.domain import (
    Chunk,
    CleanDocument,
    DocumentKind,
    Platform,
    Twin,
    content_hash,
    stable_id,
)
from llmtwin.embeddings import (
    embed,
    embedding_dimension,
    embedding_model_name,
    load_embedding_model,
)
from llmtwin.infra.process import free_port
from llmtwin.models import prepare_default_base
from llmtwin.settings import Settings
from llmtwin.warehouse import Collection, open_warehouse
from qdrant_client import QdrantClient
from twin_inference.backends import (
    GenerationReport,
    GenerationSettings,
    PromptSpec,
    TransformersBackend,
)
from twin_inference.retrieval import Retriever

from .report import Result

REPO = Path(__file__).resolve().parents[1]
API_SERVICES = tuple(s for s in SERVICES if s.name == "inference-api")
TWIN = Twin(id="ada", name="Ada Lovelace")
PROMPT = "Write a short LinkedIn post about why idempotent consumers make event pipelines reliable."
NEW_TOKENS = 48
REPETITIONS = 4
CONCURRENT_CLIENTS = (4, 8)
PASSAGES = [  # the twin's own writing, so the API retrieves real context into the prompt
    "Kafka moves every event between my services, and each consumer is idempotent.",
    "At-least-once delivery is fine when ids are deterministic hashes of the content.",
    "A feature store keeps clean text, chunks and embeddings for training and serving.",
    "Retries are cheap when a handler can see the same message twice without harm.",
    "I log every dead-lettered message with the reason, so a replay is one command.",
    "Backpressure lets a slow consumer tell a fast producer to wait.",
]
SEARCH_POINTS = 20_000
SEARCH_TWINS = ("ada", "grace")
SEARCH_QUERIES = 1000  # enough that p99 is not the single slowest search
BASELINE_QUERIES = 50  # the baseline takes hundreds of ms a search
SEARCH_TOP_K = 4
SEARCH_DIMENSION = 384


@dataclass(frozen=True)
class Timing:
    """One answer, timed from the request (direct: from the start of generation)."""

    first_token_s: float
    last_token_s: float
    tokens: int
    retrieval_s: float = 0.0  # direct runs: retrieval timed apart, before the generation

    @property
    def streaming_tokens_per_second(self) -> float:
        """The rate once tokens flow: the tokens after the first over the time they took."""
        return (self.tokens - 1) / (self.last_token_s - self.first_token_s)

    @property
    def tokens_per_second(self) -> float:
        """The rate a client sees, first-token wait included."""
        return self.tokens / self.last_token_s


def run() -> list[Result]:
    base_model = prepare_default_base(Settings(data_dir=REPO / ".data"))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", kafka_bootstrap=f"127.0.0.1:{free_port()}",
                            qdrant_url=f"http://127.0.0.1:{free_port()}", api_port=free_port(),
                            base_model=str(base_model), max_new_tokens=NEW_TOKENS)
        with Stack(settings, services=API_SERVICES):
            retriever = asyncio.run(seed_twin(settings))
            api_url = f"http://{settings.host}:{settings.api_port}"
            wait_ready(api_url)
            direct = TransformersBackend.from_base(base_model)
            try:
                overhead, one_client = timed("API against direct", compare_with_direct, api_url, direct,
                                             retriever, settings.retrieval_top_k)
            finally:
                asyncio.run(direct.aclose())
                retriever.client.close()
            return (overhead + timed("concurrent clients", concurrency, api_url, one_client)
                    + timed("vector search", search_latency, settings))


def timed(phase: str, fn, *args):
    started = time.perf_counter()
    try:
        return fn(*args)
    finally:
        print(f"   {phase}: {time.perf_counter() - started:.0f} s", flush=True)


async def seed_twin(settings: Settings) -> Retriever:
    """The twin in the warehouse and its passages in the vector store; returns a Retriever over
    them like the API's, for the direct runs to retrieve the same context."""
    warehouse = open_warehouse(settings.warehouse)
    try:
        await warehouse.upsert(Collection.TWINS, TWIN.model_dump(mode="json"))
    finally:
        await warehouse.close()
    model = load_embedding_model(settings)
    client = vectors.open_vector_client(settings)
    collection = vectors.ensure_collection(client, embedding_model_name(settings), embedding_dimension(model))
    vectors.upsert_chunks(client, collection, _chunks(TWIN.id, PASSAGES),
                          embed(model, PASSAGES, settings.embedding_batch_size))
    return Retriever.for_model(settings, client, model)


def _chunks(twin_id: str, texts: list[str], document: int = 0) -> list[Chunk]:
    link = f"https://example.com/{twin_id}/{document}"
    doc = CleanDocument(id=stable_id(twin_id, link), twin_id=twin_id, platform=Platform.BLOG,
                        kind=DocumentKind.POST, link=link, title=f"post {document}", content="\n".join(texts),
                        content_hash=content_hash("\n".join(texts)), raw_hash="")
    return [Chunk.create(doc, position, text) for position, text in enumerate(texts)]


def wait_ready(api_url: str, timeout: float = 180) -> None:
    """The API process answers /readyz 200 once its base model has loaded."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{api_url}/readyz").status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("the inference API did not load its model")
        time.sleep(0.5)


# --- API overhead ------------------------------------------------------------------------------

def compare_with_direct(api_url: str, direct: TransformersBackend, retriever: Retriever,
                        top_k: int) -> tuple[list[Result], float]:
    """The rows, and the tokens/s one streaming client gets (the concurrency baseline)."""
    # One unmeasured run each (first-call allocations), then runs alternate so that the
    # machine's other load falls on both sides alike.
    asyncio.run(generate_directly(direct, retriever, top_k))
    asyncio.run(stream_alone(api_url))
    direct_runs, api_runs = [], []
    for _ in range(REPETITIONS):
        direct_runs.append(asyncio.run(generate_directly(direct, retriever, top_k)))
        api_runs.append(asyncio.run(stream_alone(api_url)))
    if {t.tokens for t in direct_runs} != {t.tokens for t in api_runs}:
        raise RuntimeError(f"the API and the direct run generated different lengths: "
                           f"{[t.tokens for t in api_runs]} vs {[t.tokens for t in direct_runs]}")

    def median(runs: list[Timing], value) -> float:
        return statistics.median(value(t) for t in runs)

    api_ttft_ms = 1000 * median(api_runs, lambda t: t.first_token_s)
    rows = [
        Result("inference", "time to first token, API (SSE)", api_ttft_ms, "ms",
               1000 * median(direct_runs, lambda t: t.first_token_s), "generate in process", "ratio < 1.10"),
        Result("inference", "time to first token, API (SSE)", api_ttft_ms, "ms",
               1000 * median(direct_runs, lambda t: t.retrieval_s + t.first_token_s),
               "retrieve + generate in process", "ratio < 1.10"),
        Result("inference", f"tokens/s streaming, API (SSE, {NEW_TOKENS} new tokens)",
               median(api_runs, lambda t: t.streaming_tokens_per_second), "tok/s",
               median(direct_runs, lambda t: t.streaming_tokens_per_second), "generate in process",
               "ratio > 0.90"),
    ]
    return rows, median(api_runs, lambda t: t.tokens_per_second)


async def generate_directly(backend: TransformersBackend, retriever: Retriever, top_k: int) -> Timing:
    """What the API does for a chat request, minus HTTP: retrieve the context, then generate."""
    started = time.perf_counter()
    passages = await retriever.retrieve(TWIN.id, PROMPT, top_k)
    spec = PromptSpec(PROMPT, TWIN.name, None, tuple(p.chunk.text for p in passages))
    report = GenerationReport()
    generating, first, last = time.perf_counter(), None, None
    async for _ in backend.stream(spec, GenerationSettings(NEW_TOKENS, temperature=0.0), report):
        last = time.perf_counter()
        first = first or last
    return Timing(first - generating, last - generating, report.completion_tokens, generating - started)


async def stream_alone(api_url: str) -> Timing:
    async with httpx.AsyncClient(timeout=300) as http:
        return await stream_from_api(http, api_url)


async def stream_from_api(http: httpx.AsyncClient, api_url: str) -> Timing:
    """One streamed chat completion; first and last token: the first and last chunks that carry text."""
    body = {"model": TWIN.id, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": NEW_TOKENS, "temperature": 0}
    started, first, last, tokens = time.perf_counter(), None, None, 0
    async with http.stream("POST", f"{api_url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data:"):])
            if "error" in chunk:
                raise RuntimeError(f"the API failed: {chunk['error']}")
            if any(c["delta"].get("content") for c in chunk["choices"]):
                last = time.perf_counter()
                first = first or last
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return Timing(first - started, last - started, tokens)


# --- concurrency ----------------------------------------------------------------------------

def concurrency(api_url: str, one_client_tokens_per_second: float) -> list[Result]:
    return [Result("inference", f"aggregate tokens/s, {clients} streaming clients",
                   asyncio.run(aggregate_tokens_per_second(api_url, clients)), "tok/s",
                   one_client_tokens_per_second, "1 client", "")
            for clients in CONCURRENT_CLIENTS]


async def aggregate_tokens_per_second(api_url: str, clients: int) -> float:
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as http:
        started = time.perf_counter()
        timings = await asyncio.gather(*(stream_from_api(http, api_url) for _ in range(clients)))
        return sum(t.tokens for t in timings) / (time.perf_counter() - started)


# --- vector search -----------------------------------------------------------------------------

def search_latency(settings: Settings) -> list[Result]:
    rng = np.random.default_rng(7)
    per_twin = SEARCH_POINTS // len(SEARCH_TWINS)
    points = [(_chunks(twin_id, [f"passage {i} of {twin_id}" for i in range(per_twin)]),
               _unit_vectors(rng, per_twin, SEARCH_DIMENSION)) for twin_id in SEARCH_TWINS]
    queries = _unit_vectors(rng, SEARCH_QUERIES, SEARCH_DIMENSION)
    served = vectors.open_vector_client(settings)
    try:
        seconds = timed_searches(served, points, queries)
    finally:
        served.close()
    in_process = QdrantClient(location=":memory:")
    try:
        baseline = timed_searches(in_process, points, queries[:BASELINE_QUERIES])
    finally:
        in_process.close()
    what = f"search, {SEARCH_POINTS // 1000}k chunks, 1 of {len(SEARCH_TWINS)} twins, top {SEARCH_TOP_K}"
    label = f"qdrant-client local mode, {BASELINE_QUERIES} searches"
    return [Result("inference", f"{what}: {name}", 1000 * float(np.percentile(seconds, q)), "ms",
                   1000 * float(np.percentile(baseline, q)), label, goal)
            for name, q, goal in (("p50", 50, ""), ("p99", 99, "< 20 ms"))]


def timed_searches(client: QdrantClient, points: list[tuple[list[Chunk], np.ndarray]],
                   queries: np.ndarray) -> list[float]:
    """Store the points, then the seconds each filtered search took, checking every answer."""
    collection = vectors.ensure_collection(client, "bench-random", SEARCH_DIMENSION)
    started = time.perf_counter()
    for chunks, unit_vectors in points:
        vectors.upsert_chunks(client, collection, chunks, unit_vectors)
    print(f"   stored {SEARCH_POINTS} points in {time.perf_counter() - started:.0f} s", flush=True)
    for query in queries[:3]:  # warm-up
        vectors.search(client, collection, query, twin_id=SEARCH_TWINS[0], top_k=SEARCH_TOP_K)
    seconds = []
    for i, query in enumerate(queries):
        twin_id = SEARCH_TWINS[i % 2]
        started = time.perf_counter()
        found = vectors.search(client, collection, query, twin_id=twin_id, top_k=SEARCH_TOP_K)
        seconds.append(time.perf_counter() - started)
        if len(found) != SEARCH_TOP_K or any(hit.chunk.twin_id != twin_id for hit in found):
            raise RuntimeError("the filtered search returned the wrong chunks")
    return seconds


def _unit_vectors(rng: np.random.Generator, count: int, dimension: int) -> np.ndarray:
    values = rng.standard_normal((count, dimension)).astype(np.float32)
    return values / np.linalg.norm(values, axis=1, keepdims=True)
