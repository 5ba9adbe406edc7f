"""Real pieces for the inference-api tests: a registry with two LoRA versions of a tiny model,
a local Qdrant holding two twins' chunks embedded by the real model, a warehouse that knows
both twins, and the app served by a real uvicorn server on a free port."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from llmtwin import registry
from llmtwin.domain import (
    Chunk,
    CleanDocument,
    DocumentKind,
    Platform,
    Twin,
    content_hash,
    stable_id,
)
from llmtwin.infra.process import free_port
from llmtwin.infra.qdrant_server import qdrant_local
from llmtwin.settings import Settings
from llmtwin.testing.pages import serve_pages
from llmtwin.testing.served import ServedApp
from llmtwin.testing.vectors import seed_twins
from llmtwin.vectors import open_vector_client

ALL_TWINS_KEY = "all-twins-key"
ADA_ONLY_KEY = "ada-only-key"
TWINS = [Twin(id="ada", name="Ada Lovelace"), Twin(id="grace", name="Grace Hopper")]
CORPUS: dict[str, list[tuple[DocumentKind, str, list[str]]]] = {
    "ada": [
        (DocumentKind.POST, "Streams, not batches", [
            "Kafka moves every event between my services, and each consumer is idempotent.",
            "At-least-once delivery is fine when ids are deterministic hashes.",
        ]),
        (DocumentKind.ARTICLE, "Feature stores in practice", [
            "A feature store keeps clean text, chunks and embeddings for training and serving.",
            "Kafka moves every event between my services, and each consumer is idempotent.",  # repeated text
        ]),
        (DocumentKind.CODE, "pipeline.py", ["def consume(topic):\n    for event in topic:\n        handle(event)"]),
    ],
    "grace": [
        (DocumentKind.POST, "Compilers for everyone", [
            "Kafka streams are less important than compilers that let people write English.",
            "COBOL was designed so business people could read programs.",
        ]),
        (DocumentKind.ARTICLE, "Debugging", ["The first bug was a real moth stuck in a relay."]),
    ],
}


ARTICLE_HTML = """<html><head><title>Backpressure explained</title></head><body><nav>Home | About</nav>
<article><h1>Backpressure explained</h1><p>Backpressure lets a slow consumer tell a fast producer to wait,
so that queues stay short and memory stays bounded. Reactive streams made it explicit.</p>
<p>Without it, buffers grow until the process runs out of memory.</p></article></body></html>"""


def make_adapter(base: Path, folder: Path, twin_id: str, seed: int) -> Path:
    """A folder shaped like registry.download_model's: a LoRA adapter, the tokenizer, twin_model.json."""
    import torch
    from llmtwin.models import TwinModelInfo, load_causal_lm, load_tokenizer
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load_causal_lm(base, "cpu"),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # B starts at zero (a no-op adapter): give each version its own weights
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    model.save_pretrained(folder)
    load_tokenizer(base).save_pretrained(folder)
    TwinModelInfo(twin_id=twin_id, base_model=str(base)).write(folder)
    return folder


@pytest.fixture(scope="session")
def registry_uri(tiny_base_model, tmp_path_factory) -> str:
    """An MLflow registry (SQLite) where `ada` has versions 1 and 2; `grace` has none."""
    import mlflow

    root = tmp_path_factory.mktemp("registry")
    settings = Settings(data_dir=root)
    registry.configure(settings)
    for seed in (1, 2):
        folder = make_adapter(tiny_base_model, root / f"adapter-{seed}", "ada", seed)
        with mlflow.start_run() as run:
            registry.register_adapter("ada", folder, run_id=run.info.run_id, tags={"seed": str(seed)})
    return settings.tracking_uri


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("module")


