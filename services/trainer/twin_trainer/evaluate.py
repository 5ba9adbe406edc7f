"""The evaluation gate: held-out perplexity of the answers, style and voice scores, and the verdict.

Perplexity uses the same prompt builder and answer-only loss as training, and the prompts
carry the material a job gave them (held-out ones: what serving retrieves). Greedy answers to
a few held-out instructions (generation is slow on CPU) get the scores: voice, how much what
they wrote themselves (copied runs taken out) reads as the person to a character n-gram
classifier (`twin_trainer.voice`); the share they copied from their material; and style, their
mean embedding cosine to the real answers (topic, mostly: reported, not gated). A candidate is
promoted only when its perplexity is lower than the champion's (or the base model's, for a
twin's first model) on the same split and its voice score has not dropped by more than its
tolerance. When an LLM judge is configured, it scores the same generations too, and a
promotion also needs a judge score not more than a tolerance below the reference's.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from llmtwin.copying import copied_words
from llmtwin.domain import InstructSample
from llmtwin.models import context_window, used_token_penalties
from llmtwin.settings import Settings

from .examples import IGNORE_INDEX, collate, encode_sample_prompt, encode_samples, length_batches
from .judge import StyleJudge
from .voice import VoiceClassifier

# Texts in, unit-length vectors out (llmtwin.embeddings.embed with a loaded model).
EmbedTexts = Callable[[list[str]], Sequence[Sequence[float]]]
GENERATION_BATCH = 16  # prompts per generate call

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    max_samples: int = 16
    max_seq_len: int = 256
    batch_size: int = 4
    style_samples: int = 8
    style_max_new_tokens: int = 48
    frequency_penalty: float = 0.0  # decoding as the inference API's (settings.frequency_penalty)
    presence_penalty: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> EvalConfig:
        return cls(max_samples=settings.eval_max_samples, max_seq_len=settings.eval_max_seq_len,
                   batch_size=settings.train_batch_size, style_samples=settings.eval_style_samples,
                   style_max_new_tokens=settings.eval_style_max_new_tokens,
                   frequency_penalty=settings.frequency_penalty, presence_penalty=settings.presence_penalty)


@dataclass(frozen=True)
class EvalMetrics:
    perplexity: float
    style_score: float
    samples: int
    style_samples: int
    # Logged beside the style score: embeddings measure topic more than voice.
    char_ngram_similarity: float = 0.0
    # Share of the generated words copied from the prompt's material (llmtwin.copying: runs of 8 words
    # or more): a twin that parrots its passages reads as the person without writing anything new.
    copied_share: float = 0.0
    # The voice classifier's mean probability that the generations, less what they copied, are the
    # person's: None without a classifier, or when the generations copied all they wrote.
    voice_score: float | None = None
    # The LLM judge's mean score, 0-1: None without a judge, or when none of its replies had a score.
    judge_score: float | None = None
    judge_skipped: int = 0

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{key}": float(value) for key, value in asdict(self).items() if value is not None}


def answer_perplexity(model, tokenizer, samples: Sequence[InstructSample], *, twin_name: str,
                      max_seq_len: int, batch_size: int) -> float:
    """exp(mean negative log-likelihood of the answer tokens), prompts given."""
    import torch

    examples = encode_samples(tokenizer, samples, twin_name=twin_name, max_seq_len=max_seq_len)
    if not examples:
        raise ValueError("no held-out sample has an answer to score")
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for batch in length_batches(examples, batch_size):
            tensors = collate(batch, tokenizer.pad_token_id, str(device))
            labels = tensors["labels"]
            # Token t is predicted from position t - 1. Only positions from the batch's first answer
            # token's predecessor on get the head's logits (a 49k-wide row a token on SmolLM2): the
            # material-laden prompts before them are most of each row.
            first = max(int((labels != IGNORE_INDEX).int().argmax(dim=1).min()) - 1, 0)
            scored = torch.arange(first, labels.shape[1] - 1, device=device)
            logits = model(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"],
                           logits_to_keep=scored).logits
            shifted_logits, shifted_labels = logits.float(), labels[:, first + 1:]
            total_nll += torch.nn.functional.cross_entropy(
                shifted_logits.reshape(-1, shifted_logits.size(-1)), shifted_labels.reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="sum").item()
            total_tokens += int((shifted_labels != IGNORE_INDEX).sum())
    return math.exp(total_nll / total_tokens)


def generate_answers(model, tokenizer, samples: Sequence[InstructSample], *, twin_name: str,
                     max_new_tokens: int, frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                     batch_size: int = GENERATION_BATCH) -> list[str]:
    """Greedy answers with the API's penalties, prompts encoded as serving encodes them, several
    prompts per `generate` call: left-padded and masked, so each answer starts right after its
    own prompt (on 2 CPU cores a batch of 12 took a quarter of the time of 12 single calls)."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id  # llmtwin.models.load_tokenizer gives every tokenizer one
    # Material beyond the model's window is shed as serving sheds it.
    budget = context_window(model) - max_new_tokens
    answers = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            prompts = [encode_sample_prompt(tokenizer, sample, twin_name=twin_name, budget=budget)
                       for sample in samples[start:start + batch_size]]
            width = max(len(ids) for ids in prompts)
            input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts], device=device)
            attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts],
                                          device=device)
            output = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                    max_new_tokens=max_new_tokens, do_sample=False,
                                    logits_processor=used_token_penalties(width, frequency_penalty, presence_penalty),
                                    pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
            answers += [text.strip() for text in tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)]
    return answers


