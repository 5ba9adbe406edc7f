"""Where training jobs run: one `JobLauncher` protocol, two launchers.

- `SubprocessLauncher`: a child process on this machine (the embedded stack, CPU).
- `DockerLauncher`: a container per job through the Docker SDK, with the GPUs, the data
  volume and the same TWIN_* settings (the stack at scale).

A launch leaves a `LaunchRecord` (which process or container runs the job) that the
trigger stores, so a restarted trigger can find the job again and tell when it ended.
"""
from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field

from llmtwin.domain import TrainingJob, utcnow
from llmtwin.settings import Settings, settings_env

if TYPE_CHECKING:
    from docker import DockerClient

log = logging.getLogger(__name__)


class LaunchRecord(BaseModel):
    """Which process (or container) runs a job; stored in `trigger_state` as `launch:<job_id>`."""

    id: str
    type: Literal["launch"] = "launch"
    job_id: str
    twin_id: str
    launcher: str
    handle: str  # a process id for subprocesses; a container id for containers
    log_path: str
    started_at: datetime = Field(default_factory=utcnow)

    @staticmethod
    def key(job_id: str) -> str:
        return f"launch:{job_id}"


class ExitStatus(BaseModel):
    code: int | None  # None: the process is gone and its exit code is unknown (it was not our child)
    detail: str


class JobLauncher(Protocol):
    """Starts training jobs and tells whether they still run."""

    name: str

    async def launch(self, job: TrainingJob) -> LaunchRecord: ...

    async def find(self, job: TrainingJob) -> LaunchRecord | None:
        """A process of this job that is running already (started before a restart), if any."""

    async def exit_status(self, record: LaunchRecord) -> ExitStatus | None:
        """None while the job's process runs."""

    async def log_tail(self, record: LaunchRecord, max_chars: int = 600) -> str: ...


def trainer_job_command(job: TrainingJob) -> list[str]:
    return [sys.executable, "-m", "twin_trainer", "job", "--job-id", job.id]


class SubprocessLauncher:
    """Each job is a child process on this machine, its output in `log_dir/<job id>.log`."""

    name = "subprocess"

    def __init__(self, log_dir: Path, env: dict[str, str],
                 command: Callable[[TrainingJob], list[str]] = trainer_job_command) -> None:
        self.log_dir, self.env, self.command = log_dir, env, command
        self._children: dict[int, subprocess.Popen] = {}

    async def launch(self, job: TrainingJob) -> LaunchRecord:
        log_path = self.log_dir / f"{job.id}.log"
        child = await asyncio.to_thread(self._start, self.command(job), log_path)
        self._children[child.pid] = child
        log.info("job %s started as process %d (log: %s)", job.id, child.pid, log_path)
        return LaunchRecord(id=LaunchRecord.key(job.id), job_id=job.id, twin_id=job.twin_id, launcher=self.name,
                            handle=str(child.pid), log_path=str(log_path))

    def _start(self, argv: list[str], log_path: Path) -> subprocess.Popen:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:  # the child keeps its own descriptor
            return subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **self.env}, start_new_session=True)

    async def find(self, job: TrainingJob) -> LaunchRecord | None:
        pid = await asyncio.to_thread(_find_process, job.id)
        if pid is None:
            return None
        return LaunchRecord(id=LaunchRecord.key(job.id), job_id=job.id, twin_id=job.twin_id, launcher=self.name,
                            handle=str(pid), log_path=str(self.log_dir / f"{job.id}.log"))

    async def exit_status(self, record: LaunchRecord) -> ExitStatus | None:
        pid = int(record.handle)
        child = self._children.get(pid)
        if child is not None:
            code = child.poll()  # also reaps it
            if code is None:
                return None
            del self._children[pid]
            return ExitStatus(code=code, detail=f"exited with code {code}")
        # Started by an earlier run of the trigger: not our child, so no exit code, only whether it lives.
        if await asyncio.to_thread(_process_runs, pid, record.job_id):
            return None
        return ExitStatus(code=None, detail="its process is gone")

    async def log_tail(self, record: LaunchRecord, max_chars: int = 600) -> str:
        return await asyncio.to_thread(_tail, Path(record.log_path), max_chars)


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return None
    return None if state in ("Z", "X") else raw.decode(errors="replace").split("\0")


def _process_runs(pid: int, job_id: str) -> bool:
    """Whether `pid` is alive and still the job's process (a reused pid is not)."""
    if not Path("/proc").is_dir():  # no procfs: only whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    argv = _cmdline(pid)
    return argv is not None and job_id in argv


def _find_process(job_id: str) -> int | None:
    if not Path("/proc").is_dir():
        return None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            argv = _cmdline(int(entry.name))
            if argv and job_id in argv:
                return int(entry.name)
    return None


