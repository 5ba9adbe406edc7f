"""The JSON API over the real app, a real SQLite warehouse and a real broker."""
from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
from aiokafka import AIOKafkaConsumer

from llmtwin.domain import (CleanDocument, CrawlJob, DatasetVersion, DocumentKind, JobState, Platform,
                            RawDocument, TrainingJob, utcnow)
from llmtwin.events import Event, ForgetRequested, Topic, decode
from llmtwin.warehouse import Collection, open_warehouse
from twin_web.app import create_app

from .conftest import serving


async def consume(bootstrap: str, topic: str, count: int) -> list[Event]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        received = []
        async with asyncio.timeout(60):
            async for message in consumer:
                received.append(decode(topic, message.value))
                if len(received) == count:
                    return received
    finally:
        await consumer.stop()


async def test_twins_are_created_once_and_listed(web):
    async with web.client() as client:
        created = await client.post("/api/twins", json={"name": "Ada Lovelace"})
        again = await client.post("/api/twins", json={"name": "Ada Lovelace"})
        listed = await client.get("/api/twins")
        nameless = await client.post("/api/twins", json={"name": "  "})
        missing = await client.post("/api/twins", json={})
    assert created.status_code == 201 and created.json()["id"] == "ada-lovelace"
    assert again.status_code == 200 and again.json()["id"] == "ada-lovelace"
    assert [t["name"] for t in listed.json()] == ["Ada Lovelace"]
    assert nameless.status_code == 422
    assert nameless.json() == {"detail": "Give the twin a name, for example the person's name.", "field": "name"}
    assert missing.status_code == 422 and missing.json() == {"detail": "name: is required", "field": "name"}


async def test_profiles_are_validated_before_they_are_stored(web):
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        good = await client.post("/api/twins/ada/profiles",
                                 json={"platform": "github", "url": "github.com/ada", "cadence_minutes": 60})
        wrong_site = await client.post("/api/twins/ada/profiles",
                                       json={"platform": "medium", "url": "https://substack.com/@ada"})
        unknown_platform = await client.post("/api/twins/ada/profiles",
                                             json={"platform": "myspace", "url": "https://myspace.com/ada"})
        no_twin = await client.post("/api/twins/nobody/profiles",
                                    json={"platform": "github", "url": "https://github.com/ada"})
        cadence = await client.patch(f"/api/twins/ada/profiles/{good.json()['id']}", json={"cadence_minutes": None})
        twin = await client.get("/api/twins/ada")
    assert good.status_code == 201
    assert (good.json()["url"], good.json()["cadence_minutes"]) == ("https://github.com/ada", 60)
    assert wrong_site.status_code == 422 and wrong_site.json()["field"] == "url"
    assert "not a Medium link" in wrong_site.json()["detail"]
    assert unknown_platform.status_code == 422 and unknown_platform.json()["field"] == "platform"
    assert no_twin.status_code == 404 and "nobody" in no_twin.json()["detail"]
    assert cadence.status_code == 200 and cadence.json()["cadence_minutes"] is None
    assert [(p["platform"], p["cadence_minutes"]) for p in twin.json()["profiles"]] == [("github", None)]
    assert await web.warehouse.count(Collection.PROFILES, {"twin_id": "ada"}) == 1


async def test_archives_are_saved_as_file_profiles_and_oversized_ones_refused(start_web):
    web = await start_web(web_max_upload_bytes=1000)
    content = b"Date,ShareLink,ShareCommentary\n2024-01-02,https://lnkd.in/x,Shipping small beats waiting\n"
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        saved = await client.post("/api/twins/ada/archives", data={"platform": "linkedin"},
                                  files={"file": ("Shares.csv", content, "text/csv")})
        too_big = await client.post("/api/twins/ada/archives", data={"platform": "linkedin"},
                                    files={"file": ("big.zip", b"x" * 5000, "application/zip")})
        not_an_export = await client.post("/api/twins/ada/archives", data={"platform": "linkedin"},
                                          files={"file": ("setup.exe", b"MZ", "application/octet-stream")})
        no_file = await client.post("/api/twins/ada/archives", data={"platform": "linkedin"})
    assert saved.status_code == 201, saved.text
    url = saved.json()["url"]
    assert url.startswith((web.settings.data_dir / "uploads" / "ada").as_uri()) and url.endswith("-Shares.csv")
    stored = list((web.settings.data_dir / "uploads" / "ada").iterdir())
    assert [p.read_bytes() for p in stored] == [content]  # nothing left from the refused uploads
    assert too_big.status_code == 413 and "larger than the 0.001 MB" in too_big.json()["detail"]
    assert not_an_export.status_code == 422 and not_an_export.json()["field"] == "file"
    assert no_file.status_code == 422 and no_file.json()["detail"] == "Choose the export file to upload."