def fit_voice(base_model, tokenizer, train: Sequence[InstructSample], *, twin_name: str, config: EvalConfig,
              negatives: int) -> VoiceClassifier | None:
    """The twin's voice classifier: its training answers against what the base model writes for
    `negatives` of the same instructions (spread over the split), decoded as the evaluation
    decodes. None when `negatives` is 0, or when the base wrote nothing to compare with."""
    if negatives <= 0 or not train:
        return None
    prompts = list(train)[::max(1, len(train) // negatives)][:negatives]
    generic = generate_answers(base_model, tokenizer, prompts, twin_name=twin_name,
                               max_new_tokens=config.style_max_new_tokens,
                               frequency_penalty=config.frequency_penalty, presence_penalty=config.presence_penalty)
    if not any(text.strip() for text in generic):
        log.warning("the base model answered %d instructions with nothing: no voice score", len(prompts))
        return None
    return VoiceClassifier(person=[s.answer for s in train], others=generic)


def style_similarity(generated: Sequence[str], references: Sequence[str], embed_texts: EmbedTexts) -> float:
    """Mean cosine similarity between each generation and its real answer."""
    vectors = embed_texts([*generated, *references])
    n = len(generated)
    sims = [_cosine(vectors[i], vectors[n + i]) for i in range(n)]
    return sum(sims) / len(sims) if sims else 0.0


def char_ngram_similarity(generated: Sequence[str], references: Sequence[str], sizes: Sequence[int] = (2, 3, 4)
                          ) -> float:
    """Cosine between the character n-gram profiles of all generations and all real answers:
    punctuation, casing, line breaks and word shapes, the habits of a voice, more than topics."""
    def profile(texts: Sequence[str]) -> Counter[str]:
        counts: Counter[str] = Counter()
        for text in texts:
            for n in sizes:
                counts.update(text[i:i + n] for i in range(len(text) - n + 1))
        return counts

    ours, theirs = profile(generated), profile(references)
    dot = sum(count * theirs[gram] for gram, count in ours.items())
    norm = math.sqrt(sum(c * c for c in ours.values())) * math.sqrt(sum(c * c for c in theirs.values()))
    return dot / norm if norm else 0.0


def copied_share(generated: Sequence[str], materials: Sequence[Sequence[str]]) -> float:
    """Share of all generated words copied from the material of their own prompt."""
    copied = sum(len(copied_words(text, material)) for text, material in zip(generated, materials, strict=True))
    total = sum(len(text.split()) for text in generated)
    return copied / total if total else 0.0


def own_writing(text: str, material: Sequence[str]) -> str:
    """`text` without what it copied from its material, line breaks and punctuation kept: the part
    whose voice is the twin's own."""
    kept, position = [], 0
    for begin, end in copied_words(text, material):
        kept.append(text[position:begin].rstrip(" \t"))  # the space after the run stays
        position = end
    return "".join([*kept, text[position:]]).strip()


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def evaluate_model(model, tokenizer, samples: Sequence[InstructSample], *, twin_name: str, config: EvalConfig,
                   embed_texts: EmbedTexts, voice: VoiceClassifier | None = None,
                   judge: StyleJudge | None = None) -> EvalMetrics:
    """Perplexity on up to `max_samples` held-out samples; style, voice (and the judge's score) on
    the first `style_samples` of them."""
    scored = list(samples)[:config.max_samples]
    perplexity = answer_perplexity(model, tokenizer, scored, twin_name=twin_name,
                                   max_seq_len=config.max_seq_len, batch_size=config.batch_size)
    styled = scored[:config.style_samples]
    generated = generate_answers(model, tokenizer, styled, twin_name=twin_name,
                                 max_new_tokens=config.style_max_new_tokens,
                                 frequency_penalty=config.frequency_penalty, presence_penalty=config.presence_penalty)
    references = [s.answer for s in styled]
    materials = [s.material for s in styled]
    style = style_similarity(generated, references, embed_texts) if styled else 0.0
    # Copying the person's own passages would read as their voice: only what the twin wrote counts.
    written = [text for text in map(own_writing, generated, materials) if text]
    judged = judge.score([s.instruction for s in styled], references, generated) if judge else None
    return EvalMetrics(perplexity=perplexity, style_score=style, samples=len(scored), style_samples=len(styled),
                       char_ngram_similarity=char_ngram_similarity(generated, references),
                       copied_share=copied_share(generated, materials),
                       voice_score=voice.score(written) if voice and written else None,
                       judge_score=judged.score if judged else None,
                       judge_skipped=judged.skipped if judged else 0)


def gate(candidate: EvalMetrics, champion: EvalMetrics, *, voice_tolerance: float = 0.05,
         judge_tolerance: float = 0.05) -> tuple[bool, str]:
    """(promote, reason): lower perplexity and, when both sides have one, a voice score at most
    `voice_tolerance` and a judge score at most `judge_tolerance` below. The embedding style score
    is reported, not gated: it measures topic, and a twin that copies its material gains on it."""
    if not math.isfinite(candidate.perplexity):
        return False, f"candidate perplexity is not finite ({candidate.perplexity})"
    if candidate.perplexity >= champion.perplexity:
        return False, (f"perplexity {candidate.perplexity:.3f} is not below the champion's "
                       f"{champion.perplexity:.3f}")
    notes = []
    for name, tolerance in (("voice", voice_tolerance), ("judge", judge_tolerance)):
        ours, theirs = getattr(candidate, f"{name}_score"), getattr(champion, f"{name}_score")
        if ours is None or theirs is None:  # no voice classifier or no judge on one side: not compared
            continue
        if ours < theirs - tolerance:
            return False, f"{name} score {ours:.3f} dropped more than {tolerance} below the champion's {theirs:.3f}"
        notes.append(f"{name} score {ours:.3f} vs {theirs:.3f}")
    return True, ", ".join([f"perplexity {candidate.perplexity:.3f} < {champion.perplexity:.3f}", *notes])
