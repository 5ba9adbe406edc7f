"""Dataset versions on both warehouse adapters: cut, immutability, export, lineage."""
from __future__ import annotations

import json

import pytest

from llmtwin.datasets import (EmptyDataset, cut_dataset_version, export_dataset, load_samples,
                              redact_document, versions_with_withdrawn_writing, walk_lineage)
from llmtwin.domain import (CleanDocument, DocumentKind, InstructSample, Platform, RawDocument, content_hash)
from llmtwin.warehouse import Collection
from llmtwin.warehouse.repository import Repository


async def add_document(warehouse, link: str, answers: list[str], *, twin_id: str = "ada",
                       duplicate_of: str | None = None, withdrawn: bool = False) -> CleanDocument:
    text = "\n\n".join(answers)
    raw = RawDocument.create(twin_id=twin_id, platform=Platform.BLOG, kind=DocumentKind.ARTICLE, link=link,
                             content=text + "\n\nSubscribe!", title=f"Title of {link}")
    clean = CleanDocument(id=raw.id, twin_id=twin_id, platform=raw.platform, kind=raw.kind, link=link,
                          title=raw.title, content=text, content_hash=content_hash(text),
                          raw_hash=raw.content_hash, duplicate_of=duplicate_of, withdrawn=withdrawn)
    await Repository(warehouse, Collection.RAW_DOCUMENTS, RawDocument).add(raw)
    await Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument).add(clean)
    for i, answer in enumerate(answers):
        await add_sample(warehouse, clean, f"Write part {i} of {link}.", answer)
    return clean


async def add_sample(warehouse, doc: CleanDocument, instruction: str, answer: str) -> InstructSample:
    sample = InstructSample.create(twin_id=doc.twin_id, document_id=doc.id, kind=doc.kind,
                                   instruction=instruction, answer=answer)
    await Repository(warehouse, Collection.INSTRUCT_SAMPLES, InstructSample).add(sample)
    return sample


async def test_a_version_is_a_hash_of_its_samples_stored_once(warehouse):
    doc = await add_document(warehouse, "https://blog/a", ["First part.", "Second part."])
    await add_document(warehouse, "https://blog/b", ["Another twin's text."], twin_id="bob")
    first = await cut_dataset_version(warehouse, "ada")
    again = await cut_dataset_version(warehouse, "ada")
    assert again.id == first.id and again.created_at == first.created_at
    assert len(first.sample_ids) == 2
    assert await warehouse.count(Collection.DATASET_VERSIONS, {"twin_id": "ada"}) == 1
    stored = await warehouse.get(Collection.DATASET_VERSIONS, first.id)
    assert stored["stats"]["samples"] == 2 and stored["stats"]["documents"] == 1

    extra = await add_sample(warehouse, doc, "Write a third part.", "Third part.")
    second = await cut_dataset_version(warehouse, "ada")
    assert second.id != first.id
    assert set(second.sample_ids) == set(first.sample_ids) | {extra.id}


async def test_duplicate_documents_are_left_out_and_an_empty_twin_has_no_version(warehouse):
    await add_document(warehouse, "https://blog/copy", ["A copied text."], duplicate_of="elsewhere")
    with pytest.raises(EmptyDataset, match="ada"):
        await cut_dataset_version(warehouse, "ada")
    original = await add_document(warehouse, "https://blog/original", ["The original text."])
    version = await cut_dataset_version(warehouse, "ada")
    assert [s.document_id for s in await load_samples(warehouse, version)] == [original.id]


async def test_a_version_keeps_its_samples_after_the_live_ones_change(warehouse, tmp_path):
    await add_document(warehouse, "https://blog/a", ["First part.", "Second part."])
    version = await cut_dataset_version(warehouse, "ada")
    for sample_id in version.sample_ids:  # the document changed: the builder dropped its old samples
        await warehouse.delete(Collection.INSTRUCT_SAMPLES, sample_id)
    samples = await load_samples(warehouse, version)
    assert sorted(s.answer for s in samples) == ["First part.", "Second part."]

    path = await export_dataset(warehouse, version, tmp_path / "out" / f"{version.id}.jsonl")
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [line["sample_id"] for line in lines] == version.sample_ids
    assert set(lines[0]) == {"sample_id", "document_id", "kind", "split", "instruction", "answer"}
    assert sorted(line["answer"] for line in lines) == ["First part.", "Second part."]
    first_bytes = path.read_bytes()
    await export_dataset(warehouse, version, path)
    assert path.read_bytes() == first_bytes


async def test_withdrawn_documents_are_left_out_and_the_lineage_of_an_older_version_says_so(warehouse):
    kept = await add_document(warehouse, "https://blog/kept", ["Kept text."])
    gone = await add_document(warehouse, "https://blog/gone", ["Text to forget."])
    # A clean document stored before documents could be withdrawn has no such field: it counts as kept.
    older = await add_document(warehouse, "https://blog/older", ["Older text."])
    stored = await warehouse.get(Collection.CLEAN_DOCUMENTS, older.id)
    del stored["withdrawn"]
    await warehouse.upsert(Collection.CLEAN_DOCUMENTS, stored)
    before = await cut_dataset_version(warehouse, "ada")
    assert {s.document_id for s in await load_samples(warehouse, before)} == {kept.id, gone.id, older.id}

    await Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument).add(
        gone.model_copy(update={"content": "", "content_hash": content_hash(""), "withdrawn": True}))
    after = await cut_dataset_version(warehouse, "ada")
    assert {s.document_id for s in await load_samples(warehouse, after)} == {kept.id, older.id}
    assert await versions_with_withdrawn_writing(warehouse, "ada") == {before.id}
    assert await versions_with_withdrawn_writing(warehouse, "bob") == set()
    lineage = {d.id: d for d in (await walk_lineage(warehouse, before.id)).documents}
    assert lineage[gone.id].withdrawn and not lineage[kept.id].withdrawn and not lineage[older.id].withdrawn

    # The older version keeps its shape, not the withdrawn words.
    assert await redact_document(warehouse, gone.id) == 1
    assert await redact_document(warehouse, gone.id) == 0
    archived = {s.document_id: s for s in await load_samples(warehouse, before)}
    assert set(archived) == {kept.id, gone.id, older.id}
    assert (archived[gone.id].instruction, archived[gone.id].answer) == ("", "")
    assert archived[kept.id].answer == "Kept text."


async def test_lineage_walks_from_a_version_to_samples_and_clean_and_raw_documents(warehouse):
    a = await add_document(warehouse, "https://blog/a", ["First part.", "Second part."])
    b = await add_document(warehouse, "https://blog/b", ["Only part."])
    version = await cut_dataset_version(warehouse, "ada")
    await warehouse.delete(Collection.RAW_DOCUMENTS, b.id)  # the raw snapshot of b was purged since

    lineage = await walk_lineage(warehouse, version.id)
    assert lineage.version.id == version.id
    assert sorted(s.id for s in lineage.samples) == version.sample_ids
    documents = {d.id: d for d in lineage.documents}
    assert set(documents) == {a.id, b.id}
    assert documents[a.id].link == "https://blog/a" and documents[a.id].title == "Title of https://blog/a"
    assert len(documents[a.id].sample_ids) == 2
    assert documents[a.id].clean_content_hash == a.content_hash
    assert documents[a.id].raw_content_hash == a.raw_hash
    assert documents[b.id].clean_content_hash == b.content_hash and documents[b.id].raw_content_hash is None
