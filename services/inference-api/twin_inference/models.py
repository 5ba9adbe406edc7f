"""Which model answers for which twin, and hot-swapping it without failing a request.

Per twin the manager holds the served champion (its registry version and backend).
A twin without a champion yet is answered by the base model, reported as version
"base", so the API is useful before the first training. A new champion loads on a
worker thread while the old one keeps serving; the swap is one assignment on the event
loop. Requests lease the model they started on: an old model is closed only when its
last lease ends, so requests in flight finish on it.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from llmtwin import registry
from llmtwin.domain import registered_model_name
from llmtwin.models import DEFAULT_BASE_DIRNAME, resolve_base_model
from llmtwin.settings import Settings

from .backends import GenerationBackend, OpenAICompatibleBackend, TransformersBackend
from .metrics import MODEL_LOADS

log = logging.getLogger(__name__)

BASE_VERSION = "base"


class ModelNotReady(RuntimeError):
    """No model is loaded yet that could answer."""


@dataclass(eq=False)
class ServedModel:
    twin_id: str | None  # None: the shared base model
    version: str  # the registry version, or BASE_VERSION
    backend: GenerationBackend
    leases: int = 0
    retired: bool = False  # replaced (or the manager closed): no new request leases it
    released: bool = False  # its backend is closed

    async def release(self) -> None:
        """Close the backend, once (when a retired model's last lease ends)."""
        if not self.released:
            self.released = True
            await self.backend.aclose()


class ModelLoader(Protocol):
    """Builds backends; blocking calls, run on a worker thread by the manager."""

    def load_base(self) -> GenerationBackend: ...

    def load_version(self, twin_id: str, version: str) -> GenerationBackend: ...


class TransformersLoader:
    """Loads models into this process: the base from settings, twin versions from the registry."""

    def __init__(self, settings: Settings, device: str | None = None) -> None:
        self.settings, self.device = settings, device

    def load_base(self) -> GenerationBackend:
        return TransformersBackend.from_base(resolve_base_model(self.settings), self.device)

    def load_version(self, twin_id: str, version: str) -> GenerationBackend:
        folder = registry.download_model(twin_id, version, dst=self._download_dir(twin_id, version))
        return TransformersBackend.from_twin_folder(folder, self.device, self.settings)

    def _download_dir(self, twin_id: str, version: str) -> Path:
        return self.settings.models_dir / "serving" / twin_id / version


class RemoteLoader:
    """Backends on an OpenAI-compatible server (vLLM, TGI...). The server serves the base model
    under the name `settings.base_model` (default: the SmolLM2 folder's name) and each twin
    version under `remote_model_name` (e.g. vLLM `--lora-modules twin-ada-v3=/models/twin-ada/3`,
    or its runtime `/v1/load_lora_adapter`); a promotion switches to the new version's name."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        key = settings.generation_server_api_key
        self._api_key = key.get_secret_value() if key else None

    def load_base(self) -> GenerationBackend:
        name = self.settings.base_model or DEFAULT_BASE_DIRNAME
        return OpenAICompatibleBackend(self.settings.generation_server_url, name, self._api_key)

    def load_version(self, twin_id: str, version: str) -> GenerationBackend:
        return OpenAICompatibleBackend(self.settings.generation_server_url, remote_model_name(twin_id, version),
                                       self._api_key)


def remote_model_name(twin_id: str, version: str) -> str:
    return f"{registered_model_name(twin_id)}-v{version}"


def loader_for(settings: Settings) -> ModelLoader:
    return RemoteLoader(settings) if settings.generation_server_url else TransformersLoader(settings)


@dataclass
class ModelManager:
    loader: ModelLoader
    # Blocking: the twin's champion in the registry (version, run, tags), or None.
    champion_of: Callable[[str], registry.ChampionRef | None] = registry.champion
    _base: ServedModel | None = None
    _champions: dict[str, ServedModel] = field(default_factory=dict)
    _load_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _background: set[asyncio.Task] = field(default_factory=set)

    def ready(self) -> bool:
        """Some model can answer: the base, or at least one champion."""
        return self._base is not None or bool(self._champions)

    def can_serve(self, twin_id: str) -> bool:
        return twin_id in self._champions or self._base is not None

    def version_of(self, twin_id: str) -> str | None:
        """The version that would answer for `twin_id` now; None when nothing is loaded."""
        served = self._champions.get(twin_id) or self._base
        return served.version if served else None

    @asynccontextmanager
    async def lease(self, twin_id: str) -> AsyncIterator[ServedModel]:
        """The model answering for `twin_id`, kept open until the request ends."""
        served = self._champions.get(twin_id) or self._base
        if served is None:
            raise ModelNotReady("no model is loaded yet; try again shortly (see /readyz)")
        served.leases += 1
        try:
            yield served
        finally:
            served.leases -= 1
            if served.retired and served.leases == 0:
                await served.release()

    async def load_base(self) -> None:
        backend = await self._load(self.loader.load_base)
        self._swap(None, ServedModel(None, BASE_VERSION, backend))

    async def load_champion(self, twin_id: str) -> str | None:
        """Serve the registry's current champion of `twin_id`; returns its version (None: no champion)."""
        async with self._load_locks.setdefault(twin_id, asyncio.Lock()):
            ref = await asyncio.to_thread(self.champion_of, twin_id)
            if ref is None:
                return None
            current = self._champions.get(twin_id)
            if current is not None and current.version == ref.version:
                return ref.version
            backend = await self._load(self.loader.load_version, twin_id, ref.version)
            self._swap(twin_id, ServedModel(twin_id, ref.version, backend))
            log.info("twin %s: now serving version %s (%s)", twin_id, ref.version, backend.description)
            return ref.version

    async def install(self, twin_id: str, version: str, backend: GenerationBackend) -> None:
        """Serve an already loaded backend as `twin_id`'s champion (what load_champion ends with)."""
        self._swap(twin_id, ServedModel(twin_id, version, backend))

    def in_background(self, load: Callable[[], object], what: str) -> asyncio.Task:
        """Run a load without waiting for it; a failure is logged and the current model keeps serving."""
        async def guarded() -> None:
            try:
                await load()
            except Exception:
                log.exception("%s failed; the current model keeps serving", what)

        task = asyncio.create_task(guarded(), name=f"load {what}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def load_all_in_background(self, twin_ids: Iterable[str], *, base: bool = True) -> list[asyncio.Task]:
        """Start-up: the base model and every known twin's champion, without delaying start-up."""
        tasks = [self.in_background(self.load_base, "loading the base model")] if base else []
        tasks += [self.in_background(lambda t=twin_id: self.load_champion(t), f"loading {twin_id}'s champion")
                  for twin_id in twin_ids]
        return tasks

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for served in [self._base, *self._champions.values()]:
            if served is not None:
                served.retired = True
                if served.leases == 0:
                    await served.release()

    async def _load(self, fn: Callable[..., GenerationBackend], *args: str) -> GenerationBackend:
        try:
            backend = await asyncio.to_thread(fn, *args)
        except Exception:
            MODEL_LOADS.labels("failed").inc()
            raise
        MODEL_LOADS.labels("loaded").inc()
        return backend

    def _swap(self, twin_id: str | None, new: ServedModel) -> None:
        # One assignment on the loop: a request leases either the old model or the new one.
        if twin_id is None:
            old, self._base = self._base, new
        else:
            old, self._champions[twin_id] = self._champions.get(twin_id), new
        if old is not None:
            old.retired = True
            if old.leases == 0:
                self.in_background(old.release, f"closing {old.version}")
