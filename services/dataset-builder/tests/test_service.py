"""The dataset-builder processor over a real SQLite warehouse (the stage over the broker: test_stage.py)."""
from __future__ import annotations

import pytest

from llmtwin.datasets import cut_dataset_version
from llmtwin.domain import CleanDocument, DocumentKind, InstructSample, content_hash
from llmtwin.events import BadMessage, CleanDocStored, SamplesWithdrawn, SampleStored
from llmtwin.warehouse import Collection, open_warehouse
from llmtwin.warehouse.repository import Repository
from twin_dataset_builder.generators import OfflineGenerator
from twin_dataset_builder.service import DatasetBuilder


@pytest.fixture
async def warehouse(sqlite_url):
    opened = open_warehouse(sqlite_url)
    yield opened
    await opened.close()


@pytest.fixture
def builder(warehouse) -> DatasetBuilder:
    return DatasetBuilder(warehouse, OfflineGenerator())


def stored(doc: CleanDocument) -> CleanDocStored:
    return CleanDocStored(id=doc.id, twin_id=doc.twin_id, kind=doc.kind, platform=doc.platform,
                          content_hash=doc.content_hash)


async def put(warehouse, *docs: CleanDocument) -> None:
    for doc in docs:
        await Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument).add(doc)


async def samples_of(warehouse, **where) -> list[InstructSample]:
    return await Repository(warehouse, Collection.INSTRUCT_SAMPLES, InstructSample).list(where)


async def test_clean_docs_become_stored_samples_and_events(builder, warehouse, post_doc, article_doc, code_doc):
    await put(warehouse, post_doc, article_doc, code_doc)
    events = await builder.handle([stored(post_doc), stored(article_doc), stored(code_doc)])
    samples = await samples_of(warehouse, twin_id="ada")
    assert len(samples) == 7
    assert all(isinstance(e, SampleStored) for e in events)
    assert sorted(e.id for e in events) == sorted(s.id for s in samples)
    assert {(e.document_id, e.split) for e in events} == {(s.document_id, s.split) for s in samples}
    record = await warehouse.get(Collection.SAMPLE_RECORDS, article_doc.id)
    assert record["content_hash"] == article_doc.content_hash and len(record["sample_ids"]) == 3
    assert await warehouse.count(Collection.PREFERENCE_PAIRS) == 0  # no model configured: no preference pairs

    # At-least-once: the same messages again change nothing and emit nothing.
    assert await builder.handle([stored(post_doc), stored(article_doc)]) == []
    assert len(await samples_of(warehouse, twin_id="ada")) == 7


async def test_a_run_cut_short_before_its_record_announces_its_samples_when_done_again(builder, warehouse,
                                                                                     article_doc):
    await put(warehouse, article_doc)
    first = await builder.handle([stored(article_doc)])
    # As if the stage died after storing the samples, before their events went out and the record was written.
    await warehouse.delete(Collection.SAMPLE_RECORDS, article_doc.id)
    again = await builder.handle([stored(article_doc)])
    assert sorted(e.id for e in again) == sorted(e.id for e in first) and len(again) == 3


async def test_a_changed_document_replaces_its_stale_samples(builder, warehouse, article_doc):
    await put(warehouse, article_doc)
    first = await builder.handle([stored(article_doc)])
    changed_text = article_doc.content.replace("## Version the datasets, not only the models",
                                               "## Version your datasets as well as your models")
    changed = article_doc.model_copy(update={"content": changed_text, "content_hash": content_hash(changed_text)})
    await put(warehouse, changed)
    second = await builder.handle([stored(changed)])
    samples = await samples_of(warehouse, document_id=article_doc.id)
    assert len(samples) == 3
    assert [e.id for e in second] == [s.id for s in samples if "as well as your models" in s.answer]
    assert {e.id for e in first} - {s.id for s in samples}  # the old section's sample is gone


@pytest.mark.parametrize("change, reason", [
    ({"duplicate_of": "some-earlier-doc"}, "duplicate_document"),
    ({"content": "", "content_hash": content_hash(""), "withdrawn": True}, "withdrawn_document"),
])
async def test_duplicates_and_withdrawn_documents_get_no_samples_and_lose_the_ones_they_had(
        builder, warehouse, post_doc, change, reason):
    await put(warehouse, post_doc)
    await builder.handle([stored(post_doc)])
    assert await samples_of(warehouse, document_id=post_doc.id)
    await cut_dataset_version(warehouse, post_doc.twin_id)
    had = {sample.id for sample in await samples_of(warehouse, document_id=post_doc.id)}
    retracted = post_doc.model_copy(update=change)
    await put(warehouse, retracted)
    emitted = await builder.handle([stored(retracted)])
    assert await samples_of(warehouse, document_id=post_doc.id) == []
    if retracted.withdrawn:  # the trainer hears of it: a version it trained may hold them
        assert [(type(e), e.document_id, set(e.sample_ids)) for e in emitted] == [(SamplesWithdrawn, post_doc.id, had)]
    else:
        assert emitted == []
    assert await builder.handle([stored(retracted)]) == []  # a redelivery: done already
    record = await warehouse.get(Collection.SAMPLE_RECORDS, post_doc.id)
    assert record["rejected"] == {reason: 1}
    assert [e async for e in builder.backlog()] == []  # done: not replayed at start-up
    # The earlier dataset version keeps a duplicate's words (they were the person's to learn), not a withdrawn one's.
    answers = [copy["answer"] for copy in await warehouse.find(Collection.DATASET_SAMPLES, {"document_id": post_doc.id})]
    assert answers
    assert all(answers) if reason == "duplicate_document" else not any(answers)


async def test_rejected_samples_are_recorded_with_their_reasons(builder, warehouse, new_doc, post_doc):
    copy = new_doc(DocumentKind.POST, post_doc.content + "\n\nReposting this one.", link="https://example.com/again")
    short = new_doc(DocumentKind.POST, "Shipped it today!", link="https://example.com/short")
    await put(warehouse, post_doc, copy, short)
    events = await builder.handle([stored(post_doc), stored(copy), stored(short)])
    assert [e.document_id for e in events] == [post_doc.id]
    assert (await warehouse.get(Collection.SAMPLE_RECORDS, copy.id))["rejected"] == {"near_duplicate": 1}
    assert (await warehouse.get(Collection.SAMPLE_RECORDS, short.id))["rejected"] == {"too_short": 1}


async def test_a_message_for_an_unknown_document_is_a_bad_message(builder, post_doc):
    with pytest.raises(BadMessage, match=post_doc.id):
        await builder.handle([stored(post_doc)])


async def test_backlog_is_the_clean_docs_without_samples_for_their_content(builder, warehouse, post_doc, code_doc):
    await put(warehouse, post_doc, code_doc)
    await builder.handle([stored(post_doc)])
    assert [e.id async for e in builder.backlog()] == [code_doc.id]
    other_generator = DatasetBuilder(warehouse, type("Renamed", (OfflineGenerator,), {"name": "llm:x"})())
    assert sorted([e.id async for e in other_generator.backlog()]) == sorted([post_doc.id, code_doc.id])
