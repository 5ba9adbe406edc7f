"""The demo twin: seed it through the web's API and follow it through the loop."""
from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

DEMO_TWIN = "Ada Quill"
DEMO_PROMPT = "Write a LinkedIn post about testing data pipelines before they reach production."

# Milestones of the loop, in order, as read from the web's status API.
MILESTONES = (
    ("crawled", lambda s: s["counts"]["raw_documents"] > 0 and all(j["state"] in ("succeeded", "failed") for j in s["crawl"]["jobs"])),
    ("cleaned", lambda s: s["counts"]["raw_documents"] > 0 and s["counts"]["clean_documents"] >= s["counts"]["raw_documents"]),
    ("embedded", lambda s: s["counts"]["chunk_records"] > 0 and s["counts"]["chunk_records"] >= s["counts"]["clean_documents"] - s["counts"].get("duplicates", 0)),
    ("samples built", lambda s: s["counts"]["instruct_samples"] > 0),
    ("dataset version cut", lambda s: s["counts"]["dataset_versions"] > 0),
    ("training job finished", lambda s: any(j["state"] in ("succeeded", "failed") for j in s["training_jobs"])),
    ("champion promoted", lambda s: s.get("champion") is not None),
)


def seed_demo(web: httpx.Client, blog_url: str, sources: dict[str, str]) -> str:
    """Create the demo twin, add its three profiles, request a crawl; returns the twin id."""
    twin = web.post("/api/twins", json={"name": DEMO_TWIN})
    if twin.status_code not in (200, 201, 409):
        twin.raise_for_status()
    if twin.status_code == 409:  # loaded by an earlier run
        twin_id = next(t["id"] for t in web.get("/api/twins").json() if t["name"] == DEMO_TWIN)
    else:
        twin_id = twin.json()["id"]
    for platform, url in (("linkedin", sources["linkedin"]), ("blog", blog_url), ("github", sources["github"])):
        response = web.post(f"/api/twins/{twin_id}/profiles", json={"platform": platform, "url": url})
        if response.status_code not in (200, 201, 409):
            raise RuntimeError(f"adding the {platform} profile failed: {response.text}")
    web.post(f"/api/twins/{twin_id}/crawl").raise_for_status()
    return twin_id


def follow_pipeline(web: httpx.Client, twin_id: str, timeout: float,
                    report: Callable[[str], None] = print, milestones=MILESTONES) -> dict[str, float]:
    """Poll the twin's status until every milestone is reached; returns the seconds to each."""
    started, reached = time.monotonic(), {}
    for name, done in milestones:
        while True:
            status = web.get(f"/api/twins/{twin_id}/status").json()
            if done(status):
                break
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the twin did not reach '{name}' in {timeout:.0f}s; status: {json.dumps(status)}")
            time.sleep(1.0)
        reached[name] = time.monotonic() - started
        report(f"  ✓ {name} after {reached[name]:.1f}s   {json.dumps(status.get('counts', {}))}")
    return reached


def wait_until_served(api_url: str, twin_id: str, version: str, timeout: float) -> float:
    """Poll the inference API until it answers for the twin with model `version`; returns the seconds
    waited. It loads a champion in the background (at start-up, or after a promotion), so a champion
    the registry already names may not be answering yet: asking then got a 503."""
    started = time.monotonic()
    with httpx.Client(base_url=api_url, timeout=10) as api:
        while True:
            try:
                card = api.get(f"/v1/models/{twin_id}")
                served = card.json().get("model_version") if card.status_code == 200 else None
            except httpx.TransportError:  # still starting
                served = None
            if served == str(version):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the inference API did not serve version {version} of {twin_id} in "
                                   f"{timeout:.0f}s (it serves {served!r})")
            time.sleep(1.0)
