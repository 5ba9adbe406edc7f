"""Loading base models: what the trainer and the inference API share."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from llmtwin.models import load_causal_lm


def test_models_loaded_side_by_side_in_one_process_come_out_whole(tiny_base_model):
    """The inference API loads the base and every champion at once at start-up; each must get
    its own real weights (the tiny Llama ties its output head to its input embeddings)."""
    with ThreadPoolExecutor(2) as pool:
        models = list(pool.map(lambda _: load_causal_lm(tiny_base_model, "cpu"), range(6)))
    for model in models:
        assert not [name for name, parameter in model.named_parameters() if parameter.is_meta]
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
