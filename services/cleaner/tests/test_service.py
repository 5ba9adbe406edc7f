"""The cleaner over a real SQLite warehouse, and as a real stage process over a real broker."""
from __future__ import annotations

import json

import pytest
from llmtwin.bus.producer import SyncEventProducer
from llmtwin.domain import (
    CleanDocument,
    DocumentKind,
    Platform,
    Profile,
    RawDocument,
    Twin,
    utcnow,
)
from llmtwin.events import CleanDocStored, RawDocStored, Topic, decode
from llmtwin.settings import Settings
from llmtwin.testing.stages import consume, stage_process
from llmtwin.warehouse import Collection, open_warehouse
from llmtwin.warehouse.repository import Repository
from twin_cleaner.service import Cleaner, account_names

ARTICLE = """<h1>Why your RAG system retrieves the wrong chunks</h1>
<p>Most retrieval failures are not model failures. They are chunking failures: the chunk that holds the
answer was cut in half, or it was longer than the embedding model's window and its second half was
silently truncated. Measure the tokens of every chunk with the model's own tokenizer.</p>
<p>The second culprit is duplicated content. A post cross-posted to two platforms is retrieved twice
and crowds out the context the model needed. Ping me at ada@example.com or @ada_lovelace.</p>
<p>Subscribe to my newsletter</p>"""

CROSS_POST = """𝗪𝗵𝘆 𝘆𝗼𝘂𝗿 𝗥𝗔𝗚 𝘀𝘆𝘀𝘁𝗲𝗺 𝗿𝗲𝘁𝗿𝗶𝗲𝘃𝗲𝘀 𝘁𝗵𝗲 𝘄𝗿𝗼𝗻𝗴 𝗰𝗵𝘂𝗻𝗸𝘀

Most retrieval failures are not model failures. They are chunking failures: the chunk that holds the answer was cut in half, or it was longer than the embedding model's window and its second half was silently truncated. Measure the tokens of every chunk with the model's own tokenizer.

The second culprit is duplicated content. A post cross-posted to two platforms is retrieved twice and crowds out the context the model needed. Ping me at ada@example.com or @ada_lovelace.

#RAG #LLM"""

OTHER_POST = "Shipped the cleaner today 🚀\n\nThanks @grace_h for the review. Call me: +44 20 7946 0958."


def raw(link: str, content: str, platform: Platform = Platform.MEDIUM,
        kind: DocumentKind = DocumentKind.ARTICLE) -> RawDocument:
    return RawDocument.create(twin_id="ada", platform=platform, kind=kind, link=link, content=content,
                              title="t")


def stored(doc: RawDocument) -> RawDocStored:
    return RawDocStored(id=doc.id, twin_id=doc.twin_id, kind=doc.kind, platform=doc.platform,
                        content_hash=doc.content_hash)


@pytest.fixture
async def warehouse(sqlite_url):
    opened = open_warehouse(sqlite_url)
    await Repository(opened, Collection.TWINS, Twin).add(Twin.named("Ada Lovelace"))
    await Repository(opened, Collection.PROFILES, Profile).add(
        Profile.of("ada-lovelace", Platform.MEDIUM, "https://medium.com/@ada_lovelace"))
    yield opened
    await opened.close()


def cleaner(warehouse) -> Cleaner:
    return Cleaner(warehouse, scrub_pii=True, scrub_handles=True, near_duplicate_threshold=0.8)


async def test_cleans_scrubs_and_marks_cross_posts(warehouse):
    raws = Repository(warehouse, Collection.RAW_DOCUMENTS, RawDocument)
    article = raw("https://medium.com/@ada/rag", ARTICLE)
    cross = raw("https://linkedin.com/feed/1", CROSS_POST, Platform.LINKEDIN, DocumentKind.POST)
    other = raw("https://linkedin.com/feed/2", OTHER_POST, Platform.LINKEDIN, DocumentKind.POST)
    for doc in (article, cross, other):
        doc.twin_id = "ada-lovelace"
        await raws.add(doc)
    processor = cleaner(warehouse)

    emitted = await processor.handle([stored(article), stored(cross), stored(other)])

    clean = Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument)
    cleaned = {doc.id: doc for doc in await clean.list()}
    assert [e.id for e in emitted] == [article.id, cross.id, other.id]
    assert all(isinstance(e, CleanDocStored) and e.content_hash == cleaned[e.id].content_hash for e in emitted)
    assert cleaned[article.id].duplicate_of is None
    assert cleaned[cross.id].duplicate_of == article.id
    assert cleaned[other.id].duplicate_of is None
    assert cleaned[article.id].raw_hash == article.content_hash
    text = cleaned[article.id].content
    assert text.startswith("Why your RAG system retrieves the wrong chunks\n\nMost retrieval failures")
    assert "[email] or @ada_lovelace." in text  # her own handle (from her profile URL) is kept
    assert "Subscribe" not in text and "<p>" not in text
    assert cleaned[cross.id].content.startswith("**Why your RAG system retrieves the wrong chunks**")
    assert cleaned[other.id].content == "Shipped the cleaner today 🚀\n\nThanks [handle] for the review. Call me: [phone]."

    # Re-processing the original (a redelivery) keeps it the original, and a fresh process
    # (empty memory) still finds the duplicate through the warehouse.
    await processor.handle([stored(article)])
    assert (await clean.get(article.id)).duplicate_of is None
    await cleaner(warehouse).handle([stored(cross)])
    assert (await clean.get(cross.id)).duplicate_of == article.id


