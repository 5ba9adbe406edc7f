"""Retrieval: filtered to the twin, expanded queries, reranked where configured, diverse (MMR), no repeats."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from llmtwin.domain import Chunk, DocumentKind, Platform, Twin
from llmtwin.vectors import open_vector_client
from twin_inference.query_expansion import expand_query
from twin_inference.reranking import CrossEncoderReranker
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


def test_expansion_adds_the_topic_and_each_subject_without_the_task_wording():
    assert expand_query("Write a LinkedIn post about data contracts and schema evolution") == [
        "Write a LinkedIn post about data contracts and schema evolution",
        "data contracts and schema evolution", "data contracts", "schema evolution"]
    assert expand_query("Could you write an article on why idempotent consumers matter?") == [
        "Could you write an article on why idempotent consumers matter?", "why idempotent consumers matter"]
    assert expand_query("Explain backpressure") == ["Explain backpressure", "backpressure"]
    # Nothing to take off: the request is searched as it is, once.
    assert expand_query("feature stores") == ["feature stores"]
    assert expand_query("How should I test a data pipeline?") == ["How should I test a data pipeline?"]


KIM = Twin(id="kim", name="Kim Park")
KIM_WRITING = [
    (DocumentKind.POST, "On posting", [
        "Every LinkedIn post I write starts with a hook and ends with a question.",
        "Posting on LinkedIn each week grew my audience more than any long article did.",
    ]),
    (DocumentKind.ARTICLE, "Data contracts", [
        "A data contract is a promise between the team that produces a table and the teams that read it.",
        "Schema evolution: add optional fields, never rename a column in place.",
        "Tomatoes need more water in July than in May.",
    ]),
]


@pytest.fixture(scope="module")
def kim_chunks(add_twin) -> dict[str, str]:
    """Chunk ids of kim's writing, by text."""
    return {chunk.text: chunk.id for chunk in add_twin(KIM, KIM_WRITING)}


async def test_expansion_finds_every_subject_the_task_wording_would_crowd_out(settings, kim_chunks,
                                                                             embedding_model):
    chunks = kim_chunks
    request = "Write a LinkedIn post about data contracts and schema evolution"
    client = open_vector_client(settings)

    as_typed = await Retriever.for_model(settings.model_copy(update={"retrieval_query_expansion": False}), client,
                                         embedding_model).retrieve("kim", request, top_k=2)
    expanded = await Retriever.for_model(settings, client, embedding_model).retrieve("kim", request, top_k=2)
    client.close()

    contract, schema = (chunks[text] for text in KIM_WRITING[1][2][:2])
    about_posting = {chunks[text] for text in KIM_WRITING[0][2]}
    # As typed, "write a LinkedIn post" pulls in a passage about writing LinkedIn posts instead.
    assert as_typed[0].chunk.id == contract and as_typed[1].chunk.id in about_posting
    assert [p.chunk.id for p in expanded] == [contract, schema]


RERANKED_REQUEST = "Kafka consumers and idempotent events"


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory, corpus) -> Path:
    """A one-layer BERT cross-encoder with a word-level vocabulary, saved as sentence-transformers
    loads one (no cross-encoder ships in a package). A few training steps teach it one clear
    preference the embedding does not share: for the request, the passage about feature stores."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    texts = [chunk.text for chunk in corpus["ada"]]
    words = sorted({word.strip(".,!?:()").lower() for text in [RERANKED_REQUEST, *texts] for word in text.split()})
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])})
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=1))
    pairs = tokenizer([RERANKED_REQUEST] * len(texts), texts, padding=True, return_tensors="pt")
    preferred = torch.tensor([float(text.startswith("A feature store")) for text in texts])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(**pairs).logits.squeeze(-1), preferred)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("cross-encoder")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


async def test_a_configured_reranker_reorders_the_candidates_by_its_scores(settings, corpus, embedding_model,
                                                                          tiny_cross_encoder):
    client = open_vector_client(settings)
    by_cosine = await Retriever.for_model(settings, client, embedding_model).retrieve("ada", RERANKED_REQUEST, top_k=4)
    client.close()
    configured = await Retriever.open(settings.model_copy(update={"reranker_model": str(tiny_cross_encoder)}))
    reranked = await configured.retrieve("ada", RERANKED_REQUEST, top_k=4)
    configured.client.close()

    assert isinstance(configured.reranker, CrossEncoderReranker)
    # The same distinct passages, each now scored by the cross-encoder reading it beside the request.
    assert {p.chunk.id for p in reranked} == {p.chunk.id for p in by_cosine}
    scores = configured.reranker.model.predict([(RERANKED_REQUEST, p.chunk.text) for p in reranked])
    assert [p.score for p in reranked] == pytest.approx(list(scores), abs=1e-5)
    # The embedding puts a passage about Kafka first; the reranker, its feature-store passage.
    assert "Kafka" in by_cosine[0].chunk.text
    assert reranked[0].chunk.text.startswith("A feature store") and reranked[0].score == pytest.approx(max(scores))
