"""The faust app every stage runs in: faust's aiokafka transport, with the consumer's held fetch
shortened (faust fixes it at 1.5 s and offers no setting).

A fetch that finds no data waits up to `fetch_max_wait_ms` for some. Kafka answers it the
moment a message arrives; Tansu, the embedded broker, looks again only at halvings of the
wait (after 0.75 s, 1.1 s, 1.3 s and 1.5 s of 1.5 s), so a message waited 0.26 s on average
before its stage saw it, and the feature pipeline started with both cores idle for 0.5-1.9
core-seconds (two hops before the embedder's first batch). At aiokafka's and Kafka's own
default of 500 ms the looks come 0.25 s apart at most (0.09 s on average); shorter waits cost
the idle broker more (at 100 ms it spent 0.3 CPU-s more per 16 s of the feature pipeline).
"""
from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver

from ..settings import Settings

FETCH_MAX_WAIT_MS = 500


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class _App(faust.App):
    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)


def make_faust_app(app_id: str, settings: Settings, port: int) -> faust.App:
    """The faust app with the settings measured to work on Tansu and on Kafka."""
    return _App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=True,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=10,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=settings.kafka_max_message_bytes,
        web_host=settings.host,
        web_port=port,
        web_enabled=True,
        autodiscover=False,
        # faust keeps a folder per app (it makes only the last level): under data_dir, not in the cwd.
        datadir=str(settings.data_dir / app_id),
    )
