"""Fine-tuning on a tiny real Llama: the serving prompt, answer-only loss, learning, checkpoints, resume."""
from __future__ import annotations

import pytest
import torch
from llmtwin.domain import DocumentKind, InstructSample, Split
from llmtwin.models import load_causal_lm, load_tokenizer
from llmtwin.prompts import build_prompt
from twin_trainer import finetune as finetune_module
from twin_trainer.examples import IGNORE_INDEX, encode_example
from twin_trainer.finetune import ModelDoesNotFit, TrainParams, check_fits, finetune, latest_checkpoint

FAST = TrainParams(max_steps=12, batch_size=4, learning_rate=1e-2, warmup_steps=1, max_seq_len=96,
                   lora_r=8, lora_alpha=16, checkpoint_every=100)


def test_training_sees_the_serving_prompt_and_learns_only_the_answer(tiny_base_model):
    tokenizer = load_tokenizer(tiny_base_model)
    sample = InstructSample.create(twin_id="ann", document_id="d", kind=DocumentKind.POST,
                                   instruction="Write about Kafka.", answer="Keep it simple.")
    example = encode_example(tokenizer, sample, twin_name="Ann", max_seq_len=256)

    serving_prompt = build_prompt(tokenizer, "Write about Kafka.", twin_name="Ann", kind=DocumentKind.POST)
    prompt_ids = tokenizer(serving_prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer("Keep it simple.", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert example.input_ids == prompt_ids + answer_ids
    assert example.labels == [IGNORE_INDEX] * len(prompt_ids) + answer_ids


def test_a_long_sample_keeps_the_end_of_its_prompt_and_the_start_of_its_answer(tiny_base_model):
    tokenizer = load_tokenizer(tiny_base_model)
    sample = InstructSample.create(twin_id="ann", document_id="d", kind=DocumentKind.ARTICLE,
                                   instruction="Write about Kafka. " * 20, answer="Keep it simple. " * 40)
    example = encode_example(tokenizer, sample, twin_name="Ann", max_seq_len=64)
    assert len(example.input_ids) == 64
    assert example.answer_tokens == 32
    answer_ids = tokenizer(sample.answer, add_special_tokens=False)["input_ids"]
    assert example.labels[32:] == answer_ids[:32]


def test_material_rides_in_the_serving_prompt_and_a_long_prompt_sheds_its_last_passages_first(tiny_base_model):
    tokenizer = load_tokenizer(tiny_base_model)
    passages = ["Kafka moves events between services.", "Every consumer is idempotent. " * 12]
    sample = InstructSample.create(twin_id="ann", document_id="d", kind=DocumentKind.POST,
                                   instruction="Write about Kafka.", answer="Keep it simple.")
    sample = sample.model_copy(update={"material": passages})

    def prompt_ids(context):
        prompt = build_prompt(tokenizer, "Write about Kafka.", twin_name="Ann", kind=DocumentKind.POST,
                              context=context)
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]

    roomy = encode_example(tokenizer, sample, twin_name="Ann", max_seq_len=512)
    assert roomy.input_ids[:len(prompt_ids(passages))] == prompt_ids(passages)
    # Too little room for both passages: the prompt keeps the first, whole, and its system turn.
    tight_len = len(prompt_ids(passages[:1])) + 12
    assert len(prompt_ids(passages)) > tight_len
    tight = encode_example(tokenizer, sample, twin_name="Ann", max_seq_len=tight_len)
    assert tight.input_ids[:len(prompt_ids(passages[:1]))] == prompt_ids(passages[:1])
    assert tight.answer_tokens == len(tokenizer("Keep it simple.", add_special_tokens=False)["input_ids"]) + 1


def test_finetuning_lowers_the_loss_and_writes_an_adapter_that_reloads(tiny_base_model, samples_for, tmp_path):
    from peft import PeftModel

    samples = samples_for("ann", 8, Split.TRAIN)
    seen = []
    result = finetune(str(tiny_base_model), samples, twin_name="Ann", params=FAST, output_dir=tmp_path,
                      progress_callback=seen.append, device="cpu")

    assert [m.step for m in seen] == list(range(1, 13))
    assert all(m.tokens_per_second > 0 and m.learning_rate > 0 for m in seen)
    assert result.losses[-1] < result.losses[0] - 0.5
    assert result.target_modules == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]

    base = load_causal_lm(tiny_base_model, "cpu")
    probe = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        base_logits = base(probe).logits.clone()
        reloaded = PeftModel.from_pretrained(base, str(result.adapter_dir))
        tuned_logits = reloaded(probe).logits
    assert not torch.allclose(base_logits, tuned_logits)
    assert load_tokenizer(result.adapter_dir).chat_template == load_tokenizer(tiny_base_model).chat_template


def test_a_run_resumes_from_its_last_checkpoint(tiny_base_model, samples_for, tmp_path):
    samples = samples_for("ann", 8, Split.TRAIN)
    params = TrainParams(**{**FAST.__dict__, "max_steps": 3, "checkpoint_every": 2})
    first = finetune(str(tiny_base_model), samples, twin_name="Ann", params=params, output_dir=tmp_path, device="cpu")
    assert latest_checkpoint(tmp_path).name == "step-000002"

    longer = TrainParams(**{**params.__dict__, "max_steps": 5})
    steps = []
    resumed = finetune(str(tiny_base_model), samples, twin_name="Ann", params=longer, output_dir=tmp_path,
                       progress_callback=lambda m: steps.append(m.step), device="cpu")
    assert resumed.resumed_from_step == 2
    assert steps == [3, 4, 5]
    assert resumed.losses[:2] == first.losses[:2]
    assert len(resumed.losses) == 5


def test_a_base_model_bigger_than_free_memory_is_refused_before_loading(tiny_base_model, monkeypatch):
    monkeypatch.setattr(finetune_module, "_free_memory_bytes", lambda device: 1024)
    with pytest.raises(ModelDoesNotFit, match="GiB"):
        check_fits(str(tiny_base_model), "cpu")


def test_out_of_memory_during_training_becomes_model_does_not_fit(tiny_base_model, samples_for, tmp_path,
                                                                  monkeypatch):
    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(finetune_module, "_trainable_model", exhausted)
    with pytest.raises(ModelDoesNotFit, match="does not fit"):
        finetune(str(tiny_base_model), samples_for("ann", 2, Split.TRAIN), twin_name="Ann", params=FAST,
                 output_dir=tmp_path, device="cpu")
