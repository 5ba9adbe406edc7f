"""Fixtures for the web's tests: the real app served by uvicorn on loopback, over a real
SQLite warehouse and a real broker, and a small stand-in inference API (also on loopback)."""
from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from llmtwin.infra.process import free_port
from llmtwin.settings import Settings
from llmtwin.warehouse import Warehouse, open_warehouse
from twin_web.app import create_app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port for the block; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # surfaces why it could not start
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class FakeInference:
    """Answers /v1/generate the way the inference API does; remembers what it was asked."""

    tokens: list[str] = field(default_factory=lambda: ["Shipping ", "small\n", "beats ", "waiting."])
    citations: list[dict[str, Any]] = field(default_factory=lambda: [
        {"chunk_id": "c1", "document_id": "d1", "link": "https://ada.example/posts/ship", "title": "Ship it",
         "score": 0.91}])
    refuse_with: tuple[int, str] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/generate")
        async def generate(request: Request):
            self.requests.append(await request.json())
            if self.refuse_with:
                status, detail = self.refuse_with
                return JSONResponse({"error": {"message": detail, "type": "not_found", "code": "no_model"}},
                                    status_code=status)

            async def events():
                for token in self.tokens:
                    yield {"event": "token", "data": json.dumps({"text": token})}
                yield {"event": "citations", "data": json.dumps({"documents": self.citations, "links": []})}
                yield {"event": "done", "data": json.dumps({"model_version": "1"})}

            return EventSourceResponse(events())

        return app


@pytest.fixture
async def fake_inference() -> AsyncIterator[tuple[FakeInference, str]]:
    fake = FakeInference()
    async with serving(fake.app()) as url:
        yield fake, url


@pytest.fixture
async def web_warehouse(tmp_path) -> AsyncIterator[Warehouse]:
    opened = open_warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}")
    yield opened
    await opened.close()


@dataclass
class Web:
    url: str
    settings: Settings
    warehouse: Warehouse
    inference: FakeInference

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30.0, **kwargs)


WebFactory = Callable[..., Any]


@pytest.fixture
async def start_web(bus_settings, web_warehouse, fake_inference) -> AsyncIterator[WebFactory]:
    """Starts the web with settings overrides; it opens its own producer (the lifespan's path)."""
    fake, inference_url = fake_inference
    running: list[Any] = []

    async def start(**overrides: Any) -> Web:
        settings = bus_settings.model_copy(update={"inference_api_url": inference_url,
                                                   "web_status_poll_seconds": 0.1, **overrides})
        context = serving(create_app(settings, warehouse=web_warehouse))
        url = await context.__aenter__()
        running.append(context)
        return Web(url, settings, web_warehouse, fake)

    yield start
    for context in reversed(running):
        await context.__aexit__(None, None, None)


@pytest.fixture
async def web(start_web) -> Web:
    """The open demo (no admin token)."""
    return await start_web()


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


async def csrf_from(client: httpx.AsyncClient, path: str) -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return CSRF_INPUT.search(page.text).group(1)
