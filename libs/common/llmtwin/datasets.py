"""Dataset versions: cut, load, export, and walk back to the source documents.

A dataset version is immutable: its id is a hash of its sample ids, and when it is cut
every sample it holds is copied, write-once, into `dataset_samples`. The live
`instruct_samples` collection may drop a sample later (its document changed); the
version still has it. Cutting is idempotent: the same samples give the same version,
stored once. The version record is written last, so a version that exists is complete.

The trainer tags each model version with its dataset version id; `walk_lineage` goes
from there to the samples and to the clean and raw documents they came from.
"""
from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

from .domain import CleanDocument, DatasetVersion, DocumentKind, InstructSample, Platform, RawDocument
from .warehouse.port import Collection, Warehouse
from .warehouse.repository import Repository


class EmptyDataset(ValueError):
    """The twin has no samples to put in a dataset version."""


class DatasetNotFound(LookupError):
    pass


def _samples(warehouse: Warehouse, collection: Collection) -> Repository[InstructSample]:
    return Repository(warehouse, collection, InstructSample)


async def current_samples(warehouse: Warehouse, twin_id: str) -> list[InstructSample]:
    """The twin's live samples whose documents are neither near-duplicates of others nor withdrawn."""
    originals = await warehouse.ids(Collection.CLEAN_DOCUMENTS,
                                    {"twin_id": twin_id, "duplicate_of": None, "withdrawn": [False, None]})
    samples = await _samples(warehouse, Collection.INSTRUCT_SAMPLES).list({"twin_id": twin_id})
    return [s for s in samples if s.document_id in originals]


def dataset_stats(samples: list[InstructSample]) -> dict[str, int]:
    counts = Counter({"samples": len(samples)})
    counts.update(f"split_{s.split.value}" for s in samples)
    counts.update(f"kind_{s.kind.value}" for s in samples)
    counts["documents"] = len({s.document_id for s in samples})
    return dict(sorted(counts.items()))


async def cut_dataset_version(warehouse: Warehouse, twin_id: str) -> DatasetVersion:
    """Freeze the twin's current samples as a dataset version (the existing one if nothing changed)."""
    samples = await current_samples(warehouse, twin_id)
    if not samples:
        raise EmptyDataset(f"twin {twin_id!r} has no instruct samples to build a dataset from")
    version = DatasetVersion.of(twin_id, [s.id for s in samples])
    existing = await warehouse.get(Collection.DATASET_VERSIONS, version.id)
    if existing is not None:
        return DatasetVersion.model_validate(existing)
    archived = await warehouse.ids(Collection.DATASET_SAMPLES, {"twin_id": twin_id})
    archive = _samples(warehouse, Collection.DATASET_SAMPLES)
    for sample in samples:
        if sample.id not in archived:
            await archive.add(sample)
    # Written last: the commit point. Stats ride along for readers that want counts without the samples.
    await warehouse.upsert(Collection.DATASET_VERSIONS,
                           {**version.model_dump(mode="json"), "stats": dataset_stats(samples)})
    return version


async def get_dataset_version(warehouse: Warehouse, version_id: str) -> DatasetVersion:
    record = await warehouse.get(Collection.DATASET_VERSIONS, version_id)
    if record is None:
        raise DatasetNotFound(f"no dataset version {version_id!r}")
    return DatasetVersion.model_validate(record)


async def load_samples(warehouse: Warehouse, version: DatasetVersion) -> list[InstructSample]:
    """The version's samples, in sample-id order."""
    found = await _samples(warehouse, Collection.DATASET_SAMPLES).list({"id": version.sample_ids})
    missing = set(version.sample_ids) - {s.id for s in found}
    if missing:
        raise DatasetNotFound(f"dataset version {version.id} lacks {len(missing)} archived samples, "
                              f"e.g. {sorted(missing)[0]}")
    return sorted(found, key=lambda s: s.id)


