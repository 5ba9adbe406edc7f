"""The whole loop across real processes over the real broker: writing in, a fine-tuned
champion out, a streamed answer grounded in the twin's own documents.

The services run as separate processes started from their command lines (the same
devstack `make run` uses), with a tiny base model so the test fits in CI.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from openai import OpenAI

from devstack.demo import DEMO_PROMPT, follow_pipeline, seed_demo, wait_until_served
from devstack.demo_sources import prepare_demo
from llmtwin import registry, vectors
from llmtwin.datasets import get_dataset_version, load_samples
from llmtwin.embeddings import embedding_model_name
from llmtwin.settings import Settings
from llmtwin.testing.warehouse import opened_warehouse
from llmtwin.warehouse import Collection


async def warehouse_view(settings: Settings, twin_id: str) -> dict[str, object]:
    async with opened_warehouse(settings.warehouse) as warehouse:
        raw = await warehouse.find(Collection.RAW_DOCUMENTS, {"twin_id": twin_id})
        return {"raw": raw,
                "clean": await warehouse.count(Collection.CLEAN_DOCUMENTS, {"twin_id": twin_id}),
                "samples": await warehouse.count(Collection.INSTRUCT_SAMPLES, {"twin_id": twin_id}),
                "versions": await warehouse.find(Collection.DATASET_VERSIONS, {"twin_id": twin_id})}


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen in {timeout:.0f}s")
        time.sleep(0.5)


async def what_is_left_of(settings: Settings, document_id: str) -> dict[str, object]:
    async with opened_warehouse(settings.warehouse) as warehouse:
        return {"raw": await warehouse.get(Collection.RAW_DOCUMENTS, document_id),
                "clean": await warehouse.get(Collection.CLEAN_DOCUMENTS, document_id),
                "samples": await warehouse.count(Collection.INSTRUCT_SAMPLES, {"document_id": document_id})}


async def documents_in(settings: Settings, dataset_version: str) -> set[str]:
    async with opened_warehouse(settings.warehouse) as warehouse:
        version = await get_dataset_version(warehouse, dataset_version)
        return {sample.document_id for sample in await load_samples(warehouse, version)}


@pytest.mark.e2e
@pytest.mark.timeout(1080)
def test_a_twin_goes_through_the_whole_loop(e2e_settings, running_stack, blog_site):
    settings = e2e_settings
    bearer = {"Authorization": f"Bearer {settings.web_admin_token.get_secret_value()}"}
    with httpx.Client(base_url=f"http://{settings.host}:{settings.web_port}", headers=bearer, timeout=30) as web:
        sources = prepare_demo(settings.data_dir / "demo")
        twin_id = seed_demo(web, f"http://{blog_site.host}:{blog_site.port}/", sources)
        reached = follow_pipeline(web, twin_id, timeout=900)
    assert list(reached)[-1] == "champion promoted"

    # Each hop left its mark in the stores.
    view = asyncio.run(warehouse_view(settings, twin_id))
    assert {doc["platform"] for doc in view["raw"]} == {"linkedin", "blog", "github"}
    assert view["clean"] == len(view["raw"])
    assert view["samples"] > 0 and view["versions"]
    client = vectors.open_vector_client(settings)
    collection = vectors.collection_name(embedding_model_name(settings), 384)
    assert vectors.count_points(client, collection, twin_id=twin_id) > 0
    registry.configure(settings)
    champion = registry.champion(twin_id)
    assert champion is not None
    assert champion.tags.get("dataset_version") in {v["id"] for v in view["versions"]}

    # The official openai client streams a grounded answer from the champion, once the API has loaded it.
    wait_until_served(settings.inference_api_url, twin_id, champion.version, timeout=120)
    openai = OpenAI(base_url=f"{settings.inference_api_url}/v1", api_key="unused-in-the-open-demo")
    assert twin_id in [m.id for m in openai.models.list().data]
    stream = openai.chat.completions.create(model=twin_id, stream=True, max_tokens=12,
                                            messages=[{"role": "user", "content": DEMO_PROMPT}])
    pieces, citations, versions = [], [], set()
    for chunk in stream:
        versions.add(chunk.system_fingerprint)
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        citations = (chunk.model_extra or {}).get("citations") or citations
    assert "".join(pieces).strip() and versions == {champion.version}
    own_documents = {doc["id"] for doc in view["raw"]}
    assert citations and {c["document_id"] for c in citations} <= own_documents

    # The person forgets one of their blog posts: each stage lets go of what it made of it, and a
    # crawl of the blog (the post is still online) does not bring it back.
    post = next(doc for doc in view["raw"] if doc["platform"] == "blog" and len(doc["content"]) > 500)
    assert vectors.count_points(client, collection, document_id=post["id"]) > 0
    assert asyncio.run(what_is_left_of(settings, post["id"]))["samples"] > 0
    with httpx.Client(base_url=f"http://{settings.host}:{settings.web_port}", headers=bearer, timeout=30) as web:
        assert web.post(f"/api/twins/{twin_id}/documents/{post['id']}/forget").status_code == 202

        def forgotten() -> bool:
            left = asyncio.run(what_is_left_of(settings, post["id"]))
            return (left["clean"]["withdrawn"] and left["samples"] == 0
                    and vectors.count_points(client, collection, document_id=post["id"]) == 0)

        wait_for(forgotten, 120, "forgetting the post")
        left = asyncio.run(what_is_left_of(settings, post["id"]))
        assert left["raw"]["content"] == left["clean"]["content"] == "" and left["raw"]["withdrawn_at"]
        assert web.get(f"/api/twins/{twin_id}/status").json()["counts"]["forgotten"] == 1

        # The champion learned from the post: a version without it is trained at once.
        def retrained() -> list[dict]:
            jobs = web.get(f"/api/twins/{twin_id}/status").json()["training_jobs"]
            return [job for job in jobs if job["dataset_version"] != champion.tags.get("dataset_version")
                    and job["state"] in ("succeeded", "failed")]

        wait_for(retrained, 600, "training a version without the post")
        [job] = retrained()
        assert post["id"] in asyncio.run(documents_in(settings, champion.tags["dataset_version"]))
        assert post["id"] not in asyncio.run(documents_in(settings, job["dataset_version"]))

        blog_profile = next(p["id"] for p in web.get(f"/api/twins/{twin_id}").json()["profiles"]
                            if p["platform"] == "blog")
        [recrawl] = web.post(f"/api/twins/{twin_id}/crawl", json={"profile_id": blog_profile}).json()["request_ids"]

        def recrawled() -> bool:
            jobs = web.get(f"/api/twins/{twin_id}/status").json()["crawl"]["jobs"]
            return any(job["id"] == recrawl and job["state"] == "succeeded" for job in jobs)

        wait_for(recrawled, 120, "the re-crawl of the blog")
    assert asyncio.run(what_is_left_of(settings, post["id"]))["raw"]["content"] == ""
    assert vectors.count_points(client, collection, document_id=post["id"]) == 0
