"""LoRA fine-tuning of any causal LM on a twin's instruct samples: a plain torch loop.

fp32 on CPU, bf16 on GPU, QLoRA (4-bit base) when CUDA and bitsandbytes are there.
The adapter is checkpointed every `checkpoint_every` steps; a run pointed at an output
folder that holds a checkpoint resumes from it.

`TrainParams(lora=False)` trains every weight instead (full fine-tuning, never quantized):
the reference LoRA is measured against (`python -m bench training`). Its output folder
holds a whole model, not an adapter, so the registry path keeps using LoRA.
"""
from __future__ import annotations

import json
import logging
import math
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmtwin.domain import InstructSample
from llmtwin.models import can_quantize_4bit, load_causal_lm, load_tokenizer, lora_target_modules, pick_device
from llmtwin.settings import Settings

from .examples import batch_schedule, collate, encode_samples, length_batches

log = logging.getLogger(__name__)

ADAPTER_DIRNAME = "adapter"
CHECKPOINTS_DIRNAME = "checkpoints"
_STATE_FILE = "training_state.pt"
_KEPT_CHECKPOINTS = 2


class ModelDoesNotFit(RuntimeError):
    """The base model (or a batch of it) does not fit in this machine's memory."""


class NothingToTrain(ValueError):
    """No sample has a single answer token to learn from."""


@dataclass(frozen=True)
class TrainParams:
    max_steps: int = 30
    batch_size: int = 4
    grad_accum: int = 1
    learning_rate: float = 2e-4
    warmup_steps: int = 2
    max_seq_len: int = 256
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    checkpoint_every: int = 10
    qlora: bool = True  # used only where it can be (CUDA + bitsandbytes)
    seed: int = 0
    lora: bool = True  # False: full fine-tuning of every weight, no adapter

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainParams:
        return cls(max_steps=settings.train_max_steps, batch_size=settings.train_batch_size,
                   grad_accum=settings.train_grad_accum, learning_rate=settings.train_learning_rate,
                   max_seq_len=settings.train_max_seq_len, lora_r=settings.lora_r, lora_alpha=settings.lora_alpha,
                   checkpoint_every=settings.train_checkpoint_every)


@dataclass(frozen=True)
class StepMetrics:
    step: int
    max_steps: int
    loss: float
    learning_rate: float
    tokens_per_second: float
    memory_mb: float

    @property
    def progress(self) -> float:
        return self.step / self.max_steps


@dataclass
class TrainResult:
    adapter_dir: Path  # the adapter; with params.lora False, the whole fine-tuned model
    steps: int
    resumed_from_step: int
    losses: list[float]
    tokens_per_second: float
    seconds: float
    peak_memory_mb: float
    device: str
    quantized: bool
    target_modules: list[str]
    trainable_parameters: int
    train_examples: int
    params: TrainParams = field(default_factory=TrainParams)

    @property
    def final_loss(self) -> float:
        tail = self.losses[-3:]
        return sum(tail) / len(tail) if tail else float("nan")


def finetune(base_model: str, train_samples: Sequence[InstructSample], *, twin_name: str, params: TrainParams,
             output_dir: Path, progress_callback: Callable[[StepMetrics], None] | None = None,
             device: str | None = None) -> TrainResult:
    """Train a LoRA adapter (or, with params.lora False, every weight); returns where it was saved
    (output_dir/adapter, with the tokenizer)."""
    device = device or pick_device()
    try:
        return _finetune(base_model, train_samples, twin_name=twin_name, params=params, output_dir=output_dir,
                         progress_callback=progress_callback, device=device)
    except MemoryError as exc:
        raise ModelDoesNotFit(f"{base_model} does not fit in memory on {device}: {exc}") from exc
    except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError too
        if _is_out_of_memory(exc):
            raise ModelDoesNotFit(f"{base_model} does not fit in memory on {device} with batch size "
                                  f"{params.batch_size} x {params.max_seq_len} tokens: {exc}") from exc
        raise


