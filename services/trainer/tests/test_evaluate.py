"""The evaluation gate: held-out perplexity, the style and voice scores, and the promotion rule."""
from __future__ import annotations

import math

import pytest
from llmtwin.domain import Split
from llmtwin.embeddings import embed, load_embedding_model
from llmtwin.models import load_causal_lm, load_tokenizer
from llmtwin.settings import Settings
from twin_trainer.evaluate import EvalConfig, EvalMetrics, answer_perplexity, evaluate_model, gate
from twin_trainer.finetune import TrainParams, finetune


@pytest.fixture(scope="module")
def embed_texts():
    model = load_embedding_model(Settings())
    return lambda texts: embed(model, texts, 8)


def test_perplexity_on_held_out_answers_falls_after_training_on_that_voice(tiny_base_model, samples_for,
                                                                           tmp_path):
    from peft import PeftModel

    held_out = samples_for("ann", 4, Split.TEST)
    tokenizer = load_tokenizer(tiny_base_model)
    base = load_causal_lm(tiny_base_model, "cpu")
    before = answer_perplexity(base, tokenizer, held_out, twin_name="Ann", max_seq_len=96, batch_size=2)
    assert math.isfinite(before) and before > 1

    params = TrainParams(max_steps=12, batch_size=4, learning_rate=1e-2, warmup_steps=1, max_seq_len=96,
                         lora_r=8, lora_alpha=16)
    result = finetune(str(tiny_base_model), samples_for("ann", 8, Split.TRAIN), twin_name="Ann", params=params,
                      output_dir=tmp_path, device="cpu")
    tuned = PeftModel.from_pretrained(base, str(result.adapter_dir))
    after = answer_perplexity(tuned, tokenizer, held_out, twin_name="Ann", max_seq_len=96, batch_size=2)
    assert after < before * 0.8


def test_perplexity_scores_exactly_the_answer_tokens_whatever_the_prompts_and_batches(tiny_base_model,
                                                                                   samples_for):
    import torch
    from twin_trainer.examples import encode_example

    samples = samples_for("ann", 3, Split.TEST)
    # Prompts of different lengths in one batch: one with material, one long instruction, one plain.
    samples[0] = samples[0].model_copy(update={"material": ["Kafka moves every event. " * 6]})
    samples[1] = samples[1].model_copy(update={"instruction": "Write about LoRA adapters. " * 4})
    tokenizer = load_tokenizer(tiny_base_model)
    model = load_causal_lm(tiny_base_model, "cpu")
    nll = tokens = 0.0
    for sample in samples:  # the model's own loss, one whole example at a time
        example = encode_example(tokenizer, sample, twin_name="Ann", max_seq_len=256)
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([example.input_ids]), labels=torch.tensor([example.labels])).loss
        nll, tokens = nll + loss.item() * (example.answer_tokens), tokens + example.answer_tokens

    batched = answer_perplexity(model, tokenizer, samples, twin_name="Ann", max_seq_len=256, batch_size=3)
    assert batched == pytest.approx(math.exp(nll / tokens), rel=1e-4)


def test_evaluation_reports_perplexity_and_a_style_score_for_a_few_generations(tiny_base_model, samples_for,
                                                                              embed_texts):
    held_out = samples_for("ann", 5, Split.TEST)
    config = EvalConfig(max_samples=4, max_seq_len=96, batch_size=2, style_samples=2, style_max_new_tokens=8)
    metrics = evaluate_model(load_causal_lm(tiny_base_model, "cpu"), load_tokenizer(tiny_base_model), held_out,
                             twin_name="Ann", config=config, embed_texts=embed_texts)
    assert metrics.samples == 4 and metrics.style_samples == 2
    assert math.isfinite(metrics.perplexity)
    assert -1.0 <= metrics.style_score < 0.9  # random weights write nothing like the real answers
    assert 0.0 <= metrics.char_ngram_similarity < 0.9


def test_evaluation_decodes_with_the_penalties_the_api_answers_with(tiny_base_model, samples_for):
    from twin_trainer.evaluate import generate_answers

    model, tokenizer = load_causal_lm(tiny_base_model, "cpu"), load_tokenizer(tiny_base_model)
    held_out = samples_for("ann", 2, Split.TEST)

    def answers(penalty: float) -> list[str]:
        return generate_answers(model, tokenizer, held_out, twin_name="Ann", max_new_tokens=16,
                                frequency_penalty=penalty, presence_penalty=penalty)

    assert answers(2.0) != answers(0.0)  # greedy both times: only the penalties change the answers
    config = EvalConfig.from_settings(Settings(frequency_penalty=0.3, presence_penalty=0.1))
    assert (config.frequency_penalty, config.presence_penalty) == (0.3, 0.1)


