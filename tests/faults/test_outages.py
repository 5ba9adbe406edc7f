"""Transient outages of the stores under a running stage: Qdrant under the embedder, the Mongo-wire
warehouse under the cleaner. The server process is stopped while messages arrive and started again.

Each stage must wait the outage out by itself (retrying with backoff, no restart), acknowledge nothing
it could not store meanwhile, dead-letter nothing, and finish everything once the store is back.
"""
from __future__ import annotations

from collections.abc import Callable

import httpx

from llmtwin.bus.producer import SyncEventProducer
from llmtwin.events import Event, Topic
from llmtwin.infra.process import LocalServer, free_port
from llmtwin.infra.qdrant_server import qdrant_local
from llmtwin.settings import Settings
from llmtwin.testing.stages import StageProcess, stage_process
from llmtwin.testing.warehouse import nx_27017_server
from llmtwin.warehouse import Collection

from .conftest import (
    announcements,
    clean_documents,
    committed_offsets,
    count,
    metric_value,
    point_ids,
    raw_documents,
    store,
    topic_sizes,
    wait_for,
)
from .corpus import Expected, make_posts

TWIN = "fay"
DOCUMENTS = 30
# Tries seen failing on the outage before the store comes back: more than a stage retries any other
# failure (5) before dead-lettering, so an outage that outlasts that budget is shown to cost nothing.
OUTAGE_RETRIES = 6


def healthy(stage: StageProcess) -> bool:
    try:
        return stage.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def send(settings: Settings, events: list[Event]) -> None:
    producer = SyncEventProducer(settings)
    try:
        producer.send_all(events)
    finally:
        producer.close()


def wait_out_an_outage(settings: Settings, stage: StageProcess, *, name: str, source: Topic, events: list[Event],
                       done: Callable[[], int], stop_store: Callable[[], None],
                       start_store: Callable[[], None]) -> None:
    """Warm the stage up on the first event, stop the store, send the rest, see the stage retry without
    acknowledging, start the store again, and see everything done by the same process."""
    group = f"twin-{name}"
    wait_for(lambda: healthy(stage), bool, 180, f"{name} healthy")
    send(settings, events[:1])
    wait_for(done, lambda n: n == 1, 180, f"{name} handles the first message")
    # Every message so far (the first one, and any the stage's start-up replay sent) is acknowledged.
    handled = topic_sizes(settings, [source.value])[source.value]
    wait_for(lambda: committed_offsets(settings, group, source.value), lambda n: n == handled, 60,
             f"{name} acknowledges the first message")

    stop_store()
    send(settings, events[1:])
    wait_for(lambda: metric_value(stage, "twin_stage_retries_total", stage=name, cause="outage"),
             lambda n: n >= OUTAGE_RETRIES, 180, f"{name} retrying on the outage")
    # Nothing could be stored, so nothing more may be acknowledged.
    assert committed_offsets(settings, group, source.value) == handled

    start_store()
    wait_for(done, lambda n: n == len(events), 180, f"{name} finishes after the outage")
    total = handled + len(events) - 1
    wait_for(lambda: committed_offsets(settings, group, source.value), lambda n: n == total, 60,
             f"{name} acknowledges what it stored")
    assert stage.proc.poll() is None, stage.log_tail()  # recovered by itself, not by a restart
    assert metric_value(stage, "twin_stage_messages_total", stage=name, outcome="processed") == total
    assert metric_value(stage, "twin_stage_messages_total", stage=name, outcome="dead_lettered") == 0
    assert topic_sizes(settings, [source.dead_letter]) == {source.dead_letter: 0}


