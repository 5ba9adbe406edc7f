"""One training job, run as its own process: `python -m twin_trainer job --job-id ID`.

Reads the job, its frozen dataset version and the samples from the warehouse; looks up
each prompt's material in the vector store (`twin_trainer.material`); trains a LoRA adapter
on the train split; evaluates it and the current champion (or, for a twin's first model,
the base) on the test split, as served; logs everything to one MLflow run; registers
the version; promotes it only when the gate says so; records the verdict on the job and
announces it on `model_events`. Any failure marks the job failed with the reason, and the
champion stays where it was (the alias is the very last registry write).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llmtwin import registry
from llmtwin.bus.producer import SyncEventProducer
from llmtwin.datasets import (DatasetNotFound, export_dataset, get_dataset_version, load_samples,
                              versions_with_withdrawn_writing)
from llmtwin.domain import (
    DatasetVersion,
    InstructSample,
    JobState,
    Split,
    TrainingJob,
    Twin,
    registered_model_name,
    utcnow,
)
from llmtwin.embeddings import embed, load_embedding_model
from llmtwin.events import ModelEvent
from llmtwin.models import (
    TwinModelInfo,
    load_causal_lm,
    load_tokenizer,
    load_twin_model,
    pick_device,
    resolve_base_model,
)
from llmtwin.settings import Settings
from llmtwin.warehouse import Collection, open_warehouse
from llmtwin.warehouse.repository import Repository

from .evaluate import EvalConfig, EvalMetrics, evaluate_model, fit_voice, gate
from .finetune import StepMetrics, TrainParams, TrainResult, finetune, params_for_logging
from .judge import StyleJudge
from .material import serving_condition

log = logging.getLogger(__name__)

# Shares of the job's progress bar: training, then evaluation, then registration.
_TRAIN_SHARE, _EVAL_SHARE = 0.8, 0.15
_PROGRESS_EVERY_SECONDS = 2.0
DATASET_ARTIFACT_DIR = "dataset"

Report = Callable[[float, str], None]


class JobInputError(ValueError):
    """The job cannot start: its record, dataset version or samples are missing or unusable."""


@dataclass
class JobInputs:
    twin_name: str
    dataset: DatasetVersion
    train: list[InstructSample]
    test: list[InstructSample]
    dataset_file: Path  # the version exported as JSONL: logged with the run as its input
    # Dataset versions holding writing the person has since withdrawn: a champion trained on one is no bar.
    withdrawn_from: frozenset[str] = frozenset()


def job_work_dir(settings: Settings, job: TrainingJob) -> Path:
    # Checkpoints here let a relaunched job resume; removed once the registry holds the adapter.
    return settings.data_dir / "training" / job.id


@dataclass
class Verdict:
    model_version: str
    promoted: bool
    reason: str
    reference: str  # what the candidate was compared with: "base", "champion vN", or base in place of a champion
    metrics: dict[str, float] = field(default_factory=dict)


def run_job(settings: Settings, job_id: str) -> TrainingJob:
    """Run the job to its end; returns the job as recorded (succeeded or failed)."""
    return asyncio.run(_run_job(settings, job_id))


async def _run_job(settings: Settings, job_id: str) -> TrainingJob:
    warehouse = open_warehouse(settings.warehouse)
    jobs = Repository(warehouse, Collection.TRAINING_JOBS, TrainingJob)
    try:
        job = await jobs.get(job_id)
        if job is None:
            raise JobInputError(f"training job {job_id} does not exist")
        if job.state == JobState.SUCCEEDED:  # a relaunch after the verdict was recorded: nothing to redo
            log.info("training job %s already succeeded: not run again", job_id)
            return job
        try:
            inputs = await load_inputs(warehouse, job, job_work_dir(settings, job))
            job = await _record(jobs, job, state=JobState.RUNNING, progress=0.0, message="training")
            loop = asyncio.get_running_loop()

            def report(progress: float, message: str) -> None:
                # Called from the training thread: the write runs on the loop, the thread waits for it.
                update = _record(jobs, job, progress=round(progress, 4), message=message)
                asyncio.run_coroutine_threadsafe(update, loop).result(timeout=60)

            verdict = await asyncio.to_thread(train_evaluate_register, settings, job, inputs, report)
        except Exception as exc:  # the job's end, whatever it was: recorded, never lost
            log.exception("training job %s failed", job_id)
            return await _record(jobs, job, state=JobState.FAILED, message=f"{type(exc).__name__}: {exc}")
        job = await _record(jobs, job, state=JobState.SUCCEEDED, progress=1.0, message=verdict.reason,
                            model_version=verdict.model_version, promoted=verdict.promoted, metrics=verdict.metrics)
        event = ModelEvent(id=f"{job.id}-{verdict.model_version}", twin_id=job.twin_id,
                           model_name=registered_model_name(job.twin_id), version=verdict.model_version,
                           action="promoted" if verdict.promoted else "rejected",
                           dataset_version=job.dataset_version, metrics=verdict.metrics)
        await asyncio.to_thread(emit, settings, event)
        return job
    finally:
        await warehouse.close()


async def _record(jobs: Repository[TrainingJob], job: TrainingJob, **changes) -> TrainingJob:
    updated = job.model_copy(update={**changes, "updated_at": utcnow()})
    await jobs.add(updated)
    return updated


async def load_inputs(warehouse, job: TrainingJob, work_dir: Path) -> JobInputs:
    try:
        # The version's frozen copy: samples changed since it was cut don't alter what it holds.
        dataset = await get_dataset_version(warehouse, job.dataset_version)
        samples = await load_samples(warehouse, dataset)
        dataset_file = await export_dataset(warehouse, dataset, work_dir / f"dataset-{dataset.id}.jsonl")
    except DatasetNotFound as exc:
        raise JobInputError(str(exc)) from exc
    train = [s for s in samples if s.split == Split.TRAIN]
    test = [s for s in samples if s.split == Split.TEST]
    if not train or not test:
        raise JobInputError(f"dataset version {dataset.id} needs samples on both sides of the split "
                            f"(train: {len(train)}, test: {len(test)})")
    twin = await Repository(warehouse, Collection.TWINS, Twin).get(job.twin_id)
    return JobInputs(twin_name=twin.name if twin else job.twin_id, dataset=dataset, train=train, test=test,
                     dataset_file=dataset_file,
                     withdrawn_from=frozenset(await versions_with_withdrawn_writing(warehouse, job.twin_id)))


def train_evaluate_register(settings: Settings, job: TrainingJob, inputs: JobInputs, report: Report) -> Verdict:
    """The blocking part of a job, in one MLflow run: train, evaluate, register, maybe promote."""
    import mlflow

    registry.configure(settings)
    base_model = resolve_base_model(settings)
    params = TrainParams.from_settings(settings)
    version_of_code = code_version()
    tags = {"twin_id": job.twin_id, "base_model": base_model, "dataset_version": inputs.dataset.id,
            "code_version": version_of_code, "job_id": job.id}
    with mlflow.start_run(run_name=f"{job.twin_id}-{inputs.dataset.id}", tags=tags) as run:
        # The exact file trained on, kept with the run; the run's input dataset points at that copy.
        mlflow.log_artifact(str(inputs.dataset_file), DATASET_ARTIFACT_DIR)
        dataset_uri = mlflow.get_artifact_uri(f"{DATASET_ARTIFACT_DIR}/{inputs.dataset_file.name}")
        mlflow.log_input(_mlflow_dataset(inputs, dataset_uri), context="training")
        work_dir = job_work_dir(settings, job)
        embedding_model = load_embedding_model(settings)
        inputs = _with_material(settings, inputs, embedding_model, work_dir)
        result = finetune(base_model, inputs.train, twin_name=inputs.twin_name, params=params,
                          output_dir=work_dir, progress_callback=_on_step(report))
        mlflow.log_params(params_for_logging(result))
        mlflow.log_metrics({"train_seconds": result.seconds, "train_tokens_per_second": result.tokens_per_second,
                            "train_final_loss": result.final_loss, "peak_memory_mb": result.peak_memory_mb})

        report(_TRAIN_SHARE, "evaluating candidate and champion on the held-out split")
        candidate, reference, reference_name = evaluate_candidate(settings, job.twin_id, base_model, result,
                                                                  inputs, embedding_model)
        promote, reason = gate(candidate, reference, voice_tolerance=settings.eval_voice_tolerance,
                               judge_tolerance=settings.eval_judge_tolerance)
        metrics = {**candidate.as_dict("candidate_"), **reference.as_dict("reference_")}
        log.info("evaluation of job %s against %s: %s", job.id, reference_name, metrics)
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"gate.reference": reference_name, "gate.promoted": str(promote), "gate.reason": reason})

        report(_TRAIN_SHARE + _EVAL_SHARE, "registering the model version")
        TwinModelInfo(twin_id=job.twin_id, base_model=base_model, base_model_setting=settings.base_model,
                      dataset_version=inputs.dataset.id, code_version=version_of_code).write(result.adapter_dir)
        version = registry.register_adapter(job.twin_id, result.adapter_dir, run_id=run.info.run_id,
                                            tags={**tags, "promoted": str(promote)})
        if promote:
            registry.set_champion(job.twin_id, version.version)
    shutil.rmtree(work_dir, ignore_errors=True)  # the registry holds the adapter now
    verdict_text = f"{'promoted' if promote else 'rejected'} version {version.version} against {reference_name}: " \
                   f"{reason}"
    log.info("%s", verdict_text)
    return Verdict(model_version=version.version, promoted=promote, reason=verdict_text, reference=reference_name,
                   metrics=metrics)


def _on_step(report: Report) -> Callable[[StepMetrics], None]:
    import mlflow

    last = [0.0]

    def on_step(step: StepMetrics) -> None:
        mlflow.log_metrics({"train_loss": step.loss, "learning_rate": step.learning_rate,
                            "tokens_per_second": step.tokens_per_second, "memory_mb": step.memory_mb},
                           step=step.step)
        now = time.monotonic()
        if now - last[0] >= _PROGRESS_EVERY_SECONDS or step.step == step.max_steps:
            last[0] = now
            report(_TRAIN_SHARE * step.progress,
                   f"training step {step.step}/{step.max_steps}, loss {step.loss:.3f}")

    return on_step


def _with_material(settings: Settings, inputs: JobInputs, embedding_model, work_dir: Path) -> JobInputs:
    """The inputs with each prompt's material (the serving condition), kept with the run: what the
    twin read beside each instruction depends on the vector store at the job's time."""
    import mlflow

    train, test = serving_condition(settings, embedding_model, inputs.train, inputs.test)
    lines = [json.dumps({"sample_id": s.id, "split": s.split.value, "material": s.material}, ensure_ascii=False)
             for s in (*train, *test)]
    material_file = work_dir / "material.jsonl"
    material_file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    mlflow.log_artifact(str(material_file), DATASET_ARTIFACT_DIR)
    mlflow.log_params({"train_material_passages": settings.train_material_passages,
                       "eval_material_passages": settings.retrieval_top_k})
    mlflow.log_metrics({f"{split}_material_per_prompt": sum(len(s.material) for s in samples) / len(samples)
                        for split, samples in (("train", train), ("test", test))})
    return dataclasses.replace(inputs, train=train, test=test)


