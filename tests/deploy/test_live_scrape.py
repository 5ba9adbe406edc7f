"""A real Prometheus (the Debian binary) scrapes real running services of the embedded stack —
the cleaner stage over a real broker and a real SQLite warehouse, and the local Qdrant server —
and every dashboard query over the metric families they export returns data."""
from __future__ import annotations

import asyncio
import json
import math
import shutil
import sys
import time

import httpx
import pytest
import yaml
from kafka import KafkaProducer

from llmtwin.domain import DocumentKind, Platform, RawDocument
from llmtwin.events import RawDocStored, Topic
from llmtwin.infra.process import LocalServer, free_port
from llmtwin.infra.qdrant_server import qdrant_local
from llmtwin.settings import Settings
from llmtwin.warehouse import Collection, open_warehouse
from llmtwin.warehouse.repository import Repository

LIVE_FAMILIES = ("twin_stage_", "twin_cleaner_", "twin_qdrant_")  # what the two services below export
DEADLINE_SECONDS = 60


def wait_for(what, check, deadline: float):
    """Poll `check()` until it returns something truthy; fail with `what` (or `what()`) at the deadline."""
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what() if callable(what) else what}")
        time.sleep(0.5)


class PrometheusAPI:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=5)

    def query(self, expr: str) -> list[dict]:
        response = self.http.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def label_values(self, label: str) -> set[str]:
        return set(self.http.get(f"/api/v1/label/{label}/values").json()["data"])


@pytest.fixture
def cleaner(bus_settings, tmp_path):
    """The real cleaner service (`twin-cleaner`): raw_docs in, clean documents and clean_docs out."""
    port = free_port()
    env = {"TWIN_KAFKA_BOOTSTRAP": bus_settings.kafka_bootstrap, "TWIN_DATA_DIR": str(bus_settings.data_dir),
           "TWIN_CLEANER_PORT": str(port), "TWIN_TOPIC_PARTITIONS": str(bus_settings.topic_partitions)}
    server = LocalServer("cleaner", [sys.executable, "-m", "twin_cleaner"], "127.0.0.1", port,
                         log_path=tmp_path / "cleaner.log", env=env).start(timeout=60)
    yield server
    server.stop()


@pytest.fixture
def qdrant(tmp_path):
    server = qdrant_local(tmp_path / "qdrant", port=free_port(), log_path=tmp_path / "qdrant.log").start()
    yield server
    server.stop()


@pytest.fixture
def prometheus(cleaner, qdrant, tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: `make deploy-tools` installs it (Debian package prometheus)"
    jobs = {"cleaner": cleaner.port, "qdrant": qdrant.port}
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                                 for job, port in jobs.items()]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    server = LocalServer("prometheus", [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                        f"--web.listen-address=127.0.0.1:{port}"],
                         "127.0.0.1", port, log_path=tmp_path / "prometheus.log").start()
    yield PrometheusAPI(f"http://127.0.0.1:{port}")
    server.stop()


def live_panels(repo, promql) -> dict[str, str]:
    """Dashboard queries over the families the running services export (those filtered to
    another stage than the cleaner would have no data here)."""
    queries = {}
    for path in sorted((repo / "deploy/grafana/dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                names = promql.metric_names(target["expr"])
                if names and all(n.startswith(LIVE_FAMILIES) for n in names) and 'stage="' not in target["expr"]:
                    queries[f"{path.name} / {panel['title']} / {target['refId']}"] = target["expr"]
    return queries


def publish_raw_docs(settings: Settings, first: int, count: int, *, with_bad: bool) -> None:
    """Store raw documents in the warehouse, as the crawler does, then announce them on raw_docs."""
    docs = [RawDocument.create(twin_id="ada", platform=Platform.BLOG, kind=DocumentKind.ARTICLE,
                               link=f"https://blog.example.com/{i}", title=f"Post {i}",
                               content=f"<p>Post <b>{i}</b>: what I learnt about retrieval this week.</p>")
            for i in range(first, first + count)]

    async def store() -> None:
        warehouse = open_warehouse(settings.warehouse)
        try:
            for doc in docs:
                await Repository(warehouse, Collection.RAW_DOCUMENTS, RawDocument).add(doc)
        finally:
            await warehouse.close()
    asyncio.run(store())

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for doc in docs:
        event = RawDocStored(id=doc.id, twin_id=doc.twin_id, kind=doc.kind, platform=doc.platform,
                             content_hash=doc.content_hash)
        producer.send(Topic.RAW_DOCS.value, event.encode(), key=doc.twin_id.encode())
    if with_bad:
        producer.send(Topic.RAW_DOCS.value, b"{not json", key=b"ada")
    producer.flush()
    producer.close()


def use_vectors(qdrant, collection: str) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{qdrant.port}", timeout=10) as client:
        client.put(f"/collections/{collection}", json={"vectors": {"size": 4, "distance": "Cosine"}}).raise_for_status()
        client.get("/collections").raise_for_status()


def test_prometheus_scrapes_the_services_and_every_live_dashboard_query_has_data(
        bus_settings, cleaner, qdrant, prometheus, repo, promql):
    deadline = time.monotonic() + DEADLINE_SECONDS
    queries = live_panels(repo, promql)
    assert len(queries) >= 8, queries  # the pipeline dashboard's stage, cleaner and vector-store panels

    # Two rounds of traffic, the second after Prometheus has seen the first: rates and
    # quantiles need a counter that moves between two scrapes.
    publish_raw_docs(bus_settings, 0, 3, with_bad=False)
    use_vectors(qdrant, "first")
    wait_for("the first round in Prometheus", lambda: prometheus.query(
        'twin_stage_messages_total{stage="cleaner", outcome="processed"} >= 3'), deadline)
    publish_raw_docs(bus_settings, 3, 3, with_bad=True)
    use_vectors(qdrant, "second")
    wait_for("the second round in Prometheus", lambda: prometheus.query(
        'twin_stage_messages_total{stage="cleaner", outcome="processed"} >= 6 '
        'and on() twin_stage_messages_total{stage="cleaner", outcome="dead_lettered"} >= 1'), deadline)

    up = {r["metric"]["job"]: r["value"][1] for r in prometheus.query("up")}
    assert up == {"cleaner": "1", "qdrant": "1"}

    empty: dict[str, str] = {}

    def all_have_data():
        results = {where: prometheus.query(expr) for where, expr in queries.items()}
        empty.clear()
        empty.update({where: queries[where] for where, result in results.items()
                      if not any(math.isfinite(float(sample["value"][1])) for sample in result)})
        return results if not empty else None

    results = wait_for(lambda: f"data for these queries: {json.dumps(empty, indent=2)}", all_have_data, deadline)
    emitted = {r["metric"]["topic"]: float(r["value"][1]) for r in
               results[next(w for w in queries if "emitted" in w.lower())]}
    assert emitted.get(Topic.CLEAN_DOCS.value, 0) > 0
