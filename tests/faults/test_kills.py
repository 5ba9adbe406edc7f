"""SIGKILL every service in turn while a corpus of 600 documents flows through the whole embedded stack,
restart it, and check that the warehouse, Qdrant and the dataset end up holding exactly the expected
documents, points and samples: none lost, none duplicated, nothing dead-lettered.

Each service is killed when its own stage has visibly started on the corpus (its first output is in the
stores); where it stood is printed with the figures. What must be there at the end is computed from the
generated corpus and the deterministic id functions, never read back from the system.
"""
from __future__ import annotations

import time

import httpx
import pytest

from devstack.stack import Stack
from llmtwin import registry
from llmtwin.events import Topic
from llmtwin.testing.stack import stack_settings
from llmtwin.warehouse import Collection

from .conftest import point_ids, topic_ids, topic_sizes, wait_for, warehouse_counts, warehouse_find
from .corpus import Expected, linkedin_export, make_posts

ARCHIVES, POSTS_PER_ARCHIVE = 3, 200

# Each service, and the sign (in the warehouse) that it is at work on the corpus: the moment to kill it.
KILLS = (
    ("crawler", lambda c: c["raw_documents"] >= 1),
    ("cleaner", lambda c: c["clean_documents"] >= 1),
    ("dataset-builder", lambda c: c["sample_records"] >= 1),
    ("embedder", lambda c: c["chunk_records"] >= 1),
    ("trainer", lambda c: c["trigger_state"] >= 1),  # it has counted samples
    ("inference-api", lambda c: c["training_jobs"] >= 1),  # a promotion is on its way
)


def serving_version(settings, twin_id: str) -> str | None:
    try:
        card = httpx.get(f"{settings.inference_api_url}/v1/models/{twin_id}", timeout=10)
    except httpx.HTTPError:
        return None
    return card.json().get("model_version") if card.status_code == 200 else None


def pipeline_finished(settings, twin_id: str, total: int) -> dict[str, object]:
    """Where the loop stands: done when every stage holds the whole corpus and the champion is served."""
    counts = warehouse_counts(settings, twin_id)
    versions = warehouse_find(settings, Collection.DATASET_VERSIONS, {"twin_id": twin_id})
    full = [v["id"] for v in versions if len(v["sample_ids"]) == total]
    jobs = warehouse_find(settings, Collection.TRAINING_JOBS, {"twin_id": twin_id})
    champion = registry.champion(twin_id)
    return {**counts, "full_version_trained": any(j["dataset_version"] in full and j["state"] in ("succeeded", "failed")
                                                  for j in jobs),
            "jobs_active": sum(j["state"] in ("queued", "running") for j in jobs),
            "champion": champion.version if champion else None, "serving": serving_version(settings, twin_id)}


def is_finished(status: dict[str, object], total: int) -> bool:
    stages = ("raw_documents", "clean_documents", "chunk_records", "sample_records", "instruct_samples")
    return (all(status[s] == total for s in stages) and status["full_version_trained"]
            and status["jobs_active"] == 0 and status["champion"] is not None
            and status["serving"] == status["champion"])


@pytest.mark.e2e
@pytest.mark.timeout(1200)
def test_killing_every_service_mid_stream_loses_and_duplicates_nothing(tmp_path, tiny_base_model):
    started = time.monotonic()
    # Every new sample counts, so the last dataset version must end up holding the whole corpus.
    settings = stack_settings(tmp_path / "data", tiny_base_model, train_min_new_samples=1, train_quiet_seconds=3)
    archives, posts = [], []
    for seed in range(1, ARCHIVES + 1):
        batch = make_posts(POSTS_PER_ARCHIVE, seed)
        posts += batch
        archives.append(linkedin_export(batch, tmp_path / f"linkedin-export-{seed}.zip"))
    total = len(posts)

    with Stack(settings) as stack, httpx.Client(base_url=f"http://{settings.host}:{settings.web_port}",
                                                timeout=30) as web:
        twin_id = web.post("/api/twins", json={"name": "Fay Fault"}).raise_for_status().json()["id"]
        expected = Expected.of(twin_id, posts)
        assert len(expected.document_ids) == total
        for archive in archives:
            web.post(f"/api/twins/{twin_id}/profiles",
                     json={"platform": "linkedin", "url": archive.as_uri()}).raise_for_status()
        web.post(f"/api/twins/{twin_id}/crawl").raise_for_status()
        registry.configure(settings)

        killed_at: dict[str, dict[str, int]] = {}
        for service, at_work in KILLS:
            killed_at[service] = wait_for(lambda: warehouse_counts(settings, twin_id), at_work, 600,
                                          f"{service} at work")
            stack.restart(service)  # SIGKILL, then start it again and wait until it has started

        status = wait_for(lambda: pipeline_finished(settings, twin_id, total), lambda s: is_finished(s, total),
                          900, "the whole corpus through the loop", every=1.0)

        # The warehouse: exactly the corpus's documents, raw and clean, none a duplicate of another.
        raw = warehouse_find(settings, Collection.RAW_DOCUMENTS, {"twin_id": twin_id})
        clean = warehouse_find(settings, Collection.CLEAN_DOCUMENTS, {"twin_id": twin_id})
        assert sorted(d["id"] for d in raw) == sorted(expected.document_ids)
        assert sorted(d["id"] for d in clean) == sorted(expected.document_ids)
        assert all(d["duplicate_of"] is None for d in clean)

        # Qdrant: exactly one point per document, the one its text makes; no stale or doubled point.
        points = point_ids(settings, twin_id)
        assert len(points) == total
        assert set(points) == expected.point_ids

        # The dataset: one sample per document, its answer the person's post, and the last version holds them all.
        samples = warehouse_find(settings, Collection.INSTRUCT_SAMPLES, {"twin_id": twin_id})
        assert len(samples) == total
        assert {(s["document_id"], s["answer"]) for s in samples} == expected.samples
        versions = warehouse_find(settings, Collection.DATASET_VERSIONS, {"twin_id": twin_id})
        latest = max(versions, key=lambda v: v["created_at"])
        assert sorted(latest["sample_ids"]) == sorted(s["id"] for s in samples)

        # Every hop announced every item at least once: no message was lost between two stages.
        for topic in (Topic.RAW_DOCS, Topic.CLEAN_DOCS, Topic.CHUNKS):
            assert topic_ids(settings, topic) == expected.document_ids, topic
        assert topic_ids(settings, Topic.INSTRUCT_SAMPLES) == {s["id"] for s in samples}
        # Nothing was dead-lettered: the kills cost redeliveries, never a message.
        stage_topics = [Topic.CRAWL_REQUESTS, Topic.RAW_DOCS, Topic.CLEAN_DOCS, Topic.INSTRUCT_SAMPLES]
        assert topic_sizes(settings, [t.dead_letter for t in stage_topics]) == {t.dead_letter: 0 for t in stage_topics}
        # The restarted inference-api serves the champion the registry names.
        assert status["serving"] == registry.champion(twin_id).version
        messages = topic_sizes(settings, [t.value for t in (*stage_topics, Topic.CHUNKS, Topic.MODEL_EVENTS)])

    print(f"\nfault suite: {total} documents, {len(KILLS)} kills (SIGKILL), {len(KILLS)} restarts, "
          f"{time.monotonic() - started:.0f}s\n  messages per topic: {messages}\n  killed when the warehouse held: "
          + "\n    ".join(f"{s}: {c}" for s, c in killed_at.items())
          + f"\n  dataset versions: {len(versions)}, final status: {status}")
