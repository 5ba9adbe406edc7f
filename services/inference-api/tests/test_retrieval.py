"""Retrieval: filtered to the twin, diverse (MMR), without repeated passages."""
from __future__ import annotations

import numpy as np
from llmtwin.domain import Chunk, DocumentKind, Platform
from llmtwin.vectors import open_vector_client
from twin_inference.retrieval import Candidate, Passage, Retriever, select_diverse


def candidate(name: str, text: str, vector: list[float], score: float) -> Candidate:
    chunk = Chunk(id=name, document_id=f"doc-{name}", twin_id="ada", platform=Platform.BLOG,
                  kind=DocumentKind.POST, link=f"https://example.com/{name}", position=0, text=text)
    v = np.asarray(vector, dtype=np.float32)
    return Candidate(Passage(chunk, score), v / np.linalg.norm(v))


def test_mmr_prefers_a_different_passage_over_a_close_copy_and_drops_repeats():
    # Scores are cosines to the query [1, 1, 0].
    best = candidate("best", "Kafka consumers are idempotent.", [1.0, 0.7, 0.1], 0.99)
    same_text = candidate("same", "  kafka consumers   are idempotent. ", [1.0, 0.69, 0.1], 0.98)
    near_copy = candidate("near", "Kafka consumers are idempotent!", [1.0, 0.68, 0.1], 0.97)
    similar = candidate("similar", "Idempotent consumers make Kafka safe.", [1.0, 0.3, 0.3], 0.85)
    different = candidate("different", "Feature stores keep embeddings.", [0.2, 1.0, -0.3], 0.80)

    chosen = select_diverse([best, same_text, near_copy, similar, different], top_k=3)

    assert [p.chunk.id for p in chosen] == ["best", "different", "similar"]


def test_relevance_alone_orders_passages_when_they_are_all_different():
    found = [candidate("a", "a", [0.9, 0.43, 0.0], 0.9), candidate("b", "b", [0.7, 0.0, 0.71], 0.7),
             candidate("c", "c", [0.5, -0.86, 0.0], 0.5)]

    assert [p.chunk.id for p in select_diverse(found, top_k=2, mmr_lambda=1.0)] == ["a", "b"]


async def test_searches_only_the_requested_twins_chunks(settings, corpus, embedding_model):
    retriever = Retriever.for_model(settings, open_vector_client(settings), embedding_model)

    about_grace_topics = await retriever.retrieve("ada", "COBOL compilers and a moth in a relay", top_k=10)
    code = await retriever.retrieve("ada", "consume a topic", top_k=10, kinds=[DocumentKind.CODE])
    nobody = await retriever.retrieve("nobody", "Kafka", top_k=3)
    retriever.client.close()

    ada_ids = {c.id for c in corpus["ada"]}
    assert about_grace_topics and {p.chunk.id for p in about_grace_topics} <= ada_ids
    # Five of ada's chunks are stored; two hold the same sentence, so four distinct passages remain.
    assert len(about_grace_topics) == 4
    assert [p.chunk.kind for p in code] == [DocumentKind.CODE]
    assert nobody == []


async def test_a_model_with_no_collection_yet_finds_nothing(settings, corpus, embedding_model):
    retriever = Retriever(open_vector_client(settings), embedding_model, "chunks__never-used__384")

    assert await retriever.retrieve("ada", "Kafka", top_k=3) == []
    retriever.client.close()
