"""Retrieval: the twin's own passages nearest to a request, diverse and without repeats.

The query is embedded with the collection's own model (the collection is named after
it), the search is always filtered to one twin, then maximal marginal relevance picks
passages that are relevant but unlike each other, and near-identical text is dropped.
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
from llmtwin.vectors import collection_name, open_vector_client, search
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import UnexpectedResponse

from .metrics import RETRIEVAL_SECONDS

CANDIDATES_PER_RESULT = 3  # candidates fetched for each passage returned, for MMR to choose from
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
    def __init__(self, client: QdrantClient, embedding_model: Any, collection: str, batch_size: int = 16) -> None:
        self.client, self.embedding_model = client, embedding_model
        self.collection, self.batch_size = collection, batch_size

    @classmethod
    def for_model(cls, settings: Settings, client: QdrantClient, embedding_model: Any) -> Retriever:
        """Search the collection that `embedding_model` filled (named after the model and its dimension)."""
        collection = collection_name(embedding_model_name(settings), embedding_dimension(embedding_model))
        return cls(client, embedding_model, collection, settings.embedding_batch_size)

    @classmethod
    async def open(cls, settings: Settings) -> Retriever:
        model = await asyncio.to_thread(load_embedding_model, settings)
        return cls.for_model(settings, open_vector_client(settings), model)

    async def retrieve(self, twin_id: str, query: str, top_k: int,
                       kinds: Sequence[DocumentKind] | None = None) -> list[Passage]:
        """Up to `top_k` of the twin's passages, most relevant first; none of another twin's."""
        started = time.perf_counter()
        [query_vector] = await asyncio.to_thread(embed, self.embedding_model, [query], self.batch_size)
        candidates = await asyncio.to_thread(self._candidates, twin_id, query_vector,
                                             top_k * CANDIDATES_PER_RESULT, kinds)
        RETRIEVAL_SECONDS.observe(time.perf_counter() - started)
        return select_diverse(candidates, top_k)

    def _candidates(self, twin_id: str, query_vector: list[float], limit: int,
                    kinds: Sequence[DocumentKind] | None) -> list[Candidate]:
        try:
            found = search(self.client, self.collection, query_vector, twin_id=twin_id, top_k=limit, kinds=kinds)
        except UnexpectedResponse as exc:
            if exc.status_code == 404:  # nothing embedded with this model yet
                return []
            raise
        if not found:
            return []
        # The search returns payloads; MMR also needs the vectors, fetched by id (no second filter).
        records = self.client.retrieve(self.collection, [hit.chunk.id for hit in found],
                                       with_payload=False, with_vectors=True)
        vectors = {str(record.id): np.asarray(record.vector, dtype=np.float32) for record in records}
        return [Candidate(Passage(hit.chunk, hit.score), _unit(vectors[hit.chunk.id]))
                for hit in found if hit.chunk.id in vectors]


def select_diverse(candidates: Sequence[Candidate], top_k: int, *, mmr_lambda: float = MMR_LAMBDA,
                   near_duplicate: float = NEAR_DUPLICATE_COSINE) -> list[Passage]:
    """Maximal marginal relevance over the candidates, dropping repeated and near-identical text.

    Relevance is the search's score (cosine to the query); redundancy the cosine to a passage
    already chosen."""
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