def test_answers_generated_in_one_padded_batch_are_those_generated_one_at_a_time(tiny_base_model, samples_for):
    from llmtwin.domain import DocumentKind, InstructSample
    from twin_trainer.evaluate import generate_answers

    model, tokenizer = load_causal_lm(tiny_base_model, "cpu"), load_tokenizer(tiny_base_model)
    short = samples_for("ann", 2, Split.TEST)
    # Prompts of different lengths, so the batch is padded.
    long = InstructSample.create(twin_id="ann", document_id="long", kind=DocumentKind.POST,
                                 instruction="Write about Kafka. " * 6,
                                 answer="Keep it simple.")
    prompts = [*short, long]

    def answers(batch_size: int) -> list[str]:
        return generate_answers(model, tokenizer, prompts, twin_name="Ann", max_new_tokens=12,
                                frequency_penalty=0.2, presence_penalty=0.5, batch_size=batch_size)

    one_by_one = answers(1)
    assert answers(3) == one_by_one and len(set(one_by_one)) > 1


def test_style_score_is_high_for_the_real_answers_themselves(embed_texts):
    from twin_trainer.evaluate import style_similarity

    answers = ["Keep it simple, measure it, ship it.", "Every consumer is idempotent."]
    assert style_similarity(answers, answers, embed_texts) == pytest.approx(1.0, abs=1e-4)
    assert style_similarity(["Bananas are yellow."], answers[:1], embed_texts) < 0.5


def test_char_ngram_similarity_tells_a_voice_from_another():
    from twin_trainer.evaluate import char_ngram_similarity

    hers = ["Ship it.\n\n- measure\n- simplify\n\nThat's all.", "Keep it small.\n\n- test\n- ship"]
    like_her = ["Own it.\n\n- measure\n- ship\n\nThat's it."]
    unlike_her = ["WE MUST CONSIDER THE IMPLICATIONS OF DISTRIBUTED CONSENSUS CAREFULLY"]
    assert char_ngram_similarity(hers, hers) == pytest.approx(1.0)
    assert char_ngram_similarity(like_her, hers) > char_ngram_similarity(unlike_her, hers) + 0.3


def test_copied_share_counts_the_words_of_long_runs_taken_word_for_word_from_the_material():
    from twin_trainer.evaluate import copied_share

    material = ["Start with the smallest model that could possibly work and the cleanest data you can afford.",
                "Measure on a frozen held-out set."]
    copied_run = "Start with the smallest model that could possibly   work and"  # 10 words, spacing aside
    fresh = "I would pick a tiny model first and clean the data"  # 11 words, shorter runs only
    assert copied_share([f"{copied_run} {fresh}"], [material]) == pytest.approx(10 / 21)
    # A run of 7 is phrasing, not copying; a run that spans two passages is not in either.
    assert copied_share(["the smallest model that could possibly work"], [material]) == 0.0
    assert copied_share(["you can afford. Measure on a frozen held-out"], [material]) == 0.0
    # Only a prompt's own material counts.
    assert copied_share([copied_run, copied_run], [material, []]) == pytest.approx(10 / 20)
    assert copied_share([], []) == 0.0


def test_the_voice_is_read_from_what_the_twin_wrote_itself_line_breaks_kept():
    from twin_trainer.evaluate import own_writing

    material = ["Start with the smallest model that could possibly work and the cleanest data you can afford."]
    answer = "Rule one:\n\nstart with the smallest model that could possibly work and the cleanest data.\n\n- measure"
    # Case differs at "start": the copied run begins one word later, at "with".
    assert own_writing(answer, material) == "Rule one:\n\nstart data.\n\n- measure"
    assert own_writing("Nothing copied here.", material) == "Nothing copied here."
    assert own_writing(material[0], material) == ""


CHAMPION = EvalMetrics(perplexity=20.0, style_score=0.40, samples=8, style_samples=4, voice_score=0.60)


@pytest.mark.parametrize("candidate, promoted, why", [
    (EvalMetrics(18.0, 0.41, 8, 4), True, "perplexity 18.000 < 20.000"),
    (EvalMetrics(21.0, 0.50, 8, 4), False, "not below"),
    (EvalMetrics(20.0, 0.50, 8, 4), False, "not below"),
    (EvalMetrics(18.0, 0.10, 8, 4), True, "perplexity 18.000 < 20.000"),  # style (topic) is not gated
    (EvalMetrics(float("nan"), 0.50, 8, 4), False, "not finite"),
    (EvalMetrics(18.0, 0.41, 8, 4, voice_score=0.56), True, "voice score 0.560 vs 0.600"),  # within the tolerance
    (EvalMetrics(18.0, 0.41, 8, 4, voice_score=0.50), False, "voice score 0.500 dropped"),
])
def test_gate_promotes_only_a_better_candidate(candidate, promoted, why):
    verdict, reason = gate(candidate, CHAMPION, voice_tolerance=0.05)
    assert verdict is promoted
    assert why in reason
