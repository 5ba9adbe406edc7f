"""The LLM judge against a fake OpenAI-compatible endpoint served on loopback by the test, and the gate with it."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from llmtwin.settings import Settings
from llmtwin.testing.served import ServedApp
from twin_trainer.evaluate import EvalMetrics, gate
from twin_trainer.judge import StyleJudge, parse_score

REFERENCE = "Ship it.\n\n- measure\n- simplify\n\nThat's all."
FLAKY = "flaky: 503 first"


@dataclass
class FakeJudgeEndpoint:
    """Replies to each candidate answer with the text `replies` holds for it; FLAKY gets a 503 first, then
    its reply; answers in `down` always get a 500."""

    replies: dict[str, str] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    calls: Counter = field(default_factory=Counter)
    auth: set = field(default_factory=set)
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request):
            body = await request.json()
            prompt = body["messages"][-1]["content"]
            answer = prompt.split("Candidate answer:\n", 1)[1].split("\n\n", 1)[0]
            assert REFERENCE in prompt  # the person's real answer is shown as the style reference
            self.calls[answer] += 1
            self.auth.add(request.headers.get("authorization"))
            if answer in self.down or (answer == FLAKY and self.calls[answer] == 1):
                return JSONResponse({"error": "overloaded"}, status_code=503 if answer == FLAKY else 500)
            return {"id": "x", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": self.replies[answer]},
                                 "finish_reason": "stop"}]}

        return app


@pytest.fixture
def endpoint():
    fake = FakeJudgeEndpoint()
    served = ServedApp(fake.app()).start()
    fake.url = f"{served.url}/v1"
    yield fake
    served.stop()


def judge_answers(endpoint: FakeJudgeEndpoint, replies: dict[str, str]):
    endpoint.replies.update(replies)
    answers = list(replies)
    with StyleJudge(endpoint.url, "judge-model", "sk-judge", retries=2, backoff_seconds=0.01) as judge:
        return judge.score([f"Write about {i}." for i in range(len(answers))], [REFERENCE] * len(answers), answers)


def test_mean_score_scaled_to_unit_range_with_a_503_retried(endpoint):
    result = judge_answers(endpoint, {
        "close to her": '{"score": 10}',
        "a bit off": "Score: 4/10, the tone is too formal.",
        FLAKY: '```json\n{"score": 7}\n```',
    })
    assert (result.scored, result.skipped) == (3, 0)
    assert result.score == pytest.approx((7 - 1) / 9)  # mean of 10, 4, 7 is 7; 1 maps to 0, 10 to 1
    assert endpoint.calls[FLAKY] == 2  # the 503, then the retry that worked
    assert endpoint.auth == {"Bearer sk-judge"}


def test_unparsable_and_failed_replies_are_skipped_and_counted(endpoint):
    endpoint.down.add("server keeps failing")
    result = judge_answers(endpoint, {
        "scored": "8",
        "no number": "I cannot judge the style of this text.",
        "out of range": '{"score": 42}',
        "server keeps failing": "never sent",
    })
    assert (result.scored, result.skipped) == (1, 3)
    assert result.score == pytest.approx((8 - 1) / 9)
    assert endpoint.calls["server keeps failing"] == 3  # the first try and two retries, then given up


def test_nothing_scored_gives_no_score(endpoint):
    result = judge_answers(endpoint, {"mute": "No opinion."})
    assert (result.score, result.scored, result.skipped) == (None, 0, 1)


@pytest.mark.parametrize("reply, score", [
    ('{"score": 6}', 6),
    ('Here you go: {"score": 9, "why": "same voice"}', 9),
    ("7", 7),
    ("I'd say 3 out of 10.", 3),
    ('{"score": "5"}', 5),
    ('{"score": 0}', None),
    ("6.5", None),
    ("", None),
])
def test_parse_score(reply, score):
    assert parse_score(reply) == score


def test_gate_refuses_a_candidate_the_judge_scores_clearly_worse_even_with_better_perplexity(endpoint):
    reference_score = judge_answers(endpoint, {"her voice": '{"score": 9}', "her voice too": '{"score": 8}'})
    candidate_score = judge_answers(endpoint, {"generic prose": '{"score": 3}', "more generic prose": '{"score": 4}'})
    reference = EvalMetrics(perplexity=20.0, style_score=0.40, samples=8, style_samples=2,
                            judge_score=reference_score.score)
    candidate = EvalMetrics(perplexity=15.0, style_score=0.41, samples=8, style_samples=2,
                            judge_score=candidate_score.score)

    promoted, reason = gate(candidate, reference, judge_tolerance=0.05)
    assert not promoted
    assert "judge score 0.278 dropped more than 0.05 below the champion's 0.833" in reason

    # Within the tolerance the judge does not stand in the way, and says so in the reason.
    close = EvalMetrics(15.0, 0.41, 8, 2, judge_score=reference_score.score - 0.04)
    promoted, reason = gate(close, reference, judge_tolerance=0.05)
    assert promoted and "judge score 0.793 vs 0.833" in reason


def test_without_a_judge_score_on_both_sides_the_gate_is_unchanged():
    reference = EvalMetrics(perplexity=20.0, style_score=0.40, samples=8, style_samples=2, judge_score=0.9)
    candidate = EvalMetrics(perplexity=15.0, style_score=0.41, samples=8, style_samples=2)
    promoted, reason = gate(candidate, reference)
    assert promoted and "judge" not in reason
    assert "judge_score" not in candidate.as_dict() and reference.as_dict("r_")["r_judge_score"] == 0.9


def test_judge_built_from_settings_only_when_configured(tmp_path):
    assert StyleJudge.from_settings(Settings(data_dir=tmp_path)) is None
    with pytest.raises(ValueError, match="TWIN_EVAL_JUDGE_MODEL"):
        StyleJudge.from_settings(Settings(data_dir=tmp_path, eval_judge_url="http://127.0.0.1:9/v1"))
    judge = StyleJudge.from_settings(Settings(data_dir=tmp_path, eval_judge_url="http://127.0.0.1:9/v1",
                                              eval_judge_model="judge", eval_judge_api_key="sk"))
    assert isinstance(judge, StyleJudge)
    judge.close()
