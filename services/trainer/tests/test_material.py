"""Material for training and evaluation prompts: the twin's nearest passages, never its own answer's."""
from __future__ import annotations

from llmtwin.domain import Chunk, CleanDocument, DocumentKind, InstructSample, Platform, Twin, content_hash
from llmtwin.settings import Settings
from llmtwin.testing.vectors import seed_twins
from llmtwin.vectors import open_vector_client
from twin_trainer.material import with_material

WRITING = {
    "ada": {
        "kafka": ["Kafka moves every event between my services.", "Each Kafka consumer is idempotent."],
        "lora": ["LoRA trains a small adapter instead of every weight."],
        "cooking": ["Sourdough needs a patient starter."],
    },
    "grace": {"kafka-too": ["Kafka consumers should commit offsets after the work is done."]},
}


def chunks(twin_id: str, documents: dict[str, list[str]]) -> list[Chunk]:
    found = []
    for document_id, texts in documents.items():
        text = "\n".join(texts)
        document = CleanDocument(id=document_id, twin_id=twin_id, platform=Platform.BLOG, kind=DocumentKind.POST,
                                 link=f"https://example.com/{document_id}", title=document_id, content=text,
                                 content_hash=content_hash(text), raw_hash="")
        found += [Chunk.create(document, position, passage) for position, passage in enumerate(texts)]
    return found


def sample(document_id: str, instruction: str) -> InstructSample:
    return InstructSample.create(twin_id="ada", document_id=document_id, kind=DocumentKind.POST,
                                 instruction=instruction, answer="An answer.")


def test_each_sample_gets_its_twins_nearest_passages_from_other_documents(tmp_path, qdrant_url, embedding_model):
    settings = Settings(data_dir=tmp_path, qdrant_url=qdrant_url, embedding_model="")
    seed_twins(settings, embedding_model, [Twin(id="ada", name="Ada"), Twin(id="grace", name="Grace")],
               {twin: chunks(twin, documents) for twin, documents in WRITING.items()})
    client = open_vector_client(settings)
    samples = [sample("lora", "Write about Kafka consumers."), sample("kafka", "Write about Kafka consumers.")]

    found = with_material(samples, client=client, embedding_model=embedding_model, settings=settings, passages=2)

    assert [s.id for s in found] == [s.id for s in samples]
    assert found[0].material == ["Each Kafka consumer is idempotent.", "Kafka moves every event between my services."]
    # The sample's own document (its answer) is never its material, nor is another twin's writing.
    assert sorted(found[1].material) == ["LoRA trains a small adapter instead of every weight.",
                                 "Sourdough needs a patient starter."]
    assert with_material(samples, client=client, embedding_model=embedding_model, settings=settings,
                         passages=0) == samples
    client.close()


def test_without_a_collection_for_the_model_samples_go_without_material(tmp_path, qdrant_url, embedding_model):
    settings = Settings(data_dir=tmp_path, qdrant_url=qdrant_url, embedding_model="")
    client = open_vector_client(settings)
    samples = [sample("lora", "Write about Kafka.")]

    assert with_material(samples, client=client, embedding_model=embedding_model, settings=settings,
                         passages=2) == samples
    client.close()
