"""Hearing promotions: `model_events` tells every replica to load a twin's new champion.

Each process joins its own consumer group, so every replica hears every event. Events
are only a nudge: the registry's champion alias is the truth the manager loads, so a
replayed or out-of-order event does no harm.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from llmtwin.bus.producer import consumer_config
from llmtwin.events import BadMessage, ModelEvent, Topic, decode
from llmtwin.settings import Settings

from .models import ModelManager

log = logging.getLogger(__name__)

RELOADING_ACTIONS = ("promoted", "rolled_back")
RETRY_SECONDS = 5.0


def replica_group_id() -> str:
    return f"inference-api-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class PromotionListener:
    def __init__(self, settings: Settings, manager: ModelManager) -> None:
        self.settings, self.manager = settings, manager
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Listen in the background; an unreachable broker is retried, never fatal to serving."""
        self._task = asyncio.create_task(self._run(), name="model_events listener")

    async def _run(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        while True:
            consumer = AIOKafkaConsumer(Topic.MODEL_EVENTS.value,
                                        **consumer_config(self.settings, replica_group_id()))
            try:
                await consumer.start()
                break
            except KafkaError as exc:
                log.warning("cannot reach the broker for model events (%s); retrying", exc)
                await consumer.stop()
                await asyncio.sleep(RETRY_SECONDS)
        try:
            async for message in consumer:
                self._handle(message.offset, message.value)
        finally:
            await consumer.stop()

    def _handle(self, offset: int, value: bytes) -> None:
        try:
            event = decode(Topic.MODEL_EVENTS, value)
        except BadMessage as exc:
            log.warning("skipping the model event at offset %s: %s", offset, exc)
            return
        assert isinstance(event, ModelEvent)
        if event.action in RELOADING_ACTIONS:
            log.info("twin %s: version %s %s", event.twin_id, event.version, event.action)
            self.manager.in_background(lambda: self.manager.load_champion(event.twin_id),
                                       f"loading {event.twin_id}'s champion")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
