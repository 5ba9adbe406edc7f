"""The vector side of the feature store: chunks and their embeddings in Qdrant.

Every service reaches Qdrant through `QdrantClient(url=...)`: the local server of the
embedded stack (llmtwin.infra.qdrant_server) or a real Qdrant, only the URL differs.

One collection per embedding model and dimension, so vectors of two models are never
mixed; the model name and dimension are also recorded in the collection's metadata.
A point's id is the chunk id and its payload is the chunk itself, under the Chunk's own
field names, so every filter here names a field that the writer really stored.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client.http import models
from qdrant_client.http.exceptions import UnexpectedResponse

from .domain import Chunk, DocumentKind
from .settings import Settings

CLIENT_TIMEOUT_S = 30
UPSERT_BATCH = 256  # points a request: keeps each request far below Qdrant's 32 MB body limit
# Decimals of a vector component on the wire. Qdrant keeps float32: this is finer than it for
# components of 1/16 and up, and 5e-9 off at most below. A float64's shortest form takes twice
# the characters (the server parsed 1,280 points with 13% more CPU).
VECTOR_DECIMALS = 8
# Payload fields the pipeline filters on; each is a field of Chunk.
INDEXED_FIELDS = ("twin_id", "kind", "platform", "document_id")


class ScoredChunk(NamedTuple):
    chunk: Chunk
    score: float


def open_vector_client(settings: Settings) -> QdrantClient:
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return QdrantClient(url=settings.qdrant_url, api_key=api_key, timeout=CLIENT_TIMEOUT_S)


def collection_name(model_name: str, dim: int) -> str:
    """The chunk collection of one embedding model, e.g. `chunks__all-minilm-l6-v2__384`."""
    slug = re.sub(r"[^a-z0-9.-]+", "-", model_name.lower()).strip("-.")
    if not slug or dim < 1:
        raise ValueError(f"a collection needs a model name and a positive dimension, got {model_name!r}, {dim}")
    return f"chunks__{slug}__{dim}"


def ensure_collection(client: QdrantClient, model_name: str, dim: int) -> str:
    """Create the model's chunk collection and its payload indexes if missing; return its name.

    Safe to call from several processes at once: a creation that lost the race is fine."""
    name = collection_name(model_name, dim)
    if not client.collection_exists(name):
        try:
            client.create_collection(
                name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                metadata={"embedding_model": model_name, "dimension": dim})
        except UnexpectedResponse as exc:
            if exc.status_code != 409:  # 409: another process created it first
                raise
    # Idempotent, and repeated so that a creator that stopped half-way is made whole.
    for field in INDEXED_FIELDS:
        client.create_payload_index(name, field, field_schema=models.PayloadSchemaType.KEYWORD, wait=True)
    return name


def upsert_chunks(client: QdrantClient, collection: str, chunks: Sequence[Chunk],
                  vectors: Sequence[Sequence[float]]) -> None:
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    for start in range(0, len(chunks), UPSERT_BATCH):
        part = chunks[start:start + UPSERT_BATCH]
        # One conversion per row (numpy rows or lists alike), and one model for the request rather
        # than one per point (1,280 points: 0.33 vs 0.39 CPU-s, the embedder and the server together).
        rows = [np.round(np.asarray(vector, dtype=np.float64), VECTOR_DECIMALS).tolist()
                for vector in vectors[start:start + UPSERT_BATCH]]
        batch = models.Batch(ids=[chunk.id for chunk in part], vectors=rows,
                             payloads=[chunk.model_dump(mode="json") for chunk in part])
        client.upsert(collection, points=batch, wait=True)


def delete_stale_chunks(client: QdrantClient, collection: str, keep: Mapping[str, Iterable[str]]) -> None:
    """Remove each document's chunks that are not among its ids in `keep` (what a re-chunked
    document left behind; all of them for an empty list), for every document in one request.

    A chunk's id derives from its document's, so one document's ids never name another's chunks."""
    if not keep:
        return
    kept = [chunk_id for ids in keep.values() for chunk_id in ids]
    stale = models.Filter(must=[models.FieldCondition(key="document_id", match=models.MatchAny(any=list(keep)))],
                          must_not=[models.HasIdCondition(has_id=kept)] if kept else None)
    client.delete(collection, points_selector=models.FilterSelector(filter=stale), wait=True)


def search(client: QdrantClient, collection: str, vector: Sequence[float], *, twin_id: str, top_k: int,
           kinds: Iterable[DocumentKind | str] | None = None, score_threshold: float | None = None,
           exclude_document_id: str | None = None) -> list[ScoredChunk]:
    """The twin's chunks nearest to `vector`, best first, none of `exclude_document_id`'s.
    Never crosses into another twin's writing."""
    if not twin_id:
        raise ValueError("a search is always scoped to one twin: twin_id is required")
    conditions = [_match("twin_id", twin_id)]
    if kinds is not None:
        conditions.append(models.FieldCondition(key="kind", match=models.MatchAny(any=[str(k) for k in kinds])))
    excluded = [_match("document_id", exclude_document_id)] if exclude_document_id else None
    response = client.query_points(collection, query=[float(x) for x in vector],
                                   query_filter=models.Filter(must=conditions, must_not=excluded), limit=top_k,
                                   with_payload=True, score_threshold=score_threshold)
    return [ScoredChunk(Chunk.model_validate(point.payload), point.score) for point in response.points]


def count_points(client: QdrantClient, collection: str, twin_id: str | None = None,
                 document_id: str | None = None) -> int:
    conditions = [_match(field, value) for field, value in (("twin_id", twin_id), ("document_id", document_id))
                  if value]
    count_filter = models.Filter(must=conditions) if conditions else None
    return client.count(collection, count_filter=count_filter, exact=True).count


def _match(field: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=field, match=models.MatchValue(value=value))
