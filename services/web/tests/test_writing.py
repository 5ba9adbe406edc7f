"""Writing: the inference API's stream relayed to the browser, and its failures put into words."""
from __future__ import annotations

import asyncio
import json

from llmtwin.infra.process import free_port
from twin_web.writing import parse_sse

from .conftest import csrf_from
from .test_api import next_event


async def read_all_events(response) -> list[tuple[str, str]]:
    """Every event of a finished SSE stream (ping comments are skipped)."""
    events, lines = [], response.aiter_lines()
    async with asyncio.timeout(60):
        while True:
            try:
                events.append(await next_event(lines))
            except AssertionError:
                return events


async def test_the_answer_streams_through_with_its_citations(web):
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        async with client.stream("POST", "/api/twins/ada/generate", json={
                "prompt": "Write about shipping", "links": ["https://news.example/launch"], "format": "post",
                "max_new_tokens": 64}) as response:
            assert response.status_code == 200
            events = await read_all_events(response)
    names = [name for name, _ in events]
    assert names == ["token", "token", "token", "token", "citations", "done"]
    assert "".join(data for name, data in events if name == "token").split() == ["Shipping", "small", "beats",
                                                                               "waiting."]
    assert json.loads(events[4][1])[0]["link"] == "https://ada.example/posts/ship"
    assert web.inference.requests == [{"twin_id": "ada", "prompt": "Write about shipping",
                                       "links": ["https://news.example/launch"], "format": "post",
                                       "max_new_tokens": 64, "temperature": 0.7}]


async def test_tokens_keep_their_spaces_and_line_breaks(web):
    web.inference.tokens = [" leading", "two\nlines", "\n", "end "]
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        async with client.stream("POST", "/api/twins/ada/generate", json={"prompt": "p"}) as response:
            raw = (await response.aread()).decode()
    # The browser's parser joins multi-line data with "\n", as the relay's own parser does.
    async def lines():
        for line in raw.splitlines():
            yield line
        yield ""

    tokens = [e.data async for e in parse_sse(lines()) if e.event == "token"]
    assert tokens == [" leading", "two\nlines", "\n", "end "]


async def test_bad_requests_are_refused_before_calling_the_writer(web):
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        empty = await client.post("/api/twins/ada/generate", json={"prompt": " ", "format": "post"})
        poem = await client.post("/api/twins/ada/generate", json={"prompt": "hi", "format": "poem"})
        nobody = await client.post("/api/twins/nobody/generate", json={"prompt": "hi"})
    assert (empty.status_code, empty.json()["field"]) == (422, "prompt")
    assert (poem.status_code, poem.json()["field"]) == (422, "format")
    assert nobody.status_code == 404
    assert web.inference.requests == []


async def test_a_refusal_from_the_writer_becomes_an_error_event(web):
    web.inference.refuse_with = (404, "no model has been trained for twin ada yet")
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        async with client.stream("POST", "/api/twins/ada/generate", json={"prompt": "hi"}) as response:
            events = await read_all_events(response)
    assert events == [("error", "The writing service could not answer (HTTP 404): "
                                "no model has been trained for twin ada yet")]


async def test_an_unreachable_writer_is_explained(start_web):
    web = await start_web(inference_api_url=f"http://127.0.0.1:{free_port()}")
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        async with client.stream("POST", "/api/twins/ada/generate", json={"prompt": "hi"}) as response:
            events = await read_all_events(response)
    assert len(events) == 1 and events[0][0] == "error"
    assert "not reachable" in events[0][1] and "Start the inference API" in events[0][1]


async def test_the_page_without_javascript_shows_the_whole_answer(web):
    web.inference.citations[0]["copied_words"] = 12
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        token = await csrf_from(client, "/twins/ada/write")
        page = await client.post("/twins/ada/write", data={"csrf_token": token, "prompt": "Write about shipping",
                                                           "links": "", "format": "article"})
        blank = await client.post("/twins/ada/write", data={"csrf_token": token, "prompt": "", "format": "post"})
    assert page.status_code == 200
    assert "Shipping small\nbeats waiting." in page.text
    assert ('<a href="https://ada.example/posts/ship" rel="noopener noreferrer">Ship it</a>'
            '<span class="muted"> (the answer quotes 12 words of it word for word)</span>') in page.text
    assert web.inference.requests[0]["format"] == "article"
    assert blank.status_code == 422
    assert 'id="write-prompt-error">' in blank.text and "Say what you would like the twin to write." in blank.text
    assert 'aria-describedby="write-prompt-error" aria-invalid="true"' in blank.text


async def test_a_document_cited_by_two_passages_is_listed_once(web):
    ship, other = ({"document_id": "d1", "link": "https://ada.example/posts/ship", "title": "Ship it"},
                   {"document_id": "d2", "link": "https://ada.example/posts/wait", "title": "Wait"})
    web.inference.citations = [{**ship, "chunk_id": "c1", "score": 0.9, "copied_words": 9},
                               {**other, "chunk_id": "c7", "score": 0.8, "copied_words": 0},
                               {**ship, "chunk_id": "c2", "score": 0.7, "copied_words": 12}]
    async with web.client() as client:
        await client.post("/api/twins", json={"name": "Ada"})
        async with client.stream("POST", "/api/twins/ada/generate", json={"prompt": "p"}) as response:
            events = await read_all_events(response)

    cited = json.loads(next(data for name, data in events if name == "citations"))
    assert [(c["document_id"], c["chunk_id"]) for c in cited] == [("d1", "c1"), ("d2", "c7")]
    # What the answer quoted from the document's two passages, together.
    assert [c["copied_words"] for c in cited] == [21, 0]
