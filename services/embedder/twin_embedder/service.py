"""The embedder stage: clean_docs -> (Qdrant: chunks with vectors) -> chunks.

For a batch of CleanDocStored messages it loads the clean documents, tokenizes them (side by
side, on threads apart from the model's) and chunks each one in the model's own tokens (chunking.py),
deletes the chunks a re-processed document no longer has, embeds every chunk of the batch in
ONE model call on a worker thread (the chunker's token ids, so each text is tokenized once; the
model sorts them by length, so each inner batch holds chunks of similar length) and upserts
the points as the model's inner batches come back, records which chunks each document version
has (warehouse CHUNK_RECORDS) and emits one ChunksStored per document.

The stage hands it two batches at once (the model's pool takes their work in turn). A document
in both (the backlog replayed at start-up beside its own message) is embedded by the first:
the second waits for it, then finds the document's record current.

Near-duplicates (`duplicate_of` set by the cleaner) get no chunks: whatever they had is
deleted, so one text is never retrieved twice; nor do documents their author withdrew. A
document whose record already matches its content hash is not embedded again; its
ChunksStored is emitted all the same, so a batch retried after a partial failure still
announces every document.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

import numpy as np
from llmtwin.domain import Chunk, CleanDocument
from llmtwin.embeddings import (
    EmbeddingModel,
    embedding_dimension,
    embedding_model_name,
    load_embedding_model,
)
from llmtwin.events import BadMessage, ChunksStored, CleanDocStored, Event
from llmtwin.settings import Settings
from llmtwin.vectors import (
    delete_stale_chunks,
    ensure_collection,
    open_vector_client,
    upsert_chunks,
)
from llmtwin.warehouse import Collection, Warehouse, open_warehouse
from llmtwin.warehouse.repository import Repository
from prometheus_client import Counter, Gauge
from pydantic import BaseModel
from qdrant_client import QdrantClient

from .chunking import Tokenized, TokenizedChunk, chunk_document

log = logging.getLogger(__name__)

CHUNKS_EMBEDDED = Counter("twin_embedder_chunks_total", "Chunks embedded and written to the vector store")
TOKENS_EMBEDDED = Counter("twin_embedder_tokens_total", "Tokens embedded (special tokens excluded)")
DOCUMENTS = Counter("twin_embedder_documents_total", "Documents handled, by outcome", ["outcome"])
CHUNKS_PER_SECOND = Gauge("twin_embedder_chunks_per_second", "Embedding throughput of the last batch")
# Vectors written a request at a time as their model batches come back: the last request,
# written after the model is done, stays small.
WRITE_EVERY = 128


class ChunkRecord(BaseModel):
    """Which chunks of which version of a document are in which collection."""

    id: str  # the document id
    twin_id: str
    content_hash: str
    duplicate_of: str | None = None  # a document that turns into a duplicate keeps its content hash
    chunk_ids: list[str]
    collection: str


class Embedder:
    """The embedder's Processor (see llmtwin.bus.stage)."""

    def __init__(self, warehouse: Warehouse, client: QdrantClient, model: EmbeddingModel, *,
                 collection: str, max_tokens: int, overlap: int, batch_size: int) -> None:
        self.warehouse, self.client, self.model = warehouse, client, model
        self.clean = Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument)
        self.records = Repository(warehouse, Collection.CHUNK_RECORDS, ChunkRecord)
        self.collection, self.batch_size = collection, batch_size
        self.max_tokens, self.overlap = max_tokens, overlap
        self._handling: dict[str, asyncio.Future] = {}  # document id -> done when its batch is handled

    async def handle(self, events: list[Event]) -> list[Event]:
        docs: dict[str, CleanDocument] = {}
        for event in events:  # load all first: a missing document fails the batch before any write
            if not isinstance(event, CleanDocStored):
                raise BadMessage(f"the embedder takes clean_docs messages, got {type(event).__name__}")
            doc = await self.clean.get(event.id)
            if doc is None:
                raise BadMessage(f"clean document {event.id} is not in the warehouse")
            docs[doc.id] = doc
        while others := {self._handling[doc_id] for doc_id in docs if doc_id in self._handling}:
            await asyncio.wait(others)
        handled = asyncio.get_running_loop().create_future()
        self._handling.update(dict.fromkeys(docs, handled))  # no await since the check: one batch per document
        try:
            return await self._handle(docs)
        finally:
            for doc_id in docs:
                del self._handling[doc_id]
            handled.set_result(None)

    async def _handle(self, docs: dict[str, CleanDocument]) -> list[Event]:
        records = {record.id: record for record in await self.records.list({"id": list(docs)})}
        stale = [doc for doc in docs.values() if not self._is_current(records.get(doc.id), doc)]
        chunks = await asyncio.to_thread(self._chunk_and_embed, stale)
        for doc in stale:
            records[doc.id] = ChunkRecord(id=doc.id, twin_id=doc.twin_id, content_hash=doc.content_hash,
                                          duplicate_of=doc.duplicate_of, collection=self.collection,
                                          chunk_ids=[chunk.id for chunk in chunks[doc.id]])
            await self.records.add(records[doc.id])
            DOCUMENTS.labels("withdrawn" if doc.withdrawn else "duplicate" if doc.duplicate_of else "embedded").inc()
        DOCUMENTS.labels("unchanged").inc(len(docs) - len(stale))
        return [ChunksStored(id=doc.id, twin_id=doc.twin_id, document_id=doc.id,
                             chunk_ids=records[doc.id].chunk_ids, collection=self.collection)
                for doc in docs.values()]

    def _is_current(self, record: ChunkRecord | None, doc: CleanDocument) -> bool:
        return (record is not None and record.content_hash == doc.content_hash
                and record.duplicate_of == doc.duplicate_of and record.collection == self.collection)

    def _chunk_and_embed(self, docs: Sequence[CleanDocument]) -> dict[str, list[Chunk]]:
        """Chunk, embed every chunk in one model call, write them; blocking (runs on a worker thread).

        This thread stays busy beside the model's: it deletes the documents' stale chunks and
        writes each few batches' vectors while the model encodes the next ones, so the cores are
        not left idle between two stage batches waiting for the writes."""
        originals = [doc for doc in docs if doc.feeds_features]
        tokenized = self.model.tokenize([doc.content for doc in originals])
        pieces: dict[str, list[TokenizedChunk]] = {doc.id: [] for doc in docs}
        for doc, tokens in zip(originals, tokenized):
            pieces[doc.id] = chunk_document(doc, Tokenized(tokens.ids, tokens.offsets), self.max_tokens, self.overlap)
        everything = [piece for doc_pieces in pieces.values() for piece in doc_pieces]
        chunks = {doc_id: [piece.chunk for piece in doc_pieces] for doc_id, doc_pieces in pieces.items()}
        started = time.perf_counter()
        # The chunks' own tokens from the document's tokenization: each text is tokenized once.
        batches = self.model.encode_batches([piece.token_ids for piece in everything], self.batch_size)
        delete_stale_chunks(self.client, self.collection,
                            {doc_id: [chunk.id for chunk in doc_chunks] for doc_id, doc_chunks in chunks.items()})
        encoded: list[tuple[int, np.ndarray]] = []  # (index into everything, vector), not written yet
        for rows, vectors in batches:
            encoded += zip(rows, vectors)
            if len(encoded) >= WRITE_EVERY:
                self._write(everything, encoded)
                encoded = []
        self._write(everything, encoded)
        if everything:
            CHUNKS_PER_SECOND.set(len(everything) / max(time.perf_counter() - started, 1e-9))
        return chunks

    def _write(self, pieces: list[TokenizedChunk], encoded: list[tuple[int, np.ndarray]]) -> None:
        """Upsert the chunks `encoded` names (by index into `pieces`) with their vectors."""
        if encoded:
            chunks = [pieces[i].chunk for i, _ in encoded]
            upsert_chunks(self.client, self.collection, chunks, [vector for _, vector in encoded])
            CHUNKS_EMBEDDED.inc(len(chunks))
            TOKENS_EMBEDDED.inc(sum(chunk.token_count for chunk in chunks))

    async def backlog(self) -> AsyncIterator[Event]:
        """Clean documents whose chunks are missing, of another version or duplicate status, or in another
        model's collection."""
        records = {record.id: record for record in await self.records.list()}
        for doc in await self.clean.list():
            if not self._is_current(records.get(doc.id), doc):
                yield CleanDocStored(id=doc.id, twin_id=doc.twin_id, kind=doc.kind, platform=doc.platform,
                                     content_hash=doc.content_hash)

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)
        await self.warehouse.close()


def chunk_limit(settings: Settings, model: EmbeddingModel) -> int:
    """Tokens a chunk may have: the model's window (or less, by settings), minus its special tokens."""
    return min(settings.chunk_max_tokens, model.max_seq_length) - model.tokenizer.num_special_tokens_to_add()


async def build_embedder(settings: Settings) -> Embedder:
    model = await asyncio.to_thread(load_embedding_model, settings)
    client = open_vector_client(settings)
    collection = await asyncio.to_thread(ensure_collection, client, embedding_model_name(settings),
                                         embedding_dimension(model))
    max_tokens = chunk_limit(settings, model)
    log.info("embedding into %s, chunks of at most %d tokens", collection, max_tokens)
    return Embedder(open_warehouse(settings.warehouse), client, model, collection=collection,
                    max_tokens=max_tokens, overlap=min(settings.chunk_overlap_tokens, max_tokens - 1),
                    batch_size=settings.embedding_batch_size)
