"""Material for evaluation (and, where configured, training) prompts: the serving condition.

Serving puts the twin's own passages nearest to a request in front of it, so a job gives
each sample the same: its instruction embedded with the collection's model, the nearest
passages of the person's writing. Never from the sample's own document: that would put
the answer in its prompt (the held-out perplexity would read it off the prompt, and a twin
trained so would learn to copy). Plain nearest neighbours, without the API's query
expansion and reranking: what matters is that the prompts carry material like what serving
gives, not which passages exactly.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from llmtwin.domain import InstructSample
from llmtwin.embeddings import embed, embedding_dimension, embedding_model_name
from llmtwin.settings import Settings
from llmtwin.vectors import collection_name, open_vector_client, search
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

log = logging.getLogger(__name__)


def with_material(samples: Sequence[InstructSample], *, client: QdrantClient, embedding_model: Any,
                  settings: Settings, passages: int) -> list[InstructSample]:
    """The samples, each with up to `passages` passages of the twin's other documents nearest to
    its instruction. None when `passages` is 0, nothing is embedded with this model yet, or the
    vector store does not answer: then the job trains and compares its models without material."""
    if passages <= 0 or not samples:
        return list(samples)
    collection = collection_name(embedding_model_name(settings), embedding_dimension(embedding_model))
    queries = embed(embedding_model, [sample.instruction for sample in samples], settings.embedding_batch_size)
    found = []
    for sample, query in zip(samples, queries, strict=True):
        try:
            hits = search(client, collection, query, twin_id=sample.twin_id, top_k=passages,
                          exclude_document_id=sample.document_id)
        except UnexpectedResponse as exc:
            if exc.status_code != 404:
                raise
            log.warning("no collection %s yet: prompts without material", collection)
            return list(samples)
        except ResponseHandlingException as exc:
            log.warning("the vector store did not answer (%s): prompts without material", exc)
            return list(samples)
        found.append(sample.model_copy(update={"material": [hit.chunk.text for hit in hits]}))
    return found


def serving_condition(settings: Settings, embedding_model: Any, train: Sequence[InstructSample],
                      test: Sequence[InstructSample]) -> tuple[list[InstructSample], list[InstructSample]]:
    """(train, test) with their material: `train_material_passages` passages a training prompt, and
    `retrieval_top_k` a held-out prompt, as many as serving puts in front of a request."""
    client = open_vector_client(settings)
    try:
        return (with_material(train, client=client, embedding_model=embedding_model, settings=settings,
                              passages=settings.train_material_passages),
                with_material(test, client=client, embedding_model=embedding_model, settings=settings,
                              passages=settings.retrieval_top_k))
    finally:
        client.close()
