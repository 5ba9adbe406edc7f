"""The web service: pages for people, a JSON API for scripts, one app.

`create_app` wires everything explicitly; nothing is opened at import time. Adapters
that are handed in belong to the caller; the ones the app opens itself (from settings,
when the app starts) it also closes.
"""
from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from llmtwin.bus.producer import EventProducer
from llmtwin.observability import mount_observability
from llmtwin.settings import Settings
from llmtwin.warehouse import Warehouse, open_warehouse

from . import api, pages
from .security import Gate, SignInRequired
from .service import BusUnavailable, EventSender, NotFound, TwinService, UploadTooLarge
from .validation import InputError
from .writing import InferenceClient, http_client_for_inference

PACKAGE_DIR = Path(__file__).parent
SESSION_COOKIE = "twin_session"


@dataclass
class Wiring:
    """What the routes use. The service and the inference client exist once the app has started."""

    settings: Settings
    gate: Gate
    templates: Jinja2Templates
    _service: TwinService | None = field(default=None, init=False)
    _inference: InferenceClient | None = field(default=None, init=False)

    @property
    def service(self) -> TwinService:
        if self._service is None:
            raise RuntimeError("the web app has not started (its lifespan did not run)")
        return self._service

    @property
    def inference(self) -> InferenceClient:
        if self._inference is None:
            raise RuntimeError("the web app has not started (its lifespan did not run)")
        return self._inference

    @property
    def started(self) -> bool:
        return self._service is not None

    def start(self, service: TwinService, inference: InferenceClient) -> None:
        self._service, self._inference = service, inference

    def stop(self) -> None:
        self._service = self._inference = None


def create_app(settings: Settings, *, warehouse: Warehouse | None = None, producer: EventSender | None = None,
               http_client: httpx.AsyncClient | None = None) -> FastAPI:
    wiring = Wiring(settings=settings, gate=Gate(settings.web_admin_token),
                    templates=Jinja2Templates(directory=PACKAGE_DIR / "templates"))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as owned:
            store = warehouse
            if store is None:
                store = open_warehouse(settings.warehouse)
                owned.push_async_callback(store.close)
            sender = producer
            if sender is None:
                sender = await EventProducer(settings).start()
                owned.push_async_callback(sender.stop)
            http = http_client
            if http is None:
                http = http_client_for_inference()
                owned.push_async_callback(http.aclose)
            wiring.start(TwinService(settings, store, sender), InferenceClient(http, settings.inference_api_url))
            try:
                yield
            finally:
                wiring.stop()

    app = FastAPI(title="LLM Twin", lifespan=lifespan)
    secret = settings.web_session_secret.get_secret_value() if settings.web_session_secret else secrets.token_urlsafe(32)
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie=SESSION_COOKIE, same_site="lax",
                       https_only=False, max_age=14 * 24 * 3600)
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static")
    app.include_router(api.router(wiring))
    app.include_router(pages.router(wiring))
    _add_error_handlers(app, wiring)
    mount_observability(app, ready=lambda: wiring.started)
    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _add_error_handlers(app: FastAPI, wiring: Wiring) -> None:
    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, _: SignInRequired) -> Response:
        return RedirectResponse(pages.sign_in_url(request), status_code=303)

    @app.exception_handler(InputError)
    async def bad_input(request: Request, exc: InputError) -> Response:
        # Forms catch their own input errors to show them next to the field; this answers the rest.
        if _wants_json(request):
            return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=422)
        return pages.render_problem(wiring, request, "That did not work", exc.message, status_code=422)

    @app.exception_handler(pages.CsrfRefused)
    async def csrf_refused(request: Request, _: pages.CsrfRefused) -> Response:
        return pages.render_problem(wiring, request, "The form was not accepted",
                                    "It arrived without this page's security token, so nothing was done. "
                                    "Go back, reload the page and send the form again.", status_code=403)

    @app.exception_handler(UploadTooLarge)
    async def too_large(request: Request, exc: UploadTooLarge) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=413)
        return pages.render_problem(wiring, request, "That file is too large", exc.message, status_code=413)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field_name = ".".join(str(part) for part in first["loc"] if part not in ("body", "query", "path"))
        message = "is required" if first.get("type") == "missing" else first["msg"]
        detail = f"{field_name}: {message}" if field_name else message
        return JSONResponse({"detail": detail, "field": field_name or None}, status_code=422)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return pages.render_problem(wiring, request, "Not found", str(exc), status_code=404)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> Response:
        # Starlette still logs the exception with its traceback; the person gets a sentence.
        message = ("Something went wrong on the server, so this did not work. Try again; "
                   "if it keeps happening, the web service's log says why.")
        if _wants_json(request):
            return JSONResponse({"detail": message}, status_code=500)
        return pages.render_problem(wiring, request, "Something went wrong", message, status_code=500)

    @app.exception_handler(BusUnavailable)
    async def bus_down(request: Request, exc: BusUnavailable) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=503)
        return pages.render_problem(wiring, request, exc.title, str(exc), status_code=503)
