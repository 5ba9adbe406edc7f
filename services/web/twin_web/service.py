"""What the web does, apart from HTTP: twins, their profiles and archives, crawl requests, and
the read side (pipeline status, collected documents, dataset and model versions).

It talks to the warehouse through the port and to the bus through a producer, both handed in.
"""
from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiokafka.errors import KafkaError
from llmtwin.domain import (CrawlJob, DatasetVersion, JobState, Platform, Profile, RawDocument, TrainingJob,
                            Twin, utcnow)
from llmtwin.events import CrawlRequested, Event, ForgetRequested
from llmtwin.settings import Settings
from llmtwin.warehouse import Collection, Warehouse
from llmtwin.warehouse.repository import Repository

from . import validation
from .validation import InputError

RECENT_JOBS = 10
CRAWL_JOBS_SCANNED = 100  # enough to hold the latest job of every source
DOCUMENTS_PER_PLATFORM = 50
UPLOAD_CHUNK_BYTES = 1 << 20


class NotFound(LookupError):
    """A twin or profile that does not exist; the message says which."""


class BusUnavailable(RuntimeError):
    """The broker did not take a message; `title` and the message say what it means for the person."""

    def __init__(self, title: str, message: str) -> None:
        super().__init__(message)
        self.title = title


class UploadTooLarge(InputError):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__("file", f"That file is larger than the {limit_bytes / 1_000_000:g} MB this server accepts. "
                                 "Upload the export archive itself, or split it.")


class EventSender(Protocol):
    """The one thing the service needs from a producer (`llmtwin.bus.producer.EventProducer` fits)."""

    async def send(self, event: Event) -> None: ...


