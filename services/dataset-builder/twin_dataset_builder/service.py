"""The dataset-builder stage: clean documents in, instruct samples out.

A second consumer group on `clean_docs`, next to the embedder. For each clean
document: generate instruction/answer pairs, filter them, store the kept ones
(and, where the generator has a model, a preference pair for each), drop the
samples and pairs of the document's previous content, and emit `SampleStored`
for the new and changed ones. Per document a `sample_records` entry says which
content version (and which generator) its samples came from: that is what the
stage has finished, so at start-up the documents without one are replayed.
A withdrawn document keeps no samples, its samples' copies in earlier dataset versions are blanked,
and `SamplesWithdrawn` tells the trainer which samples went.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import Counter

from llmtwin.bus.stage import StageSpec
from llmtwin.datasets import redact_document
from llmtwin.domain import CleanDocument, InstructSample, PreferencePair
from llmtwin.events import BadMessage, CleanDocStored, Event, SamplesWithdrawn, SampleStored, Topic
from llmtwin.settings import Settings
from llmtwin.warehouse import Collection, UpsertResult, Warehouse, open_warehouse
from llmtwin.warehouse.repository import Repository

from .generators import InstructionGenerator, generator_from_settings
from .quality import NearDuplicateIndex, QualityPolicy, QualityReport, filter_samples

log = logging.getLogger(__name__)

SAMPLES = Counter("twin_dataset_samples_total", "Instruct samples, by outcome", ["outcome"])
REJECTED = Counter("twin_dataset_samples_rejected_total", "Samples the quality filters rejected, by reason",
                   ["reason"])


@dataclass(frozen=True)
class SampleRecord:
    """What the stage made of one version of one clean document."""

    document_id: str
    twin_id: str
    content_hash: str
    generator: str
    duplicate_of: str | None
    sample_ids: list[str]
    rejected: dict[str, int]

    def as_doc(self) -> dict:
        return {"id": self.document_id, "twin_id": self.twin_id, "content_hash": self.content_hash,
                "generator": self.generator, "duplicate_of": self.duplicate_of, "sample_ids": self.sample_ids,
                "rejected": self.rejected}


class DatasetBuilder:
    def __init__(self, warehouse: Warehouse, generator: InstructionGenerator,
                 policy: QualityPolicy = QualityPolicy()) -> None:
        self.warehouse, self.generator, self.policy = warehouse, generator, policy
        self.clean_docs = Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument)
        self.samples = Repository(warehouse, Collection.INSTRUCT_SAMPLES, InstructSample)
        self.pairs = Repository(warehouse, Collection.PREFERENCE_PAIRS, PreferencePair)

    async def handle(self, events: list[Event]) -> list[Event]:
        ids = list(dict.fromkeys(e.id for e in events if isinstance(e, CleanDocStored)))
        docs = {d.id: d for d in await self.clean_docs.list({"id": ids})}
        missing = [i for i in ids if i not in docs]
        if missing:
            raise BadMessage(f"clean document(s) not in the warehouse: {', '.join(missing)}")
        records = {r["id"]: r for r in await self.warehouse.find(Collection.SAMPLE_RECORDS, {"id": ids})}
        todo = [docs[i] for i in ids if not self._is_done(docs[i], records.get(i))]
        if not todo:
            return []
        originals = [d for d in todo if d.feeds_features]
        generated = await self.generator.generate(originals) if originals else []
        emitted: list[Event] = []
        for twin_id in sorted({d.twin_id for d in todo}):
            twin_docs = [d for d in todo if d.twin_id == twin_id]
            emitted += await self._store_twin(twin_id, twin_docs, generated, records)
        return emitted

    def _is_done(self, doc: CleanDocument, record: dict | None) -> bool:
        return (record is not None and record["content_hash"] == doc.content_hash
                and record["generator"] == self.generator.name and record.get("duplicate_of") == doc.duplicate_of)

    async def _store_twin(self, twin_id: str, docs: list[CleanDocument], generated: list[InstructSample],
                          records: dict[str, dict]) -> list[Event]:
        doc_ids = {d.id for d in docs}
        # Near-duplicates are judged against the twin's other documents: these ones are being replaced.
        index = NearDuplicateIndex(self.policy.near_duplicate_jaccard, self.policy.shingle_words)
        for sample in await self.samples.list({"twin_id": twin_id}):
            if sample.document_id not in doc_ids:
                index.add(sample.id, sample.answer)
        reports = {doc.id: filter_samples([s for s in generated if s.document_id == doc.id], index, self.policy)
                   for doc in docs}
        # Only kept samples are worth a base model's answer; asked all at once, within the generator's concurrency.
        pairs = await self.generator.preference_pairs([s for report in reports.values() for s in report.kept])
        emitted: list[Event] = []
        for doc in docs:
            doc_pairs = [p for p in pairs if p.document_id == doc.id]
            emitted += await self._store_document(doc, reports[doc.id], doc_pairs, records.get(doc.id))
        return emitted

    async def _store_document(self, doc: CleanDocument, report: QualityReport, pairs: list[PreferencePair],
                              old: dict | None) -> list[Event]:
        emitted: list[Event] = []
        # The record lists what an earlier finished run announced. An unchanged sample missing from it was
        # stored by a run cut short before its record (and maybe before its event): announce it again.
        recorded = set(old["sample_ids"]) if old else set()
        for sample in report.kept:
            outcome = await self.samples.add(sample)
            SAMPLES.labels(outcome.value).inc()
            if outcome != UpsertResult.UNCHANGED or sample.id not in recorded:
                emitted.append(SampleStored(id=sample.id, twin_id=sample.twin_id, document_id=doc.id,
                                            split=sample.split))
        kept_ids = {s.id for s in report.kept}
        # Samples of the document's previous content (or of any content, for a duplicate or a withdrawn
        # document) are stale.
        stale = set(old["sample_ids"]) if old else set()
        stale |= await self.samples.ids({"document_id": doc.id})
        for sample_id in sorted(stale - kept_ids):
            await self.samples.delete(sample_id)
        for pair in pairs:
            await self.pairs.add(pair)
        # A kept sample whose base answer failed this time keeps the pair it had; gone samples lose theirs.
        for pair in await self.pairs.list({"document_id": doc.id}):
            if pair.sample_id not in kept_ids:
                await self.pairs.delete(pair.id)
        reasons = report.reasons()
        for reason, count in reasons.items():
            REJECTED.labels(reason).inc(count)
        if doc.withdrawn:
            reasons["withdrawn_document"] += 1
            await redact_document(self.warehouse, doc.id)
            if stale:  # the trainer may have learned from them
                emitted.append(SamplesWithdrawn.of(doc.twin_id, doc.id, list(stale)))
        elif doc.duplicate_of is not None:
            reasons["duplicate_document"] += 1
        record = SampleRecord(doc.id, doc.twin_id, doc.content_hash, self.generator.name, doc.duplicate_of,
                              sorted(kept_ids), dict(reasons))
        # Written last: a crash before it means the document is done again, which is harmless.
        await self.warehouse.upsert(Collection.SAMPLE_RECORDS, record.as_doc())
        log.info("document %s: %d samples kept (%d preference pairs), rejected %s", doc.id, len(kept_ids),
                 len(pairs), dict(reasons) or "none")
        return emitted

    async def backlog(self) -> AsyncIterator[Event]:
        records = {r["id"]: r for r in await self.warehouse.find(Collection.SAMPLE_RECORDS)}
        for doc in await self.clean_docs.list():
            if not self._is_done(doc, records.get(doc.id)):
                yield CleanDocStored(id=doc.id, twin_id=doc.twin_id, kind=doc.kind, platform=doc.platform,
                                     content_hash=doc.content_hash)

    async def close(self) -> None:
        await self.generator.close()
        await self.warehouse.close()


async def build(settings: Settings) -> DatasetBuilder:
    return DatasetBuilder(open_warehouse(settings.warehouse), generator_from_settings(settings))


def dataset_builder_spec(settings: Settings) -> StageSpec:
    return StageSpec(name="dataset-builder", source=Topic.CLEAN_DOCS, port=settings.dataset_builder_port,
                     build=build, batch_size=16, batch_within=0.5)
