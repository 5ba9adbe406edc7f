"""The JSON API: what the pages' scripts and the demo seeding script call.

Errors come back as `{"detail": "<a sentence>", "field": "<the input it is about>"}`.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from . import validation
from .uploads import read_archive_upload
from .writing import DEFAULT_TEMPERATURE

if TYPE_CHECKING:
    from .app import Wiring


class TwinIn(BaseModel):
    name: str


class ProfileIn(BaseModel):
    platform: str
    url: str
    cadence_minutes: int | None = None


class CadenceIn(BaseModel):
    cadence_minutes: int | None = None


class CrawlIn(BaseModel):
    profile_id: str | None = None


class GenerateIn(BaseModel):
    prompt: str
    links: list[str] = Field(default_factory=list)
    format: str = "post"
    max_new_tokens: int | None = Field(default=None, ge=1, le=2048)
    temperature: float = Field(default=DEFAULT_TEMPERATURE, ge=0.0, le=2.0)


def router(wiring: "Wiring") -> APIRouter:
    gate = wiring.gate
    reads = APIRouter(prefix="/api", dependencies=[Depends(gate.api_reader)])
    writes = APIRouter(prefix="/api", dependencies=[Depends(gate.api_writer)])

    @reads.get("/twins")
    async def list_twins() -> list[dict[str, Any]]:
        return [t.model_dump(mode="json") for t in await wiring.service.list_twins()]

    @writes.post("/twins", status_code=201)
    async def create_twin(body: TwinIn, response: Response) -> dict[str, Any]:
        twin, created = await wiring.service.create_twin(body.name)
        if not created:
            response.status_code = 200
        return twin.model_dump(mode="json")

    @reads.get("/twins/{twin_id}")
    async def get_twin(twin_id: str) -> dict[str, Any]:
        twin = await wiring.service.get_twin(twin_id)
        profiles = await wiring.service.profiles(twin_id)
        return {**twin.model_dump(mode="json"), "profiles": [p.model_dump(mode="json") for p in profiles]}

    @writes.post("/twins/{twin_id}/profiles", status_code=201)
    async def add_profile(twin_id: str, body: ProfileIn) -> dict[str, Any]:
        profile = await wiring.service.add_profile(twin_id, body.platform, body.url, body.cadence_minutes)
        return profile.model_dump(mode="json")

    @writes.patch("/twins/{twin_id}/profiles/{profile_id}")
    async def set_cadence(twin_id: str, profile_id: str, body: CadenceIn) -> dict[str, Any]:
        profile = await wiring.service.set_cadence(twin_id, profile_id, body.cadence_minutes)
        return profile.model_dump(mode="json")

    @writes.post("/twins/{twin_id}/archives", status_code=201)
    async def upload_archive(twin_id: str, request: Request) -> dict[str, Any]:
        upload = await read_archive_upload(request, wiring.settings.web_max_upload_bytes)
        try:
            profile = await wiring.service.save_archive(twin_id, upload.platform, upload.filename, upload.read)
        finally:
            await upload.close()
        return profile.model_dump(mode="json")

    @writes.post("/twins/{twin_id}/crawl", status_code=202)
    async def crawl(twin_id: str, body: CrawlIn | None = None) -> dict[str, Any]:
        requests = await wiring.service.request_crawl(twin_id, body.profile_id if body else None)
        return {"request_ids": [r.id for r in requests],
                "requests": [r.model_dump(mode="json") for r in requests]}

    @writes.post("/twins/{twin_id}/documents/{document_id}/forget", status_code=202)
    async def forget(twin_id: str, document_id: str) -> dict[str, Any]:
        request, _ = await wiring.service.forget_document(twin_id, document_id)
        return {"request_id": request.id, "document_id": document_id}

    @reads.get("/twins/{twin_id}/status")
    async def status(twin_id: str) -> dict[str, Any]:
        return await wiring.service.status(twin_id)

    @reads.get("/twins/{twin_id}/events")
    async def status_events(twin_id: str) -> EventSourceResponse:
        first = await wiring.service.status(twin_id)  # an unknown twin is a 404, not an empty stream
        return EventSourceResponse(_status_changes(wiring, twin_id, first), ping=15)

    @reads.get("/twins/{twin_id}/models")
    async def models(twin_id: str) -> list[dict[str, Any]]:
        await wiring.service.get_twin(twin_id)
        return await wiring.service.model_versions(twin_id)

    @writes.post("/twins/{twin_id}/generate")
    async def generate(twin_id: str, body: GenerateIn) -> EventSourceResponse:
        await wiring.service.get_twin(twin_id)
        request = validation.writing_request(body.prompt, body.links, body.format)
        events = wiring.inference.stream(
            twin_id, request, max_new_tokens=body.max_new_tokens or wiring.settings.max_new_tokens,
            temperature=body.temperature)
        return EventSourceResponse((event.as_sse() async for event in events), ping=15)

    combined = APIRouter()
    combined.include_router(reads)
    combined.include_router(writes)
    return combined


async def _status_changes(wiring: "Wiring", twin_id: str, first: dict[str, Any]) -> AsyncIterator[dict[str, str]]:
    """The status now, then again whenever it changes (the warehouse is polled; stages write to it)."""
    last = None
    status = first
    while True:
        encoded = json.dumps(status, sort_keys=True)
        if encoded != last:
            yield {"event": "status", "data": encoded}
            last = encoded
        await asyncio.sleep(wiring.settings.web_status_poll_seconds)
        status = await wiring.service.status(twin_id)
