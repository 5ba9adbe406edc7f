"""The training trigger: `instruct_samples` consumed like a change stream.

Per twin it counts the samples that are new since its last dataset version. When
the count reaches `train_min_new_samples` and no new sample has come for
`train_quiet_seconds`, and no job of that twin is queued or running, it cuts a
dataset version and starts a training job through a `JobLauncher`. Samples of a
document its author withdrew that the last version held start one however few they
are: the person asked that the twin forget them.

Crash safety: the counts (the pending sample ids) live in the warehouse, so a
restart loses none, and replayed messages are not counted twice. A job's id is a
hash of the twin and the dataset version, so a restart never creates the same job
twice; a launch is recorded with the process it started, so a restarted trigger
adopts a job still running instead of starting it again. Jobs whose process is
gone without having recorded a final state are marked failed, with the reason.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field

from llmtwin.bus.stage import StageSpec
from llmtwin.datasets import EmptyDataset, cut_dataset_version, get_dataset_version
from llmtwin.domain import JobState, TrainingJob, stable_id, utcnow
from llmtwin.events import Event, SamplesWithdrawn, SampleStored, Topic
from llmtwin.settings import Settings
from llmtwin.warehouse import Collection, Warehouse, open_warehouse
from llmtwin.warehouse.repository import Repository

from .launchers import JobLauncher, LaunchRecord, launcher_from_settings

log = logging.getLogger(__name__)

PENDING = Gauge("twin_trigger_pending_samples", "Samples new since the twin's last dataset version", ["twin"])
JOBS = Counter("twin_trigger_jobs_total", "Training jobs the trigger started or closed, by outcome", ["outcome"])

ACTIVE_STATES = [JobState.QUEUED.value, JobState.RUNNING.value]
FINAL_STATES = {JobState.SUCCEEDED, JobState.FAILED}


def training_job_id(twin_id: str, dataset_version: str) -> str:
    return stable_id("training-job", twin_id, dataset_version)


class TwinTriggerState(BaseModel):
    """What the trigger knows of one twin; stored in `trigger_state` as `twin:<twin_id>`."""

    id: str
    type: Literal["twin"] = "twin"
    twin_id: str
    pending_sample_ids: list[str] = Field(default_factory=list)
    withdrawn_document_ids: list[str] = Field(default_factory=list)  # in the last version, withdrawn since
    last_new_sample_at: float = 0.0  # epoch seconds: wall time survives restarts, monotonic time does not
    last_cut_at: float = 0.0
    last_dataset_version: str | None = None

    @classmethod
    def new(cls, twin_id: str) -> "TwinTriggerState":
        return cls(id=f"twin:{twin_id}", twin_id=twin_id)


class TrainingTrigger:
    def __init__(self, warehouse: Warehouse, launcher: JobLauncher, *, min_new_samples: int,
                 quiet_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.warehouse, self.launcher, self.clock = warehouse, launcher, clock
        self.min_new_samples, self.quiet_seconds = min_new_samples, quiet_seconds
        self.jobs = Repository(warehouse, Collection.TRAINING_JOBS, TrainingJob)
        self.states = Repository(warehouse, Collection.TRIGGER_STATE, TwinTriggerState)
        self.launches = Repository(warehouse, Collection.TRIGGER_STATE, LaunchRecord)
        self._version_samples: dict[str, frozenset[str]] = {}  # dataset versions are immutable: cache them
        # handle() and tick() share the loop: one read-modify-write of a twin's state at a time.
        self._lock = asyncio.Lock()

    # --- the change stream ---------------------------------------------------------------

    async def handle(self, events: list[Event]) -> list[Event]:
        stored: dict[str, list[str]] = {}
        withdrawn: dict[str, list[SamplesWithdrawn]] = {}
        for event in events:
            if isinstance(event, SampleStored):
                stored.setdefault(event.twin_id, []).append(event.id)
            elif isinstance(event, SamplesWithdrawn):
                withdrawn.setdefault(event.twin_id, []).append(event)
        async with self._lock:
            for twin_id in stored.keys() | withdrawn.keys():
                state = await self.states.get(f"twin:{twin_id}") or TwinTriggerState.new(twin_id)
                trained = await self._samples_of(state.last_dataset_version)
                new = set(stored.get(twin_id, [])) - set(state.pending_sample_ids) - trained  # a replay is not news
                forgotten = {e.document_id for e in withdrawn.get(twin_id, []) if trained.intersection(e.sample_ids)}
                forgotten -= set(state.withdrawn_document_ids)
                if new or forgotten:
                    state.pending_sample_ids = sorted(set(state.pending_sample_ids) | new)
                    state.withdrawn_document_ids = sorted(set(state.withdrawn_document_ids) | forgotten)
                    state.last_new_sample_at = self.clock()
                    await self.states.add(state)
                PENDING.labels(twin_id).set(len(state.pending_sample_ids))
        return []

    async def backlog(self) -> AsyncIterator[Event]:
        # Nothing to replay: the pending counts are in the warehouse already.
        return
        yield

    async def _samples_of(self, version_id: str | None) -> frozenset[str]:
        if version_id is None:
            return frozenset()
        if version_id not in self._version_samples:
            version = await get_dataset_version(self.warehouse, version_id)
            self._version_samples[version_id] = frozenset(version.sample_ids)
        return self._version_samples[version_id]

    # --- time-based work ------------------------------------------------------------------

    async def tick(self) -> list[Event]:
        try:
            await self.watch_jobs()
        except Exception:  # the warehouse may be away for a moment: watch again next tick
            log.exception("watching training jobs failed")
        async with self._lock:
            for state in await self.states.list({"type": "twin"}):
                try:
                    if await self._due(state):
                        await self._start_training(state)
                except Exception:  # one twin's trouble must not stop the others' training
                    log.exception("trigger for twin %s failed; will try again", state.twin_id)
        return []

    async def _due(self, state: TwinTriggerState) -> bool:
        now = self.clock()
        return ((len(state.pending_sample_ids) >= self.min_new_samples or bool(state.withdrawn_document_ids))
                and now - state.last_new_sample_at >= self.quiet_seconds
                and state.last_new_sample_at >= state.last_cut_at  # something new since the last try
                and await self.jobs.count({"twin_id": state.twin_id, "state": ACTIVE_STATES}) == 0)

    async def _start_training(self, state: TwinTriggerState) -> None:
        try:
            version = await cut_dataset_version(self.warehouse, state.twin_id)
        except EmptyDataset:
            version = None
        if version is not None and version.id != state.last_dataset_version:
            job_id = training_job_id(state.twin_id, version.id)
            if await self.jobs.get(job_id) is None:  # after a restart it may exist: never create it twice
                await self.jobs.add(TrainingJob(id=job_id, twin_id=state.twin_id, dataset_version=version.id))
                log.info("twin %s: %d new samples, %d documents withdrawn, dataset version %s, job %s queued",
                         state.twin_id, len(state.pending_sample_ids), len(state.withdrawn_document_ids),
                         version.id, job_id)
        # What the version holds is no longer new; neither are samples deleted since they came.
        covered = await self._samples_of(version.id) if version else frozenset()
        still_live = await self.warehouse.ids(Collection.INSTRUCT_SAMPLES, {"id": state.pending_sample_ids})
        state.pending_sample_ids = sorted(still_live - covered)
        state.withdrawn_document_ids = []  # the version just cut (or none: the twin has nothing left) lacks them
        state.last_cut_at = self.clock()
        if version is not None:
            state.last_dataset_version = version.id
        await self.states.add(state)
        PENDING.labels(state.twin_id).set(len(state.pending_sample_ids))
        if version is not None:
            await self._launch_queued(state.twin_id)

    async def _launch_queued(self, twin_id: str) -> None:
        for job in await self.jobs.list({"twin_id": twin_id, "state": JobState.QUEUED.value}):
            if await self.launches.get(LaunchRecord.key(job.id)) is None:
                await self._launch(job)

    async def _launch(self, job: TrainingJob) -> None:
        record = await self.launcher.find(job) or await self.launcher.launch(job)
        await self.launches.add(record)
        current = await self.jobs.get(job.id)
        if current is not None and current.state == JobState.QUEUED:  # the job may have moved on by itself
            await self.jobs.add(current.model_copy(update={
                "state": JobState.RUNNING, "message": f"started by {record.launcher} ({record.handle})",
                "updated_at": utcnow()}))
        JOBS.labels("started").inc()

    # --- watching jobs ----------------------------------------------------------------------

    async def reconcile(self) -> None:
        """At start-up: launch jobs queued before a crash, adopt running ones, fail the ones whose process is gone."""
        for job in await self.jobs.list({"state": ACTIVE_STATES}):
            if await self.launches.get(LaunchRecord.key(job.id)) is not None:
                continue  # watch_jobs below tells whether its process still runs
            found = await self.launcher.find(job)
            if found is not None:
                await self.launches.add(found)
            elif job.state == JobState.QUEUED:
                await self._launch(job)
            else:
                await self._fail(job, "no record of its process: the trigger stopped while launching it")
        await self.watch_jobs()

    async def watch_jobs(self) -> None:
        for job in await self.jobs.list({"state": ACTIVE_STATES}):
            record = await self.launches.get(LaunchRecord.key(job.id))
            if record is None:
                continue  # queued and not yet launched
            status = await self.launcher.exit_status(record)
            if status is None:
                continue
            current = await self.jobs.get(job.id)  # the job records its own final state: read it fresh
            if current is not None and current.state not in FINAL_STATES:
                tail = await self.launcher.log_tail(record)
                await self._fail(current, f"the job's process {status.detail} without recording a final state "
                                          f"(log: {record.log_path})" + (f"; last output:\n{tail}" if tail else ""))
            else:
                JOBS.labels(current.state.value if current else "vanished").inc()

    async def _fail(self, job: TrainingJob, reason: str) -> None:
        log.warning("job %s failed: %s", job.id, reason)
        await self.jobs.add(job.model_copy(update={"state": JobState.FAILED, "message": reason,
                                                   "updated_at": utcnow()}))
        JOBS.labels("failed").inc()

    async def close(self) -> None:
        await self.warehouse.close()


async def build_trigger(settings: Settings) -> TrainingTrigger:
    # The Docker client asks the engine for its API version: blocking I/O, off the loop.
    launcher = await asyncio.to_thread(launcher_from_settings, settings)
    trigger = TrainingTrigger(open_warehouse(settings.warehouse), launcher,
                              min_new_samples=settings.train_min_new_samples,
                              quiet_seconds=settings.train_quiet_seconds)
    await trigger.reconcile()
    return trigger


def trigger_spec(settings: Settings) -> StageSpec:
    return StageSpec(name="trainer-trigger", source=Topic.INSTRUCT_SAMPLES, port=settings.trainer_port,
                     build=build_trigger, batch_size=64, batch_within=0.5, tick_seconds=1.0)
