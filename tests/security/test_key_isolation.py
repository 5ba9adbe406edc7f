"""Every twin kept apart: two twins share one warehouse and one Qdrant collection, and a key bound to
one of them can neither read nor generate from the other; keys are stored hashed and never logged."""
from __future__ import annotations

import hashlib
import json

import httpx
import pytest
from pydantic import SecretStr
from twin_inference.auth import ApiKeys, Unauthorized

from .conftest import ADA_KEY, ALL_TWINS_KEY, GRACE_KEY, KEYS


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sse_events(text: str) -> list[tuple[str, dict]]:
    events, name = [], "message"
    for line in text.splitlines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line.split(":", 1)[1])))
    return events


# Each way of reaching twin B (grace) with a key bound to twin A (ada).
GRACE_REQUESTS = [
    ("GET", "/v1/models/grace", None),
    ("POST", "/v1/chat/completions", {"model": "grace", "messages": [{"role": "user", "content": "Kafka?"}]}),
    ("POST", "/v1/chat/completions", {"model": "grace", "stream": True,
                                      "messages": [{"role": "user", "content": "Kafka?"}]}),
    ("POST", "/v1/generate", {"twin_id": "grace", "prompt": "Kafka?"}),
]


@pytest.mark.parametrize(("method", "path", "body"), GRACE_REQUESTS,
                         ids=["get-model", "chat", "chat-stream", "generate"])
def test_a_key_bound_to_one_twin_cannot_reach_the_other(inference, method, path, body):
    with httpx.Client(base_url=inference.url, timeout=60) as client:
        refused = client.request(method, path, json=body, headers=bearer(ADA_KEY))
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "twin_not_allowed" and "'ada'" in error["message"]
        # The hashed key bound to grace is the one that may.
        allowed = client.request(method, path, json=body, headers=bearer(GRACE_KEY))
        assert allowed.status_code == 200, allowed.text


def test_the_model_list_shows_a_bound_key_only_its_own_twin(inference):
    with httpx.Client(base_url=inference.url, timeout=60) as client:
        def listed(key: str) -> list[str]:
            return [card["id"] for card in client.get("/v1/models", headers=bearer(key)).json()["data"]]

        assert listed(ADA_KEY) == ["ada"]
        assert listed(GRACE_KEY) == ["grace"]
        assert listed(ALL_TWINS_KEY) == ["ada", "grace"]


def test_answers_for_one_twin_never_cite_the_other_twins_chunks(inference):
    """Same question, same collection: only the asking twin's chunks come back, on both endpoints."""
    ada_chunks = {chunk.id for chunk in inference.corpus["ada"]}
    question = "Kafka streams and compilers that let people write English"  # near grace's chunk
    with httpx.Client(base_url=inference.url, timeout=60) as client:
        chat = client.post("/v1/chat/completions", headers=bearer(ADA_KEY),
                           json={"model": "ada", "messages": [{"role": "user", "content": question}]})
        generated = client.post("/v1/generate", headers=bearer(ADA_KEY), json={"twin_id": "ada", "prompt": question})
    assert chat.status_code == 200 and generated.status_code == 200
    chat_cited = {c["chunk_id"] for c in chat.json()["citations"]}
    [citations] = [data for name, data in sse_events(generated.text) if name == "citations"]
    generate_cited = {c["chunk_id"] for c in citations["documents"]}
    assert chat_cited and generate_cited
    assert chat_cited <= ada_chunks and generate_cited <= ada_chunks
    assert all("ada.example.com" in c["link"] for c in chat.json()["citations"])


@pytest.mark.parametrize("presented", [None, ADA_KEY + "x", ADA_KEY[:-1], "sk-ada-only-51b2e8:ada",
                                       hashlib.sha256(GRACE_KEY.encode()).hexdigest(),
                                       f"sha256:{hashlib.sha256(GRACE_KEY.encode()).hexdigest()}"])
def test_missing_wrong_and_digest_keys_are_401(inference, presented):
    """A near miss is refused, and so is the stored digest itself: the digest is not the key."""
    headers = {} if presented is None else bearer(presented)
    with httpx.Client(base_url=inference.url, timeout=60) as client:
        response = client.get("/v1/models/ada", headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_hashed_and_plain_entries_both_work_and_only_digests_are_kept():
    digest = hashlib.sha256(b"k2").hexdigest()
    keys = ApiKeys.from_settings([SecretStr("k1:ada"), SecretStr(f"sha256:{digest}:grace"),
                                  SecretStr(f"sha256:{hashlib.sha256(b'k3').hexdigest().upper()}")])
    assert keys.scope_of("k1").twin_id == "ada"
    assert keys.scope_of("k2").twin_id == "grace"
    assert keys.scope_of("k3").twin_id is None
    assert "k1" not in repr(keys)
    with pytest.raises(Unauthorized):
        keys.scope_of(digest)


@pytest.mark.parametrize("entry", ["sha256:abc", "sha256:" + "z" * 64, "sha256:" + "a" * 62 + ":ada", ":ada"])
def test_a_malformed_key_entry_is_a_configuration_error(entry):
    with pytest.raises(ValueError, match="API key entry"):
        ApiKeys.from_settings([SecretStr(entry)])


def test_keys_never_reach_the_logs(inference, server_logs):
    """Good, wrong and misused keys: the server's log lines (access log included) hold none of them."""
    wrong_key = "sk-wrong-9e8d7c6b"
    with httpx.Client(base_url=inference.url, timeout=60) as client:
        assert client.get("/v1/models", headers=bearer(ALL_TWINS_KEY)).status_code == 200
        assert client.get("/v1/models", headers=bearer(wrong_key)).status_code == 401
        assert client.get("/v1/models/grace", headers=bearer(ADA_KEY)).status_code == 403
        generated = client.post("/v1/generate", headers=bearer(GRACE_KEY), json={"twin_id": "grace", "prompt": "Hi"})
        assert generated.status_code == 200
    logged = "\n".join(server_logs.lines)
    assert "GET /v1/models" in logged  # the access log was captured
    assert '"twin_id": "grace"' in logged  # and the answer's trace line
    for key in (*KEYS, wrong_key):
        assert key not in logged
    assert not any(key in json.dumps(trace) for trace in inference.tracer.traces for key in KEYS)
