"""The voice score: a character n-gram classifier tells the person's habits from generic text."""
from __future__ import annotations

import pytest
from llmtwin.domain import Split
from llmtwin.models import load_causal_lm, load_tokenizer
from twin_trainer.evaluate import EvalConfig, fit_voice
from twin_trainer.voice import VoiceClassifier

# Her habits: short lines, lowercase openings, arrows, a closing question, hashtags.
HERS = [
    "shipped the new ingest today.\n\n→ one file in, one row out\n→ nothing clever\n\nwhat would you cut? #DataEngineering",
    "three bugs this week, all in the retry path.\n\n→ retries hide failures\n→ count them\n\nhow do you count yours? #MLOps",
    "our pipeline got slower and nobody noticed.\n\n→ measure every stage\n→ alert on drift\n\nwho watches yours? #DataEngineering",
    "deleted 400 lines of config.\n\n→ defaults that work\n→ one settings file\n\nwhat did you delete lately? #Python",
    "tests that cannot fail are worse than none.\n\n→ assert behaviour\n→ break it once\n\ndo yours fail? #Testing",
    "kafka is not a database, until it is.\n\n→ keep offsets\n→ replay on start\n\nwhere do you keep state? #Kafka",
]
GENERIC = [
    "In today's rapidly evolving landscape, organizations must leverage data to drive innovation and growth.",
    "Data engineering plays a crucial role in enabling businesses to make informed, data-driven decisions.",
    "It is important to note that testing is an essential component of any successful software project.",
    "Furthermore, scalable architectures empower teams to deliver value efficiently and effectively.",
    "In conclusion, adopting best practices ensures long-term success and sustainability for enterprises.",
    "Machine learning operations, commonly known as MLOps, streamline the deployment of models at scale.",
]


def test_texts_in_her_voice_score_higher_than_generic_ones_on_any_topic():
    voice = VoiceClassifier(person=HERS, others=GENERIC)
    hers_new = ["renamed every table yesterday.\n\n→ short names\n→ one meaning each\n\nwhat's in a name? #SQL"]
    generic_new = ["Moreover, effective naming conventions are vital for maintaining clarity across organizations."]
    assert voice.score(hers_new) > 0.6
    assert voice.score(generic_new) < 0.4
    assert voice.score(hers_new + generic_new) == pytest.approx((voice.score(hers_new) + voice.score(generic_new)) / 2)
    assert voice.score([]) == 0.0


def test_a_voice_needs_texts_on_both_sides():
    with pytest.raises(ValueError, match="both sides"):
        VoiceClassifier(person=HERS, others=["   "])


def test_the_base_models_answers_to_her_instructions_are_the_other_side(tiny_base_model, samples_for):
    model, tokenizer = load_causal_lm(tiny_base_model, "cpu"), load_tokenizer(tiny_base_model)
    train = samples_for("ann", 6, Split.TRAIN)
    # Strong penalties keep the random weights off the special tokens they otherwise repeat.
    config = EvalConfig(style_max_new_tokens=12, frequency_penalty=2.0, presence_penalty=2.0)
    voice = fit_voice(model, tokenizer, train, twin_name="Ann", config=config, negatives=3)
    assert voice is not None
    # Her own answers read as hers against what the (random) base wrote for the same instructions.
    assert voice.score([s.answer for s in samples_for("ann", 3, Split.TEST)]) > 0.5
    assert fit_voice(model, tokenizer, train, twin_name="Ann", config=config, negatives=0) is None
    # Without penalties it writes only special tokens: nothing to compare with, so no voice score.
    silent = EvalConfig(style_max_new_tokens=12)
    assert fit_voice(model, tokenizer, train, twin_name="Ann", config=silent, negatives=3) is None
