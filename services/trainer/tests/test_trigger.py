"""The training trigger over a real SQLite warehouse: counting, quiet period, one job at a time, crashes.

The launcher is a fake in the logic tests (the subject is the trigger above it) and the real
SubprocessLauncher, with small Python commands for jobs, in the launcher tests."""
from __future__ import annotations

import sys
import textwrap
import uuid

import pytest

from llmtwin.domain import CleanDocument, DocumentKind, InstructSample, JobState, Platform, TrainingJob, content_hash
from llmtwin.events import SamplesWithdrawn, SampleStored
from llmtwin.settings import Settings, settings_env
from llmtwin.warehouse import Collection, open_warehouse
from llmtwin.warehouse.repository import Repository
from twin_trainer.launchers import ExitStatus, LaunchRecord, SubprocessLauncher
from twin_trainer.trigger import TrainingTrigger, training_job_id

THRESHOLD, QUIET = 5, 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeLauncher:
    """Records launches; a job's 'process' runs until the test finishes it."""

    name = "fake"

    def __init__(self) -> None:
        self.launched: list[str] = []
        self.running: set[str] = set()
        self.found: dict[str, str] = {}  # job id -> handle of a process that runs already

    async def launch(self, job: TrainingJob) -> LaunchRecord:
        self.launched.append(job.id)
        self.running.add(job.id)
        return LaunchRecord(id=LaunchRecord.key(job.id), job_id=job.id, twin_id=job.twin_id, launcher=self.name,
                            handle=f"proc-{len(self.launched)}", log_path="/dev/null")

    async def find(self, job: TrainingJob) -> LaunchRecord | None:
        if job.id not in self.found:
            return None
        return LaunchRecord(id=LaunchRecord.key(job.id), job_id=job.id, twin_id=job.twin_id, launcher=self.name,
                            handle=self.found[job.id], log_path="/dev/null")

    async def exit_status(self, record: LaunchRecord) -> ExitStatus | None:
        return None if record.job_id in self.running else ExitStatus(code=1, detail="exited with code 1")

    async def log_tail(self, record: LaunchRecord, max_chars: int = 600) -> str:
        return "Traceback: out of memory"


@pytest.fixture
async def warehouse(sqlite_url):
    opened = open_warehouse(sqlite_url)
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def launcher() -> FakeLauncher:
    return FakeLauncher()


def trigger_over(warehouse, launcher, clock) -> TrainingTrigger:
    return TrainingTrigger(warehouse, launcher, min_new_samples=THRESHOLD, quiet_seconds=QUIET, clock=clock)


async def new_samples(warehouse, count: int, *, twin_id: str = "ada", start: int = 0) -> list[SampleStored]:
    """Stores `count` samples of one new document, as the dataset-builder would, and their events."""
    link = f"https://blog/{twin_id}/{start}"
    doc = CleanDocument(id=f"{twin_id}-doc-{start}", twin_id=twin_id, platform=Platform.BLOG,
                        kind=DocumentKind.ARTICLE, link=link, content=link, content_hash=content_hash(link),
                        raw_hash=content_hash(link))
    await Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument).add(doc)
    events = []
    for i in range(start, start + count):
        sample = InstructSample.create(twin_id=twin_id, document_id=doc.id, kind=doc.kind,
                                       instruction=f"Write part {i}.", answer=f"Part {i} in my own words.")
        await Repository(warehouse, Collection.INSTRUCT_SAMPLES, InstructSample).add(sample)
        events.append(SampleStored(id=sample.id, twin_id=twin_id, document_id=doc.id, split=sample.split))
    return events


async def jobs_of(warehouse, twin_id: str = "ada") -> list[TrainingJob]:
    return await Repository(warehouse, Collection.TRAINING_JOBS, TrainingJob).list({"twin_id": twin_id})


async def test_below_the_threshold_no_job_starts(warehouse, launcher, clock):
    trigger = trigger_over(warehouse, launcher, clock)
    await trigger.handle(await new_samples(warehouse, THRESHOLD - 1))
    clock.now += QUIET * 10
    await trigger.tick()
    assert await jobs_of(warehouse) == [] and launcher.launched == []


