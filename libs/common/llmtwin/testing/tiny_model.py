"""Fixtures: a tiny Llama with its own byte-level BPE tokenizer, built in well under two seconds.

Real architecture, real tokenizer, random weights: fine-tuning, evaluation, registry and
serving code run on it exactly as on a real base model, only much faster."""
from __future__ import annotations

from pathlib import Path

import pytest

# A minimal chat template in the ChatML style real small instruct models use.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]

_TRAINING_TEXT = """\
You are a writing twin. Write in the person's own voice, style and point of view.
Write a LinkedIn-style post. Write an article section. Write code.
Machine learning systems need data pipelines, feature stores, training and inference.
Kafka moves events between services; every consumer is idempotent and at least once.
def train(model, data):\n    for batch in data:\n        loss = model(batch)\n        loss.backward()
The quick brown fox jumps over the lazy dog. 0123456789 !?.,;:'"()[]{}<>-_=+*/\\|@#$%^&~`
"""


def build_tiny_model(folder: Path) -> Path:
    """Save a 2-layer Llama (hidden 128, 4 heads) and its tokenizer to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator([_TRAINING_TEXT] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", bos_token="<|endoftext|>",
                                        pad_token="<pad>", unk_token=None)
    tokenizer.chat_template = CHAT_TEMPLATE

    # A long window, as real models have: retrieved context must fit beside the prompt.
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> Path:
    """Path of a tiny Llama HF folder (model + tokenizer with a chat template)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama") / "model")
