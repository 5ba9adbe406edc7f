"""LoRA against full fine-tuning of a 1B-class Llama on one GPU: tokens/s and peak memory.

The model is built from its config with random weights (nothing is downloaded) in bf16,
and trained on synthetic token batches: the arithmetic is that of a real 1B model, which
is all throughput and memory depend on. For each mode: a fresh model, `--warmup` untimed
steps, then `--steps` timed ones (AdamW, gradient clipping, as the trainer does).

    python bench/device/train_1b.py                 # on a CUDA machine, a few minutes
    python bench/device/train_1b.py --smoke         # a tiny config on CPU, seconds: the script works

Prints a table; writes $OUT/train_1b.json when OUT is set. Without CUDA (and without
--smoke) it says so and exits with status 1.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Llama-architecture ~1.1B (TinyLlama's shape, without grouped-query attention), and a toy one for --smoke.
FULL_SIZE = {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 32,
             "intermediate_size": 5632, "vocab_size": 32000}
SMOKE_SIZE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
              "intermediate_size": 128, "vocab_size": 256}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class ModeResult:
    mode: str
    tokens_per_second: float | None
    peak_memory_gib: float | None
    trainable_parameters: int
    total_parameters: int
    seconds_per_step: float | None
    final_loss: float | None
    error: str = ""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny config, runs on CPU: proves the script works")
    parser.add_argument("--steps", type=int, help="timed steps per mode (default 20; smoke 2)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 3; smoke 1)")
    parser.add_argument("--batch", type=int, help="sequences per step (default 8; smoke 2)")
    parser.add_argument("--seq", type=int, help="tokens per sequence (default 2048; smoke 32)")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--modes", default="lora,full", help="comma-separated: lora, full")
    args = parser.parse_args(argv)
    if (args.steps is not None and args.steps < 1) or not set(args.modes.split(",")) <= {"lora", "full"}:
        parser.error("--steps must be at least 1 and --modes a comma-separated subset of lora,full")
    defaults = ({"steps": 2, "warmup": 1, "batch": 2, "seq": 32} if args.smoke
                else {"steps": 20, "warmup": 3, "batch": 8, "seq": 2048})
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def build_model(size: dict, seq: int, device: str, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**size, max_position_embeddings=max(seq, 2048), tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the device: a 1B model on the CPU first takes a minute
        model = LlamaForCausalLM(config)
    return model.to(dtype)


def train_mode(mode: str, args: argparse.Namespace, device: str, dtype) -> ModeResult:
    import torch
    from peft import LoraConfig, get_peft_model

    model = build_model(SMOKE_SIZE if args.smoke else FULL_SIZE, args.seq, device, dtype)
    total = sum(p.numel() for p in model.parameters())
    if mode == "lora":
        model = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.05,
                                                 target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.0)
    vocab = model.config.vocab_size
    generator = torch.Generator(device="cpu").manual_seed(1)
    batches = [torch.randint(0, vocab, (args.batch, args.seq), generator=generator).to(device)
               for _ in range(min(4, args.warmup + args.steps))]
    model.train()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        for step in range(args.warmup + args.steps):
            if step == args.warmup:
                _synchronize(device)
                started = time.perf_counter()
            ids = batches[step % len(batches)]
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _synchronize(device)
        seconds = time.perf_counter() - started
    except torch.OutOfMemoryError as exc:
        return ModeResult(mode, None, _peak_gib(device), sum(p.numel() for p in trainable), total, None, None,
                          error=f"out of memory: {str(exc).splitlines()[0]}")
    finally:
        del model, optimizer, batches
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    return ModeResult(mode, args.steps * args.batch * args.seq / seconds, _peak_gib(device),
                      sum(p.numel() for p in trainable), total, seconds / args.steps, loss.item())


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _peak_gib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB; the process's, all modes so far


def print_table(results: list[ModeResult], device_name: str, args: argparse.Namespace) -> None:
    print(f"\n{device_name}: {args.steps} timed steps x {args.batch} x {args.seq} tokens, "
          f"LoRA r={args.lora_r} on {','.join(LORA_TARGETS)}")
    print(f"{'mode':<6} {'tokens/s':>12} {'s/step':>8} {'peak GiB':>9} {'trainable':>15} {'loss':>7}  note")
    for r in results:
        print(f"{r.mode:<6} {_fmt(r.tokens_per_second, '12.0f')} {_fmt(r.seconds_per_step, '8.3f')} "
              f"{_fmt(r.peak_memory_gib, '9.2f')} {r.trainable_parameters:>15,} {_fmt(r.final_loss, '7.3f')}  "
              f"{r.error}")
    done = {r.mode: r for r in results if not r.error}
    if "lora" in done and "full" in done:
        print(f"LoRA / full: tokens/s x{done['lora'].tokens_per_second / done['full'].tokens_per_second:.2f}, "
              f"peak memory x{done['lora'].peak_memory_gib / done['full'].peak_memory_gib:.2f}")


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0])
    return format(value, spec) if value is not None else "-".rjust(width)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import torch

    if torch.cuda.is_available():
        device, dtype, device_name = "cuda", torch.bfloat16, torch.cuda.get_device_name(0)
    elif args.smoke:
        device, dtype, device_name = "cpu", torch.float32, "CPU (smoke run; peak memory is the process's RSS)"
    else:
        print("CUDA is not available here: this benchmark needs a GPU. "
              "`--smoke` runs a tiny config on the CPU to check the script.", file=sys.stderr)
        return 1
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    results = [train_mode(mode, args, device, dtype) for mode in args.modes.split(",")]
    print_table(results, device_name, args)
    if os.environ.get("OUT"):
        path = Path(os.environ["OUT"]) / "train_1b.json"
        path.write_text(json.dumps({"device": device_name, "dtype": str(dtype), "smoke": args.smoke,
                                    "config": SMOKE_SIZE if args.smoke else FULL_SIZE,
                                    "steps": args.steps, "warmup": args.warmup, "batch": args.batch, "seq": args.seq,
                                    "torch": torch.__version__, "results": [asdict(r) for r in results]}, indent=2))
        print(f"wrote {path}")
    return 0 if all(not r.error for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