async def test_threshold_and_quiet_start_exactly_one_job_despite_replays_and_restarts(warehouse, launcher, clock):
    trigger = trigger_over(warehouse, launcher, clock)
    events = await new_samples(warehouse, THRESHOLD)
    await trigger.handle(events)
    clock.now += QUIET / 2
    await trigger.tick()
    assert launcher.launched == []  # the stream is not quiet yet

    await trigger.handle(events)  # a replay is not news: the quiet period is not reset
    clock.now += QUIET / 2
    await trigger.tick()
    [job] = await jobs_of(warehouse)
    assert launcher.launched == [job.id]
    assert job.state == JobState.RUNNING and job.id == training_job_id("ada", job.dataset_version)
    version = await warehouse.get(Collection.DATASET_VERSIONS, job.dataset_version)
    assert sorted(version["sample_ids"]) == sorted(e.id for e in events)

    # The broker replays everything to a restarted trigger: still one job, launched once.
    launcher.running.clear()
    await Repository(warehouse, Collection.TRAINING_JOBS, TrainingJob).add(
        job.model_copy(update={"state": JobState.SUCCEEDED}))
    restarted = trigger_over(warehouse, launcher, clock)
    await restarted.reconcile()
    await restarted.handle(events)
    clock.now += QUIET * 2
    await restarted.tick()
    assert len(await jobs_of(warehouse)) == 1 and launcher.launched == [job.id]


async def test_counts_survive_a_restart(warehouse, launcher, clock):
    await trigger_over(warehouse, launcher, clock).handle(await new_samples(warehouse, THRESHOLD - 2))
    restarted = trigger_over(warehouse, launcher, clock)
    await restarted.reconcile()
    await restarted.handle(await new_samples(warehouse, 2, start=100))
    clock.now += QUIET
    await restarted.tick()
    [job] = await jobs_of(warehouse)
    assert launcher.launched == [job.id]


async def test_no_second_job_while_one_runs_and_the_next_one_waits_for_it(warehouse, launcher, clock):
    trigger = trigger_over(warehouse, launcher, clock)
    await trigger.handle(await new_samples(warehouse, THRESHOLD))
    clock.now += QUIET
    await trigger.tick()
    [first] = await jobs_of(warehouse)

    await trigger.handle(await new_samples(warehouse, THRESHOLD, start=100))
    clock.now += QUIET
    await trigger.tick()
    assert [j.id for j in await jobs_of(warehouse)] == [first.id]

    # The first job records its verdict and its process ends: now the second one starts.
    await Repository(warehouse, Collection.TRAINING_JOBS, TrainingJob).add(
        first.model_copy(update={"state": JobState.SUCCEEDED}))
    launcher.running.discard(first.id)
    await trigger.tick()
    jobs = {j.id: j for j in await jobs_of(warehouse)}
    assert len(jobs) == 2 and jobs[first.id].state == JobState.SUCCEEDED
    [second] = [j for j in jobs.values() if j.id != first.id]
    assert launcher.launched == [first.id, second.id]
    version = await warehouse.get(Collection.DATASET_VERSIONS, second.dataset_version)
    assert len(version["sample_ids"]) == 2 * THRESHOLD


async def test_a_withdrawn_document_the_last_version_held_starts_a_job_however_few_its_samples(
        warehouse, launcher, clock):
    trigger = trigger_over(warehouse, launcher, clock)
    kept, [gone] = await new_samples(warehouse, THRESHOLD), await new_samples(warehouse, 1, start=100)
    await trigger.handle([*kept, gone])
    clock.now += QUIET
    await trigger.tick()
    [first] = await jobs_of(warehouse)
    jobs = Repository(warehouse, Collection.TRAINING_JOBS, TrainingJob)
    await jobs.add(first.model_copy(update={"state": JobState.SUCCEEDED}))
    launcher.running.discard(first.id)

    # Samples no version held (a document withdrawn before any training saw it) change nothing.
    await trigger.handle([SamplesWithdrawn.of("ada", "never-trained", ["not-in-any-version"])])
    clock.now += QUIET
    await trigger.tick()
    assert len(await jobs_of(warehouse)) == 1

    # The dataset-builder deleted the withdrawn document's one sample and says so: a job starts, after the quiet period.
    await warehouse.delete(Collection.INSTRUCT_SAMPLES, gone.id)
    withdrawal = SamplesWithdrawn.of("ada", gone.document_id, [gone.id])
    await trigger.handle([withdrawal])
    clock.now += QUIET / 2
    await trigger.tick()
    assert len(await jobs_of(warehouse)) == 1
    clock.now += QUIET / 2
    await trigger.tick()
    [second] = [job for job in await jobs_of(warehouse) if job.id != first.id]
    version = await warehouse.get(Collection.DATASET_VERSIONS, second.dataset_version)
    assert sorted(version["sample_ids"]) == sorted(e.id for e in kept)

    # Replayed after the cut, the withdrawal is old news.
    await jobs.add(second.model_copy(update={"state": JobState.SUCCEEDED}))
    launcher.running.discard(second.id)
    await trigger.handle([withdrawal])
    clock.now += QUIET
    await trigger.tick()
    assert len(await jobs_of(warehouse)) == 2 and launcher.launched == [first.id, second.id]


