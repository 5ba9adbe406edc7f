"""The pages: forms need the session's CSRF token, mistakes come back next to their field."""
from __future__ import annotations

import re

from llmtwin.warehouse import Collection

from .conftest import csrf_from
from .test_api import add_pipeline_results


async def test_a_twin_is_created_from_the_form_only_with_the_csrf_token(web):
    async with web.client() as client:
        home = await client.get("/")
        forged = await client.post("/twins", data={"name": "Ada"})
        wrong = await client.post("/twins", data={"name": "Ada", "csrf_token": "guessed"})
        assert await web.warehouse.count(Collection.TWINS) == 0
        token = await csrf_from(client, "/")
        created = await client.post("/twins", data={"name": "Ada Lovelace", "csrf_token": token})
        landing = await client.get(created.headers["location"])
    assert 'id="open-demo-notice"' in home.text and 'id="no-twins"' in home.text
    assert forged.status_code == 403 and "security token" in forged.text
    assert wrong.status_code == 403
    assert created.status_code == 303 and created.headers["location"] == "/twins/ada-lovelace"
    assert "Created the twin “Ada Lovelace”" in landing.text and "<h1>Ada Lovelace</h1>" in landing.text
    assert await web.warehouse.count(Collection.TWINS) == 1


async def test_a_csrf_token_from_another_session_is_refused(web):
    async with web.client() as attacker, web.client() as victim:
        stolen = await csrf_from(attacker, "/")
        await victim.get("/")
        refused = await victim.post("/twins", data={"name": "Ada", "csrf_token": stolen})
    assert refused.status_code == 403


async def test_form_mistakes_are_shown_next_to_their_field_with_what_was_typed(web):
    async with web.client() as client:
        token = await csrf_from(client, "/")
        nameless = await client.post("/twins", data={"name": "!!!", "csrf_token": token})
        await client.post("/twins", data={"name": "Ada", "csrf_token": token})
        bad_link = await client.post("/twins/ada/profiles", data={
            "csrf_token": token, "platform": "linkedin", "url": "https://github.com/ada", "cadence_minutes": "30"})
        good_link = await client.post("/twins/ada/profiles", data={
            "csrf_token": token, "platform": "github", "url": "https://github.com/ada", "cadence_minutes": ""})
        page = await client.get("/twins/ada")
    assert nameless.status_code == 422
    assert 'id="create-name-error">The name needs at least one Latin letter (A to Z) or digit' in nameless.text
    assert 'value="!!!"' in nameless.text
    assert bad_link.status_code == 422
    assert re.search(r'id="profile-url"[^>]*value="https://github.com/ada"[^>]*'
                     r'aria-describedby="profile-url-hint profile-url-error" aria-invalid="true" autofocus',
                     bad_link.text, re.S)
    assert 'id="profile-url-error">That is not a LinkedIn link' in bad_link.text
    assert '<option value="linkedin" selected>' in bad_link.text  # the choice is kept
    assert good_link.status_code == 303
    assert "Added GitHub: https://github.com/ada" in page.text
    assert '<a href="https://github.com/ada" rel="noopener noreferrer">' in page.text


async def test_upload_crawl_and_cadence_from_the_twin_page(start_web):
    web = await start_web(web_max_upload_bytes=100)
    async with web.client() as client:
        token = await csrf_from(client, "/")
        await client.post("/twins", data={"name": "Ada", "csrf_token": token})
        no_sources = await client.post("/twins/ada/crawl", data={"csrf_token": token})
        too_big = await client.post("/twins/ada/archives", data={"csrf_token": token, "platform": "x"},
                                    files={"file": ("tweets.js", b"x" * 500, "text/javascript")})
        uploaded = await client.post("/twins/ada/archives", data={"csrf_token": token, "platform": "x"},
                                     files={"file": ("tweets.js", b"window.YTD.tweets.part0 = []", "text/javascript")})
        profile_id = (await client.get("/api/twins/ada")).json()["profiles"][0]["id"]
        bad_cadence = await client.post(f"/twins/ada/profiles/{profile_id}/cadence",
                                        data={"csrf_token": token, "cadence_minutes": "often"})
        cadence = await client.post(f"/twins/ada/profiles/{profile_id}/cadence",
                                    data={"csrf_token": token, "cadence_minutes": "90"})
        crawled = await client.post("/twins/ada/crawl", data={"csrf_token": token})
        page = await client.get("/twins/ada")
    assert no_sources.status_code == 422 and 'id="crawl-profile_id-error">Add a profile link' in no_sources.text
    assert too_big.status_code == 413 and 'id="archive-file-error">That file is larger than' in too_big.text
    assert uploaded.status_code == 303
    assert bad_cadence.status_code == 422
    assert f'id="cadence-{profile_id}-cadence_minutes-error">The crawl interval must be a whole number' in bad_cadence.text
    assert cadence.status_code == 303
    assert (await web.warehouse.get(Collection.PROFILES, profile_id))["cadence_minutes"] == 90
    assert crawled.status_code == 303 and crawled.headers["location"] == "/twins/ada#progress"
    assert "Crawl requested for 1 source." in page.text


