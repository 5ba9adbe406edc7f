"""The registry: versions, the champion alias, rollback, and loading a version in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from llmtwin import registry
from llmtwin.domain import Split
from llmtwin.models import TwinModelInfo
from llmtwin.registry import RegistryError
from twin_trainer.finetune import TrainParams, finetune
from twin_trainer.job import rollback

LOAD_IN_FRESH_PROCESS = """
import json, sys, torch
from llmtwin import registry
from llmtwin.models import load_twin_model
from peft import PeftModel
from llmtwin.settings import Settings

settings = Settings()
registry.configure(settings)
folder = registry.download_model(sys.argv[1], "champion")
model, tokenizer, info = load_twin_model(folder, "cpu", settings)
ids = tokenizer("Kafka", return_tensors="pt").input_ids
out = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
print(json.dumps({"twin_id": info.twin_id, "dataset_version": info.dataset_version,
                  "new_tokens": out.shape[1] - ids.shape[1], "has_adapter": isinstance(model, PeftModel)}))
"""


def _trained_adapter(tiny_base_model, samples, folder, dataset_version: str):
    params = TrainParams(max_steps=1, batch_size=2, max_seq_len=64, lora_r=4, lora_alpha=8)
    result = finetune(str(tiny_base_model), samples, twin_name="Ann", params=params, output_dir=folder,
                      device="cpu")
    TwinModelInfo(twin_id="ann", base_model=str(tiny_base_model), dataset_version=dataset_version,
                  code_version="test").write(result.adapter_dir)
    return result.adapter_dir


def _register(adapter_dir, dataset_version: str) -> registry.ModelVersionRef:
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_metric("candidate_perplexity", 1.0)
    return registry.register_adapter("ann", adapter_dir, run_id=run.info.run_id,
                                     tags={"dataset_version": dataset_version, "base_model": "tiny"})


def test_champion_moves_with_promotions_and_back_with_a_rollback(bus_settings, tiny_base_model, samples_for,
                                                                 tmp_path, read_model_events, with_registry):
    with_registry(bus_settings)
    samples = samples_for("ann", 2, Split.TRAIN)
    first = _register(_trained_adapter(tiny_base_model, samples, tmp_path / "a1", "dv1"), "dv1")
    second = _register(_trained_adapter(tiny_base_model, samples, tmp_path / "a2", "dv2"), "dv2")
    assert (first.version, second.version) == ("1", "2")
    assert registry.champion("ann") is None

    registry.set_champion("ann", first.version)
    assert registry.champion("ann").version == "1"
    registry.set_champion("ann", second.version)
    assert registry.champion("ann").version == "2"
    assert [(v.version, v.aliases) for v in registry.list_versions("ann")] == [("1", ()), ("2", ("champion",))]

    event = rollback(bus_settings, "ann", "1")
    assert registry.champion("ann").version == "1"
    assert registry.champion("ann").tags["dataset_version"] == "dv1"
    [received] = read_model_events(bus_settings, 1)
    assert (received.action, received.version, received.model_name) == ("rolled_back", "1", "twin-ann")
    assert received.id == event.id and received.dataset_version == "dv1"

    env = {**os.environ, "TWIN_DATA_DIR": str(bus_settings.data_dir)}
    loaded = subprocess.run([sys.executable, "-c", LOAD_IN_FRESH_PROCESS, "ann"], env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    facts = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert facts == {"twin_id": "ann", "dataset_version": "dv1", "new_tokens": 3, "has_adapter": True}


def test_an_unknown_version_cannot_become_champion(tmp_path, with_registry):
    from llmtwin.settings import Settings

    with_registry(Settings(data_dir=tmp_path))
    with pytest.raises(RegistryError, match="no version 7"):
        registry.set_champion("nobody", 7)
    assert registry.champion("nobody") is None
    assert registry.list_versions("nobody") == []