async def test_a_job_whose_process_ends_without_a_final_state_is_failed_with_the_reason(warehouse, launcher, clock):
    trigger = trigger_over(warehouse, launcher, clock)
    await trigger.handle(await new_samples(warehouse, THRESHOLD))
    clock.now += QUIET
    await trigger.tick()
    launcher.running.clear()  # it died
    await trigger.tick()
    [job] = await jobs_of(warehouse)
    assert job.state == JobState.FAILED
    assert "exited with code 1 without recording a final state" in job.message
    assert "out of memory" in job.message


async def test_restart_launches_a_job_queued_before_the_crash_and_adopts_a_running_one(warehouse, launcher, clock):
    jobs = Repository(warehouse, Collection.TRAINING_JOBS, TrainingJob)
    await jobs.add(TrainingJob(id="queued-job", twin_id="ada", dataset_version="v1"))
    await jobs.add(TrainingJob(id="orphan-job", twin_id="bob", dataset_version="v2", state=JobState.RUNNING))
    await jobs.add(TrainingJob(id="adopted-job", twin_id="cy", dataset_version="v3"))
    launcher.found["adopted-job"] = "proc-still-running"
    launcher.running.add("adopted-job")

    await trigger_over(warehouse, launcher, clock).reconcile()
    assert launcher.launched == ["queued-job"]  # never the one whose process runs already
    states = {j.id: j for j in await jobs.list()}
    assert states["queued-job"].state == JobState.RUNNING
    assert states["orphan-job"].state == JobState.FAILED and "no record of its process" in states["orphan-job"].message
    assert states["adopted-job"].state == JobState.QUEUED
    adopted = await warehouse.get(Collection.TRIGGER_STATE, LaunchRecord.key("adopted-job"))
    assert adopted["handle"] == "proc-still-running"


# --- the real SubprocessLauncher -------------------------------------------------------------

FINISH_JOB = textwrap.dedent("""
    import asyncio, sys
    from llmtwin.settings import Settings
    from llmtwin.warehouse import open_warehouse

    async def main():
        warehouse = open_warehouse(Settings().warehouse)
        job = await warehouse.get("training_jobs", sys.argv[1])
        await warehouse.upsert("training_jobs", {**job, "state": "succeeded", "model_version": "1"})
        await warehouse.close()

    asyncio.run(main())
""")
CRASH = "import sys; print('loading the base model'); raise RuntimeError('CUDA out of memory, job ' + sys.argv[1])"


async def run_until_final(trigger: TrainingTrigger, job_id: str, timeout: float = 60.0) -> TrainingJob:
    import asyncio

    jobs = Repository(trigger.warehouse, Collection.TRAINING_JOBS, TrainingJob)
    for _ in range(int(timeout / 0.05)):
        await trigger.watch_jobs()
        job = await jobs.get(job_id)
        if job.state in (JobState.SUCCEEDED, JobState.FAILED) and \
                await trigger.launcher.exit_status(await trigger.launches.get(LaunchRecord.key(job_id))) is not None:
            return job
        await asyncio.sleep(0.05)
    raise TimeoutError(f"job {job_id} did not finish")


@pytest.mark.parametrize("script, state", [(FINISH_JOB, JobState.SUCCEEDED), (CRASH, JobState.FAILED)])
async def test_subprocess_launcher_runs_a_job_and_fails_it_when_it_crashes(tmp_path, clock, script, state):
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    warehouse = open_warehouse(settings.warehouse)
    try:
        launcher = SubprocessLauncher(settings.data_dir / "logs" / "jobs", settings_env(settings),
                                      command=lambda job: [sys.executable, "-c", script, job.id])
        trigger = TrainingTrigger(warehouse, launcher, min_new_samples=THRESHOLD, quiet_seconds=QUIET, clock=clock)
        await trigger.handle(await new_samples(warehouse, THRESHOLD))
        clock.now += QUIET
        await trigger.tick()
        [job] = await jobs_of(warehouse)
        record = await trigger.launches.get(LaunchRecord.key(job.id))
        assert record.launcher == "subprocess" and record.handle.isdigit()

        finished = await run_until_final(trigger, job.id)
        assert finished.state == state
        log_text = (settings.data_dir / "logs" / "jobs" / f"{job.id}.log").read_text()
        if state == JobState.FAILED:
            assert "exited with code 1 without recording a final state" in finished.message
            assert f"CUDA out of memory, job {job.id}" in finished.message
            assert "loading the base model" in log_text
        else:
            assert finished.model_version == "1" and finished.message.startswith("started by subprocess")
    finally:
        await warehouse.close()