async def test_a_withdrawn_document_is_emptied_and_its_cross_post_is_learned_in_its_place(warehouse):
    raws = Repository(warehouse, Collection.RAW_DOCUMENTS, RawDocument)
    clean = Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument)
    article = raw("https://medium.com/@ada/rag", ARTICLE)
    cross = raw("https://linkedin.com/feed/1", CROSS_POST, Platform.LINKEDIN, DocumentKind.POST)
    for doc in (article, cross):
        await raws.add(doc)
    processor = cleaner(warehouse)
    await processor.handle([stored(article), stored(cross)])
    assert (await clean.get(cross.id)).duplicate_of == article.id

    withdrawn = article.as_withdrawn(utcnow())
    await raws.add(withdrawn)
    emitted = await processor.handle([stored(withdrawn)])
    assert [e.id for e in emitted] == [article.id, cross.id]  # the copy follows: it is an original now
    gone = await clean.get(article.id)
    assert (gone.content, gone.withdrawn, gone.feeds_features) == ("", True, False)
    assert emitted[0].content_hash == gone.content_hash and gone.raw_hash == withdrawn.content_hash
    now_original = await clean.get(cross.id)
    assert now_original.duplicate_of is None and now_original.feeds_features

    # A fresh process builds its index from the warehouse: the emptied text is nobody's original,
    # and the same article posted once more is a copy of the cross-post.
    again = raw("https://ada.example/rag", ARTICLE, Platform.BLOG)
    await raws.add(again)
    await cleaner(warehouse).handle([stored(again)])
    assert (await clean.get(again.id)).duplicate_of == cross.id


async def test_missing_raw_document_is_a_bad_message(warehouse):
    from llmtwin.events import BadMessage

    ghost = raw("https://medium.com/@ada/ghost", "never stored")
    with pytest.raises(BadMessage, match="not in the warehouse"):
        await cleaner(warehouse).handle([stored(ghost)])


async def test_backlog_is_what_is_not_cleaned_or_cleaned_from_older_content(warehouse):
    raws = Repository(warehouse, Collection.RAW_DOCUMENTS, RawDocument)
    done, edited, new = (raw(f"https://blog.example.com/{n}", f"Post {n} about pipelines.") for n in "abc")
    for doc in (done, edited, new):
        await raws.add(doc)
    processor = cleaner(warehouse)
    await processor.handle([stored(done), stored(edited)])
    await raws.add(raw(edited.link, "Post b, edited since it was cleaned."))

    backlog = [event async for event in processor.backlog()]
    assert sorted(e.id for e in backlog) == sorted([edited.id, new.id])
    assert all(isinstance(e, RawDocStored) for e in backlog)


def test_account_names_from_profile_urls():
    assert "ada_lovelace" in account_names("https://medium.com/@ada_lovelace")
    assert "ada-l" in account_names("https://www.linkedin.com/in/ada-l/")
    assert "adasnotes" in account_names("https://adasnotes.substack.com/")


def test_stage_process_cleans_replays_backlog_and_dead_letters(bus_settings: Settings, tmp_path):
    import asyncio

    backlog_doc = raw("https://blog.example.com/before-start", "Written <b>before</b> the stage started.")
    fresh = raw("https://linkedin.com/feed/9", OTHER_POST, Platform.LINKEDIN, DocumentKind.POST)
    missing = raw("https://blog.example.com/missing", "not in the warehouse")

    async def store_all() -> None:
        wh = open_warehouse(bus_settings.warehouse)
        raws = Repository(wh, Collection.RAW_DOCUMENTS, RawDocument)
        await raws.add(backlog_doc)
        await raws.add(fresh)
        await wh.close()
    asyncio.run(store_all())

    with stage_process("twin_cleaner", bus_settings, tmp_path / "cleaner.log", "cleaner_port") as stage:
        producer = SyncEventProducer(bus_settings)
        producer.send(stored(missing))
        producer._producer.send(Topic.RAW_DOCS.value, b"{not json", key=b"ada")
        producer.send(stored(fresh))  # after the bad ones: the stream goes on
        producer.close()
        # Both stored documents come back from the backlog at start-up, and `fresh` once more from its message.
        events = [decode(Topic.CLEAN_DOCS, v) for v in consume(bus_settings.kafka_bootstrap, "clean_docs", want=3)]
        dead = [json.loads(v) for v in consume(bus_settings.kafka_bootstrap, "raw_docs.dlq", want=2)]
        metrics = stage.get("/metrics").text
        log_tail = stage.log_tail()

    assert sorted(e.id for e in events) == sorted([backlog_doc.id, fresh.id, fresh.id]), log_tail
    reasons = sorted(d["reason"] for d in dead)
    assert len(reasons) == 2
    assert reasons[0] == f"BadMessage: raw document {missing.id} is not in the warehouse"
    assert reasons[1].startswith("not JSON")

    async def read_clean() -> CleanDocument | None:
        wh = open_warehouse(bus_settings.warehouse)
        doc = await Repository(wh, Collection.CLEAN_DOCUMENTS, CleanDocument).get(backlog_doc.id)
        await wh.close()
        return doc
    assert asyncio.run(read_clean()).content == "Written **before** the stage started."
    assert 'twin_cleaner_documents_total{kind="post",outcome="inserted"} 1.0' in metrics
