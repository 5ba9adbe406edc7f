"""The pages a person uses: sign-in, twins, one twin's sources and progress, and writing.

Server-rendered; each form posts back here with the session's CSRF token. A form with a
mistake comes back with the message next to the field that caused it and what was typed
still in place. Successful forms redirect (post/redirect/get) with a short notice.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from llmtwin.domain import DocumentKind, Platform

from . import validation
from .security import CSRF_FIELD, csrf_token, csrf_valid
from .service import UploadTooLarge
from .uploads import archive_from_form, parse_upload_form
from .validation import FORMAT_LABELS, PLATFORM_EXAMPLES, PLATFORM_LABELS, InputError
from .writing import DEFAULT_TEMPERATURE, collect

if TYPE_CHECKING:
    from .app import Wiring

_FLASH = "flash"


class CsrfRefused(Exception):
    """A form arrived without this session's token: refused, nothing done."""


def sign_in_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/signin?next={quote(target, safe='')}"


def _safe_next(target: str | None) -> str:
    # Only paths on this site: never an absolute or protocol-relative URL (an open redirect).
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return "/"
    return target


def flash(request: Request, text: str, level: str = "info") -> None:
    request.session[_FLASH] = [*request.session.get(_FLASH, []), [level, text]]


def render(wiring: "Wiring", request: Request, template: str, context: dict[str, Any] | None = None,
           status_code: int = 200) -> Response:
    common = {
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token(request),
        "demo_open": wiring.gate.is_open,
        "signed_in": wiring.gate.signed_in(request),
        "flashes": request.session.pop(_FLASH, []),
        "platform_labels": PLATFORM_LABELS,
        "platform_examples": PLATFORM_EXAMPLES,
        "platforms": list(Platform),
        "format_labels": FORMAT_LABELS,
        "max_upload_mb": wiring.settings.web_max_upload_bytes / 1_000_000,
        "errors": {},
        "values": {},
    }
    return wiring.templates.TemplateResponse(request, template, {**common, **(context or {})},
                                             status_code=status_code)


def render_problem(wiring: "Wiring", request: Request, title: str, message: str, status_code: int) -> Response:
    return render(wiring, request, "problem.html", {"title": title, "message": message}, status_code)