def test_the_embedder_waits_out_a_qdrant_outage(bus_settings, tmp_path):
    port = free_port()
    settings = bus_settings.model_copy(update={"qdrant_url": f"http://127.0.0.1:{port}"})

    def qdrant() -> LocalServer:
        return qdrant_local(tmp_path / "qdrant", port=port, log_path=tmp_path / "qdrant.log")

    servers = [qdrant().start()]
    posts = make_posts(DOCUMENTS, seed=11)
    docs = clean_documents(TWIN, posts)
    store(settings, Collection.CLEAN_DOCUMENTS, docs[:1])
    events = announcements(docs)
    try:
        with stage_process("twin_embedder", settings, tmp_path / "embedder.log", "embedder_port") as stage:
            def stop_store() -> None:
                servers[-1].stop()
                store(settings, Collection.CLEAN_DOCUMENTS, docs[1:])  # the cleaner goes on meanwhile

            wait_out_an_outage(settings, stage, name="embedder", source=Topic.CLEAN_DOCS, events=events,
                               done=lambda: count(settings, Collection.CHUNK_RECORDS), stop_store=stop_store,
                               start_store=lambda: servers.append(qdrant().start()))
        assert sorted(point_ids(settings, TWIN)) == sorted(Expected.of(TWIN, posts).point_ids)
    finally:
        servers[-1].stop()


def test_the_cleaner_waits_out_a_mongo_outage(bus_settings, tmp_path):
    port = free_port()
    # A short server selection timeout, so the adapter reports the outage rather than blocking in the driver.
    settings = bus_settings.model_copy(update={
        "warehouse_url": f"mongodb://127.0.0.1:{port}/faults?serverSelectionTimeoutMS=1000"})

    def mongo() -> LocalServer:
        return nx_27017_server("127.0.0.1", port, tmp_path / "nx")

    (tmp_path / "nx").mkdir()
    servers = [mongo().start()]
    docs = raw_documents(TWIN, make_posts(DOCUMENTS, seed=12))
    store(settings, Collection.RAW_DOCUMENTS, docs[:1])
    events = announcements(docs)
    try:
        with stage_process("twin_cleaner", settings, tmp_path / "cleaner.log", "cleaner_port") as stage:
            def stop_store() -> None:
                store(settings, Collection.RAW_DOCUMENTS, docs[1:])  # the crawler stored them before the outage
                servers[-1].stop()

            wait_out_an_outage(settings, stage, name="cleaner", source=Topic.RAW_DOCS, events=events,
                               done=lambda: count(settings, Collection.CLEAN_DOCUMENTS), stop_store=stop_store,
                               start_store=lambda: servers.append(mongo().start()))
    finally:
        servers[-1].stop()


def test_the_embedder_started_while_qdrant_is_down_waits_for_it(bus_settings, tmp_path):
    """A store down at start-up: the stage keeps trying to build its processor, is not ready meanwhile,
    acknowledges nothing, and starts consuming by itself once the store answers."""
    port = free_port()
    settings = bus_settings.model_copy(update={"qdrant_url": f"http://127.0.0.1:{port}"})
    posts = make_posts(5, seed=13)
    docs = clean_documents(TWIN, posts)
    store(settings, Collection.CLEAN_DOCUMENTS, docs)
    qdrant = qdrant_local(tmp_path / "qdrant", port=port, log_path=tmp_path / "qdrant.log")
    with stage_process("twin_embedder", settings, tmp_path / "embedder.log", "embedder_port") as stage:
        wait_for(lambda: healthy(stage), bool, 180, "embedder healthy")
        send(settings, announcements(docs))
        wait_for(lambda: metric_value(stage, "twin_stage_retries_total", stage="embedder", cause="outage"),
                 lambda n: n >= 3, 180, "embedder retrying its start-up")
        assert stage.get("/readyz").status_code == 503
        assert committed_offsets(settings, "twin-embedder", Topic.CLEAN_DOCS.value) == 0
        qdrant.start()
        try:
            wait_for(lambda: count(settings, Collection.CHUNK_RECORDS), lambda n: n == len(docs), 180,
                     "embedder embeds everything once Qdrant is up")
            assert stage.get("/readyz").status_code == 200
            assert stage.proc.poll() is None, stage.log_tail()
            assert sorted(point_ids(settings, TWIN)) == sorted(Expected.of(TWIN, posts).point_ids)
        finally:
            qdrant.stop()
