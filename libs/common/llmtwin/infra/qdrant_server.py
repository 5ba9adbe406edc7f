"""The embedded vector store: Qdrant's REST API served over Qdrant's own engine (qdrant-edge).

In the embedded stack the embedder writes and the inference-api reads from separate
processes, and the engine's folder admits one process. This process owns the folder
(llmtwin.infra.edge_store) and serves the subset of Qdrant's REST API the project uses, so
every service talks to it through `QdrantClient(url=...)`: the same code path as against a
real Qdrant server, only the URL differs.

Request bodies are parsed with qdrant-client's REST models and handed to the store. Its
calls take milliseconds and hold the GIL, so they run on the event loop itself, one at a
time, which also makes each request atomic against the others.

    python -m llmtwin.infra.qdrant_server --path .data/qdrant --host 127.0.0.1 --port 6333
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import sys
import time
from contextlib import asynccontextmanager, suppress
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from qdrant_client.http import models

from ..observability import mount_observability
from .edge_store import FLUSH_INTERVAL_S, CollectionAlreadyExists, CollectionNotFound, EdgeStore
from .process import LocalServer

log = logging.getLogger("llmtwin.qdrant_server")

REQUESTS = Counter("twin_qdrant_requests_total", "Requests served by the local Qdrant server",
                   ["endpoint", "method", "status"])
REQUEST_SECONDS = Histogram("twin_qdrant_request_seconds", "Time to serve one request", ["endpoint"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))

class RequestMetrics:
    """Counts and times every request by its route, and answers a fault of this server with a 500.

    A plain ASGI middleware: Starlette's `@app.middleware("http")` added about 2 ms to a
    search's p90 and p99 (a task and a stream per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = scope.setdefault("state", {})["started"] = time.perf_counter()  # request.state.started
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except Exception as exc:  # a fault of this server, not of the request
            log.exception("%s %s failed", scope["method"], scope["path"])
            if status:
                raise  # too late for an error response
            status = 500
            await _error(status, f"Service internal error: {exc}", started)(scope, receive, send)
        finally:
            # Label by route template, never by raw path: collection names must not explode the series.
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(endpoint, scope["method"], str(status)).inc()
            REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - started)


def _ok(result: Any, started: float) -> JSONResponse:
    return JSONResponse({"result": to_jsonable_python(result), "status": "ok",
                         "time": time.perf_counter() - started})


def _error(status_code: int, message: str, started: float) -> JSONResponse:
    return JSONResponse({"status": {"error": message}, "time": time.perf_counter() - started},
                        status_code=status_code)


# A batch first, then a list of points. pydantic's default ("smart") union validates a body
# against both: 5.7 vs 3.5 ms for a batch of 128 points (the embedder writes batches).
UPSERT_BODY = Annotated[models.PointInsertOperations, Field(union_mode="left_to_right")]


@cache
def _adapter(model: Any) -> TypeAdapter:
    return TypeAdapter(model)


async def _body(request: Request, model: Any) -> Any:
    """Parse a JSON body with a qdrant REST model (a class or a Union of classes)."""
    return _adapter(model).validate_json(await request.body() or b"{}")