def evaluate_candidate(settings: Settings, twin_id: str, base_model: str, result: TrainResult,
                       inputs: JobInputs, embedding_model) -> tuple[EvalMetrics, EvalMetrics, str]:
    """(candidate, reference, reference name) on the same held-out samples.

    The reference is the champion, or the base model when the twin has none yet or its champion
    learned from writing the person has since withdrawn. One base
    model in memory serves all of them when they share it: adapters are switched on it. With
    an LLM judge configured, it scores both sides' generations too."""
    judge = StyleJudge.from_settings(settings)
    try:
        return _evaluate_both(settings, twin_id, base_model, result, inputs, embedding_model, judge)
    finally:
        if judge is not None:
            judge.close()


def _evaluate_both(settings: Settings, twin_id: str, base_model: str, result: TrainResult, inputs: JobInputs,
                   embedding_model, judge: StyleJudge | None) -> tuple[EvalMetrics, EvalMetrics, str]:
    from peft import PeftModel

    def embed_texts(texts: list[str]):
        return embed(embedding_model, texts, settings.embedding_batch_size)

    config = EvalConfig.from_settings(settings)
    device = pick_device()
    tokenizer = load_tokenizer(result.adapter_dir)

    model = PeftModel.from_pretrained(load_causal_lm(base_model, device), str(result.adapter_dir),
                                      adapter_name="candidate")
    with model.disable_adapter():  # the base writes the "not the person" side of the voice classifier
        voice = fit_voice(model, tokenizer, inputs.train, twin_name=inputs.twin_name, config=config,
                          negatives=settings.eval_voice_negatives)

    def score(model, model_tokenizer=tokenizer) -> EvalMetrics:
        return evaluate_model(model, model_tokenizer, inputs.test, twin_name=inputs.twin_name, config=config,
                              embed_texts=embed_texts, voice=voice, judge=judge)

    candidate = score(model)
    current = registry.champion(twin_id)
    if current is None or current.tags.get("dataset_version") in inputs.withdrawn_from:
        # A champion that learned from writing the person took back is no bar for a version without it.
        reference_name = ("base" if current is None else
                          f"base in place of champion v{current.version}, which learned from withdrawn writing")
        with model.disable_adapter():
            return candidate, score(model), reference_name
    folder = registry.download_model(twin_id, current.version)
    reference_name = f"champion v{current.version}"
    if TwinModelInfo.read(folder).base_model == base_model:
        model.load_adapter(str(folder), adapter_name="champion")
        model.set_adapter("champion")
        return candidate, score(model), reference_name
    del model  # the champion sits on another base: load that one instead
    champion_model, champion_tokenizer, _ = load_twin_model(folder, device, settings)
    return candidate, score(champion_model, champion_tokenizer), reference_name