class TwinService:
    def __init__(self, settings: Settings, warehouse: Warehouse, producer: EventSender) -> None:
        self._settings = settings
        self._warehouse = warehouse
        self._producer = producer
        self._twins = Repository(warehouse, Collection.TWINS, Twin)
        self._profiles = Repository(warehouse, Collection.PROFILES, Profile)
        self._raw_documents = Repository(warehouse, Collection.RAW_DOCUMENTS, RawDocument)
        self._dataset_versions = Repository(warehouse, Collection.DATASET_VERSIONS, DatasetVersion)
        self._crawl_jobs = Repository(warehouse, Collection.CRAWL_JOBS, CrawlJob)
        self._training_jobs = Repository(warehouse, Collection.TRAINING_JOBS, TrainingJob)

    # --- twins and profiles -------------------------------------------------------------

    async def list_twins(self) -> list[Twin]:
        return await self._twins.list(order_by="name")

    async def get_twin(self, twin_id: str) -> Twin:
        twin = await self._twins.get(twin_id)
        if twin is None:
            raise NotFound(f"There is no twin called “{twin_id}”.")
        return twin

    async def create_twin(self, raw_name: str) -> tuple[Twin, bool]:
        """The twin with that name's address; `False` when it already existed (creating is idempotent)."""
        name = validation.twin_name(raw_name)
        existing = await self._twins.get(validation.twin_id_for(name))
        if existing is not None:
            return existing, False
        twin = Twin.named(name)
        await self._twins.add(twin)
        return twin, True

    async def profiles(self, twin_id: str) -> list[Profile]:
        return await self._profiles.list({"twin_id": twin_id}, order_by="platform")

    async def get_profile(self, twin_id: str, profile_id: str) -> Profile:
        profile = await self._profiles.get(profile_id)
        if profile is None or profile.twin_id != twin_id:
            raise NotFound(f"The twin “{twin_id}” has no profile {profile_id}.")
        return profile

    async def add_profile(self, twin_id: str, raw_platform: str, raw_url: str,
                          raw_cadence: int | str | None = None) -> Profile:
        await self.get_twin(twin_id)
        link = validation.profile_link(raw_platform, raw_url, raw_cadence,
                                       allow_private_hosts=self._settings.crawl_allow_private_hosts)
        profile = Profile.of(twin_id, link.platform, link.url, link.cadence_minutes)
        await self._profiles.add(profile)
        return profile

    async def set_cadence(self, twin_id: str, profile_id: str, raw_cadence: int | str | None) -> Profile:
        profile = await self.get_profile(twin_id, profile_id)
        profile.cadence_minutes = validation.cadence_minutes(raw_cadence)
        await self._profiles.add(profile)
        return profile

    async def save_archive(self, twin_id: str, raw_platform: str, filename: str,
                           read: Callable[[int], Awaitable[bytes]]) -> Profile:
        """Store an uploaded export under data_dir/uploads/<twin>/ and register it as a file:// profile.

        The stored name starts with the content's hash, so uploading the same export twice
        gives the same profile, and a different export of the same name does not overwrite it.
        """
        await self.get_twin(twin_id)
        chosen = validation.platform(raw_platform)
        safe_name = validation.archive_filename(filename)
        folder = self._settings.data_dir / "uploads" / twin_id
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        partial = folder / f".{safe_name}.{utcnow().timestamp():.6f}.part"
        digest = await self._copy_capped(read, partial)
        final = folder / f"{digest[:12]}-{safe_name}"
        await asyncio.to_thread(partial.replace, final)
        profile = Profile.of(twin_id, chosen, final.resolve().as_uri())
        await self._profiles.add(profile)
        return profile

    async def _copy_capped(self, read: Callable[[int], Awaitable[bytes]], target: Path) -> str:
        limit = self._settings.web_max_upload_bytes
        digest, written = hashlib.sha256(), 0
        out = await asyncio.to_thread(target.open, "wb")
        try:
            while chunk := await read(UPLOAD_CHUNK_BYTES):
                written += len(chunk)
                if written > limit:
                    raise UploadTooLarge(limit)
                digest.update(chunk)
                await asyncio.to_thread(out.write, chunk)
        except BaseException:
            out.close()
            target.unlink(missing_ok=True)
            raise
        out.close()
        if written == 0:
            target.unlink(missing_ok=True)
            raise InputError("file", "That file is empty.")
        return digest.hexdigest()

    # --- crawling -----------------------------------------------------------------------

    async def request_crawl(self, twin_id: str, profile_id: str | None = None) -> list[CrawlRequested]:
        """One CrawlRequested per profile (or for the one given), sent to the crawler now."""
        await self.get_twin(twin_id)
        if profile_id:
            targets = [await self.get_profile(twin_id, profile_id)]
        else:
            targets = await self.profiles(twin_id)
        if not targets:
            raise InputError("profile_id", "Add a profile link or upload an export archive first, then crawl.")
        requests = [CrawlRequested.now(twin_id, p.id, p.platform, p.url) for p in targets]
        await self._send(requests, "The crawl was not requested")
        return requests

    async def forget_document(self, twin_id: str, document_id: str) -> tuple[ForgetRequested, RawDocument]:
        """Ask the crawler (which owns raw documents) to forget one of the twin's documents: each stage
        then deletes what it made of it. Asking again is harmless (a lost request can be repeated)."""
        await self.get_twin(twin_id)
        document = await self._raw_documents.get(document_id)
        if document is None or document.twin_id != twin_id:
            raise NotFound(f"The twin “{twin_id}” has no document {document_id}.")
        request = ForgetRequested.now(twin_id, document_id)
        await self._send([request], "The document was not forgotten")
        return request, document

    async def _send(self, events: list[Event], not_done: str) -> None:
        try:
            for event in events:
                await self._producer.send(event)
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            raise BusUnavailable(not_done, f"{not_done}: the message bus is not reachable. "
                                           "Check that the broker is running, then try again.") from exc

    # --- read side ----------------------------------------------------------------------

    async def status(self, twin_id: str) -> dict[str, Any]:
        """Where each pipeline stage stands for this twin; JSON-ready, for the page and the API.

        Polled every second per open page, so it reads counts and a bounded number of jobs.
        """
        twin = await self.get_twin(twin_id)
        mine = {"twin_id": twin_id}
        *totals, originals, forgotten = await asyncio.gather(
            *(self._warehouse.count(c, mine) for c in STAGE_COLLECTIONS),
            self._warehouse.count(Collection.CLEAN_DOCUMENTS, {**mine, "duplicate_of": None}),
            self._warehouse.count(Collection.CLEAN_DOCUMENTS, {**mine, "withdrawn": True}))
        crawl_jobs = await self._crawl_jobs.list(mine, order_by="created_at", descending=True,
                                                 limit=CRAWL_JOBS_SCANNED)
        training_jobs = await self._training_jobs.list(mine, order_by="created_at", descending=True,
                                                       limit=RECENT_JOBS)
        champion = await self._champion(twin_id)
        current = _latest_per_profile(crawl_jobs)
        return {
            "twin": {"id": twin.id, "name": twin.name},
            "counts": {**{c.value: n for c, n in zip(STAGE_COLLECTIONS, totals)},
                       # Near-duplicates (cross-posts) are cleaned but neither embedded nor learned twice.
                       "duplicates": totals[2] - originals,
                       "forgotten": forgotten},
            "crawl": {
                # The latest crawl of each source: what the most recent round found and fetched.
                "found": sum(j.found for j in current),
                "stored": sum(j.stored for j in current),
                "skipped": sum(j.skipped for j in current),
                "failed": sum(j.failed for j in current),
                "jobs": [j.model_dump(mode="json") for j in crawl_jobs[:RECENT_JOBS]],
            },
            "training_jobs": [{**j.model_dump(mode="json"), "verdict": verdict(j)} for j in training_jobs],
            "champion": _model_view(champion) if champion else None,
        }

    async def _champion(self, twin_id: str) -> TrainingJob | None:
        """The most recently promoted version is the one that writes."""
        promoted = await self._training_jobs.list({"twin_id": twin_id, "promoted": True}, order_by="updated_at",
                                                  descending=True, limit=1)
        return promoted[0] if promoted else None

    async def documents_by_platform(self, twin_id: str) -> dict[Platform, tuple[int, list[RawDocument]]]:
        """Per platform: how many documents were collected, and the most recent of them."""
        collected: dict[Platform, tuple[int, list[RawDocument]]] = {}
        for chosen in Platform:
            where = {"twin_id": twin_id, "platform": chosen.value}
            total = await self._raw_documents.count(where)
            if total:
                recent = await self._raw_documents.list(where, order_by="fetched_at", descending=True,
                                                        limit=DOCUMENTS_PER_PLATFORM)
                collected[chosen] = (total, recent)
        return collected

    async def dataset_versions(self, twin_id: str) -> list[DatasetVersion]:
        return await self._dataset_versions.list({"twin_id": twin_id}, order_by="created_at", descending=True)

    async def model_versions(self, twin_id: str) -> list[dict[str, Any]]:
        """Every model version training produced for the twin, newest first, the champion marked.

        Read from the training jobs, which record each version, its scores and the gate's verdict.
        """
        jobs = await self._training_jobs.list({"twin_id": twin_id}, order_by="created_at", descending=True)
        champion = await self._champion(twin_id)
        return [{**_model_view(job), "champion": champion is not None and job.id == champion.id,
                 "verdict": verdict(job)}
                for job in jobs if job.model_version]