def create_app(path: Path) -> FastAPI:
    store = EdgeStore(path)

    async def flush_periodically() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                store.flush()
            except Exception:  # the write-ahead log still holds the writes; try again next time
                log.exception("flushing the vector store failed")

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        store.open()
        flusher = asyncio.create_task(flush_periodically())
        yield
        flusher.cancel()
        with suppress(asyncio.CancelledError):
            await flusher
        store.close()

    app = FastAPI(title="llmtwin local qdrant", lifespan=lifespan, docs_url=None, redoc_url=None)
    mount_observability(app)

    app.add_middleware(RequestMetrics)

    @app.exception_handler(CollectionNotFound)
    async def not_found(request: Request, exc: CollectionNotFound) -> JSONResponse:
        return _error(404, str(exc), request.state.started)

    @app.exception_handler(CollectionAlreadyExists)
    async def conflict(request: Request, exc: CollectionAlreadyExists) -> JSONResponse:
        return _error(409, str(exc), request.state.started)

    @app.exception_handler(ValidationError)
    async def invalid_body(request: Request, exc: ValidationError) -> JSONResponse:
        return _error(400, f"Format error in JSON body: {exc}", request.state.started)

    @app.exception_handler(ValueError)
    async def bad_request(request: Request, exc: ValueError) -> JSONResponse:
        # The store raises ValueError for input it rejects (wrong dimension, bad id, unsupported query...).
        return _error(400, str(exc), request.state.started)

    @app.get("/")
    async def root() -> dict[str, str]:
        # qdrant-client checks the server's version against its own at connect time.
        return {"title": "qdrant - vector search engine (llmtwin local)",
                "version": importlib.metadata.version("qdrant-client")}

    # --- collections ---------------------------------------------------------------------

    @app.get("/collections")
    async def get_collections(request: Request) -> JSONResponse:
        names = [models.CollectionDescription(name=name) for name in store.names()]
        return _ok(models.CollectionsResponse(collections=names), request.state.started)

    @app.get("/collections/{name}/exists")
    async def collection_exists(name: str, request: Request) -> JSONResponse:
        return _ok(models.CollectionExistence(exists=store.exists(name)), request.state.started)

    @app.get("/collections/{name}")
    async def get_collection(name: str, request: Request) -> JSONResponse:
        return _ok(store.info(name), request.state.started)

    @app.put("/collections/{name}")
    async def create_collection(name: str, request: Request) -> JSONResponse:
        return _ok(store.create(name, await _body(request, models.CreateCollection)), request.state.started)

    @app.delete("/collections/{name}")
    async def delete_collection(name: str, request: Request) -> JSONResponse:
        return _ok(store.delete(name), request.state.started)

    @app.put("/collections/{name}/index")
    async def create_payload_index(name: str, request: Request) -> JSONResponse:
        return _ok(store.create_index(name, await _body(request, models.CreateFieldIndex)), request.state.started)

    # --- points --------------------------------------------------------------------------
    # The store applies every write before it answers, so `wait=true` always holds.

    @app.put("/collections/{name}/points")
    async def upsert(name: str, request: Request) -> JSONResponse:
        return _ok(store.upsert(name, await _body(request, UPSERT_BODY)), request.state.started)

    @app.post("/collections/{name}/points/delete")
    async def delete_points(name: str, request: Request) -> JSONResponse:
        return _ok(store.delete_points(name, await _body(request, models.PointsSelector)), request.state.started)

    @app.post("/collections/{name}/points")
    async def retrieve(name: str, request: Request) -> JSONResponse:
        return _ok(store.retrieve(name, await _body(request, models.PointRequest)), request.state.started)

    @app.post("/collections/{name}/points/scroll")
    async def scroll(name: str, request: Request) -> JSONResponse:
        return _ok(store.scroll(name, await _body(request, models.ScrollRequest)), request.state.started)

    @app.post("/collections/{name}/points/count")
    async def count(name: str, request: Request) -> JSONResponse:
        return _ok(store.count(name, await _body(request, models.CountRequest)), request.state.started)

    @app.post("/collections/{name}/points/query")
    async def query_points(name: str, request: Request) -> JSONResponse:
        return _ok(store.query(name, await _body(request, models.QueryRequest)), request.state.started)

    return app


def qdrant_local(path: Path, host: str = "127.0.0.1", port: int = 6333,
                 log_path: Path | None = None) -> LocalServer:
    """The local Qdrant server as a child process (call `.start()`); its data lives under `path`."""
    argv = [sys.executable, "-m", "llmtwin.infra.qdrant_server", "--path", str(path),
            "--host", host, "--port", str(port)]
    return LocalServer("qdrant-local", argv, host, port, log_path=log_path)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, required=True, help="folder of the vector store's data")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6333)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One worker: the store's folder lock admits a single process.
    uvicorn.run(create_app(args.path.resolve()), host=args.host, port=args.port, workers=1,
                access_log=False, log_level="info")


if __name__ == "__main__":
    main()
