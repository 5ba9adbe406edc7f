"""An ASGI app served by a real uvicorn server on a free loopback port, in a thread of its own,
so synchronous tests (and the openai client) can call it over HTTP."""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

from llmtwin.infra.process import free_port


class ServedApp:
    def __init__(self, app, *, log_level: str = "warning", graceful_seconds: float | None = None) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level=log_level,
                                                    lifespan="on", timeout_graceful_shutdown=graceful_seconds))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.server.serve(),),
                                       daemon=True)

    def start(self) -> "ServedApp":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.02)
        return self

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 120) -> Any:
        """Run a coroutine on the server's loop (where the app's objects live) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        # Tasks a library left waiting for the server's exit (sse-starlette's watcher) end with the loop.
        leftovers = asyncio.all_tasks(self.loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            self.loop.run_until_complete(asyncio.wait(leftovers))
        self.loop.close()
