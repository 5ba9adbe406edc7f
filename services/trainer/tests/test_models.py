"""Base-model plumbing: LoRA targets found from the architecture, settings resolved to a folder."""
from __future__ import annotations

import pytest
from llmtwin.models import BaseModelError, load_causal_lm, lora_target_modules, resolve_base_model
from llmtwin.settings import Settings


def test_lora_targets_of_a_llama_are_its_attention_and_mlp_projections(tiny_base_model):
    model = load_causal_lm(tiny_base_model, "cpu")
    assert lora_target_modules(model) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj",
                                          "v_proj"]


def test_lora_targets_of_a_gpt2_are_its_conv1d_layers_not_the_head():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32))
    assert lora_target_modules(model) == ["c_attn", "c_fc", "c_proj"]


def test_a_model_folder_in_settings_is_used_as_it_is(tiny_base_model, tmp_path):
    settings = Settings(data_dir=tmp_path, base_model=str(tiny_base_model))
    assert resolve_base_model(settings) == str(tiny_base_model.resolve())


@pytest.mark.parametrize("make_bad", [
    lambda tmp: tmp / "missing.gguf",
    lambda tmp: tmp,  # a folder without config.json
    lambda tmp: (tmp / "weights.txt").write_text("x") and tmp / "weights.txt",
])
def test_an_unusable_base_model_setting_is_a_clear_error(tmp_path, make_bad):
    settings = Settings(data_dir=tmp_path / "data", base_model=str(make_bad(tmp_path)))
    with pytest.raises(BaseModelError):
        resolve_base_model(settings)