async def test_a_real_training_job_killed_mid_training_is_failed_and_the_champion_stays(
        bus_settings, tiny_base_model, samples_for, with_registry, clock, tmp_path):
    import asyncio
    import os
    import signal

    from llmtwin import registry
    from llmtwin.domain import Split, Twin

    from .test_job import job_settings, register_a_champion

    # Far more steps than the test waits for: the job is surely mid-training when it dies.
    settings = with_registry(job_settings(bus_settings, tiny_base_model, train_max_steps=100_000))
    register_a_champion("ann", tmp_path / "adapter")

    warehouse = open_warehouse(settings.warehouse)
    try:
        await Repository(warehouse, Collection.TWINS, Twin).add(Twin.named("Ann"))
        samples = samples_for("ann", 8, Split.TRAIN) + samples_for("ann", 3, Split.TEST)
        for sample in samples:  # each from a clean document of its own, as the dataset-builder leaves them
            await Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument).add(CleanDocument(
                id=sample.document_id, twin_id="ann", platform=Platform.BLOG, kind=sample.kind, link=sample.id,
                content=sample.answer, content_hash=content_hash(sample.answer), raw_hash=content_hash(sample.answer)))
            await Repository(warehouse, Collection.INSTRUCT_SAMPLES, InstructSample).add(sample)
        trigger = TrainingTrigger(warehouse, SubprocessLauncher(settings.data_dir / "logs", settings_env(settings)),
                                  min_new_samples=1, quiet_seconds=0, clock=clock)
        await trigger.handle([SampleStored(id=s.id, twin_id="ann", document_id=s.document_id, split=s.split)
                              for s in samples])
        await trigger.tick()
        [job] = await jobs_of(warehouse, "ann")
        jobs = Repository(warehouse, Collection.TRAINING_JOBS, TrainingJob)
        for _ in range(1200):  # until it reports training steps
            running = await jobs.get(job.id)
            if running.message.startswith("training step"):
                break
            await asyncio.sleep(0.1)
        assert running.state == JobState.RUNNING and running.message.startswith("training step")
        record = await trigger.launches.get(LaunchRecord.key(job.id))
        os.kill(int(record.handle), signal.SIGKILL)
        failed = await run_until_final(trigger, job.id)
    finally:
        await warehouse.close()

    assert failed.state == JobState.FAILED
    assert "exited with code -9 without recording a final state" in failed.message
    assert failed.model_version is None
    assert registry.champion("ann").version == "1"
    assert [v.version for v in registry.list_versions("ann")] == ["1"]  # nothing half-registered


async def test_a_restarted_trigger_finds_a_job_process_that_still_runs_and_notices_when_it_ends(tmp_path):
    import asyncio

    settings = Settings(data_dir=tmp_path / "data")
    # The job waits for a file to appear, so the test decides when its process ends.
    release = tmp_path / "release"
    script = (f"import pathlib, sys, time\nwhile not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)\n"
              "sys.exit(3)")
    command = lambda job: [sys.executable, "-c", script, job.id]  # noqa: E731
    first = SubprocessLauncher(settings.data_dir / "logs", {}, command=command)
    # find() looks for the job id among all processes: unique, so a parallel run of this test is not found.
    job = TrainingJob(id=f"job-{uuid.uuid4().hex}", twin_id="ada", dataset_version="v1")
    record = await first.launch(job)
    try:
        second = SubprocessLauncher(settings.data_dir / "logs", {}, command=command)  # the restarted trigger's
        found = await second.find(job)
        assert found is not None and found.handle == record.handle
        assert await second.exit_status(found) is None
        release.touch()
        status = await first.exit_status(record)
        for _ in range(1200):
            if status is not None:
                break
            await asyncio.sleep(0.05)
            status = await first.exit_status(record)
        assert status == ExitStatus(code=3, detail="exited with code 3")
        assert await second.exit_status(found) == ExitStatus(code=None, detail="its process is gone")
        assert await second.find(job) is None
    finally:
        release.touch()


# --- the trigger stage as a real process over a real broker ----------------------------------