async def checked_form(request: Request, form: FormData | None = None) -> FormData:
    form = form if form is not None else await request.form()
    submitted = form.get(CSRF_FIELD)
    if not csrf_valid(request, submitted if isinstance(submitted, str) else None):
        raise CsrfRefused()
    return form


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def router(wiring: "Wiring") -> APIRouter:
    public = APIRouter()
    private = APIRouter(dependencies=[Depends(wiring.gate.page_reader)])
    gate = wiring.gate

    # --- signing in ---------------------------------------------------------------------

    @public.get("/signin")
    async def sign_in_page(request: Request, next: str = "/") -> Response:
        if gate.signed_in(request):
            return _redirect(_safe_next(next))
        return render(wiring, request, "signin.html", {"next": _safe_next(next)})

    @public.post("/signin")
    async def sign_in(request: Request) -> Response:
        form = await checked_form(request)
        target = _safe_next(_text(form, "next"))
        if gate.is_open or gate.sign_in(request, _text(form, "token")):
            return _redirect(target)
        return render(wiring, request, "signin.html", {
            "next": target, "errors": {"signin": {"token": "That is not the admin token. Check it and try again."}},
        }, status_code=401)

    @public.post("/signout")
    async def sign_out(request: Request) -> Response:
        await checked_form(request)
        gate.sign_out(request)
        return _redirect("/" if gate.is_open else "/signin")

    # --- twins --------------------------------------------------------------------------

    async def twins_page(request: Request, *, errors: dict | None = None, values: dict | None = None,
                         status_code: int = 200) -> Response:
        twins = await wiring.service.list_twins()
        return render(wiring, request, "twins.html",
                      {"twins": twins, "errors": errors or {}, "values": values or {}}, status_code)

    @private.get("/")
    async def home(request: Request) -> Response:
        return await twins_page(request)

    @private.post("/twins")
    async def create_twin(request: Request) -> Response:
        form = await checked_form(request)
        try:
            twin, created = await wiring.service.create_twin(_text(form, "name"))
        except InputError as exc:
            return await twins_page(request, errors={"create": {exc.field: exc.message}},
                                    values={"create": {"name": _text(form, "name")}}, status_code=422)
        flash(request, f"Created the twin “{twin.name}”. Add where they write, then crawl." if created
              else f"The twin “{twin.name}” already exists; here it is.")
        return _redirect(f"/twins/{twin.id}")

    # --- one twin -----------------------------------------------------------------------

    async def twin_page(request: Request, twin_id: str, *, errors: dict | None = None,
                        values: dict | None = None, status_code: int = 200) -> Response:
        service = wiring.service
        twin = await service.get_twin(twin_id)
        context = {
            "twin": twin,
            "profiles": await service.profiles(twin_id),
            "status": await service.status(twin_id),
            "documents": await service.documents_by_platform(twin_id),
            "datasets": await service.dataset_versions(twin_id),
            "models": await service.model_versions(twin_id),
            "errors": errors or {},
            "values": values or {},
        }
        return render(wiring, request, "twin.html", context, status_code)

    @private.get("/twins/{twin_id}")
    async def show_twin(request: Request, twin_id: str) -> Response:
        return await twin_page(request, twin_id)

    @private.post("/twins/{twin_id}/profiles")
    async def add_profile(request: Request, twin_id: str) -> Response:
        form = await checked_form(request)
        typed = {name: _text(form, name) for name in ("platform", "url", "cadence_minutes")}
        try:
            profile = await wiring.service.add_profile(twin_id, typed["platform"], typed["url"],
                                                       typed["cadence_minutes"])
        except InputError as exc:
            return await twin_page(request, twin_id, errors={"profile": {exc.field: exc.message}},
                                   values={"profile": typed}, status_code=422)
        flash(request, f"Added {PLATFORM_LABELS[profile.platform]}: {profile.url}")
        return _redirect(f"/twins/{twin_id}#sources")

    @private.post("/twins/{twin_id}/archives")
    async def upload_archive(request: Request, twin_id: str) -> Response:
        try:
            form = await checked_form(request, await parse_upload_form(request, wiring.settings.web_max_upload_bytes))
            upload = archive_from_form(form)
            try:
                profile = await wiring.service.save_archive(twin_id, upload.platform, upload.filename, upload.read)
            finally:
                await upload.close()
        except InputError as exc:
            return await twin_page(request, twin_id, errors={"archive": {exc.field: exc.message}},
                                   status_code=413 if isinstance(exc, UploadTooLarge) else 422)
        flash(request, f"Uploaded the {PLATFORM_LABELS[profile.platform]} export. Crawl to import it.")
        return _redirect(f"/twins/{twin_id}#sources")

    @private.post("/twins/{twin_id}/profiles/{profile_id}/cadence")
    async def set_cadence(request: Request, twin_id: str, profile_id: str) -> Response:
        form = await checked_form(request)
        typed = _text(form, "cadence_minutes")
        try:
            profile = await wiring.service.set_cadence(twin_id, profile_id, typed)
        except InputError as exc:
            return await twin_page(request, twin_id, errors={f"cadence-{profile_id}": {exc.field: exc.message}},
                                   values={f"cadence-{profile_id}": {"cadence_minutes": typed}}, status_code=422)
        flash(request, f"{profile.url} is now crawled every {profile.cadence_minutes} minutes."
              if profile.cadence_minutes else f"{profile.url} is now crawled only when you ask.")
        return _redirect(f"/twins/{twin_id}#sources")

    @private.post("/twins/{twin_id}/crawl")
    async def crawl(request: Request, twin_id: str) -> Response:
        form = await checked_form(request)
        try:
            requests = await wiring.service.request_crawl(twin_id, _text(form, "profile_id") or None)
        except InputError as exc:
            return await twin_page(request, twin_id, errors={"crawl": {exc.field: exc.message}}, status_code=422)
        flash(request, f"Crawl requested for {len(requests)} source{'s' if len(requests) != 1 else ''}. "
                       "Progress shows below as it happens.")
        return _redirect(f"/twins/{twin_id}#progress")

    @private.post("/twins/{twin_id}/documents/{document_id}/forget")
    async def forget(request: Request, twin_id: str, document_id: str) -> Response:
        await checked_form(request)
        _, document = await wiring.service.forget_document(twin_id, document_id)
        flash(request, f"Forgetting “{document.title or document.link}”: its text, passages and training samples "
                       "are being deleted, and later crawls will skip it. If the model writing now learned from it, "
                       "a version without it is trained next and takes over if it beats the base model: "
                       "the current one is no bar, as it learned from what you took back.")
        return _redirect(f"/twins/{twin_id}#collected")

    # --- writing ------------------------------------------------------------------------

    async def write_page(request: Request, twin_id: str, *, errors: dict | None = None,
                         values: dict | None = None, answer: Any = None, status_code: int = 200) -> Response:
        twin = await wiring.service.get_twin(twin_id)
        return render(wiring, request, "write.html", {
            "twin": twin, "errors": errors or {}, "values": values or {"write": {"format": DocumentKind.POST.value}},
            "answer": answer}, status_code)

    @private.get("/twins/{twin_id}/write")
    async def show_write(request: Request, twin_id: str) -> Response:
        return await write_page(request, twin_id)

    @private.post("/twins/{twin_id}/write")
    async def write(request: Request, twin_id: str) -> Response:
        """The whole answer at once, for browsers without JavaScript (the page's script streams it instead)."""
        form = await checked_form(request)
        typed = {name: _text(form, name) for name in ("prompt", "links", "format")}
        await wiring.service.get_twin(twin_id)
        try:
            wanted = validation.writing_request(typed["prompt"], typed["links"], typed["format"])
        except InputError as exc:
            return await write_page(request, twin_id, errors={"write": {exc.field: exc.message}},
                                    values={"write": typed}, status_code=422)
        answer = await collect(wiring.inference.stream(twin_id, wanted, max_new_tokens=wiring.settings.max_new_tokens,
                                                       temperature=DEFAULT_TEMPERATURE))
        return await write_page(request, twin_id, values={"write": typed}, answer=answer,
                                status_code=502 if answer.error else 200)

    combined = APIRouter()
    combined.include_router(public)
    combined.include_router(private)
    return combined
