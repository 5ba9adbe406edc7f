"""The native generation endpoint: tokens stream, then the citations, then `done`."""
from __future__ import annotations

import json

import httpx
import pytest
from twin_inference.links import LinkError, LinkFetcher, LinkRefused, any_address


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], "message"
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line.split(":", 1)[1])))
            name = "message"
    return events


def generate(api, body: dict, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or api.key}"}
    with httpx.stream("POST", f"{api.url}/v1/generate", json=body, headers=headers, timeout=60) as response:
        response.read()
    return response


def test_streams_tokens_then_citations_then_done(api, corpus):
    with httpx.stream("POST", f"{api.url}/v1/generate", timeout=60, headers={"Authorization": f"Bearer {api.key}"},
                      json={"twin_id": "ada", "prompt": "A post about idempotent Kafka consumers",
                            "format": "post", "max_new_tokens": 5, "temperature": 0}) as response:
        assert response.status_code == 200
        events = sse_events(response)

    names = [name for name, _ in events]
    assert names[-2:] == ["citations", "done"] and set(names[:-2]) == {"token"}
    assert "".join(data["text"] for name, data in events if name == "token")
    citations, done = events[-2][1], events[-1][1]
    ada_posts_and_articles = {c.id for c in corpus["ada"] if c.kind in ("post", "article")}
    assert citations["documents"] and {c["chunk_id"] for c in citations["documents"]} <= ada_posts_and_articles
    assert citations["links"] == []
    assert done["model_version"] == "1" and done["usage"]["completion_tokens"] == 5


def test_code_format_draws_on_the_twins_code(api, corpus):
    events = sse_events(generate(api, {"twin_id": "ada", "prompt": "consume events from a topic",
                                       "format": "code", "max_new_tokens": 2}))

    code_chunks = {c.id for c in corpus["ada"] if c.kind == "code"}
    assert {c["chunk_id"] for c in events[-2][1]["documents"]} == code_chunks


def test_links_given_by_the_user_are_fetched_and_cited_when_private_links_are_allowed(settings, corpus, serve,
                                                                                      embedding_model, web_page):
    from llmtwin.vectors import open_vector_client
    from twin_inference.app import create_app
    from twin_inference.models import ModelManager, TransformersLoader
    from twin_inference.retrieval import Retriever

    demo = settings.model_copy(update={"allow_private_links": True, "api_keys": []})
    manager = ModelManager(TransformersLoader(demo, "cpu"))
    retriever = Retriever.for_model(demo, open_vector_client(demo), embedding_model)
    served = serve(create_app(demo, manager=manager, retriever=retriever, listen_for_promotions=False))
    served.call(manager.load_base())
    # The user's links come first in the prompt: the article fits the tiny model's window and is cited.
    response = httpx.post(f"{served.url}/v1/generate", timeout=60,
                          json={"twin_id": "grace", "prompt": "backpressure", "links": [f"{web_page}/article"],
                                "max_new_tokens": 2})

    events = sse_events(response)
    links = events[-2][1]["links"]
    assert links == [{"link": f"{web_page}/article", "final_url": f"{web_page}/article",
                      "title": "Backpressure explained", "copied_words": 0}]
    assert events[-1][1]["model_version"] == "base"
    served.call(manager.close())
    retriever.client.close()


@pytest.mark.parametrize("link, reason", [
    ("http://127.0.0.1/", "private, loopback or metadata"),
    ("http://169.254.169.254/latest/meta-data/", "private, loopback or metadata"),
    ("http://localhost:8080/admin", "private, loopback or metadata"),
    ("file:///etc/passwd", "only http and https"),
])
def test_private_and_non_http_links_are_refused(api, link, reason):
    response = generate(api, {"twin_id": "ada", "prompt": "summarise this", "links": [link]})

    assert response.status_code == 400
    assert reason in response.json()["error"]["message"]


def test_a_bound_key_cannot_generate_for_another_twin(api):
    response = generate(api, {"twin_id": "grace", "prompt": "hello"}, key=api.ada_only_key)

    assert response.status_code == 403


async def test_a_redirect_is_checked_again_at_every_hop(web_page):
    # Loopback allowed (the first hop) but the redirect's metadata address is still refused.
    fetcher = LinkFetcher(address_allowed=lambda address: address == "127.0.0.1")
    with pytest.raises(LinkRefused, match="169.254.169.254"):
        await fetcher.fetch(f"{web_page}/to-metadata")
    await fetcher.aclose()


async def test_pages_over_the_size_cap_are_refused(web_page):
    fetcher = LinkFetcher(address_allowed=any_address, max_bytes=100_000)
    with pytest.raises(LinkError, match="larger than 100000 bytes"):
        await fetcher.fetch(f"{web_page}/huge")
    await fetcher.aclose()


def test_an_article_is_outlined_first_then_drafted_and_still_ends_with_citations(api, corpus):
    body = {"twin_id": "ada", "prompt": "An article about feature stores", "format": "article",
            "max_new_tokens": 4, "temperature": 0}
    chained = sse_events(generate(api, body))
    plain = sse_events(generate(api, {**body, "outline": False}))

    names = [name for name, _ in chained]
    first_token = names.index("token")
    assert first_token > 0 and set(names[:first_token]) == {"outline"}
    assert set(names[first_token:-2]) == {"token"} and names[-2:] == ["citations", "done"]
    assert "".join(data["text"] for name, data in chained if name == "outline")
    assert chained[-2][1]["documents"]
    assert "outline" not in {name for name, _ in plain}
    # Both steps are counted, and each step's prompt is at least the unchained one (the draft's holds the outline).
    chained_usage, plain_usage = chained[-1][1]["usage"], plain[-1][1]["usage"]
    assert chained_usage["completion_tokens"] > plain_usage["completion_tokens"] == 4
    assert chained_usage["prompt_tokens"] > 2 * plain_usage["prompt_tokens"]
