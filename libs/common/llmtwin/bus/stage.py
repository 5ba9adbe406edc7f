"""A pipeline stage as a faust-streaming agent.

The stage decodes each message of its source topic, hands batches to a processor,
sends what the processor emits, and sends what cannot be processed to the
source's dead-letter topic with the reason; the stream goes on. Offsets are
acknowledged only after a batch is handled (at-least-once), in the order the batches came,
also when a stage handles several at once; processors are
idempotent because ids are deterministic. A store that is down (see llmtwin.outages) is
waited for, retrying with backoff, for as long as the outage lasts: nothing is acknowledged
or dead-lettered meanwhile. Messages over the bus's size limit are dead-lettered as
oversize. At start-up the processor's backlog
(what the warehouse holds that this stage never finished) is sent to the source
topic again, because the embedded broker keeps nothing across restarts.
"""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, cast

from ..events import BadMessage, Event, Topic, decode
from ..domain import utcnow
from ..observability import (
    STAGE_BATCH_SECONDS,
    STAGE_EMITTED,
    STAGE_LAG,
    STAGE_MESSAGES,
    STAGE_RETRIES,
    metrics_payload,
)
from ..outages import is_outage
from ..settings import Settings
from .admin import ensure_topics

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 10.0  # seconds between two tries of a batch, at most


class Backoff:
    """Waits between tries: 0.5 s, doubling each time, at most MAX_RETRY_DELAY."""

    def __init__(self) -> None:
        self.delay = 0.5

    async def wait(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, MAX_RETRY_DELAY)


class Processor(Protocol):
    async def handle(self, events: list[Event]) -> list[Event]:
        """Process a batch; return the events to emit. Raise BadMessage for input that can never work."""

    def backlog(self) -> AsyncIterator[Event]:
        """Events to send again at start-up: upstream work this stage has not finished."""

    async def close(self) -> None: ...


class TickingProcessor(Processor, Protocol):
    async def tick(self) -> list[Event]:
        """Called every `StageSpec.tick_seconds`: time-based work (schedules, quiet periods); returns events to emit."""


@dataclass
class StageSpec:
    name: str
    source: Topic
    port: int
    build: Callable[[Settings], Awaitable[Processor]]
    batch_size: int = 1
    batch_within: float = 0.2
    retries: int = 5
    tick_seconds: float | None = None  # how often a TickingProcessor's tick runs; None: the stage never ticks
    # Batches handled at once: a stage whose work leaves the cores idle between two batches (the
    # embedder's model) prepares the next while it finishes the last.
    in_flight: int = 1


def dead_letter(stage: str, topic: Topic, payload: bytes, reason: str) -> bytes:
    text = payload.decode("utf-8", errors="replace")
    return json.dumps({"stage": stage, "topic": topic.value, "reason": reason,
                       "failed_at": utcnow().isoformat(), "payload": text[:100_000]}).encode()


