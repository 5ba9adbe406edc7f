"""SIGTERM to a stage in the middle of its work: it exits cleanly, having acknowledged only what it
stored; what was in flight is handed back to the topic, and a new process finishes it all."""
from __future__ import annotations

import signal

from llmtwin.events import Topic
from llmtwin.testing.stages import stage_process
from llmtwin.warehouse import Collection

from .conftest import announcements, clean_documents, committed_offsets, count, point_ids, store, topic_sizes, wait_for
from .corpus import Expected, make_posts
from .test_outages import healthy, send

TWIN = "fay"
DOCUMENTS = 120


def test_sigterm_mid_batch_hands_back_the_work_and_a_restart_finishes_it(bus_settings, qdrant_url, tmp_path):
    settings = bus_settings.model_copy(update={"qdrant_url": qdrant_url})
    posts = make_posts(DOCUMENTS, seed=21)
    docs = clean_documents(TWIN, posts)
    events = announcements(docs)
    group, source = "twin-embedder", Topic.CLEAN_DOCS.value

    with stage_process("twin_embedder", settings, tmp_path / "embedder-1.log", "embedder_port") as first:
        wait_for(lambda: healthy(first), bool, 180, "embedder healthy")
        store(settings, Collection.CLEAN_DOCUMENTS, docs)
        send(settings, events)
        stored_before = wait_for(lambda: count(settings, Collection.CHUNK_RECORDS), lambda n: n >= 16, 180,
                                 "the embedder at work")
        first.proc.send_signal(signal.SIGTERM)
        exit_code = first.proc.wait(120)
        log = first.log_tail(20_000)
    stored = count(settings, Collection.CHUNK_RECORDS)
    acknowledged = committed_offsets(settings, group, source)
    assert exit_code == 0, log
    assert "Traceback" not in log
    assert stored_before <= stored < DOCUMENTS  # it stopped mid-way...
    assert acknowledged <= stored  # ...and acknowledged nothing it had not stored

    with stage_process("twin_embedder", settings, tmp_path / "embedder-2.log", "embedder_port") as second:
        wait_for(lambda: count(settings, Collection.CHUNK_RECORDS), lambda n: n == DOCUMENTS, 300,
                 "a new embedder finishes the work")
        assert second.proc.poll() is None

    points = point_ids(settings, TWIN)
    assert len(points) == DOCUMENTS
    assert set(points) == Expected.of(TWIN, posts).point_ids
    assert topic_sizes(settings, [Topic.CLEAN_DOCS.dead_letter]) == {Topic.CLEAN_DOCS.dead_letter: 0}
    print(f"\nSIGTERM: {stored} of {DOCUMENTS} documents stored and {acknowledged} messages acknowledged at exit")
