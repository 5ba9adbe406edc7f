"""Retrieval: the twin's own passages nearest to a request, diverse and without repeats.

The query is expanded into the forms that say what it is about (`query_expansion`), each
form is embedded with the collection's own model (the collection is named after it) and
searched, always filtered to one twin; the candidates of all forms are merged (a passage
is as relevant as its closest form), reordered by a reranker where one is configured, then
maximal marginal relevance picks passages that are relevant but unlike each other, and
near-identical text is dropped.
"""
from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from llmtwin.domain import Chunk, DocumentKind, content_hash
from llmtwin.embeddings import (
    embed,
    embedding_dimension,
    embedding_model_name,
    load_embedding_model,
)
from llmtwin.settings import Settings
from llmtwin.vectors import ScoredChunk, collection_name, open_vector_client, search
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import UnexpectedResponse

from .metrics import RERANK_SECONDS, RETRIEVAL_SECONDS
from .query_expansion import expand_query
from .reranking import CrossEncoderReranker, Reranker

CANDIDATES_PER_RESULT = 3  # candidates each form of the query fetches per passage returned, for MMR
MMR_LAMBDA = 0.7  # 1: relevance only, 0: diversity only
NEAR_DUPLICATE_COSINE = 0.95


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk and its relevance (cosine similarity to the query)."""

    chunk: Chunk
    score: float


@dataclass(frozen=True)
class Candidate:
    passage: Passage
    vector: np.ndarray  # unit length


class Retriever:
    def __init__(self, client: QdrantClient, embedding_model: Any, collection: str, batch_size: int = 16, *,
                 expand_queries: bool = True, reranker: Reranker | None = None) -> None:
        self.client, self.embedding_model = client, embedding_model
        self.collection, self.batch_size = collection, batch_size
        self.expand_queries, self.reranker = expand_queries, reranker

    @classmethod
    def for_model(cls, settings: Settings, client: QdrantClient, embedding_model: Any, *,
                  reranker: Reranker | None = None) -> Retriever:
        """Search the collection that `embedding_model` filled (named after the model and its dimension)."""
        collection = collection_name(embedding_model_name(settings), embedding_dimension(embedding_model))
        return cls(client, embedding_model, collection, settings.embedding_batch_size,
                   expand_queries=settings.retrieval_query_expansion, reranker=reranker)

    @classmethod
    async def open(cls, settings: Settings) -> Retriever:
        model = await asyncio.to_thread(load_embedding_model, settings)
        reranker = (await asyncio.to_thread(CrossEncoderReranker.load, settings.reranker_model)
                    if settings.reranker_model else None)
        return cls.for_model(settings, open_vector_client(settings), model, reranker=reranker)

    async def retrieve(self, twin_id: str, query: str, top_k: int,
                       kinds: Sequence[DocumentKind] | None = None) -> list[Passage]:
        """Up to `top_k` of the twin's passages, most relevant first; none of another twin's."""
        started = time.perf_counter()
        forms = expand_query(query) if self.expand_queries else [query]
        query_vectors = await asyncio.to_thread(embed, self.embedding_model, forms, self.batch_size)
        limit = top_k * CANDIDATES_PER_RESULT
        found = await asyncio.gather(*(asyncio.to_thread(self._search, twin_id, vector, limit, kinds)
                                       for vector in query_vectors))
        candidates = await asyncio.to_thread(self._merged, found, query_vectors)
        RETRIEVAL_SECONDS.observe(time.perf_counter() - started)
        if self.reranker is not None and candidates:
            started = time.perf_counter()
            candidates = await asyncio.to_thread(self._reranked, query, candidates)
            RERANK_SECONDS.observe(time.perf_counter() - started)
        return select_diverse(candidates, top_k)

    def _search(self, twin_id: str, query_vector: list[float], limit: int,
                kinds: Sequence[DocumentKind] | None) -> list[ScoredChunk]:
        try:
            return search(self.client, self.collection, query_vector, twin_id=twin_id, top_k=limit, kinds=kinds)
        except UnexpectedResponse as exc:
            if exc.status_code == 404:  # nothing embedded with this model yet
                return []
            raise

    def _merged(self, found: Sequence[Sequence[ScoredChunk]], query_vectors: Sequence[list[float]]) -> list[Candidate]:
        """The union of every form's hits, each scored by its cosine to the closest form, best first.
        All of them go on to MMR, so that a subject whose passages score lower still has its say."""
        chunks = {hit.chunk.id: hit.chunk for hits in found for hit in hits}
        if not chunks:
            return []
        # MMR also needs the vectors, fetched by id (no second filter).
        records = self.client.retrieve(self.collection, list(chunks), with_payload=False, with_vectors=True)
        vectors = {str(record.id): _unit(np.asarray(record.vector, dtype=np.float32)) for record in records}
        forms = np.asarray(query_vectors, dtype=np.float32)
        candidates = [Candidate(Passage(chunks[chunk_id], float((forms @ vector).max())), vector)
                      for chunk_id, vector in vectors.items()]
        return sorted(candidates, key=lambda candidate: candidate.passage.score, reverse=True)

    def _reranked(self, query: str, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The candidates scored by the reranker (it reads the request as the user typed it), best first."""
        scores = self.reranker.scores(query, [candidate.passage.chunk.text for candidate in candidates])
        rescored = [Candidate(Passage(candidate.passage.chunk, score), candidate.vector)
                    for candidate, score in zip(candidates, scores, strict=True)]
        return sorted(rescored, key=lambda candidate: candidate.passage.score, reverse=True)


def select_diverse(candidates: Sequence[Candidate], top_k: int, *, mmr_lambda: float = MMR_LAMBDA,
                   near_duplicate: float = NEAR_DUPLICATE_COSINE) -> list[Passage]:
    """Maximal marginal relevance over the candidates, dropping repeated and near-identical text.

    Relevance is the candidate's score (its cosine to the closest form of the query, or the
    reranker's score); redundancy the cosine to a passage already chosen."""
    remaining, seen_text = [], set()
    for candidate in candidates:
        key = content_hash(_normalised(candidate.passage.chunk.text))
        if key not in seen_text:
            seen_text.add(key)
            remaining.append(candidate)
    chosen: list[Candidate] = []
    while remaining and len(chosen) < top_k:
        def marginal_relevance(candidate: Candidate) -> float:
            redundancy = max((float(candidate.vector @ c.vector) for c in chosen), default=0.0)
            return mmr_lambda * candidate.passage.score - (1 - mmr_lambda) * redundancy

        best = max(remaining, key=marginal_relevance)
        remaining.remove(best)
        if any(float(best.vector @ c.vector) >= near_duplicate for c in chosen):
            continue
        chosen.append(best)
    return [c.passage for c in chosen]


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()
