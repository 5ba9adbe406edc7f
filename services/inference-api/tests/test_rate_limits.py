"""Rate limits through the real app: a 429 the openai client understands, per key, health exempt."""
from __future__ import annotations

import httpx
import openai
import pytest
from llmtwin.vectors import open_vector_client
from openai import OpenAI
from twin_inference.app import create_app
from twin_inference.models import ModelManager, TransformersLoader
from twin_inference.retrieval import Retriever

ALL_TWINS_KEY, ADA_ONLY_KEY = "all-twins-key", "ada-only-key"  # the keys conftest's settings configure


@pytest.fixture
def limited_api(settings, serve, embedding_model):
    """The app allowing 2 requests a minute per key (no model needs loading to list twins)."""
    limited = settings.model_copy(update={"api_rate_limit_per_minute": 2})
    retriever = Retriever.for_model(limited, open_vector_client(limited), embedding_model)
    served = serve(create_app(limited, manager=ModelManager(TransformersLoader(limited, "cpu")),
                              retriever=retriever, listen_for_promotions=False))
    yield served
    retriever.client.close()


def test_a_key_over_its_limit_gets_a_429_with_retry_after_and_other_keys_do_not(limited_api):
    everything = OpenAI(base_url=f"{limited_api.url}/v1", api_key=ALL_TWINS_KEY, max_retries=0, timeout=30)
    everything.models.list()
    everything.models.list()

    with pytest.raises(openai.RateLimitError) as caught:
        everything.models.list()
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.body["type"] == "requests"
    assert "rate limit reached" in caught.value.message
    retry_after = int(caught.value.response.headers["Retry-After"])
    assert 1 <= retry_after <= 30  # a request comes back every 30 s at 2 a minute

    other_key = httpx.get(f"{limited_api.url}/v1/models", headers={"Authorization": f"Bearer {ADA_ONLY_KEY}"})
    assert other_key.status_code == 200
    # A wrong key is still refused as such, and spends nobody's requests.
    assert httpx.get(f"{limited_api.url}/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    for _ in range(5):
        assert httpx.get(f"{limited_api.url}/healthz").status_code == 200
        assert httpx.get(f"{limited_api.url}/metrics").status_code == 200
