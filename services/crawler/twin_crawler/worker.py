"""Runs a crawl in a worker process so the service's event loop never blocks.

Each crawl gets a fresh process (spawned, one task per child): Scrapy's asyncio loop,
git and archive reads stay out of the service, and nothing leaks between crawls.
"""
from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from .config import CrawlConfig
from .items import CrawlTarget, Item
from .routing import source_for


def collect(target: CrawlTarget, config: CrawlConfig) -> list[Item]:
    """Everything one source yields for a target (runs in the worker; may block)."""
    return list(source_for(target.platform, target.url, config).collect(target))


class CrawlWorker:
    def __init__(self, config: CrawlConfig, max_workers: int = 1) -> None:
        self.config = config
        self._pool = ProcessPoolExecutor(max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"),
                                         max_tasks_per_child=1)

    async def run(self, target: CrawlTarget) -> list[Item]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, collect, target, self.config)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
