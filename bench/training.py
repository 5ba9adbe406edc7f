"""Fine-tuning speed and memory: LoRA against full fine-tuning of the same model, same run.

Two bases: the tiny Llama the tests use (random weights, 2 layers) and SmolLM2-135M-Instruct,
the default base. Each trains a fixed few steps of the real trainer (`twin_trainer.finetune`)
on synthetic instruct samples long enough that every batch is batch_size x max_seq_len
tokens with no padding. Every run is its own spawned process, so its peak resident memory
(weights + gradients + optimizer state + activations + the libraries, ~0.5 GB of which is
torch itself) is its own. The CPUs are shared with other work, so a run's throughput is the
median over its steps after the first (which also allocates the optimizer state), and LoRA
and full runs alternate for a few rounds, each mode keeping its least disturbed (fastest) run.

Ratios: tokens/s of LoRA / tokens/s of full FT (above 1: LoRA is faster) and peak memory of
LoRA / full FT (below 1: LoRA needs less). The GPU version, on a 1B-class model, is
bench/device/train_1b.py.

The job's evaluation writes greedy answers (held-out style samples, the voice classifier's
base answers): answers/s of the evaluation's padded batches against one prompt per
`generate` call, SmolLM2-135M, the same prompts, alternating rounds, best of each.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from itertools import pairwise
from multiprocessing import get_context
from pathlib import Path

from llmtwin.domain import DocumentKind, InstructSample
from llmtwin.models import resolve_base_model
from llmtwin.settings import Settings
from llmtwin.testing.tiny_model import build_tiny_model

from .report import Result

# Small enough for a few minutes on 2 shared CPU cores: (train params, alternating rounds).
PARAMS = {
    "tiny Llama": ({"max_steps": 20, "batch_size": 4, "max_seq_len": 128}, 3),
    "SmolLM2-135M": ({"max_steps": 4, "batch_size": 4, "max_seq_len": 128}, 2),
}
_SAMPLE_COUNT = 16
_EVAL_PROMPTS, _EVAL_NEW_TOKENS, _EVAL_ROUNDS = 12, 48, 2
_TOPICS = ["Kafka", "feature stores", "LoRA", "evaluation", "data pipelines", "RAG", "embeddings", "vector search"]


@dataclass(frozen=True)
class Measured:
    tokens_per_second: float
    peak_memory_mb: float
    trainable_parameters: int
    final_loss: float


def synthetic_samples(count: int = _SAMPLE_COUNT) -> list[InstructSample]:
    """Instruct samples whose answers run past any window used here, so batches carry no padding."""
    samples = []
    for i in range(count):
        topic = _TOPICS[i % len(_TOPICS)]
        answer = " ".join(f"Point {n} about {topic}: measure it, keep every consumer idempotent, ship it."
                          for n in range(1, 30))
        samples.append(InstructSample.create(twin_id="bench", document_id=f"bench-{i}", kind=DocumentKind.POST,
                                             instruction=f"Write a post about {topic} ({i}).", answer=answer))
    return samples


def train_once(base_model: str, lora: bool, overrides: dict) -> Measured:
    """One fine-tuning run; meant for a fresh process, so the peak memory it reports is its own."""
    from twin_trainer.finetune import TrainParams, finetune

    params = replace(TrainParams(), lora=lora, warmup_steps=1, checkpoint_every=10_000, **overrides)
    step_ends: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        result = finetune(base_model, synthetic_samples(), twin_name="Bench", params=params, output_dir=Path(out),
                          progress_callback=lambda _: step_ends.append(time.perf_counter()), device="cpu")
    tokens_per_step = params.batch_size * params.max_seq_len
    tokens_seen = result.tokens_per_second * result.seconds
    if abs(tokens_seen - tokens_per_step * params.max_steps) > 0.01 * tokens_seen:
        raise RuntimeError(f"batches were padded: {tokens_seen:.0f} tokens seen, "
                           f"{tokens_per_step * params.max_steps} expected")
    step_seconds = [later - earlier for earlier, later in pairwise(step_ends)]
    return Measured(tokens_per_step / statistics.median(step_seconds), result.peak_memory_mb,
                    result.trainable_parameters, result.final_loss)


def measure(base_model: str, lora: bool, overrides: dict) -> Measured:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(train_once, base_model, lora, overrides).result()


def fastest(runs: list[Measured]) -> Measured:
    return max(runs, key=lambda run: run.tokens_per_second)


def compare(label: str, base_model: str) -> list[Result]:
    overrides, rounds = PARAMS[label]
    runs: dict[bool, list[Measured]] = {True: [], False: []}
    for _ in range(rounds):
        for lora in (True, False):
            runs[lora].append(measure(base_model, lora, overrides))
    lora, full = fastest(runs[True]), fastest(runs[False])
    shape = (f"best of {rounds}, median of {overrides['max_steps'] - 1} steps x {overrides['batch_size']} x "
             f"{overrides['max_seq_len']} tokens")
    share = lora.trainable_parameters / full.trainable_parameters
    print(f"{label}: LoRA trains {lora.trainable_parameters:,} of {full.trainable_parameters:,} parameters "
          f"({share:.2%}); final loss LoRA {lora.final_loss:.3f}, full {full.final_loss:.3f}", flush=True)
    return [
        Result("training", f"{label} LoRA tokens/s ({shape})", lora.tokens_per_second, "tok/s",
               baseline=full.tokens_per_second, baseline_label="full fine-tuning", goal="> 1"),
        Result("training", f"{label} LoRA peak RSS", lora.peak_memory_mb, "MB",
               baseline=full.peak_memory_mb, baseline_label="full fine-tuning", goal="< 1"),
    ]


def evaluation_answers(base_model: str) -> Result:
    from llmtwin.models import load_causal_lm, load_tokenizer
    from twin_trainer.evaluate import GENERATION_BATCH, generate_answers

    model, tokenizer = load_causal_lm(base_model, "cpu"), load_tokenizer(base_model)
    prompts = synthetic_samples(_EVAL_PROMPTS)
    best: dict[int, float] = {}
    for _ in range(_EVAL_ROUNDS):
        for batch_size in (GENERATION_BATCH, 1):
            start = time.perf_counter()
            generate_answers(model, tokenizer, prompts, twin_name="Bench", max_new_tokens=_EVAL_NEW_TOKENS,
                             frequency_penalty=0.2, presence_penalty=0.5, batch_size=batch_size)
            best[batch_size] = max(best.get(batch_size, 0.0), len(prompts) / (time.perf_counter() - start))
    return Result("training", f"SmolLM2-135M evaluation answers/s ({_EVAL_PROMPTS} prompts x {_EVAL_NEW_TOKENS} "
                  f"new tokens, batches of {GENERATION_BATCH}, best of {_EVAL_ROUNDS})", best[GENERATION_BATCH],
                  "answers/s", baseline=best[1], baseline_label="one prompt per generate call", goal="> 1")


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        tiny = str(build_tiny_model(Path(tmp) / "tiny-llama"))
        results = compare("tiny Llama", tiny)
    smollm2 = resolve_base_model(Settings())
    return results + compare("SmolLM2-135M", smollm2) + [evaluation_answers(smollm2)]
