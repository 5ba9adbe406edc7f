"""The faust stage runner over a real broker: batches handled, failures dead-lettered alone."""
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from kafka import KafkaProducer

from llmtwin.events import RawDocStored, Topic, decode
from llmtwin.infra.process import free_port
from llmtwin.testing.stages import consume


def start_echo_stage(bus_settings, tmp_path, port: int, **env_extra: str) -> subprocess.Popen:
    env = {**os.environ, "TWIN_KAFKA_BOOTSTRAP": bus_settings.kafka_bootstrap,
           "TWIN_DATA_DIR": str(bus_settings.data_dir), "TWIN_CLEANER_PORT": str(port), **env_extra}
    with open(tmp_path / "stage.log", "wb") as log:
        return subprocess.Popen([sys.executable, str(Path(__file__).with_name("echo_stage.py"))],
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def test_stage_processes_and_dead_letters_only_the_bad_messages(bus_settings, tmp_path):
    port = free_port()
    proc = start_echo_stage(bus_settings, tmp_path, port)
    try:
        # A producer without the 1 MB limit, as a misbehaving client would be (Tansu takes it all).
        producer = KafkaProducer(bootstrap_servers=bus_settings.kafka_bootstrap, max_request_size=4_000_000)
        docs = [RawDocStored(id=f"doc-{i}", twin_id="ada", kind="post", platform="linkedin",
                             content_hash="boom" if i == 2 else f"h{i}") for i in range(5)]
        oversize = RawDocStored(id="doc-huge", twin_id="ada", kind="post", platform="linkedin",
                                content_hash="h" * 1_500_000)
        poison = [b"{not json", json.dumps({"schema_version": 99, "id": "x"}).encode(),
                  json.dumps({"schema_version": RawDocStored.SCHEMA_VERSION, "id": "no-twin"}).encode(),
                  oversize.encode()]
        for doc in docs[:3]:
            producer.send(Topic.RAW_DOCS.value, doc.encode(), key=b"ada")
        for payload in poison:  # between good messages: the stream must go on after them
            producer.send(Topic.RAW_DOCS.value, payload, key=b"ada")
        for doc in docs[3:]:
            producer.send(Topic.RAW_DOCS.value, doc.encode(), key=b"ada")
        producer.flush()

        clean = consume(bus_settings.kafka_bootstrap, Topic.CLEAN_DOCS.value, want=4)
        dead = consume(bus_settings.kafka_bootstrap, Topic.RAW_DOCS.dead_letter, want=5)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        readiness = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        proc.terminate()
        proc.wait(30)

    assert sorted(decode(Topic.CLEAN_DOCS, c).id for c in clean) == ["doc-0", "doc-1", "doc-3", "doc-4"]
    reasons = sorted(json.loads(d)["reason"] for d in dead)
    assert len(reasons) == 5, (tmp_path / "stage.log").read_text()[-3000:]
    assert any("boom is not processable" in r for r in reasons)
    assert any("not JSON" in r for r in reasons)
    assert any("unknown schema_version 99" in r for r in reasons)
    assert any(r.startswith("invalid raw_docs message: Field required") for r in reasons)
    assert f"oversize: {len(oversize.encode())} bytes, the limit is 1000000" in reasons
    assert all(len(d) < 1_000_000 for d in dead)  # a dead letter keeps the start of an oversize payload only
    assert health.json()["status"] == "ok"
    assert readiness.status_code == 200 and readiness.json() == {"ready": True, "stage": "echo"}
    assert 'twin_stage_messages_total{outcome="processed",stage="echo"} 4.0' in metrics
    assert 'twin_stage_messages_total{outcome="dead_lettered",stage="echo"} 5.0' in metrics
    # The failing batch was tried again (retries=1) before its items were dead-lettered alone.
    retried = re.search(r'^twin_stage_retries_total\{cause="error",stage="echo"\} (\S+)$', metrics, re.M)
    assert retried and float(retried.group(1)) >= 1


def wait_ready(port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(log.read_text()[-3000:])


def test_batches_handled_at_once_finish_out_of_order_and_none_is_lost(bus_settings, tmp_path):
    """With two batches in flight a fast batch overtakes a slow one; a crash then must not commit
    past the slow batch: after a restart it is handled again."""
    port, log = free_port(), tmp_path / "stage.log"
    producer = KafkaProducer(bootstrap_servers=bus_settings.kafka_bootstrap)

    def send(*hashes: str) -> None:
        for content_hash in hashes:
            doc = RawDocStored(id=f"doc-{content_hash}", twin_id="ada", kind="post", platform="linkedin",
                               content_hash=content_hash)
            producer.send(Topic.RAW_DOCS.value, doc.encode(), key=b"ada")
        producer.flush()

    proc = start_echo_stage(bus_settings, tmp_path, port, ECHO_IN_FLIGHT="2")
    try:
        wait_ready(port, log)
        send("slow")
        time.sleep(1)  # past the batch wait: the slow document is a batch of its own
        send("fast-1", "fast-2")
        overtaking = consume(bus_settings.kafka_bootstrap, Topic.CLEAN_DOCS.value, want=2, timeout=4)
        time.sleep(3)  # faust commits every 2.8 s: the commit must stop before "slow"
    finally:
        proc.kill()  # a crash, while the slow batch is still in the processor
        proc.wait(30)
    overtaken = [decode(Topic.CLEAN_DOCS, c).id for c in overtaking]
    assert overtaken == ["doc-fast-1", "doc-fast-2"], log.read_text()[-3000:]

    proc = start_echo_stage(bus_settings, tmp_path, port, ECHO_IN_FLIGHT="2")
    try:
        clean = consume(bus_settings.kafka_bootstrap, Topic.CLEAN_DOCS.value, want=5, timeout=60)
    finally:
        proc.terminate()
        proc.wait(30)
    assert "doc-slow" in [decode(Topic.CLEAN_DOCS, c).id for c in clean], log.read_text()[-3000:]


def test_work_stored_but_never_announced_is_swept_up_without_a_restart(bus_settings, tmp_path):
    """A crash between storing and announcing leaves work no message points at: once caught up,
    the stage finds it in its backlog and sends it again."""
    port = free_port()
    proc = start_echo_stage(bus_settings, tmp_path, port, TWIN_BACKLOG_SWEEP_SECONDS="1")
    try:
        wait_ready(port, tmp_path / "stage.log")
        orphan = RawDocStored(id="orphan", twin_id="ada", kind="post", platform="linkedin", content_hash="h")
        bus_settings.data_dir.mkdir(parents=True, exist_ok=True)
        (bus_settings.data_dir / "unannounced.jsonl").write_text(orphan.model_dump_json() + "\n")

        clean = consume(bus_settings.kafka_bootstrap, Topic.CLEAN_DOCS.value, want=1, timeout=30)
    finally:
        proc.terminate()
        proc.wait(30)

    assert [decode(Topic.CLEAN_DOCS, c).id for c in clean] == ["orphan"], (tmp_path / "stage.log").read_text()[-3000:]


def test_stage_consumers_hold_an_empty_fetch_half_a_second_not_faust_s_fixed_one_and_a_half(tmp_path):
    """Tansu looks again for data only at halvings of a held fetch's wait: at faust's 1.5 s a
    message waited 0.26 s on average before its stage saw it (see llmtwin.bus.faust_app)."""
    from llmtwin.bus.faust_app import make_faust_app
    from llmtwin.settings import Settings

    async def built_consumer():  # aiokafka builds its consumers inside a running loop
        app = make_faust_app("twin-fetch-wait", Settings(data_dir=tmp_path), free_port())
        return app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)

    assert asyncio.run(built_consumer())._fetch_max_wait_ms == 500