async def versions_with_withdrawn_writing(warehouse: Warehouse, twin_id: str) -> set[str]:
    """The twin's dataset versions that hold samples of documents the person has since withdrawn."""
    withdrawn = await warehouse.ids(Collection.CLEAN_DOCUMENTS, {"twin_id": twin_id, "withdrawn": True})
    if not withdrawn:
        return set()
    taken_back = await warehouse.ids(Collection.DATASET_SAMPLES, {"document_id": sorted(withdrawn)})
    versions = await Repository(warehouse, Collection.DATASET_VERSIONS, DatasetVersion).list({"twin_id": twin_id})
    return {version.id for version in versions if taken_back.intersection(version.sample_ids)}


async def redact_document(warehouse: Warehouse, document_id: str) -> int:
    """Blank the text of a withdrawn document's samples in the dataset versions' archive; returns how many.

    The versions keep their sample ids and counts (what a model version was trained on stays
    traceable, the lineage marks the document withdrawn), not the person's words."""
    archive = _samples(warehouse, Collection.DATASET_SAMPLES)
    redacted = 0
    for sample in await archive.list({"document_id": document_id}):
        if sample.instruction or sample.answer:
            await archive.add(sample.model_copy(update={"instruction": "", "answer": ""}))
            redacted += 1
    return redacted


def sample_record(sample: InstructSample) -> dict[str, str]:
    """One line of an exported dataset file."""
    return {"sample_id": sample.id, "document_id": sample.document_id, "kind": sample.kind.value,
            "split": sample.split.value, "instruction": sample.instruction, "answer": sample.answer}


async def export_dataset(warehouse: Warehouse, version: DatasetVersion, path: Path) -> Path:
    """Write the version as JSONL (one sample a line, sample-id order); the same version gives the same bytes."""
    samples = await load_samples(warehouse, version)
    lines = "".join(json.dumps(sample_record(s), ensure_ascii=False) + "\n" for s in samples)
    await asyncio.to_thread(_write_atomically, Path(path), lines)
    return Path(path)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class SourceDocument(BaseModel):
    """A document some samples came from, as the warehouse knows it now."""

    id: str
    sample_ids: list[str]
    twin_id: str = ""
    platform: Platform | None = None
    kind: DocumentKind | None = None
    link: str = ""
    title: str = ""
    clean_content_hash: str | None = None  # None: the clean document is gone
    raw_content_hash: str | None = None  # None: the raw document is gone
    duplicate_of: str | None = None
    withdrawn: bool = False  # its author has since asked for it to be forgotten


class Lineage(BaseModel):
    version: DatasetVersion
    samples: list[InstructSample]
    documents: list[SourceDocument]


async def walk_lineage(warehouse: Warehouse, dataset_version_id: str) -> Lineage:
    """From a dataset version (the one a model version is tagged with) to its samples and source documents."""
    version = await get_dataset_version(warehouse, dataset_version_id)
    samples = await load_samples(warehouse, version)
    by_document: dict[str, list[str]] = {}
    for sample in samples:
        by_document.setdefault(sample.document_id, []).append(sample.id)
    doc_ids = sorted(by_document)
    clean = {d.id: d for d in await Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument).list({"id": doc_ids})}
    raw = {d.id: d for d in await Repository(warehouse, Collection.RAW_DOCUMENTS, RawDocument).list({"id": doc_ids})}
    documents = []
    for doc_id in doc_ids:
        known = clean.get(doc_id) or raw.get(doc_id)
        documents.append(SourceDocument(
            id=doc_id, sample_ids=by_document[doc_id],
            twin_id=known.twin_id if known else version.twin_id,
            platform=known.platform if known else None, kind=known.kind if known else None,
            link=known.link if known else "", title=known.title if known else "",
            clean_content_hash=clean[doc_id].content_hash if doc_id in clean else None,
            raw_content_hash=raw[doc_id].content_hash if doc_id in raw else None,
            duplicate_of=clean[doc_id].duplicate_of if doc_id in clean else None,
            withdrawn=clean[doc_id].withdrawn if doc_id in clean else False))
    return Lineage(version=version, samples=samples, documents=documents)