async def test_the_trigger_stage_starts_one_real_job_from_the_sample_stream(bus_settings, tmp_path):
    import asyncio

    from llmtwin.bus.producer import SyncEventProducer
    from llmtwin.infra.process import LocalServer, free_port

    warehouse = open_warehouse(bus_settings.warehouse)
    port = free_port()
    # A base model that does not exist: the job process fails fast and must say why.
    env = {**settings_env(bus_settings), "TWIN_TRAINER_PORT": str(port), "TWIN_TRAIN_MIN_NEW_SAMPLES": "4",
           "TWIN_TRAIN_QUIET_SECONDS": "0.5", "TWIN_BASE_MODEL": str(tmp_path / "missing.gguf")}
    stage = LocalServer("trainer-trigger", [sys.executable, "-m", "twin_trainer", "serve"], "127.0.0.1", port,
                        log_path=tmp_path / "trigger.log", env=env)
    try:
        events = await new_samples(warehouse, 4)
        stage.start(timeout=60)
        producer = SyncEventProducer(bus_settings)
        producer.send_all(events + events)  # every message twice: at-least-once delivery
        producer.close()
        job = None
        for _ in range(2400):
            jobs = await jobs_of(warehouse)
            if jobs and jobs[0].state in (JobState.SUCCEEDED, JobState.FAILED):
                job = jobs[0]
                break
            await asyncio.sleep(0.05)
        log_text = (tmp_path / "trigger.log").read_text(errors="replace")[-3000:]
        assert job is not None, log_text
        assert len(await jobs_of(warehouse)) == 1
        version = await warehouse.get(Collection.DATASET_VERSIONS, job.dataset_version)
        assert sorted(version["sample_ids"]) == sorted(e.id for e in events)
        assert job.state == JobState.FAILED and "missing.gguf" in job.message, job.message
        assert (bus_settings.data_dir / "logs" / "jobs" / f"{job.id}.log").exists()
    finally:
        stage.stop()
        await warehouse.close()


# --- the DockerLauncher, over a fake Docker client (no engine here: the subject is the logic above the SDK) ---

class FakeContainer:
    def __init__(self, number: int, labels: dict[str, str]) -> None:
        self.id = f"{number:064x}"
        self.short_id = self.id[:12]
        self.labels = labels
        self.attrs = {"State": {"Status": "running", "ExitCode": 0, "OOMKilled": False, "Error": ""}}
        self.output = b""

    @property
    def status(self) -> str:
        return self.attrs["State"]["Status"]

    def end(self, code: int, output: bytes, oom: bool = False) -> None:
        self.attrs["State"].update(Status="exited", ExitCode=code, OOMKilled=oom)
        self.output = output

    def logs(self, tail: int) -> bytes:
        return b"\n".join(self.output.splitlines()[-tail:])