def _tail(path: Path, max_chars: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8 * max_chars))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return _last_lines(text, max_chars)


def _last_lines(text: str, max_chars: int) -> str:
    """The last few non-empty lines of a job's output: where its error is."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    tail = "\n".join(lines[-6:])
    return tail[-max_chars:]


JOB_LABEL, TWIN_LABEL = "llmtwin.job-id", "llmtwin.twin-id"
# Docker's states of a container that has not ended yet.
_UNFINISHED = {"created", "running", "restarting", "paused", "removing"}


class DockerLauncher:
    """Each job is a container of `image` with all the GPUs, the data volume at `data_dir`, and the settings.

    The container is found again by its job-id label. It is kept when it ends (exit code and
    logs stay readable for the trigger); `docker container prune --filter label=llmtwin.job-id`
    clears finished ones."""

    name = "docker"

    def __init__(self, client: DockerClient, image: str, env: dict[str, str], *, data_volume: str,
                 data_dir: Path, network: str = "") -> None:
        if not image:
            raise ValueError("the docker launcher needs an image: set TWIN_TRAIN_JOB_IMAGE")
        self.client, self.image, self.env = client, image, env
        self.data_volume, self.data_dir, self.network = data_volume, data_dir, network

    def run_arguments(self, job: TrainingJob) -> dict[str, Any]:
        """What `containers.run` gets for a job."""
        from docker.types import DeviceRequest

        arguments: dict[str, Any] = {
            # The entry point is set, so the process is `twin-trainer job --job-id ID` whatever the image's is.
            "entrypoint": ["twin-trainer"], "command": ["job", "--job-id", job.id],
            "environment": {**self.env, "TWIN_DATA_DIR": str(self.data_dir)},
            "volumes": {self.data_volume: {"bind": str(self.data_dir), "mode": "rw"}},
            "device_requests": [DeviceRequest(count=-1, capabilities=[["gpu"]])],
            "labels": {JOB_LABEL: job.id, TWIN_LABEL: job.twin_id},
            "detach": True,
        }
        if self.network:
            arguments["network"] = self.network
        return arguments

    async def launch(self, job: TrainingJob) -> LaunchRecord:
        container = await asyncio.to_thread(self.client.containers.run, self.image, **self.run_arguments(job))
        log.info("job %s started in container %s (image %s)", job.id, container.short_id, self.image)
        return self._record(job, container)

    def _record(self, job: TrainingJob, container) -> LaunchRecord:
        return LaunchRecord(id=LaunchRecord.key(job.id), job_id=job.id, twin_id=job.twin_id, launcher=self.name,
                            handle=container.id, log_path=f"docker logs {container.short_id}")

    async def find(self, job: TrainingJob) -> LaunchRecord | None:
        """The job's container, running or ended: one that ended while the trigger was away still tells how."""
        containers = await asyncio.to_thread(self.client.containers.list, all=True,
                                             filters={"label": f"{JOB_LABEL}={job.id}"})
        if not containers:
            return None
        running = [c for c in containers if c.status in _UNFINISHED]
        return self._record(job, (running or containers)[0])

    async def exit_status(self, record: LaunchRecord) -> ExitStatus | None:
        from docker.errors import NotFound

        try:
            container = await asyncio.to_thread(self.client.containers.get, record.handle)
        except NotFound:
            return ExitStatus(code=None, detail="its container is gone")
        state = container.attrs["State"]
        if state["Status"] in _UNFINISHED:
            return None
        code = state.get("ExitCode")
        detail = f"exited with code {code}"
        if state.get("OOMKilled"):
            detail += " (killed: out of memory)"
        if state.get("Error"):
            detail += f" ({state['Error']})"
        return ExitStatus(code=code, detail=detail)

    async def log_tail(self, record: LaunchRecord, max_chars: int = 600) -> str:
        from docker.errors import NotFound

        try:
            container = await asyncio.to_thread(self.client.containers.get, record.handle)
            output = await asyncio.to_thread(container.logs, tail=50)
        except NotFound:
            return ""
        return _last_lines(output.decode(errors="replace"), max_chars)


def launcher_from_settings(settings: Settings) -> JobLauncher:
    """The launcher `train_launcher` names, handing jobs the same settings as TWIN_* variables."""
    env = settings_env(settings)
    if settings.train_launcher == "docker":
        import docker

        return DockerLauncher(docker.from_env(), settings.train_job_image, env, data_volume=settings.train_job_volume,
                              data_dir=settings.data_dir, network=settings.train_job_network)
    return SubprocessLauncher(settings.data_dir / "logs" / "jobs", env)


