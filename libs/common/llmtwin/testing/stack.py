"""Settings for a whole embedded stack in a test: every service and server on a free port, a tiny base
model, and training small enough for CI. Used by the e2e and fault-injection suites."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..infra.process import free_port
from ..settings import Settings

SERVICE_PORTS = ("web_port", "api_port", "crawler_port", "cleaner_port", "embedder_port",
                 "dataset_builder_port", "trainer_port")


def stack_settings(data_dir: Path, base_model: Path, **changes: Any) -> Settings:
    ports = {name: free_port() for name in SERVICE_PORTS}
    small = {"train_max_steps": 6, "train_min_new_samples": 4, "train_quiet_seconds": 2, "max_new_tokens": 12,
             "eval_max_samples": 4, "eval_voice_negatives": 4,
             # A tiny model's random weights write noise either way: its verdict rests on perplexity.
             "eval_voice_tolerance": 1.0}
    return Settings(data_dir=data_dir, kafka_bootstrap=f"127.0.0.1:{free_port()}",
                    qdrant_url=f"http://127.0.0.1:{free_port()}",
                    inference_api_url=f"http://127.0.0.1:{ports['api_port']}", base_model=str(base_model),
                    **ports, **{**small, **changes})
