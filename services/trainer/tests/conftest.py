"""Fixtures for the trainer's tests: samples in a twin's voice, and reading model events back."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from llmtwin import registry
from llmtwin.domain import DocumentKind, InstructSample, Split
from llmtwin.events import ModelEvent, Topic, decode
from llmtwin.settings import Settings

# One author's habits, repeated with variations: a model that learns them scores better on held-out ones.
_TOPICS = ["Kafka", "feature stores", "LoRA", "evaluation", "data pipelines", "RAG", "embeddings",
           "prompt monitoring", "vector search", "training jobs"]


def twin_samples(twin_id: str, count: int, split: Split) -> list[InstructSample]:
    samples = []
    for i in range(count):
        topic = _TOPICS[i % len(_TOPICS)]
        sample = InstructSample.create(
            twin_id=twin_id, document_id=f"{split.value}-doc-{i}", kind=DocumentKind.POST,
            instruction=f"Write about {topic}.",
            answer=f"Here is the thing about {topic}: keep it simple, measure it, ship it. "
                   f"Every consumer is idempotent and at least once.")
        samples.append(sample.model_copy(update={"split": split}))
    return samples


@pytest.fixture
def samples_for():
    return twin_samples


@pytest.fixture
def read_model_events():
    def read(settings: Settings, count: int, timeout: float = 30.0) -> list[ModelEvent]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
        consumer.assign([TopicPartition(Topic.MODEL_EVENTS.value, p) for p in range(settings.topic_partitions)])
        events: list[ModelEvent] = []
        deadline = time.monotonic() + timeout
        try:
            while len(events) < count and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    events += [decode(Topic.MODEL_EVENTS, json.loads(r.value)) for r in records]
        finally:
            consumer.close()
        return events

    return read


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store with its schema: migrating a new one takes seconds, copying it none."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("mlflow-template")
    SqlAlchemyStore(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts"))
    return folder / "mlflow.db"


@pytest.fixture
def with_registry(mlflow_db_template):
    """Give a test's settings a ready registry in their data folder, and point MLflow at it."""
    def ready(settings: Settings) -> Settings:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(mlflow_db_template, settings.data_dir / "mlflow.db")
        registry.configure(settings)
        return settings

    return ready
