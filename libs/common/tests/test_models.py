"""Loading base models and decoding them: what the trainer and the inference API share."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from llmtwin.models import UsedTokenPenalty, load_causal_lm


def test_models_loaded_side_by_side_in_one_process_come_out_whole(tiny_base_model):
    """The inference API loads the base and every champion at once at start-up; each must get
    its own real weights (the tiny Llama ties its output head to its input embeddings)."""
    with ThreadPoolExecutor(2) as pool:
        models = list(pool.map(lambda _: load_causal_lm(tiny_base_model, "cpu"), range(6)))
    for model in models:
        assert not [name for name, parameter in model.named_parameters() if parameter.is_meta]
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_used_token_penalty_lowers_what_the_answer_used_and_leaves_the_prompt_alone():
    # Prompt: tokens 0 and 1; the answer so far: 2, 2, 3.
    input_ids = torch.tensor([[0, 1, 2, 2, 3]])
    scores = torch.zeros(1, 5)

    penalised = UsedTokenPenalty(prompt_length=2, frequency=0.5, presence=0.25)(input_ids, scores.clone())

    # OpenAI's formula: logit - count * frequency - (count > 0) * presence, counted over the answer only.
    assert penalised.tolist() == [[0.0, 0.0, -1.25, -0.75, 0.0]]
    assert UsedTokenPenalty(prompt_length=5, frequency=2, presence=2)(input_ids, scores.clone()).equal(scores)

