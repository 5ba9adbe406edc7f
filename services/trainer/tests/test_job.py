"""Training jobs end to end: warehouse in, model version and verdict out, announced on model_events."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
from llmtwin import registry
from llmtwin.domain import (
    Chunk,
    CleanDocument,
    DatasetVersion,
    DocumentKind,
    JobState,
    Platform,
    Split,
    TrainingJob,
    Twin,
    content_hash,
)
from llmtwin.infra.process import free_port
from llmtwin.settings import Settings
from llmtwin.testing.vectors import seed_twins
from llmtwin.testing.warehouse import opened_warehouse
from llmtwin.warehouse import Collection
from llmtwin.warehouse.repository import Repository
from twin_trainer.job import run_job


def job_settings(bus_settings: Settings, tiny_base_model, **changes) -> Settings:
    small = {"base_model": str(tiny_base_model), "train_max_steps": 12, "train_batch_size": 4,
             "train_max_seq_len": 96, "train_learning_rate": 1e-2, "lora_r": 8, "lora_alpha": 16,
             "eval_max_samples": 4, "eval_style_samples": 1, "eval_style_max_new_tokens": 4,
             "eval_voice_negatives": 2,
             # Random tiny weights write noise either way: the verdict here rests on perplexity.
             "eval_voice_tolerance": 1.0}
    return bus_settings.model_copy(update={**small, **changes})


async def store_job(settings: Settings, samples, job_id: str, dataset: DatasetVersion | None) -> None:
    async with opened_warehouse(settings.warehouse) as warehouse:
        await Repository(warehouse, Collection.TWINS, Twin).add(Twin.named("Ann"))
        for sample in samples:
            # Live and frozen copies, as the dataset-builder and the trigger's cut leave them.
            await warehouse.upsert(Collection.INSTRUCT_SAMPLES, sample.model_dump(mode="json"))
            await warehouse.upsert(Collection.DATASET_SAMPLES, sample.model_dump(mode="json"))
        if dataset is not None:
            await Repository(warehouse, Collection.DATASET_VERSIONS, DatasetVersion).add(dataset)
        await Repository(warehouse, Collection.TRAINING_JOBS, TrainingJob).add(
            TrainingJob(id=job_id, twin_id="ann", dataset_version=dataset.id if dataset else "gone"))


async def withdraw_document(settings: Settings, document_id: str) -> None:
    """What the cleaner leaves of a document its author withdrew."""
    async with opened_warehouse(settings.warehouse) as warehouse:
        await Repository(warehouse, Collection.CLEAN_DOCUMENTS, CleanDocument).add(CleanDocument(
            id=document_id, twin_id="ann", platform=Platform.BLOG, kind=DocumentKind.POST,
            link=f"https://example.com/{document_id}", content="", content_hash=content_hash(""), raw_hash="",
            withdrawn=True))


async def stored_job(settings: Settings, job_id: str) -> TrainingJob:
    async with opened_warehouse(settings.warehouse) as warehouse:
        return await Repository(warehouse, Collection.TRAINING_JOBS, TrainingJob).get(job_id)


def seed_writing(settings: Settings, embedding_model) -> None:
    """Ann's chunks in the vector store: one of a training sample's own document, two of other writing."""
    def chunk(document_id: str, text: str) -> Chunk:
        document = CleanDocument(id=document_id, twin_id="ann", platform=Platform.BLOG, kind=DocumentKind.POST,
                                 link=f"https://example.com/{document_id}", title=document_id, content=text,
                                 content_hash=content_hash(text), raw_hash="")
        return Chunk.create(document, 0, text)

    seed_twins(settings, embedding_model, [], {"ann": [
        chunk("train-doc-0", OWN_ANSWER), chunk("notes-1", "Kafka consumers commit after the work is done."),
        chunk("notes-2", "Feature stores keep what training and serving both read.")]})


OWN_ANSWER = "Training sample 0's own document: never material for its own prompt."


async def test_a_better_model_is_promoted_and_a_worse_one_rejected(bus_settings, tiny_base_model, samples_for,
                                                                   read_model_events, with_registry, qdrant_url,
                                                                   embedding_model):
    samples = samples_for("ann", 8, Split.TRAIN) + samples_for("ann", 3, Split.TEST)
    dataset = DatasetVersion.of("ann", [s.id for s in samples])
    settings = with_registry(job_settings(bus_settings, tiny_base_model, qdrant_url=qdrant_url,
                                          train_material_passages=1))
    await asyncio.to_thread(seed_writing, settings, embedding_model)  # it runs a loop of its own
    await store_job(settings, samples, "job-1", dataset)

    first = await _run(settings, "job-1")
    assert first.state == JobState.SUCCEEDED, first.message
    assert (first.model_version, first.promoted, first.progress) == ("1", True, 1.0)
    assert first.metrics["candidate_perplexity"] < first.metrics["reference_perplexity"]
    assert 0.0 <= first.metrics["candidate_voice_score"] <= 1.0 and "reference_voice_score" in first.metrics
    assert "against base" in first.message
    assert registry.champion("ann").version == "1"

    # Learning rate 0 leaves the adapter at its zero start: the base model again, worse than the champion.
    # No vector store answers this one: it is trained and judged without material.
    unchanged = job_settings(bus_settings, tiny_base_model, train_learning_rate=0.0, train_max_steps=1,
                             qdrant_url=f"http://127.0.0.1:{free_port()}")
    await store_job(unchanged, [], "job-2", dataset)
    second = await _run(unchanged, "job-2")
    assert second.state == JobState.SUCCEEDED, second.message
    assert (second.model_version, second.promoted) == ("2", False)
    assert "against champion v1" in second.message
    assert registry.champion("ann").version == "1"

    # Ann takes back the writing of one training sample: the champion learned from it, so the version
    # trained without it is held to the base model, not to that champion.
    kept = [s for s in samples if s.document_id != samples[0].document_id]
    without = DatasetVersion.of("ann", [s.id for s in kept])
    await withdraw_document(unchanged, samples[0].document_id)
    await store_job(unchanged, [], "job-3", without)
    third = await _run(unchanged, "job-3")
    assert third.state == JobState.SUCCEEDED, third.message
    assert "against base in place of champion v1, which learned from withdrawn writing" in third.message

    assert not (settings.data_dir / "training" / "job-1").exists()
    assert (await _run(settings, "job-1")).model_version == "1"  # a finished job is not run again
    assert len(registry.list_versions("ann")) == 3

    promoted, rejected, held_to_base = read_model_events(settings, 3)
    assert (promoted.action, promoted.version, promoted.dataset_version) == ("promoted", "1", dataset.id)
    assert (rejected.action, rejected.version) == ("rejected", "2")
    assert rejected.metrics == second.metrics
    # Untrained, the third version is the base model: measured against itself, it is not better.
    assert (held_to_base.action, held_to_base.version, held_to_base.dataset_version) == ("rejected", "3", without.id)
    assert held_to_base.metrics["candidate_perplexity"] == held_to_base.metrics["reference_perplexity"]
    assert second.metrics["candidate_perplexity"] != second.metrics["reference_perplexity"]

    version = registry.list_versions("ann")[0]
    assert {k: version.tags[k] for k in ("base_model", "dataset_version")} == {
        "base_model": str(tiny_base_model.resolve()), "dataset_version": dataset.id}
    assert version.tags["code_version"]
    run = mlflow.get_run(version.run_id)
    assert run.data.params["max_steps"] == "12"
    assert run.data.tags["gate.reference"] == "base"
    [logged] = run.inputs.dataset_inputs
    assert logged.dataset.digest == dataset.id
    # The version, exported as a file, is an artifact of the run and the source of its input dataset.
    artifact, material = mlflow.MlflowClient().list_artifacts(run.info.run_id, "dataset")
    assert artifact.path == f"dataset/dataset-{dataset.id}.jsonl"
    exported = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=artifact.path))
    lines = exported.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(samples) == len(dataset.sample_ids)
    assert sorted(json.loads(line)["sample_id"] for line in lines) == dataset.sample_ids
    assert json.loads(logged.dataset.source)["uri"].endswith(artifact.path)
    assert json.loads(logged.dataset.schema)["mlflow_colspec"][0]["name"] == "sample_id"
    assert len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "train_loss")) == 12
    # Beside it, what each prompt carried: a training prompt one passage of other writing, a held-out
    # prompt as many as serving retrieves (three are stored); never the sample's own document.
    assert material.path == "dataset/material.jsonl"
    carried = [json.loads(line) for line in Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path=material.path)).read_text(encoding="utf-8").splitlines()]
    assert {row["sample_id"] for row in carried} == set(dataset.sample_ids)
    assert {len(row["material"]) for row in carried if row["split"] == "train"} == {1}
    assert {len(row["material"]) for row in carried if row["split"] == "test"} == {3}
    own = next(row for row in carried if row["sample_id"] == samples[0].id)
    assert OWN_ANSWER not in own["material"]
    assert (run.data.metrics["train_material_per_prompt"], run.data.metrics["test_material_per_prompt"]) == (1, 3)
    assert mlflow.get_run(registry.list_versions("ann")[1].run_id).data.metrics["test_material_per_prompt"] == 0
    rejected_run = mlflow.get_run(registry.list_versions("ann")[1].run_id)
    assert rejected_run.data.tags["gate.promoted"] == "False"
    assert "candidate_style_score" in rejected_run.data.metrics


def register_a_champion(twin_id: str, folder: Path) -> None:
    """Version 1 of the twin's model, promoted: what a failing job must leave alone."""
    with mlflow.start_run() as run:
        pass
    folder.mkdir()
    (folder / "twin_model.json").write_text(json.dumps({"twin_id": twin_id, "base_model": "tiny"}))
    registry.set_champion(twin_id, registry.register_adapter(twin_id, folder, run_id=run.info.run_id, tags={}).version)


async def _run(settings: Settings, job_id: str) -> TrainingJob:
    # run_job owns its event loop (it is a process's main function): give it a thread of its own.
    recorded = await asyncio.to_thread(run_job, settings, job_id)
    assert recorded == await stored_job(settings, job_id)
    return recorded


async def test_a_job_whose_dataset_is_gone_fails_with_the_reason_and_keeps_the_champion(
        bus_settings, tiny_base_model, tmp_path, with_registry):
    settings = with_registry(job_settings(bus_settings, tiny_base_model))
    register_a_champion("ann", tmp_path / "adapter")
    await store_job(settings, [], "job-lost", dataset=None)

    env = {**os.environ, "TWIN_DATA_DIR": str(settings.data_dir), "TWIN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
    command = [sys.executable, "-m", "twin_trainer", "job", "--job-id", "job-lost"]
    done = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=120,
                                   check=False)
    assert done.returncode == 1
    job = await stored_job(settings, "job-lost")
    assert job.state == JobState.FAILED
    assert job.message == "JobInputError: no dataset version 'gone'"
    assert "no dataset version 'gone'" in done.stdout
    assert registry.champion("ann").version == "1"
    assert [v.version for v in registry.list_versions("ann")] == ["1"]