async def test_crawl_requests_one_message_per_profile(web):
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        nothing_yet = await client.post("/api/twins/ada/crawl")
        github = (await client.post("/api/twins/ada/profiles",
                                    json={"platform": "github", "url": "https://github.com/ada"})).json()
        blog = (await client.post("/api/twins/ada/profiles",
                                  json={"platform": "blog", "url": "https://ada.example.org/"})).json()
        all_of_them = await client.post("/api/twins/ada/crawl")
        just_blog = await client.post("/api/twins/ada/crawl", json={"profile_id": blog["id"]})
        unknown = await client.post("/api/twins/ada/crawl", json={"profile_id": "nope"})
    assert nothing_yet.status_code == 422 and "Add a profile link" in nothing_yet.json()["detail"]
    assert all_of_them.status_code == 202 and len(all_of_them.json()["request_ids"]) == 2
    assert just_blog.status_code == 202 and len(just_blog.json()["request_ids"]) == 1
    assert unknown.status_code == 404

    received = await consume(web.settings.kafka_bootstrap, Topic.CRAWL_REQUESTS.value, 3)
    expected_ids = all_of_them.json()["request_ids"] + just_blog.json()["request_ids"]
    assert sorted(m.id for m in received) == sorted(expected_ids)
    by_id = {m.id: m for m in received}
    assert {(m.profile_id, m.platform, m.url) for m in received} == {
        (github["id"], Platform.GITHUB, "https://github.com/ada"), (blog["id"], Platform.BLOG, "https://ada.example.org/")}
    assert by_id[just_blog.json()["request_ids"][0]].profile_id == blog["id"]
    assert all(m.twin_id == "ada" for m in received)


async def test_forgetting_a_document_sends_the_crawler_a_forget_request(web):
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        await client.post("/api/twins", json={"name": "Grace"})
        await add_pipeline_results(web.warehouse)
        [document] = await web.warehouse.find(Collection.RAW_DOCUMENTS, {"twin_id": "ada", "withdrawn_at": None})
        forgotten = await client.post(f"/api/twins/ada/documents/{document['id']}/forget")
        not_grace_s = await client.post(f"/api/twins/grace/documents/{document['id']}/forget")
        unknown = await client.post("/api/twins/ada/documents/nope/forget")
    assert forgotten.status_code == 202 and forgotten.json()["document_id"] == document["id"]
    assert not_grace_s.status_code == 404 and "has no document" in not_grace_s.json()["detail"]
    assert unknown.status_code == 404

    [received] = await consume(web.settings.kafka_bootstrap, Topic.CRAWL_REQUESTS.value, 1)
    assert isinstance(received, ForgetRequested)
    assert (received.id, received.twin_id, received.document_id) == (forgotten.json()["request_id"], "ada",
                                                                      document["id"])


async def add_pipeline_results(warehouse) -> None:
    """What the other stages would have written for twin `ada`."""
    raw = RawDocument.create(twin_id="ada", platform=Platform.BLOG, kind=DocumentKind.ARTICLE,
                             link="https://ada.example.org/engines", content="On engines.", title="On engines")
    await warehouse.upsert(Collection.RAW_DOCUMENTS, raw.model_dump(mode="json"))
    clean = CleanDocument(id=raw.id, twin_id="ada", platform=raw.platform, kind=raw.kind, link=raw.link,
                          content="On engines.", content_hash="c", raw_hash=raw.content_hash)
    await warehouse.upsert(Collection.CLEAN_DOCUMENTS, clean.model_dump(mode="json"))
    withdrawn = RawDocument.create(twin_id="ada", platform=Platform.BLOG, kind=DocumentKind.ARTICLE,
                                   link="https://ada.example.org/old-rant", content="", title="An old rant",
                                   withdrawn_at=utcnow())
    await warehouse.upsert(Collection.RAW_DOCUMENTS, withdrawn.model_dump(mode="json"))
    await warehouse.upsert(Collection.CLEAN_DOCUMENTS, CleanDocument(
        id=withdrawn.id, twin_id="ada", platform=withdrawn.platform, kind=withdrawn.kind, link=withdrawn.link,
        content="", content_hash=withdrawn.content_hash, raw_hash=withdrawn.content_hash,
        withdrawn=True).model_dump(mode="json"))
    crawl = CrawlJob(id="job-1", twin_id="ada", profile_id="p", platform=Platform.BLOG, url="https://ada.example.org/",
                     state=JobState.SUCCEEDED, found=3, stored=1, skipped=1, failed=1, errors=["404 at /gone"])
    await warehouse.upsert(Collection.CRAWL_JOBS, crawl.model_dump(mode="json"))
    earlier_round = crawl.model_copy(update={"id": "job-0", "found": 10, "stored": 10, "errors": [],
                                             "created_at": utcnow() - timedelta(days=1)})
    await warehouse.upsert(Collection.CRAWL_JOBS, earlier_round.model_dump(mode="json"))
    await warehouse.upsert(Collection.DATASET_VERSIONS, DatasetVersion.of("ada", ["s1", "s2"]).model_dump(mode="json"))
    earlier = utcnow() - timedelta(minutes=5)
    first = TrainingJob(id="t1", twin_id="ada", dataset_version="dv1", state=JobState.SUCCEEDED, progress=1.0,
                        model_version="1", promoted=True,
                        metrics={"candidate_perplexity": 20.7, "reference_perplexity": 22.3,
                                 "candidate_style_score": 0.453, "reference_style_score": 0.388,
                                 "candidate_copied_share": 0.214, "reference_copied_share": 0.194,
                                 "candidate_samples": 11.0, "reference_samples": 11.0},
                        created_at=earlier, updated_at=earlier)
    second = TrainingJob(id="t2", twin_id="ada", dataset_version="dv2", state=JobState.SUCCEEDED, progress=1.0,
                         model_version="2", promoted=False, metrics={"perplexity": 24.0})  # as jobs once recorded
    for job in (first, second):
        await warehouse.upsert(Collection.TRAINING_JOBS, job.model_dump(mode="json"))