def _mlflow_dataset(inputs: JobInputs, source_uri: str):
    """The dataset version as the run's input: the exported file's rows and location; digest = the version id."""
    import mlflow.data
    import pandas as pd

    with open(inputs.dataset_file, encoding="utf-8") as lines:
        rows = pd.DataFrame([json.loads(line) for line in lines])
    return mlflow.data.from_pandas(rows, source=source_uri, name=f"{inputs.dataset.twin_id}-{inputs.dataset.id}",
                                   digest=inputs.dataset.id)


def code_version() -> str:
    """The git commit of this code when it runs from a checkout, else the package version."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10, check=False)
        if sha.returncode == 0 and sha.stdout.strip():
            return sha.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"llmtwin-trainer {version('llmtwin-trainer')}"
    except PackageNotFoundError:
        return "unknown"


def emit(settings: Settings, event: ModelEvent) -> None:
    producer = SyncEventProducer(settings)
    try:
        producer.send(event)
    finally:
        producer.close()


def rollback(settings: Settings, twin_id: str, version: str) -> ModelEvent:
    """Move the champion alias back to `version` and announce it."""
    registry.configure(settings)
    ref = registry.set_champion(twin_id, version)
    event = ModelEvent(id=f"rollback-{twin_id}-{ref.version}-{int(time.time())}", twin_id=twin_id,
                       model_name=ref.name, version=ref.version, action="rolled_back",
                       dataset_version=ref.tags.get("dataset_version", ""))
    emit(settings, event)
    return event
