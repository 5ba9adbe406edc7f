"""The embedded vector store: Qdrant's REST API served over qdrant-client's own local engine.

qdrant-client's local mode (`QdrantClient(path=...)`) locks its folder to one process,
but in the embedded stack the embedder writes and the inference-api reads from separate
processes. This process owns the folder and serves the subset of Qdrant's REST API the
project uses, so every service talks to it through `QdrantClient(url=...)`: the same code
path as against a real Qdrant server, only the URL differs.

Request bodies are parsed with qdrant-client's REST models and handed to the engine; the
engine is not thread-safe (and its SQLite connections belong to the thread that opened
them), so every engine call runs on one dedicated worker thread and the loop never blocks.

    python -m llmtwin.infra.qdrant_server --path .data/qdrant --host 127.0.0.1 --port 6333
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from qdrant_client import QdrantClient
from qdrant_client.http import models

from ..observability import mount_observability
from .process import LocalServer

log = logging.getLogger("llmtwin.qdrant_server")

REQUESTS = Counter("twin_qdrant_requests_total", "Requests served by the local Qdrant server",
                   ["endpoint", "method", "status"])
REQUEST_SECONDS = Histogram("twin_qdrant_request_seconds", "Time to serve one request", ["endpoint"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))

T = TypeVar("T")


class CollectionNotFound(LookupError):
    pass


class CollectionAlreadyExists(ValueError):
    pass


class Engine:
    """qdrant-client's local engine, confined to one worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-engine")
        self._client: QdrantClient | None = None

    async def open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._client = await self._on_worker(QdrantClient, path=str(self.path))

    async def close(self) -> None:
        if self._client is not None:
            await self._on_worker(self._client.close)
        self._executor.shutdown(wait=True)

    async def run(self, operation: Callable[[QdrantClient], T]) -> T:
        return await self._on_worker(operation, self._client)

    async def on_collection(self, name: str, operation: Callable[[QdrantClient], T]) -> T:
        """Run an operation on an existing collection (or alias); 404 when there is none."""
        def checked(client: QdrantClient) -> T:
            if not client.collection_exists(name):
                raise CollectionNotFound(f"Not found: Collection `{name}` doesn't exist!")
            return operation(client)
        return await self.run(checked)

    async def _on_worker(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args, **kwargs))


def _ok(result: Any, started: float) -> JSONResponse:
    return JSONResponse({"result": to_jsonable_python(result), "status": "ok",
                         "time": time.perf_counter() - started})


def _error(status_code: int, message: str, started: float) -> JSONResponse:
    return JSONResponse({"status": {"error": message}, "time": time.perf_counter() - started},
                        status_code=status_code)


@cache
def _adapter(model: Any) -> TypeAdapter:
    return TypeAdapter(model)


async def _body(request: Request, model: Any) -> Any:
    """Parse a JSON body with a qdrant REST model (a class or a Union of classes)."""
    return _adapter(model).validate_json(await request.body() or b"{}")