async def test_the_twin_page_shows_progress_collected_documents_datasets_and_models(web):
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        await add_pipeline_results(web.warehouse)
        page = await client.get("/twins/ada")
        missing = await client.get("/twins/nobody")
    assert page.status_code == 200
    assert '<dd data-field="counts.raw_documents">2</dd>' in page.text
    assert '<dd data-field="crawl.found">3</dd>' in page.text
    assert 'data-events-url="/api/twins/ada/events"' in page.text
    assert '<strong id="champion-version">version 1</strong>' in page.text
    assert "did not pass the evaluation" in page.text  # the latest job's verdict
    assert '<a href="https://ada.example.org/engines" rel="noopener noreferrer">On engines</a>' in page.text
    assert "404 at /gone" in page.text
    assert re.search(r'<tr class="champion">\s*<td>1 <span class="badge">champion</span>', page.text)
    # Each score beside the one it was compared with, named, not dumped as metric keys.
    assert re.search(r'<th scope="row">Held-out perplexity \(lower is better\)</th><td>20.7</td><td>22.3</td>',
                     page.text)
    assert re.search(r'<th scope="row">Style \(embedding similarity\)</th><td>0.453</td><td>0.388</td>', page.text)
    assert re.search(r'<th scope="row">Copied from its material \(share of words, lower is better\)</th>'
                     r'<td>0.214</td><td>0.194</td>', page.text)
    assert re.search(r'<th scope="row">perplexity</th><td>24</td><td>—</td>', page.text)
    assert "candidate_samples" not in page.text
    assert missing.status_code == 404 and "There is no twin called “nobody”" in missing.text


async def test_a_document_is_forgotten_from_the_twin_page(web):
    async with web.client() as client:
        token = await csrf_from(client, "/")
        await client.post("/twins", data={"name": "Ada", "csrf_token": token})
        await add_pipeline_results(web.warehouse)
        [kept] = await web.warehouse.find(Collection.RAW_DOCUMENTS, {"twin_id": "ada", "withdrawn_at": None})
        before = await client.get("/twins/ada")
        without_token = await client.post(f"/twins/ada/documents/{kept['id']}/forget")
        forgotten = await client.post(f"/twins/ada/documents/{kept['id']}/forget", data={"csrf_token": token})
        after = await client.get("/twins/ada")
    # The kept document has a Forget button that asks first; the one already forgotten says when.
    assert f'action="/twins/ada/documents/{kept["id"]}/forget" class="inline-form"\n' \
           '              data-confirm="Forget “On engines”?' in before.text
    assert 'aria-label="Forget On engines">Forget</button>' in before.text
    assert re.search(r"An old rant</a>\s*<span class=\"muted\">article</span>\s*"
                     r"<span class=\"muted forgotten\">forgotten on \d{4}-\d\d-\d\d</span>", before.text)
    assert 'aria-label="Forget An old rant"' not in before.text
    assert without_token.status_code == 403
    assert forgotten.status_code == 303 and forgotten.headers["location"] == "/twins/ada#collected"
    assert "Forgetting “On engines”: its text, passages and training samples are being deleted" in after.text


async def test_static_files_are_served(web):
    async with web.client() as client:
        css = await client.get("/static/style.css")
        script = await client.get("/static/write.js")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert script.status_code == 200 and "X-CSRF-Token" in script.text


async def test_a_failure_on_the_server_is_explained_not_dumped(web):
    await web.warehouse.close()  # the store goes away under the running app
    async with web.client() as client:
        page = await client.get("/")
        api = await client.get("/api/twins")
    assert page.status_code == 500 and "Something went wrong on the server" in page.text
    assert "Traceback" not in page.text
    assert api.status_code == 500 and "Something went wrong" in api.json()["detail"]
