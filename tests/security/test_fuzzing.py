"""Property-based fuzzing of the services' own OpenAPI documents against the real apps on loopback.

Every operation gets schema-valid cases (positive) and schema-breaking ones (negative), a bounded
number of each; whatever a case sends, the answer must be a clear client error or a success,
never a 5xx. Failures are collected over all operations so one run reports them all."""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from llmtwin.testing.served import ServedApp
from schemathesis import GenerationMode

from .conftest import ALL_TWINS_KEY

POSITIVE_EXAMPLES = 25
NEGATIVE_EXAMPLES = 10


@dataclass
class FuzzReport:
    cases: dict[str, int] = field(default_factory=dict)  # per operation
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.cases.values())

    def per_operation(self) -> dict[str, int]:
        """Cases per operation, both modes (an operation whose only input is a free string has no negative cases)."""
        totals: dict[str, int] = {}
        for label, count in self.cases.items():
            operation = label.split(" [")[0]
            totals[operation] = totals.get(operation, 0) + count
        return totals


def run_round(report: FuzzReport, label: str, strategy, examples: int, mode: GenerationMode,
              base_url: str, headers: dict[str, str]) -> None:
    """Send `examples` cases drawn from `strategy`; count them and note every 5xx."""
    report.cases[label] = 0

    @hypothesis_settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case) -> None:
        report.cases[label] += 1
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        if response.status_code >= 500:
            report.failures.append(f"{label}: {response.status_code} for {case.as_curl_command()}"
                                   f"\n  -> {response.text[:300]}")

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            report.failures.append(f"{label}: no valid case could be generated")
        # An operation whose only input is a free string has no invalid case: nothing to send.
    except Exception as exc:  # noqa: BLE001 - a case schemathesis could not build or send
        report.failures.append(f"{label}: {type(exc).__name__}: {exc}"[:500])


def fuzz(base_url: str, headers: dict[str, str], include=lambda path: True,
         known: dict[str, str] | None = None) -> FuzzReport:
    """Run every included operation of the app's /openapi.json; record each case and every 5xx.

    `known` path parameters (an existing twin's id...) get a second round of cases, so that the
    fuzzing reaches past "not found" into the handlers' own work."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        if not include(operation.path):
            continue
        path_values = {name: (known or {})[name] for name in re.findall(r"{(\w+)}", operation.path)
                       if name in (known or {})}
        rounds = [("", {})] + ([(" known", path_values)] if path_values else [])
        for (suffix, values), (mode, examples) in itertools.product(
                rounds, ((GenerationMode.POSITIVE, POSITIVE_EXAMPLES), (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES))):
            label = f"{operation.label} [{mode.value}{suffix}]"
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=values or None)
            run_round(report, label, strategy, examples, mode, base_url, headers)
    print(f"\n{base_url}: {report.total} cases over {len(report.cases)} operation-rounds")
    for label, count in report.cases.items():
        print(f"  {count:3d}  {label}")
    return report


def test_the_inference_api_answers_every_fuzzed_request_without_a_server_error(inference):
    report = fuzz(inference.url, {"Authorization": f"Bearer {ALL_TWINS_KEY}"},
                  include=lambda path: path.startswith("/v1/"), known={"twin_id": "ada"})
    assert not report.failures, "\n".join(report.failures)
    assert set(report.per_operation()) == {
        "GET /v1/models", "GET /v1/models/{twin_id}", "POST /v1/chat/completions", "POST /v1/generate"}
    assert all(count >= POSITIVE_EXAMPLES for count in report.per_operation().values()), report.cases


# The status stream never ends by design: fuzzing it would only wait.
def _web_json_api(path: str) -> bool:
    return path.startswith("/api/") and not path.endswith("/events")


@pytest.fixture
def web_api(bus_settings, inference):
    """The web, open (the embedded demo), over a real broker, asking the real inference API."""
    from twin_web.app import create_app

    settings = bus_settings.model_copy(update={"inference_api_url": inference.url, "web_status_poll_seconds": 0.1})
    served = ServedApp(create_app(settings), log_level="info", graceful_seconds=2).start()
    yield served
    served.stop()


def test_the_web_json_api_answers_every_fuzzed_request_without_a_server_error(web_api):
    with httpx.Client(base_url=web_api.url, timeout=30) as client:
        twin = client.post("/api/twins", json={"name": "Fuzzed Twin"}).json()
        profile = client.post(f"/api/twins/{twin['id']}/profiles",
                              json={"platform": "blog", "url": "https://blog.example.com/"}).json()
    report = fuzz(web_api.url, {}, include=_web_json_api, known={"twin_id": twin["id"], "profile_id": profile["id"]})
    assert not report.failures, "\n".join(report.failures)
    operations = report.per_operation()
    assert len(operations) == 11 and "POST /api/twins/{twin_id}/documents/{document_id}/forget" in operations
    assert all(count > 0 for count in operations.values()), report.cases
