"""Topics are created explicitly with their partition counts (auto-created ones get the broker's default)."""
from __future__ import annotations

import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ..events import Topic
from ..settings import Settings


def all_topic_names() -> list[str]:
    return [name for topic in Topic for name in (topic.value, topic.dead_letter)]


def ensure_topics(settings: Settings, names: list[str] | None = None, timeout: float = 30.0) -> None:
    names = names or all_topic_names()
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="llmtwin-admin",
                                     request_timeout_ms=10_000)
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=1)
                   for name in names if name not in existing]
        for topic in missing:
            try:
                admin.create_topics([topic])
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                if "already exists" not in str(exc).lower():
                    raise
    finally:
        admin.close()
