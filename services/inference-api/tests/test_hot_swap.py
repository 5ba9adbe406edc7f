"""Hot-loading: a new champion is swapped in while requests run; none fails, each finishes on its model,
and the old model is released once its last request has ended."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
from llmtwin import registry
from llmtwin.bus.admin import ensure_topics
from llmtwin.bus.producer import SyncEventProducer
from llmtwin.domain import registered_model_name, stable_id
from llmtwin.events import ModelEvent
from llmtwin.vectors import open_vector_client
from openai import OpenAI
from twin_inference.app import create_app
from twin_inference.backends import GenerationReport, GenerationSettings, PromptSpec
from twin_inference.models import ModelManager, TransformersLoader
from twin_inference.retrieval import Retriever

SPEC = PromptSpec("hello", "Ada")
CONCURRENT_STREAMS = 8  # in flight at once on each side of a promotion


class GatedBackend:
    """Unit-test backend: says one word, then waits for the test to let it finish."""

    def __init__(self) -> None:
        self.description, self.gate, self.closed = "gated", asyncio.Event(), False

    async def stream(self, spec, settings, report):
        yield "first "
        await self.gate.wait()
        yield "last"
        report.completion_tokens = 2

    async def aclose(self) -> None:
        self.closed = True


class Loader:
    def __init__(self) -> None:
        self.loaded: list[str] = []

    def load_base(self):
        return GatedBackend()

    def load_version(self, twin_id, version):
        if version == "broken":
            raise OSError("adapter files missing")
        self.loaded.append(version)
        return GatedBackend()


class Ref:
    def __init__(self, version: str) -> None:
        self.version = version


async def test_a_running_answer_finishes_on_the_old_model_and_the_next_gets_the_new():
    manager = ModelManager(Loader())
    old, new = GatedBackend(), GatedBackend()
    await manager.install("ada", "1", old)

    async with manager.lease("ada") as running:
        words = running.backend.stream(SPEC, GenerationSettings(4), GenerationReport())
        assert await anext(words) == "first "
        await manager.install("ada", "2", new)

        async with manager.lease("ada") as following:
            assert following.version == "2" and following.backend is new
        assert not old.closed, "closed under a running answer"
        old.gate.set()
        assert [word async for word in words] == ["last"]
    assert old.closed and not new.closed


async def test_loads_follow_the_registry_and_a_failed_load_keeps_the_current_model():
    champions = {"ada": Ref("1")}
    loader = Loader()
    manager = ModelManager(loader, champion_of=champions.get)

    assert manager.version_of("ada") is None and not manager.ready()
    assert await manager.load_champion("ada") == "1"
    assert await manager.load_champion("ada") == "1"  # already served: not loaded again
    assert await manager.load_champion("grace") is None
    champions["ada"] = Ref("broken")
    await manager.load_all_in_background(["ada"], base=False)[0]
    assert loader.loaded == ["1"] and manager.version_of("ada") == "1"
    assert not manager.can_serve("grace")
    await manager.load_base()
    assert manager.can_serve("grace") and manager.version_of("grace") == "base"


def _served_app(settings, serve, embedding_model, **options):
    manager = ModelManager(TransformersLoader(settings, "cpu"))
    retriever = Retriever.for_model(settings, open_vector_client(settings), embedding_model)
    served = serve(create_app(settings, manager=manager, retriever=retriever, **options))
    served.manager = manager
    return served


def _wait_until(condition, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.1)


def test_swapping_the_champion_during_a_stream_fails_nothing(settings, corpus, serve, embedding_model,
                                                              ada_champion_v1):
    served = _served_app(settings, serve, embedding_model, listen_for_promotions=False)
    served.call(served.manager.load_base())
    assert served.call(served.manager.load_champion("ada")) == "1"
    client = OpenAI(base_url=f"{served.url}/v1", api_key="all-twins-key", max_retries=0)

    stream = client.chat.completions.create(model="ada", messages=[{"role": "user", "content": "go"}],
                                            stream=True, max_tokens=300, temperature=0)
    chunks = [next(stream)]
    registry.set_champion("ada", "2")
    assert served.call(served.manager.load_champion("ada")) == "2"
    chunks += list(stream)

    assert {c.model_extra["model_version"] for c in chunks} == {"1"}
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    after = client.chat.completions.create(model="ada", messages=[{"role": "user", "content": "go"}], max_tokens=2)
    assert after.model_extra["model_version"] == "2"
    served.call(served.manager.close())


def test_a_promotion_event_loads_the_new_champion(settings, corpus, serve, embedding_model, broker_bootstrap,
                                                  ada_champion_v1):
    bus = settings.model_copy(update={"kafka_bootstrap": broker_bootstrap})
    ensure_topics(bus)
    served = _served_app(bus, serve, embedding_model)
    assert served.call(served.manager.load_champion("ada")) == "1"

    registry.set_champion("ada", "2")
    producer = SyncEventProducer(bus)
    producer.send(ModelEvent(id=stable_id("ada", "2", "promoted"), twin_id="ada", version="2",
                             model_name=registered_model_name("ada"), action="promoted"))
    producer.close()

    _wait_until(lambda: served.manager.version_of("ada") == "2", "version 2 served")
    served.call(served.manager.close())


def test_readiness_follows_the_first_loaded_model(settings, corpus, serve, embedding_model):
    served = _served_app(settings, serve, embedding_model, listen_for_promotions=False)
    headers = {"Authorization": "Bearer all-twins-key"}

    assert httpx.get(f"{served.url}/readyz").status_code == 503
    early = httpx.post(f"{served.url}/v1/chat/completions", headers=headers,
                       json={"model": "ada", "messages": [{"role": "user", "content": "hi"}]})
    assert early.status_code == 503 and early.json()["error"]["code"] == "model_not_ready"

    served.call(served.manager.load_base())
    assert httpx.get(f"{served.url}/readyz").status_code == 200
    served.call(served.manager.close())


def test_at_start_up_the_base_and_every_twins_champion_load_from_the_registry(settings, corpus, serve,
                                                                             embedding_model, ada_champion_v1):
    retriever = Retriever.for_model(settings, open_vector_client(settings), embedding_model)
    served = serve(create_app(settings, retriever=retriever, listen_for_promotions=False))
    headers = {"Authorization": "Bearer all-twins-key"}

    def versions() -> dict[str, str]:
        cards = httpx.get(f"{served.url}/v1/models", headers=headers).json()["data"]
        return {card["id"]: card["model_version"] for card in cards}

    _wait_until(lambda: versions() == {"ada": "1", "grace": "base"}, "ada's champion and the base loaded")
    assert httpx.get(f"{served.url}/readyz").status_code == 200


def test_an_unreachable_broker_does_not_stop_the_api_from_serving(settings, corpus, serve, embedding_model):
    from llmtwin.infra.process import free_port

    nowhere = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    served = _served_app(nowhere, serve, embedding_model)
    served.call(served.manager.load_base())

    answer = httpx.post(f"{served.url}/v1/chat/completions", headers={"Authorization": "Bearer all-twins-key"},
                        json={"model": "grace", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
                        timeout=60)
    assert answer.status_code == 200 and answer.json()["model_version"] == "base"
    served.call(served.manager.close())


@dataclass
class StreamedChat:
    """What one client saw of a streamed chat completion."""

    status: int = 0
    versions: list[str] = field(default_factory=list)  # model_version of every chunk
    text: str = ""
    finish_reason: str | None = None
    errors: list[dict] = field(default_factory=list)
    done: bool = False  # the stream ended with `data: [DONE]`


def stream_chat(url: str, started: threading.Event) -> StreamedChat:
    """One streamed request; `started` is set at its first chunk, when it already holds its model."""
    seen = StreamedChat()
    with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=120,
                      headers={"Authorization": "Bearer all-twins-key"},
                      json={"model": "ada", "messages": [{"role": "user", "content": "A post about Kafka"}],
                            "stream": True, "max_tokens": 24, "temperature": 0}) as response:
        seen.status = response.status_code
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            started.set()
            data = line.removeprefix("data:").strip()
            if data == "[DONE]":
                seen.done = True
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                seen.errors.append(chunk["error"])
                continue
            seen.versions.append(chunk["model_version"])
            for choice in chunk["choices"]:
                seen.text += choice["delta"].get("content") or ""
                seen.finish_reason = choice["finish_reason"] or seen.finish_reason
    started.set()
    return seen


def test_a_promotion_under_concurrent_streams_fails_none_and_releases_the_old_model_after_them(
        settings, corpus, serve, embedding_model, broker_bootstrap, ada_champion_v1):
    bus = settings.model_copy(update={"kafka_bootstrap": broker_bootstrap})
    ensure_topics(bus)
    served = _served_app(bus, serve, embedding_model)
    manager = served.manager
    assert served.call(manager.load_champion("ada")) == "1"
    old = served.call(_serving(manager, "ada"))
    # The old model's one generation thread is held busy, so that the streams started on it are
    # certainly still running when the promotion lands (whatever the machine's speed).
    gate = threading.Event()
    old.backend._executor.submit(gate.wait)
    clients = ThreadPoolExecutor(max_workers=2 * CONCURRENT_STREAMS)

    started_before = [threading.Event() for _ in range(CONCURRENT_STREAMS)]
    before = [clients.submit(stream_chat, served.url, started) for started in started_before]
    for started in started_before:
        assert started.wait(120), "a stream did not start"
    assert old.leases == CONCURRENT_STREAMS

    registry.set_champion("ada", "2")
    producer = SyncEventProducer(bus)
    producer.send(ModelEvent(id=stable_id("ada", "2", "promoted"), twin_id="ada", version="2",
                             model_name=registered_model_name("ada"), action="promoted"))
    producer.close()
    _wait_until(lambda: manager.version_of("ada") == "2", "version 2 served")
    assert old.retired and not old.released, "the old model went away under its running streams"

    after = [clients.submit(stream_chat, served.url, threading.Event()) for _ in range(CONCURRENT_STREAMS)]
    answered_after = [request.result(120) for request in after]
    assert not any(request.done() for request in before), "the held streams should still be running"
    gate.set()
    answered_before = [request.result(120) for request in before]
    clients.shutdown()

    for answer, version in [(a, "1") for a in answered_before] + [(a, "2") for a in answered_after]:
        assert answer.status == 200 and answer.done and not answer.errors
        assert set(answer.versions) == {version}, "a stream changed model, or was answered by the wrong one"
        assert answer.finish_reason in ("stop", "length") and answer.text
    _wait_until(lambda: old.released, "the old model released once its streams ended")
    assert old.leases == 0
    new = served.call(_serving(manager, "ada"))
    assert new.version == "2" and not new.released
    served.call(manager.close())


async def _serving(manager: ModelManager, twin_id: str):
    """The model that answers for `twin_id` now (leased for no longer than this look)."""
    async with manager.lease(twin_id) as served:
        return served
