"""Start the broker, the local vector store and every service as separate processes; stop them all.

The services are started by their console entry points, never imported: this
package knows their command lines, not their code.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

from llmtwin import registry
from llmtwin.bus.admin import ensure_topics
from llmtwin.infra.broker import tansu
from llmtwin.infra.process import LocalServer
from llmtwin.infra.qdrant_server import qdrant_local
from llmtwin.settings import Settings, settings_env

log = logging.getLogger("devstack")


@dataclass(frozen=True)
class ServiceCommand:
    name: str
    argv: tuple[str, ...]
    port_setting: str
    # What "started" means: stages answer /readyz once consuming (model loaded, group joined). The
    # inference API is ready only with a champion loaded, which a fresh stack gets after training.
    started_path: str = "/readyz"


SERVICES = (
    ServiceCommand("crawler", ("-m", "twin_crawler", "serve"), "crawler_port"),
    ServiceCommand("cleaner", ("-m", "twin_cleaner"), "cleaner_port"),
    ServiceCommand("embedder", ("-m", "twin_embedder"), "embedder_port"),
    ServiceCommand("dataset-builder", ("-m", "twin_dataset_builder"), "dataset_builder_port"),
    ServiceCommand("trainer", ("-m", "twin_trainer", "serve"), "trainer_port"),
    ServiceCommand("inference-api", ("-m", "twin_inference"), "api_port", started_path="/healthz"),
    ServiceCommand("web", ("-m", "twin_web"), "web_port"),
)


def host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else f"tcp://{url}")
    return parsed.hostname or "127.0.0.1", parsed.port or 0


class Stack:
    """The whole system on one machine. Use as a context manager or call start()/stop()."""

    def __init__(self, settings: Settings, *, services: tuple[ServiceCommand, ...] = SERVICES,
                 extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.services = services
        self.logs = settings.data_dir / "logs"
        self.env = {**settings_env(settings), **(extra_env or {})}
        self.processes: list[LocalServer] = []

    def url(self, service: ServiceCommand) -> str:
        return f"http://{self.settings.host}:{getattr(self.settings, service.port_setting)}"

    def start(self, timeout: float = 120.0) -> "Stack":
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self._start_infrastructure()
            # Launch every service at once (each spends seconds importing), then wait for them all.
            launched = [self._launch(service) for service in self.services]
            for service, server in zip(self.services, launched):
                server.wait_ready(timeout=180)
                log.info("started %s on %s", service.name, self.url(service))
            self._wait_started(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_infrastructure(self) -> None:
        host, port = host_port(self.settings.kafka_bootstrap)
        self.processes.append(tansu(host, port, log_path=self.logs / "tansu.log").start())
        ensure_topics(self.settings)
        qhost, qport = host_port(self.settings.qdrant_url)
        self.processes.append(qdrant_local(self.settings.data_dir / "qdrant", qhost, qport,
                                           log_path=self.logs / "qdrant.log").start())
        # Create the registry's tables once, before several services open the database at the same time.
        registry.configure(self.settings)

    def _launch(self, service: ServiceCommand) -> LocalServer:
        port = getattr(self.settings, service.port_setting)
        server = LocalServer(service.name, [sys.executable, *service.argv], self.settings.host, port,
                             log_path=self.logs / f"{service.name}.log", env=self.env)
        self.processes.append(server.launch())
        return server

    def restart(self, name: str, sig: signal.Signals = signal.SIGKILL, timeout: float = 180.0) -> None:
        """Stop one service with `sig` (SIGKILL: a crash; SIGTERM: a shutdown), start it again and wait
        until it has started again. The rest of the stack runs on meanwhile."""
        service = next(s for s in self.services if s.name == name)
        server = next(p for p in self.processes if p.name == name)
        assert server.proc is not None
        server.proc.send_signal(sig)
        server.proc.wait(timeout)
        self.processes.remove(server)
        self._launch(service).wait_ready(timeout)
        self._wait_started(timeout, (service,))

    def _wait_started(self, timeout: float, services: tuple[ServiceCommand, ...] | None = None) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            for service in services or self.services:
                while True:
                    try:
                        if client.get(f"{self.url(service)}{service.started_path}").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{service.name} did not start; see {self.logs / service.name}.log")
                    time.sleep(0.2)

    def stop(self) -> None:
        # Services first (they flush to the broker and stores), infrastructure last.
        for server in reversed(self.processes):
            server.stop()
        self.processes.clear()
        self._stop_training_jobs()

    def _stop_training_jobs(self) -> None:
        """Training jobs outlive the trigger by design (a restarted trigger adopts them); when the
        whole stack stops, this stack's jobs stop too. A stopped job is marked failed and retried."""
        marker = f"TWIN_DATA_DIR={self.settings.data_dir}".encode()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if b"twin_trainer\0job" in (proc / "cmdline").read_bytes() and \
                        marker in (proc / "environ").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), signal.SIGTERM)
            except (OSError, ProcessLookupError):
                continue  # gone meanwhile, or not ours to read

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
