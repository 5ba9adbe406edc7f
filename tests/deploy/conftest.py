"""Shared facts for the deployment checks: what the code really exports, and PromQL checked against it.

The metrics are read from the source (every `Counter/Gauge/Histogram/Summary("twin_...")`
call under libs/ and services/), so a dashboard or an alert over a metric nobody exports,
or over a label it does not have, fails here rather than showing an empty panel in production.
"""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CODE_ROOTS = (REPO / "libs", REPO / "services")
METRIC_CLASSES = {"Counter", "Gauge", "Histogram", "Summary"}
# Labels Prometheus itself adds to every scraped series.
TARGET_LABELS = {"job", "instance", "__name__"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                   "offset", "bool", "inf", "nan"}


@dataclass(frozen=True)
class ExportedMetric:
    name: str  # as declared, e.g. twin_stage_messages_total
    kind: str  # Counter, Gauge, Histogram, Summary
    labels: frozenset[str]
    source: Path

    @property
    def series(self) -> set[str]:
        """The series names prometheus_client exposes for it."""
        base = self.name.removesuffix("_total") if self.kind == "Counter" else self.name
        return {"Counter": {f"{base}_total"},
                "Gauge": {base},
                "Histogram": {f"{base}_bucket", f"{base}_sum", f"{base}_count"},
                "Summary": {base, f"{base}_sum", f"{base}_count"}}[self.kind]


def code_files() -> list[Path]:
    return [path for root in CODE_ROOTS for path in sorted(root.rglob("*.py"))
            if "tests" not in path.relative_to(root).parts and ".venv" not in path.parts]


def _strings(node: ast.AST | None) -> list[str]:
    if isinstance(node, (ast.List, ast.Tuple)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def scan_exported_metrics(files: list[Path]) -> dict[str, ExportedMetric]:
    """Series name -> the metric that exposes it."""
    by_series: dict[str, ExportedMetric] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            first = node.args[0] if node.args else None
            if func not in METRIC_CLASSES or not (isinstance(first, ast.Constant) and isinstance(first.value, str)
                                                   and first.value.startswith("twin_")):
                continue
            labels = _strings(node.args[2]) if len(node.args) > 2 else []
            labels += next((_strings(k.value) for k in node.keywords if k.arg == "labelnames"), [])
            metric = ExportedMetric(first.value, func, frozenset(labels), path)
            for series in metric.series:
                by_series[series] = metric
    return by_series


def scan_stage_names(files: list[Path]) -> set[str]:
    """The `stage` label values: the names of every StageSpec in the code."""
    return {keyword.value.value for path in files for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "StageSpec"
            for keyword in node.keywords if keyword.arg == "name" and isinstance(keyword.value, ast.Constant)}


def scan_string_literals(files: list[Path]) -> set[str]:
    return {node.value for path in files for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


class PromQLChecker:
    """Checks the names in a PromQL expression against what the code exports.

    Not a PromQL parser (promtool checks the syntax): it finds the metric names, the label
    matchers and the grouping labels, which is all a dashboard can get wrong against the code.
    """

    def __init__(self, exported: dict[str, ExportedMetric], literals: set[str],
                 known_values: dict[str, set[str]]) -> None:
        # Values of labels with a known set (job: the scrape jobs, stage: the stages); any other
        # label's value must at least be a string the code uses.
        self.exported, self.literals, self.known_values = exported, literals, known_values

    @staticmethod
    def metric_names(expr: str) -> set[str]:
        bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
        bare = re.sub(r"\{[^}]*\}", " ", bare)
        bare = re.sub(r"\[[^\]]*\]", " ", bare)
        bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
        names = set()
        for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(\s*\()?", bare):
            if not match.group(2) and match.group(1).lower() not in PROMQL_KEYWORDS:
                names.add(match.group(1))
        return names

    def problems(self, expr: str) -> list[str]:
        names = self.metric_names(expr)
        found: list[str] = []
        if not names:
            found.append("no metric in the expression")
        allowed_labels = set(TARGET_LABELS)
        for name in sorted(names):
            if name == "up":
                continue
            metric = self.exported.get(name)
            if metric is None:
                found.append(f"{name}: no service exports this series")
                continue
            allowed_labels |= metric.labels | ({"le"} if name.endswith("_bucket") else set())
        for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
            for label in filter(None, (part.strip() for part in group.split(","))):
                if label not in allowed_labels:
                    found.append(f"groups by {label!r}, a label none of {sorted(names)} has")
        for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', expr):
            if label not in allowed_labels:
                found.append(f"matches label {label!r}, which none of {sorted(names)} has")
                continue
            known = self.known_values.get(label, self.literals)
            for alternative in value.split("|") if op in ("=~", "!~") else [value]:
                if alternative not in known:
                    found.append(f'{label}="{alternative}": the code never uses this value')
        return found


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def service_ports() -> dict[str, int]:
    """Each service of the repo -> the port it serves /healthz and /metrics on (its Settings default)."""
    from llmtwin.settings import Settings

    services = [path.name for path in sorted((REPO / "services").iterdir()) if (path / "pyproject.toml").exists()]
    fields = {name: "api_port" if name == "inference-api" else f"{name.replace('-', '_')}_port" for name in services}
    return {name: Settings.model_fields[field].default for name, field in fields.items()}


@pytest.fixture(scope="session")
def repo_files() -> set[str]:
    """The files a fresh clone has (tracked or new, not ignored): local build litter does not count."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return {path for path in listed if (REPO / path).exists()}


@pytest.fixture(scope="session")
def exported_metrics() -> dict[str, ExportedMetric]:
    metrics = scan_exported_metrics(code_files())
    assert "twin_stage_messages_total" in metrics, "the metric scan found none of the shared metrics"
    return metrics


@pytest.fixture(scope="session")
def scrape_jobs() -> set[str]:
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    return {job["job_name"] for job in config["scrape_configs"]}


@pytest.fixture(scope="session")
def promql(exported_metrics, scrape_jobs) -> PromQLChecker:
    files = code_files()
    stages = scan_stage_names(files)
    assert {"cleaner", "embedder"} <= stages, "the StageSpec scan found no stages"
    return PromQLChecker(exported_metrics, scan_string_literals(files), {"job": scrape_jobs, "stage": stages})


@pytest.fixture(scope="session")
def promtool():
    """Runs promtool with the given arguments."""
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make deploy-tools` installs it (Debian package prometheus)"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([path, *args], capture_output=True, text=True, timeout=60, check=False)
    return run


@pytest.fixture(scope="session")
def check_promql(promtool, tmp_path_factory):
    """Syntax-check expressions with promtool: they become recording rules of a throwaway rules file."""
    def check(exprs: dict[str, str]) -> subprocess.CompletedProcess[str]:
        rules = {"groups": [{"name": "syntax", "rules": [{"record": record, "expr": expr}
                                                          for record, expr in exprs.items()]}]}
        path = tmp_path_factory.mktemp("promql") / "exprs.yml"
        path.write_text(yaml.safe_dump(rules, sort_keys=False))
        return promtool("check", "rules", str(path))
    return check
