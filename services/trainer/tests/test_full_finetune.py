"""Full fine-tuning (TrainParams(lora=False)), the reference LoRA is benchmarked against:
it trains every base weight, where LoRA leaves them all as they were."""
from __future__ import annotations

import torch
from llmtwin.domain import Split
from llmtwin.models import load_causal_lm
from safetensors.torch import load_file
from twin_trainer.finetune import TrainParams, finetune, latest_checkpoint

FAST = TrainParams(max_steps=3, batch_size=4, learning_rate=1e-2, warmup_steps=1, max_seq_len=96,
                   lora_r=8, lora_alpha=16, checkpoint_every=100)


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_full_finetuning_changes_every_base_weight_and_lora_changes_none(tiny_base_model, samples_for, tmp_path):
    samples = samples_for("ann", 8, Split.TRAIN)
    base = _weights(load_causal_lm(tiny_base_model, "cpu"))

    full = finetune(str(tiny_base_model), samples, twin_name="Ann", params=TrainParams(**{**FAST.__dict__, "lora": False}),
                    output_dir=tmp_path / "full", device="cpu")
    tuned = _weights(load_causal_lm(full.adapter_dir, "cpu"))
    assert tuned.keys() == base.keys()
    unchanged = [name for name in base if torch.equal(base[name], tuned[name])]
    assert unchanged == []
    assert full.trainable_parameters == sum(t.numel() for t in load_causal_lm(tiny_base_model, "cpu").parameters())
    assert full.target_modules == []
    assert not (full.adapter_dir / "adapter_config.json").exists()

    lora = finetune(str(tiny_base_model), samples, twin_name="Ann", params=FAST, output_dir=tmp_path / "lora",
                    device="cpu")
    adapter = load_file(lora.adapter_dir / "adapter_model.safetensors")
    assert adapter and all("lora_" in name for name in adapter)  # only adapter tensors, no base weight
    assert lora.trainable_parameters < full.trainable_parameters / 5
    assert lora.losses != full.losses


def test_full_finetuning_resumes_from_a_whole_model_checkpoint(tiny_base_model, samples_for, tmp_path):
    samples = samples_for("ann", 8, Split.TRAIN)
    params = TrainParams(**{**FAST.__dict__, "lora": False, "checkpoint_every": 2})
    first = finetune(str(tiny_base_model), samples, twin_name="Ann", params=params, output_dir=tmp_path, device="cpu")
    assert (latest_checkpoint(tmp_path) / "config.json").exists()

    resumed = finetune(str(tiny_base_model), samples, twin_name="Ann",
                       params=TrainParams(**{**params.__dict__, "max_steps": 4}), output_dir=tmp_path, device="cpu")
    assert resumed.resumed_from_step == 2
    assert resumed.losses[:2] == first.losses[:2]
    assert len(resumed.losses) == 4