class StageRunner:
    def __init__(self, spec: StageSpec, settings: Settings) -> None:
        from .faust_app import make_faust_app  # faust loads slowly: only a process that runs a stage pays

        self.spec, self.settings = spec, settings
        self.app = make_faust_app(f"twin-{spec.name}", settings, spec.port)
        self.source = self.app.topic(spec.source.value, value_serializer="raw", key_serializer="raw",
                                     partitions=settings.topic_partitions)
        self.dlq = self.app.topic(spec.source.dead_letter, value_serializer="raw", key_serializer="raw",
                                  partitions=settings.topic_partitions)
        self.outputs: dict[str, object] = {}
        self.processor: Processor | None = None
        # The agent, the backlog replay and the timer all ask for the processor at start-up: build it once.
        self._building = asyncio.Lock()
        self._next_offset: dict[object, int] = {}  # per partition: the offset after the last one handled
        for cause in ("outage", "error"):  # exported at 0 from the start, so a rate() has data before any retry
            STAGE_RETRIES.labels(spec.name, cause)
        self._wire()

    def _topic(self, name: str):
        if name not in self.outputs:
            self.outputs[name] = self.app.topic(name, value_serializer="raw", key_serializer="raw",
                                                partitions=self.settings.topic_partitions)
        return self.outputs[name]

    async def _processor(self) -> Processor:
        """The processor, built on first use; a store that is down at start-up is waited for."""
        async with self._building:
            backoff = Backoff()
            while self.processor is None:
                try:
                    self.processor = await self.spec.build(self.settings)
                    # What start-up loaded (the model, torch, faust: ~580k objects) stays: a full
                    # collection that walked it all paused the process 0.1-0.4 s each time.
                    gc.freeze()
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    STAGE_RETRIES.labels(self.spec.name, "outage").inc()
                    log.warning("%s: cannot start yet, a store is down (%s); trying again in %.1fs",
                                self.spec.name, exc, backoff.delay)
                    await backoff.wait()
        return self.processor

    async def emit(self, event: Event) -> None:
        await self._topic(event.TOPIC.value).send(key=event.key.encode(), value=event.encode())
        STAGE_EMITTED.labels(self.spec.name, event.TOPIC.value).inc()

    async def _dead_letter(self, payload: bytes, reason: str) -> None:
        log.warning("%s: dead-lettered a message: %s", self.spec.name, reason)
        await self.dlq.send(value=dead_letter(self.spec.name, self.spec.source, payload, reason))
        STAGE_MESSAGES.labels(self.spec.name, "dead_lettered").inc()

    async def _handle_with_retries(self, processor: Processor, events: list[Event]) -> list[Event]:
        """Handle a batch; wait out a store's outage however long, retry other failures `retries` times."""
        backoff, failures = Backoff(), 0
        while True:
            try:
                return await processor.handle(events)
            except BadMessage:
                raise
            except Exception as exc:
                outage = is_outage(exc)
                if not outage:  # a bug, or input that breaks the processor: retry, then dead-letter
                    failures += 1
                    if failures > self.spec.retries:
                        raise
                STAGE_RETRIES.labels(self.spec.name, "outage" if outage else "error").inc()
                log.warning("%s: batch failed (%s: %s), retrying in %.1fs", self.spec.name,
                            "store outage" if outage else f"failure {failures}", exc, backoff.delay,
                            exc_info=not outage)
                await backoff.wait()

    async def _handle_one_by_one(self, processor: Processor, decoded: list[tuple[bytes, Event]]) -> list[Event]:
        """A batch failed: handle its items alone, so only the culprit goes to the dead-letter topic."""
        emitted: list[Event] = []
        for payload, event in decoded:
            try:
                emitted += await self._handle_with_retries(processor, [event])
                STAGE_MESSAGES.labels(self.spec.name, "processed").inc()
            except Exception as exc:
                await self._dead_letter(payload, f"{type(exc).__name__}: {exc}")
        return emitted

    async def handle_batch(self, payloads: list[bytes]) -> None:
        processor = await self._processor()
        decoded: list[tuple[bytes, Event]] = []
        for payload in payloads:
            if len(payload) > self.settings.kafka_max_message_bytes:  # real Kafka would have refused it
                await self._dead_letter(payload, f"oversize: {len(payload)} bytes, the limit is "
                                                 f"{self.settings.kafka_max_message_bytes}")
                continue
            try:
                decoded.append((payload, decode(self.spec.source, payload)))
            except BadMessage as exc:
                await self._dead_letter(payload, str(exc))
        if not decoded:
            return
        started = time.perf_counter()
        try:
            emitted = await self._handle_with_retries(processor, [event for _, event in decoded])
            STAGE_MESSAGES.labels(self.spec.name, "processed").inc(len(decoded))
        except Exception as exc:
            if len(decoded) == 1:
                await self._dead_letter(decoded[0][0], f"{type(exc).__name__}: {exc}")
                emitted = []
            else:
                emitted = await self._handle_one_by_one(processor, decoded)
        STAGE_BATCH_SECONDS.labels(self.spec.name).observe(time.perf_counter() - started)
        for event in emitted:
            await self.emit(event)

    def _wire(self) -> None:
        app, spec = self.app, self.spec

        @app.agent(self.source, name=f"{spec.name}-agent")
        async def agent(stream):
            stream = stream.noack()  # acknowledged by _handle_and_ack, once handled
            slots = asyncio.Semaphore(spec.in_flight)
            handling: set[asyncio.Task] = set()
            latest: asyncio.Task | None = None
            try:
                async for events in self._batches(stream):
                    await slots.acquire()
                    if latest is not None and latest.done():
                        latest.result()  # a batch that could not even be dead-lettered stops the agent
                    latest = asyncio.create_task(self._handle_and_ack(stream, events, latest, slots))
                    handling.add(latest)
                    latest.add_done_callback(handling.discard)
            finally:
                for task in handling:
                    task.cancel()

        @app.task
        async def replay_backlog() -> None:
            """At start-up (the embedded broker keeps nothing), then whenever the stage has caught up
            with its topic: what is still unfinished then was stored but never announced (a crash
            between a store and its send upstream), so it is sent again rather than left waiting."""
            backoff, pending = Backoff(), True  # the start-up replay is pending until it succeeds once
            while True:
                if pending or self._lag() == 0:
                    try:
                        await self._replay_backlog()
                        pending, backoff = False, Backoff()
                    except Exception as exc:  # a store down: try again soon, the stage goes on meanwhile
                        log.warning("%s: could not replay the backlog (%s); trying again in %.1fs",
                                    spec.name, exc, backoff.delay)
                        await backoff.wait()
                        continue
                await asyncio.sleep(self.settings.backlog_sweep_seconds)

        if spec.tick_seconds is not None:  # a timer only where there is time-based work: it wakes the process
            @app.timer(interval=spec.tick_seconds)
            async def tick() -> None:
                processor = cast(TickingProcessor, await self._processor())
                for event in await processor.tick():
                    await self.emit(event)

        @app.timer(interval=2.0)
        async def measure_lag() -> None:
            lag = self._lag()
            if lag is not None:
                STAGE_LAG.labels(spec.name).set(lag)

        @app.page("/metrics")
        async def metrics(web, request):
            body, content_type = metrics_payload()
            # aiohttp wants the charset apart from the content type.
            return web.bytes(body, content_type=content_type.split(";")[0])

        @app.page("/healthz")
        async def healthz(web, request):
            return web.json({"status": "ok", "stage": spec.name})

        @app.page("/readyz")
        async def readyz(web, request):
            ready = self.ready()
            return web.json({"ready": ready, "stage": spec.name}, status=200 if ready else 503)

    async def _batches(self, stream) -> AsyncIterator[list]:
        """The stream's events in batches of up to `batch_size`, each closed `batch_within` after its
        first event. faust's `take` wakes every `batch_within` to look for events instead: at the
        embedder's 20 ms that alone took 3% of a core, idle or busy."""
        size, within = self.spec.batch_size, self.spec.batch_within
        arrived: asyncio.Queue = asyncio.Queue(maxsize=size)

        async def pump() -> None:
            async for event in stream.events():
                await arrived.put(event)

        loop = asyncio.get_running_loop()
        pumping = asyncio.create_task(pump())
        first = asyncio.ensure_future(arrived.get())
        try:
            while True:
                await asyncio.wait({first, pumping}, return_when=asyncio.FIRST_COMPLETED)
                if not first.done():  # the stream ended (the agent stops) or failed
                    pumping.result()
                    return
                batch, closes_at = [first.result()], loop.time() + within
                while len(batch) < size and (left := closes_at - loop.time()) > 0:
                    try:
                        batch.append(await asyncio.wait_for(arrived.get(), left))
                    except TimeoutError:
                        break
                first = asyncio.ensure_future(arrived.get())
                yield batch
        finally:
            first.cancel()
            pumping.cancel()

    async def _handle_and_ack(self, stream, events: list, previous: asyncio.Task | None,
                              slots: asyncio.Semaphore) -> None:
        """Handle a batch, then acknowledge it once the batch before it is: faust commits up to the
        highest offset acknowledged, so acknowledging out of order could skip an unhandled batch."""
        try:
            await self.handle_batch([event.value for event in events])
            if previous is not None:
                await previous
            for event in events:
                await stream.ack(event)
                self._next_offset[event.message.tp] = event.message.offset + 1  # for the lag gauge
        finally:
            slots.release()

    async def _replay_backlog(self) -> None:
        processor = await self._processor()
        sent = 0
        async for event in processor.backlog():
            await self._topic(self.spec.source.value).send(key=event.key.encode(), value=event.encode())
            sent += 1
        if sent:
            log.info("%s: re-sent %d unfinished items from the warehouse", self.spec.name, sent)

    def _lag(self) -> int | None:
        """Messages of the source topic not handled yet; None when it cannot be told (best effort)."""
        try:
            lag = 0
            for tp in self.app.consumer.assignment():
                high = self.app.consumer.highwater(tp)  # the offset the next message will get
                if high is not None:
                    lag += max(0, high - self._next_offset.get(tp, high))
            return lag
        except Exception:  # never let measuring stop the stage
            log.debug("%s: could not measure lag", self.spec.name, exc_info=True)
            return None

    def ready(self) -> bool:
        """Consuming: its processor built (models loaded, stores open) and its group joined."""
        return self.processor is not None and self.app.rebalancing_count > 0 and not self.app.rebalancing

    def run(self) -> None:
        import faust

        ensure_topics(self.settings)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        worker = faust.Worker(self.app, loglevel="info")
        worker.execute_from_commandline()


def run_stage(spec: StageSpec, settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {spec.name} %(levelname)s %(message)s")
    StageRunner(spec, settings).run()
