"""Instruct samples as token ids: the serving prompt, then the answer; loss only on the answer.

Training and evaluation both encode through here, and the prompt comes from
`llmtwin.prompts`, the builder serving uses, tokenized and fitted to a window the same
way (the template's own special tokens, nothing added; material shed last passage
first), so the model is trained on exactly the text it will be prompted with.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from llmtwin.domain import InstructSample
from llmtwin.prompts import encode_prompt_within

IGNORE_INDEX = -100  # label value the loss skips (prompt and padding)


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]

    @property
    def answer_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def encode_sample_prompt(tokenizer, sample: InstructSample, *, twin_name: str, budget: int) -> list[int]:
    """The sample's prompt as serving encodes it, with as much of its material as fits in `budget`."""
    ids, _ = encode_prompt_within(tokenizer, sample.instruction, twin_name=twin_name, kind=sample.kind,
                                  context=sample.material, budget=budget)
    return ids


def encode_example(tokenizer, sample: InstructSample, *, twin_name: str, max_seq_len: int) -> EncodedExample:
    """Prompt + answer + eos, cut to max_seq_len: the answer keeps at least half of the window.
    A prompt too long for the rest sheds its material, last passage first, then (with none
    left) its beginning (the instruction sits at its end)."""
    answer_ids = tokenizer(sample.answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    prompt_ids = encode_sample_prompt(tokenizer, sample, twin_name=twin_name,
                                      budget=max(max_seq_len - len(answer_ids), max_seq_len // 2))
    answer_budget = min(len(answer_ids), max(max_seq_len - len(prompt_ids), max_seq_len // 2))
    answer_ids = answer_ids[:answer_budget]
    prompt_ids = prompt_ids[-(max_seq_len - answer_budget):] if max_seq_len > answer_budget else []
    return EncodedExample(input_ids=prompt_ids + answer_ids,
                          labels=[IGNORE_INDEX] * len(prompt_ids) + answer_ids)


def encode_samples(tokenizer, samples: Sequence[InstructSample], *, twin_name: str,
                   max_seq_len: int) -> list[EncodedExample]:
    encoded = (encode_example(tokenizer, s, twin_name=twin_name, max_seq_len=max_seq_len) for s in samples)
    return [example for example in encoded if example.answer_tokens > 0]


def length_batches(examples: Sequence[EncodedExample], batch_size: int) -> list[list[EncodedExample]]:
    """Batches of similar length, so little of each batch is padding."""
    ordered = sorted(examples, key=lambda e: len(e.input_ids))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


def batch_schedule(batches: list[list[EncodedExample]], seed: int):
    """Index -> batch over endless epochs, each in its own seeded order: resuming at step N
    replays the same sequence without recomputing anything."""
    orders: dict[int, list[int]] = {}

    def batch_at(index: int) -> list[EncodedExample]:
        epoch, position = divmod(index, len(batches))
        if epoch not in orders:
            order = list(range(len(batches)))
            random.Random(seed + epoch).shuffle(order)
            orders.clear()
            orders[epoch] = order
        return batches[orders[epoch][position]]

    return batch_at


def collate(batch: Sequence[EncodedExample], pad_token_id: int, device: str):
    """Right-padded tensors: input_ids, attention_mask, labels (padding labelled IGNORE_INDEX)."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device),
            "labels": labels.to(device)}
