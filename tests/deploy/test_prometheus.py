"""Prometheus: the config and alert rules pass promtool, the alerts fire in promtool's unit
tests, they cover the issue's conditions, and every series and label they name is exported."""
from __future__ import annotations

import json

import pytest
import yaml


@pytest.fixture(scope="module")
def prometheus_dir(repo):
    return repo / "deploy/prometheus"


@pytest.fixture(scope="module")
def alert_rules(prometheus_dir) -> dict[str, str]:
    groups = yaml.safe_load((prometheus_dir / "rules.yml").read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def test_promtool_accepts_the_config_and_its_rules(promtool, prometheus_dir):
    result = promtool("check", "config", str(prometheus_dir / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules.yml" in result.stdout and "SUCCESS" in result.stdout


def test_the_alerts_fire_as_their_unit_tests_say(promtool, prometheus_dir):
    result = promtool("test", "rules", str(prometheus_dir / "rules.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_name_exported_series_and_labels(alert_rules, promql):
    problems = {alert: found for alert, expr in alert_rules.items() if (found := promql.problems(expr))}
    assert not problems, json.dumps(problems, indent=2)


@pytest.mark.parametrize("condition, series", [
    ("consumer lag growing", "twin_stage_consumer_lag"),
    ("error or dead-letter rate", "twin_stage_messages_total"),
    ("inference p99", "twin_inference_request_seconds_bucket"),
    ("time to first token", "twin_inference_time_to_first_token_seconds_bucket"),
    ("inference errors", "twin_inference_requests_total"),
    ("crawl failures", "twin_crawler_failures_total"),
    ("failed or stuck training jobs", "twin_trigger_jobs_total"),
])
def test_an_alert_watches_each_condition_of_the_issue(alert_rules, promql, condition, series):
    watching = [alert for alert, expr in alert_rules.items() if series in promql.metric_names(expr)]
    assert watching, f"no alert for {condition} (over {series})"


def test_every_service_is_scraped_on_the_port_it_serves(repo, service_ports):
    """Each compose service built from the repo is a scrape job of the same name, on its Settings port."""
    config = yaml.safe_load((repo / "deploy/prometheus/prometheus.yml").read_text())
    targets = {job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
               for job in config["scrape_configs"]}
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text())
    services = {name for name, spec in compose["services"].items()
                if "build" in spec and spec.get("restart") != "no"}
    assert services == set(service_ports)
    for service, port in service_ports.items():
        assert targets.get(service) == [f"{service}:{port}"], service