@pytest.fixture(scope="module")
def module_qdrant_url(module_dir) -> str:
    """A local Qdrant server shared by one test module (its tests only read the corpus)."""
    port = free_port()
    server = qdrant_local(module_dir / "qdrant", port=port, log_path=module_dir / "qdrant.log").start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def settings(module_dir, registry_uri, tiny_base_model, module_qdrant_url) -> Settings:
    """The module's settings (two API keys); the registry is shared, reset to `ada`'s version 1 as champion."""
    settings = Settings(data_dir=module_dir / "data", mlflow_tracking_uri=registry_uri, qdrant_url=module_qdrant_url,
                        base_model=str(tiny_base_model), max_new_tokens=8, retrieval_top_k=3,
                        api_keys=[ALL_TWINS_KEY, f"{ADA_ONLY_KEY}:ada"])
    settings.data_dir.mkdir(parents=True)
    registry.configure(settings)
    registry.set_champion("ada", "1")
    return settings


def chunks_of(twin_id: str, documents: list[tuple[DocumentKind, str, list[str]]]) -> list[Chunk]:
    chunks = []
    for kind, title, texts in documents:
        link = f"https://example.com/{twin_id}/{stable_id(title)[:8]}"
        doc = CleanDocument(id=stable_id(twin_id, link), twin_id=twin_id, platform=Platform.BLOG, kind=kind,
                            link=link, title=title, content="\n".join(texts),
                            content_hash=content_hash("\n".join(texts)), raw_hash="")
        chunks += [Chunk.create(doc, position, text) for position, text in enumerate(texts)]
    return chunks


@pytest.fixture(scope="module")
def corpus(settings, embedding_model) -> dict[str, list[Chunk]]:
    """Both twins in the warehouse, and their chunks embedded into the local Qdrant."""
    chunks = {twin.id: chunks_of(twin.id, CORPUS[twin.id]) for twin in TWINS}
    seed_twins(settings, embedding_model, TWINS, chunks)  # one collection for both twins
    return chunks


@pytest.fixture(scope="module")
def add_twin(settings, embedding_model) -> Callable[..., list[Chunk]]:
    """add_twin(twin, documents): one more twin and its chunks in the module's warehouse and Qdrant."""
    def add(twin: Twin, documents: list[tuple[DocumentKind, str, list[str]]]) -> list[Chunk]:
        chunks = chunks_of(twin.id, documents)
        seed_twins(settings, embedding_model, [twin], {twin.id: chunks})
        return chunks

    return add


@pytest.fixture
def ada_champion_v1(settings) -> None:
    """For tests that promote: start from version 1 as `ada`'s champion."""
    registry.set_champion("ada", "1")


@pytest.fixture
def serve() -> Callable[..., ServedApp]:
    """serve(app) starts it; every app started here is stopped after the test."""
    started: list[ServedApp] = []

    def start(app) -> ServedApp:
        started.append(ServedApp(app).start())
        return started[-1]

    yield start
    for served in reversed(started):
        served.stop()


@pytest.fixture(scope="module")
def web_page():
    """A real local web server with an article, a redirect to the metadata address and a huge page."""
    with serve_pages({"/article": ARTICLE_HTML.encode()}, default=b"x" * 3_000_000,
                     redirects={"/to-metadata": "http://169.254.169.254/latest/meta-data/"}) as url:
        yield url


@pytest.fixture(scope="module")
def api(settings, corpus, embedding_model):
    """The app with the base model and `ada`'s champion (version 1) loaded; keys configured."""
    from twin_inference.app import create_app
    from twin_inference.models import ModelManager, TransformersLoader
    from twin_inference.retrieval import Retriever

    manager = ModelManager(TransformersLoader(settings, "cpu"))
    retriever = Retriever.for_model(settings, open_vector_client(settings), embedding_model)
    served = ServedApp(create_app(settings, manager=manager, retriever=retriever, listen_for_promotions=False))
    served.start()
    served.call(manager.load_base())
    assert served.call(manager.load_champion("ada")) == "1"
    served.manager = manager
    served.key, served.ada_only_key = ALL_TWINS_KEY, ADA_ONLY_KEY
    yield served
    served.call(manager.close())
    served.stop()
    retriever.client.close()
