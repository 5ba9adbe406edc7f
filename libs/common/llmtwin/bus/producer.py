"""Producers with the settings every client shares: the real-Kafka 1 MB limit, no idempotence
(Tansu rejects InitProducerId), keys per twin so one twin's messages keep their order."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..events import Event
from ..settings import Settings


def producer_config(settings: Settings) -> dict[str, Any]:
    return {"bootstrap_servers": settings.kafka_bootstrap, "acks": "all",
            "max_request_size": settings.kafka_max_message_bytes}


class EventProducer:
    """Async producer (aiokafka), for services whose code is async."""

    def __init__(self, settings: Settings) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(enable_idempotence=False, **producer_config(settings))

    async def start(self) -> "EventProducer":
        await self._producer.start()
        return self

    async def send(self, event: Event) -> None:
        await self._producer.send_and_wait(event.TOPIC.value, event.encode(), key=event.key.encode())

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await self._producer.send_and_wait(topic, value, key=key)

    async def stop(self) -> None:
        await self._producer.stop()


class SyncEventProducer:
    """Blocking producer (kafka-python), for plain scripts and worker processes."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        self._producer = KafkaProducer(**producer_config(settings))

    def send(self, event: Event) -> None:
        self.send_all([event])

    def send_all(self, events: Iterable[Event]) -> None:
        """Send every event, then wait for the broker to have them all (one round trip, not one each)."""
        sent = [self._producer.send(event.TOPIC.value, event.encode(), key=event.key.encode()) for event in events]
        for future in sent:
            future.get(timeout=30)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()


def consumer_config(settings: Settings, group_id: str | None) -> dict[str, Any]:
    """Consumer settings that join a group quickly on the embedded broker."""
    return {"bootstrap_servers": settings.kafka_bootstrap, "group_id": group_id,
            "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
            "auto_offset_reset": "earliest", "enable_auto_commit": False}
