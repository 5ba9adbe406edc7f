"""Shared fixtures for every test suite in the repository."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "llmtwin.testing.broker",
    "llmtwin.testing.warehouse",
    "llmtwin.testing.vectors",
    "llmtwin.testing.tiny_model",
]