class FakeContainers:
    """The part of `DockerClient.containers` the launcher uses, keeping what it was asked."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, dict]] = []
        self.by_id: dict[str, FakeContainer] = {}

    def run(self, image: str, **kwargs) -> FakeContainer:
        self.runs.append((image, kwargs))
        container = FakeContainer(len(self.runs), kwargs["labels"])
        self.by_id[container.id] = container
        return container

    def list(self, all: bool = False, filters: dict | None = None) -> list[FakeContainer]:  # noqa: A002
        key, value = filters["label"].split("=", 1)
        return [c for c in self.by_id.values() if c.labels.get(key) == value and (all or c.status == "running")]

    def get(self, container_id: str) -> FakeContainer:
        import docker.errors

        if container_id not in self.by_id:
            raise docker.errors.NotFound(f"No such container: {container_id}")
        return self.by_id[container_id]


class FakeDockerClient:
    def __init__(self) -> None:
        self.containers = FakeContainers()


def docker_launcher(client: FakeDockerClient, settings: Settings):
    from twin_trainer.launchers import DockerLauncher

    return DockerLauncher(client, "llmtwin/trainer-gpu:dev", settings_env(settings), data_volume="llmtwin-data",
                          data_dir=settings.data_dir, network="llmtwin")


async def test_docker_launcher_starts_a_gpu_container_with_the_settings_and_maps_its_state(tmp_path,
                                                                                          monkeypatch):
    import docker.types

    settings = Settings(data_dir=tmp_path / "data", kafka_bootstrap="kafka:9092",
                        warehouse_url="mongodb://mongo:27017/llmtwin")
    client = FakeDockerClient()
    job = TrainingJob(id="job-0123456789abcdef", twin_id="ada", dataset_version="v1")
    record = await docker_launcher(client, settings).launch(job)

    [(image, kwargs)] = client.containers.runs
    assert image == "llmtwin/trainer-gpu:dev"
    assert kwargs["entrypoint"] + kwargs["command"] == ["twin-trainer", "job", "--job-id", job.id]
    assert kwargs["device_requests"] == [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    assert kwargs["labels"] == {"llmtwin.job-id": job.id, "llmtwin.twin-id": "ada"}
    assert kwargs["volumes"] == {"llmtwin-data": {"bind": str(settings.data_dir), "mode": "rw"}}
    assert kwargs["network"] == "llmtwin" and kwargs["detach"] is True
    env = kwargs["environment"]
    assert env["TWIN_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["TWIN_WAREHOUSE_URL"] == "mongodb://mongo:27017/llmtwin"
    assert env["TWIN_DATA_DIR"] == str(settings.data_dir)
    for name, value in env.items():  # the container reads the very same settings
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None) == settings
    container = client.containers.by_id[record.handle]
    assert (record.launcher, record.log_path) == ("docker", f"docker logs {container.short_id}")

    # A restarted trigger finds the container by its label; it runs, so no exit status yet.
    restarted = docker_launcher(client, settings)
    found = await restarted.find(job)
    assert found is not None and found.handle == record.handle
    assert await restarted.find(TrainingJob(id="job-other", twin_id="ada", dataset_version="v2")) is None
    assert await restarted.exit_status(found) is None

    container.end(137, b"loading the base model\n\nTraceback (most recent call last):\ntorch.OutOfMemoryError: CUDA",
                  oom=True)
    assert await restarted.exit_status(found) == ExitStatus(code=137,
                                                             detail="exited with code 137 (killed: out of memory)")
    assert (await restarted.log_tail(found)).splitlines() == [
        "loading the base model", "Traceback (most recent call last):", "torch.OutOfMemoryError: CUDA"]
    ended = await restarted.find(job)  # an ended container is still found: it tells how the job ended
    assert ended is not None and ended.handle == record.handle

    del client.containers.by_id[record.handle]  # pruned
    assert await restarted.exit_status(found) == ExitStatus(code=None, detail="its container is gone")
    assert await restarted.log_tail(found) == ""


async def test_a_job_whose_container_ends_without_a_final_state_is_failed_with_its_logs(warehouse, clock, tmp_path):
    client = FakeDockerClient()
    trigger = trigger_over(warehouse, docker_launcher(client, Settings(data_dir=tmp_path)), clock)
    await trigger.handle(await new_samples(warehouse, THRESHOLD))
    clock.now += QUIET
    await trigger.tick()
    [job] = await jobs_of(warehouse)
    assert job.state == JobState.RUNNING and job.message.startswith("started by docker")
    [container] = client.containers.by_id.values()
    await trigger.tick()
    assert (await jobs_of(warehouse))[0].state == JobState.RUNNING

    container.end(1, b"RuntimeError: no GPU visible")
    await trigger.tick()
    [job] = await jobs_of(warehouse)
    assert job.state == JobState.FAILED
    assert f"exited with code 1 without recording a final state (log: docker logs {container.short_id})" in job.message
    assert "no GPU visible" in job.message


def test_the_launcher_is_chosen_by_the_settings(tmp_path, monkeypatch):
    import docker

    from twin_trainer.launchers import DockerLauncher, launcher_from_settings

    assert isinstance(launcher_from_settings(Settings(data_dir=tmp_path)), SubprocessLauncher)
    client = FakeDockerClient()
    monkeypatch.setattr(docker, "from_env", lambda: client)
    chosen = launcher_from_settings(Settings(data_dir=tmp_path, train_launcher="docker",
                                             train_job_image="llmtwin/trainer-gpu:1", train_job_volume="vol"))
    assert isinstance(chosen, DockerLauncher)
    assert (chosen.client, chosen.image, chosen.data_volume, chosen.network) == (client, "llmtwin/trainer-gpu:1",
                                                                               "vol", "")
    assert "network" not in chosen.run_arguments(TrainingJob(id="j", twin_id="t", dataset_version="v"))
    with pytest.raises(ValueError, match="TWIN_TRAIN_JOB_IMAGE"):
        launcher_from_settings(Settings(data_dir=tmp_path, train_launcher="docker"))
    with pytest.raises(ValueError, match="train_launcher"):
        Settings(data_dir=tmp_path, train_launcher="kubernetes")