def create_app(path: Path) -> FastAPI:
    engine = Engine(path)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await engine.open()
        yield
        await engine.close()

    app = FastAPI(title="llmtwin local qdrant", lifespan=lifespan, docs_url=None, redoc_url=None)
    mount_observability(app)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        request.state.started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:  # a fault of this server, not of the request
            log.exception("%s %s failed", request.method, request.url.path)
            response = _error(500, f"Service internal error: {exc}", request.state.started)
        route = request.scope.get("route")
        # Label by route template, never by raw path: collection names must not explode the series.
        endpoint = getattr(route, "path", "unmatched")
        REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - request.state.started)
        return response

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
        # The local engine raises ValueError for input it rejects (wrong dimension, bad filter...).
        return _error(400, str(exc), request.state.started)

    @app.get("/")
    async def root() -> dict[str, str]:
        # qdrant-client checks the server's version against its own at connect time.
        return {"title": "qdrant - vector search engine (llmtwin local)",
                "version": importlib.metadata.version("qdrant-client")}

    # --- collections ---------------------------------------------------------------------

    @app.get("/collections")
    async def get_collections(request: Request) -> JSONResponse:
        return _ok(await engine.run(lambda c: c.get_collections()), request.state.started)

    @app.get("/collections/{name}/exists")
    async def collection_exists(name: str, request: Request) -> JSONResponse:
        exists = await engine.run(lambda c: c.collection_exists(name))
        return _ok(models.CollectionExistence(exists=exists), request.state.started)

    @app.get("/collections/{name}")
    async def get_collection(name: str, request: Request) -> JSONResponse:
        return _ok(await engine.on_collection(name, lambda c: c.get_collection(name)), request.state.started)

    @app.put("/collections/{name}")
    async def create_collection(name: str, request: Request) -> JSONResponse:
        spec: models.CreateCollection = await _body(request, models.CreateCollection)

        def create(client: QdrantClient) -> bool:
            if client.collection_exists(name):
                raise CollectionAlreadyExists(f"Collection `{name}` already exists!")
            return client.create_collection(name, vectors_config=spec.vectors,
                                            sparse_vectors_config=spec.sparse_vectors, metadata=spec.metadata)
        return _ok(await engine.run(create), request.state.started)

    @app.patch("/collections/{name}")
    async def update_collection(name: str, request: Request) -> JSONResponse:
        spec: models.UpdateCollection = await _body(request, models.UpdateCollection)
        updated = await engine.on_collection(name, lambda c: c.update_collection(
            name, vectors_config=spec.vectors, sparse_vectors_config=spec.sparse_vectors, metadata=spec.metadata))
        return _ok(updated, request.state.started)

    @app.delete("/collections/{name}")
    async def delete_collection(name: str, request: Request) -> JSONResponse:
        return _ok(await engine.run(lambda c: c.delete_collection(name)), request.state.started)

    @app.put("/collections/{name}/index")
    async def create_payload_index(name: str, request: Request) -> JSONResponse:
        spec: models.CreateFieldIndex = await _body(request, models.CreateFieldIndex)
        result = await engine.on_collection(name, lambda c: c.create_payload_index(
            name, field_name=spec.field_name, field_schema=spec.field_schema))
        return _ok(result, request.state.started)

    # --- aliases -------------------------------------------------------------------------

    @app.post("/collections/aliases")
    async def update_aliases(request: Request) -> JSONResponse:
        spec: models.ChangeAliasesOperation = await _body(request, models.ChangeAliasesOperation)
        return _ok(await engine.run(lambda c: c.update_collection_aliases(spec.actions)), request.state.started)

    @app.get("/collections/{name}/aliases")
    async def get_collection_aliases(name: str, request: Request) -> JSONResponse:
        return _ok(await engine.run(lambda c: c.get_collection_aliases(name)), request.state.started)

    @app.get("/aliases")
    async def get_aliases(request: Request) -> JSONResponse:
        return _ok(await engine.run(lambda c: c.get_aliases()), request.state.started)

    # --- points --------------------------------------------------------------------------
    # The engine applies every write before it answers, so `wait=true` always holds.

    @app.put("/collections/{name}/points")
    async def upsert(name: str, request: Request) -> JSONResponse:
        spec = await _body(request, models.PointInsertOperations)
        points = spec.points if isinstance(spec, models.PointsList) else spec.batch
        result = await engine.on_collection(name, lambda c: c.upsert(
            name, points=points, update_filter=spec.update_filter, update_mode=spec.update_mode))
        return _ok(result, request.state.started)

    @app.post("/collections/{name}/points/delete")
    async def delete_points(name: str, request: Request) -> JSONResponse:
        selector = await _body(request, models.PointsSelector)
        return _ok(await engine.on_collection(name, lambda c: c.delete(name, selector)), request.state.started)

    @app.post("/collections/{name}/points")
    async def retrieve(name: str, request: Request) -> JSONResponse:
        spec: models.PointRequest = await _body(request, models.PointRequest)
        records = await engine.on_collection(name, lambda c: c.retrieve(
            name, spec.ids, with_payload=_default(spec.with_payload, True),
            with_vectors=_default(spec.with_vector, False)))
        return _ok(records, request.state.started)

    @app.get("/collections/{name}/points/{point_id}")
    async def get_point(name: str, point_id: str, request: Request) -> JSONResponse:
        key: int | str = int(point_id) if point_id.isdigit() else point_id
        records = await engine.on_collection(name, lambda c: c.retrieve(name, [key], with_vectors=True))
        if not records:
            return _error(404, f"Not found: No point with id {point_id} found", request.state.started)
        return _ok(records[0], request.state.started)

    @app.post("/collections/{name}/points/scroll")
    async def scroll(name: str, request: Request) -> JSONResponse:
        spec: models.ScrollRequest = await _body(request, models.ScrollRequest)
        points, next_offset = await engine.on_collection(name, lambda c: c.scroll(
            name, scroll_filter=spec.filter, limit=_default(spec.limit, 10), order_by=spec.order_by,
            offset=spec.offset, with_payload=_default(spec.with_payload, True),
            with_vectors=_default(spec.with_vector, False)))
        return _ok(models.ScrollResult(points=points, next_page_offset=next_offset), request.state.started)

    @app.post("/collections/{name}/points/count")
    async def count(name: str, request: Request) -> JSONResponse:
        spec: models.CountRequest = await _body(request, models.CountRequest)
        return _ok(await engine.on_collection(name, lambda c: c.count(name, count_filter=spec.filter)),
                   request.state.started)

    @app.post("/collections/{name}/points/query")
    async def query_points(name: str, request: Request) -> JSONResponse:
        spec: models.QueryRequest = await _body(request, models.QueryRequest)
        response = await engine.on_collection(name, lambda c: c.query_points(
            name, query=spec.query, using=spec.using, prefetch=spec.prefetch, query_filter=spec.filter,
            search_params=spec.params, limit=_default(spec.limit, 10), offset=spec.offset,
            with_payload=_default(spec.with_payload, False), with_vectors=_default(spec.with_vector, False),
            score_threshold=spec.score_threshold, lookup_from=spec.lookup_from))
        return _ok(response, request.state.started)

    return app


def _default(value: T | None, default: T) -> T:
    """The REST API's documented default for a field the request left out."""
    return default if value is None else value


def qdrant_local(path: Path, host: str = "127.0.0.1", port: int = 6333,
                 log_path: Path | None = None) -> LocalServer:
    """The local Qdrant server as a child process (call `.start()`); its data lives under `path`."""
    argv = [sys.executable, "-m", "llmtwin.infra.qdrant_server", "--path", str(path),
            "--host", host, "--port", str(port)]
    return LocalServer("qdrant-local", argv, host, port, log_path=log_path)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, required=True, help="folder of the local engine's data")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6333)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One worker: the engine's folder lock admits a single process.
    uvicorn.run(create_app(args.path.resolve()), host=args.host, port=args.port, workers=1,
                access_log=False, log_level="info")


if __name__ == "__main__":
    main()