def _finetune(base_model, train_samples, *, twin_name, params, output_dir, progress_callback, device) -> TrainResult:
    import torch
    from tqdm import tqdm

    torch.manual_seed(params.seed)
    tokenizer = load_tokenizer(base_model)
    examples = encode_samples(tokenizer, train_samples, twin_name=twin_name, max_seq_len=params.max_seq_len)
    if not examples:
        raise NothingToTrain("no training sample has an answer to learn from")
    quantized = params.lora and params.qlora and can_quantize_4bit(device)
    check_fits(base_model, device, quantized=quantized)
    model, start_step, state = _trainable_model(base_model, device, quantized, params, output_dir)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(params))
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    losses: list[float] = list(state["losses"]) if state else []

    batch_at = batch_schedule(length_batches(examples, params.batch_size), params.seed)
    pad_id = tokenizer.pad_token_id
    model.train()
    started, tokens_seen = time.perf_counter(), 0
    bar = tqdm(range(start_step, params.max_steps), initial=start_step, total=params.max_steps,
               desc="fine-tuning", unit="step", mininterval=1.0)
    for step in bar:
        step_loss = 0.0
        for micro in range(params.grad_accum):
            batch = collate(batch_at(step * params.grad_accum + micro), pad_id, device)
            loss = model(**batch).loss / params.grad_accum
            loss.backward()
            step_loss += loss.item()
            tokens_seen += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)

        done = step + 1
        metrics = StepMetrics(step=done, max_steps=params.max_steps, loss=step_loss,
                              learning_rate=scheduler.get_last_lr()[0],
                              tokens_per_second=tokens_seen / max(time.perf_counter() - started, 1e-9),
                              memory_mb=peak_memory_mb(device))
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{metrics.learning_rate:.2e}",
                        tok_s=f"{metrics.tokens_per_second:.0f}")
        if progress_callback is not None:
            progress_callback(metrics)
        if done % params.checkpoint_every == 0 and done < params.max_steps:
            _save_checkpoint(model, optimizer, scheduler, losses, done, output_dir)
    bar.close()

    seconds = time.perf_counter() - started
    adapter_dir = output_dir / ADAPTER_DIRNAME
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    return TrainResult(adapter_dir=adapter_dir, steps=params.max_steps, resumed_from_step=start_step, losses=losses,
                       tokens_per_second=tokens_seen / max(seconds, 1e-9), seconds=seconds,
                       peak_memory_mb=peak_memory_mb(device), device=device, quantized=quantized,
                       target_modules=sorted(model.peft_config["default"].target_modules) if params.lora else [],
                       trainable_parameters=sum(p.numel() for p in trainable), train_examples=len(examples),
                       params=params)


def _trainable_model(base_model, device, quantized, params: TrainParams, output_dir: Path):
    """(model, first step, saved optimizer state): fresh, or from the latest checkpoint.

    LoRA puts an adapter on the base; full fine-tuning trains the base itself, so its
    checkpoints are whole models."""
    import torch

    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
    if params.lora:
        model = _with_lora_adapter(base_model, device, quantized, params, checkpoint)
    else:
        model = load_causal_lm(checkpoint or base_model, device)
    if checkpoint is None:
        return model, 0, None
    state = torch.load(checkpoint / _STATE_FILE, map_location="cpu", weights_only=False)
    return model, int(state["step"]), state


def _with_lora_adapter(base_model, device, quantized, params: TrainParams, checkpoint: Path | None):
    """The base with a fresh LoRA adapter, or with the checkpoint's."""
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    model = load_causal_lm(base_model, device, quantize_4bit=quantized)
    if quantized:
        model = prepare_model_for_kbit_training(model)
    if checkpoint is not None:
        return PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)
    config = LoraConfig(r=params.lora_r, lora_alpha=params.lora_alpha, lora_dropout=params.lora_dropout,
                        target_modules=lora_target_modules(model), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _warmup_cosine(params: TrainParams) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < params.warmup_steps:
            return (step + 1) / (params.warmup_steps + 1)
        span = max(1, params.max_steps - params.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - params.warmup_steps) / span)))

    return factor


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = sorted((output_dir / CHECKPOINTS_DIRNAME).glob("step-*"))
    complete = [path for path in found if (path / _STATE_FILE).exists()]
    return complete[-1] if complete else None


def _save_checkpoint(model, optimizer, scheduler, losses: list[float], step: int, output_dir: Path) -> None:
    import torch

    root = output_dir / CHECKPOINTS_DIRNAME
    folder = root / f"step-{step:06d}"
    model.save_pretrained(folder)
    # The state file is written last: a checkpoint without it was interrupted and is ignored.
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "losses": losses}, folder / _STATE_FILE)
    for old in sorted(root.glob("step-*"))[:-_KEPT_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)


def check_fits(base_model: str, device: str, *, quantized: bool = False) -> None:
    """Refuse early, with numbers, when the weights alone clearly exceed free memory."""
    folder = Path(base_model)
    if not folder.is_dir():
        return  # a hub id: the size is unknown until it loads
    stored = sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in folder.glob(pattern))
    config = json.loads((folder / "config.json").read_text())
    stored_width = 2 if str(config.get("dtype") or config.get("torch_dtype")) in ("bfloat16", "float16") else 4
    loaded_width = 0.5 if quantized else 2 if device.startswith("cuda") else 4
    needed = stored * loaded_width / stored_width
    free = _free_memory_bytes(device)
    if free is not None and needed > free:
        raise ModelDoesNotFit(f"{base_model} needs about {needed / 2**30:.1f} GiB for its weights on {device}, "
                              f"only {free / 2**30:.1f} GiB are free; choose a smaller base model")


def _free_memory_bytes(device: str) -> int | None:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.mem_get_info()[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or type(exc).__name__ == "OutOfMemoryError"


def params_for_logging(result: TrainResult) -> dict[str, object]:
    """The run's parameters as MLflow wants them: flat, small."""
    return {**asdict(result.params), "device": result.device, "quantized": result.quantized,
            "target_modules": ",".join(result.target_modules), "trainable_parameters": result.trainable_parameters,
            "train_examples": result.train_examples}
