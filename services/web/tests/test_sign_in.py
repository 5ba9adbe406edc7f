"""With an admin token set, nothing is served before signing in (or sending the token)."""
from __future__ import annotations

import pytest
from pydantic import SecretStr

from .conftest import csrf_from

TOKEN = "correct horse battery staple"


@pytest.fixture
async def guarded(start_web):
    return await start_web(web_admin_token=SecretStr(TOKEN), web_session_secret=SecretStr("s" * 32))


async def test_pages_and_api_need_sign_in(guarded):
    async with guarded.client() as client:
        page = await client.get("/twins/ada?x=1")
        api = await client.get("/api/twins")
        signin = await client.get(page.headers["location"])
        health = await client.get("/healthz")
    assert page.status_code == 303 and page.headers["location"] == "/signin?next=%2Ftwins%2Fada%3Fx%3D1"
    assert api.status_code == 401 and "Authorization: Bearer" in api.json()["detail"]
    assert signin.status_code == 200 and 'id="signin-token"' in signin.text
    assert 'id="open-demo-notice"' not in signin.text
    assert health.status_code == 200


async def test_scripts_use_the_token_as_a_bearer(guarded):
    async with guarded.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        created = await client.post("/api/twins", json={"name": "Ada"})
    async with guarded.client(headers={"Authorization": "Bearer wrong"}) as client:
        refused = await client.get("/api/twins")
    assert created.status_code == 201 and refused.status_code == 401


async def test_signing_in_opens_the_pages_and_api_writes_need_the_page_token(guarded):
    async with guarded.client() as client:
        token = await csrf_from(client, "/signin")
        wrong = await client.post("/signin", data={"csrf_token": token, "token": "guess", "next": "/"})
        assert wrong.status_code == 401 and 'id="signin-token-error">That is not the admin token' in wrong.text
        forged = await client.post("/signin", data={"token": TOKEN, "next": "/"})
        assert forged.status_code == 403
        signed_in = await client.post("/signin", data={"csrf_token": token, "token": TOKEN,
                                                       "next": "https://evil.example/"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"  # no open redirect
        home = await client.get("/")
        assert home.status_code == 200 and "Sign out" in home.text
        fresh = await csrf_from(client, "/")
        assert fresh != token  # signing in starts a fresh session
        without_header = await client.post("/api/twins", json={"name": "Ada"})
        with_header = await client.post("/api/twins", json={"name": "Ada"}, headers={"X-CSRF-Token": fresh})
        assert without_header.status_code == 403 and with_header.status_code == 201
        out = await client.post("/signout", data={"csrf_token": fresh})
        after = await client.get("/")
    assert out.status_code == 303 and after.status_code == 303 and after.headers["location"].startswith("/signin")