STAGE_COLLECTIONS = (Collection.PROFILES, Collection.RAW_DOCUMENTS, Collection.CLEAN_DOCUMENTS,
                     Collection.CHUNK_RECORDS, Collection.INSTRUCT_SAMPLES, Collection.DATASET_VERSIONS)


def verdict(job: TrainingJob) -> str:
    """The training job's state in a sentence (the page shows it as is, live)."""
    if job.state == JobState.QUEUED:
        return "Waiting to start."
    if job.state == JobState.RUNNING:
        return f"Training: {min(max(job.progress, 0.0), 1.0):.0%} done." + (f" {job.message}" if job.message else "")
    if job.state == JobState.FAILED:
        return f"Training failed: {job.message or 'no reason was recorded'}."
    if job.promoted is None:
        return "Trained; being evaluated."
    reason = f" ({job.message})" if job.message else ""
    if job.promoted:
        return f"Promoted: version {job.model_version} passed the evaluation and now writes for the twin{reason}."
    return f"Not promoted: version {job.model_version} did not pass the evaluation; the champion keeps writing{reason}."


def _latest_per_profile(jobs: list[CrawlJob]) -> list[CrawlJob]:
    """The newest job of each profile; `jobs` come newest first."""
    latest: dict[str, CrawlJob] = {}
    for job in jobs:
        latest.setdefault(job.profile_id, job)
    return list(latest.values())


# The gate's scores as the page names them, in the order it shows them (see the trainer's evaluation).
# What the gate weighs first, then what it only reports.
SCORE_LABELS = {"perplexity": "Held-out perplexity (lower is better)",
                "voice_score": "Voice (reads as the person, 0-1)", "judge_score": "Judge's score",
                "copied_share": "Copied from its material (share of words, lower is better)",
                "style_score": "Style (embedding similarity)", "char_ngram_similarity": "Character n-gram similarity"}


def score_rows(metrics: dict[str, float]) -> list[dict[str, Any]]:
    """The scores of a version beside those of what it was compared with, one row per score:
    {"label", "value", "reference"}; a metric the page has no label for keeps its own name."""
    rows = []
    for name, label in SCORE_LABELS.items():
        value, reference = metrics.get(f"candidate_{name}"), metrics.get(f"reference_{name}")
        if value is not None or reference is not None:
            rows.append({"label": label, "value": value, "reference": reference})
    known = {f"{side}_{name}" for side in ("candidate", "reference")
             for name in (*SCORE_LABELS, "samples", "style_samples", "judge_skipped")}
    rows += [{"label": name, "value": value, "reference": None} for name, value in metrics.items()
             if name not in known]
    return rows


def _model_view(job: TrainingJob) -> dict[str, Any]:
    return {"version": job.model_version, "dataset_version": job.dataset_version, "metrics": job.metrics,
            "scores": score_rows(job.metrics), "promoted": job.promoted, "job_id": job.id,
            "updated_at": job.updated_at.isoformat()}