async def test_status_reflects_what_the_stages_wrote(web):
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        await client.post("/api/twins", json={"name": "Grace"})
        await add_pipeline_results(web.warehouse)
        status = (await client.get("/api/twins/ada/status")).json()
        other = (await client.get("/api/twins/grace/status")).json()
        models = (await client.get("/api/twins/ada/models")).json()
        unknown = await client.get("/api/twins/nobody/status")
    assert status["counts"] == {"profiles": 0, "raw_documents": 2, "clean_documents": 2, "chunk_records": 0,
                                "instruct_samples": 0, "dataset_versions": 1, "duplicates": 0, "forgotten": 1}
    assert {k: status["crawl"][k] for k in ("found", "stored", "skipped", "failed")} == \
        {"found": 3, "stored": 1, "skipped": 1, "failed": 1}
    assert [j["id"] for j in status["crawl"]["jobs"]] == ["job-1", "job-0"]  # counted: the latest of the source
    assert status["crawl"]["jobs"][0]["errors"] == ["404 at /gone"]
    assert [j["id"] for j in status["training_jobs"]] == ["t2", "t1"]
    assert "did not pass the evaluation" in status["training_jobs"][0]["verdict"]
    assert status["champion"]["version"] == "1"
    assert other["counts"]["raw_documents"] == 0 and other["champion"] is None
    assert [(m["version"], m["champion"]) for m in models] == [("2", False), ("1", True)]
    assert unknown.status_code == 404


async def next_event(lines) -> tuple[str, str]:
    """The next named server-sent event (`data` lines lose the one space after the colon)."""
    name, data = "", []
    async for line in lines:
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)
        elif line == "" and name:
            return name, "\n".join(data)
    raise AssertionError("the stream ended")


async def test_events_push_the_status_when_it_changes(web):
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        async with asyncio.timeout(60), client.stream("GET", "/api/twins/ada/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            name, first = await next_event(lines)
            assert name == "status" and json.loads(first)["counts"]["raw_documents"] == 0
            await add_pipeline_results(web.warehouse)
            name, changed = await next_event(lines)
            assert name == "status"
            changed = json.loads(changed)
            assert changed["counts"]["raw_documents"] == 2 and changed["champion"]["version"] == "1"
        unknown = await client.get("/api/twins/nobody/events")
    assert unknown.status_code == 404


async def test_health_and_metrics(web):
    async with web.client() as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        metrics = await client.get("/metrics")
    assert health.json() == {"status": "ok"} and ready.json() == {"ready": True}
    assert metrics.status_code == 200 and "python_info" in metrics.text


async def test_requests_from_other_sites_are_refused(web):
    async with web.client() as client:
        refused = await client.post("/api/twins", json={"name": "Ada"}, headers={"Origin": "http://evil.example"})
        same_site = await client.post("/api/twins", json={"name": "Ada"}, headers={"Origin": web.url})
    assert refused.status_code == 403 and "other web sites" in refused.json()["detail"]
    assert same_site.status_code == 201


async def test_the_app_opens_and_closes_its_own_warehouse_when_none_is_given(bus_settings, fake_inference):
    settings = bus_settings.model_copy(update={"inference_api_url": fake_inference[1]})
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        created = await client.post("/api/twins", json={"name": "Ada"})
    assert created.status_code == 201
    reopened = open_warehouse(settings.warehouse)
    try:
        assert (await reopened.get(Collection.TWINS, "ada"))["name"] == "Ada"
    finally:
        await reopened.close()
