"""Who may use the page, and proof that a form came from it.

- With `web_admin_token` set, a person signs in once with the token (the session cookie,
  signed with `web_session_secret`, then says so); scripts send `Authorization: Bearer <token>`.
  Unset, the embedded demo is open to whoever can reach it, and the page says so.
- Every form carries the session's CSRF token. The page's own scripts send it as the
  `X-CSRF-Token` header. API calls that change something are also refused when the browser
  says they come from another site (`Origin`, `Sec-Fetch-Site`), so an open demo on
  loopback cannot be driven by a page elsewhere.
"""
from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from pydantic import SecretStr

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SESSION_CSRF = "csrf"
_SESSION_SIGNED_IN = "signed_in"


class SignInRequired(Exception):
    """A page was asked for without signing in: the app answers with a redirect to the sign-in page."""


class Gate:
    def __init__(self, admin_token: SecretStr | None) -> None:
        self._token = admin_token.get_secret_value() if admin_token else None

    @property
    def is_open(self) -> bool:
        return self._token is None

    def token_matches(self, candidate: str | None) -> bool:
        return self._token is not None and candidate is not None and secrets.compare_digest(
            candidate.encode(), self._token.encode())

    def sign_in(self, request: Request, candidate: str | None) -> bool:
        if not self.token_matches(candidate):
            return False
        # A fresh CSRF token with the new privilege: one fixed before sign-in must not carry over.
        request.session.clear()
        request.session[_SESSION_SIGNED_IN] = True
        return True

    @staticmethod
    def sign_out(request: Request) -> None:
        request.session.clear()

    def bearer_ok(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    def signed_in(self, request: Request) -> bool:
        return self.is_open or bool(request.session.get(_SESSION_SIGNED_IN)) or self.bearer_ok(request)

    # --- FastAPI dependencies -----------------------------------------------------------

    async def page_reader(self, request: Request) -> None:
        if not self.signed_in(request):
            raise SignInRequired()

    async def api_reader(self, request: Request) -> None:
        if not self.signed_in(request):
            raise HTTPException(401, "Sign in first, or send the admin token as 'Authorization: Bearer <token>'.")

    async def api_writer(self, request: Request) -> None:
        await self.api_reader(request)
        if self.bearer_ok(request):
            return  # a script holding the token: not a browser, no CSRF to fear
        if _cross_site(request):
            raise HTTPException(403, "Requests from other web sites are refused.")
        if not self.is_open and not csrf_valid(request, request.headers.get(CSRF_HEADER)):
            raise HTTPException(403, "This request lacks the page's security token; reload the page and try again.")


def csrf_token(request: Request) -> str:
    token = request.session.get(_SESSION_CSRF)
    if not token:
        token = request.session[_SESSION_CSRF] = secrets.token_urlsafe(32)
    return token


def csrf_valid(request: Request, submitted: str | None) -> bool:
    expected = request.session.get(_SESSION_CSRF)
    return bool(expected and submitted) and secrets.compare_digest(str(submitted).encode(), expected.encode())


def _cross_site(request: Request) -> bool:
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if not origin:
        return False  # scripts and same-origin GET-style requests send none
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()
