"""Grafana dashboards: generated from deploy/grafana/dashboards.py, provisioned from the repo,
and every panel's query valid PromQL over series and labels the services really export."""
from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import yaml


@pytest.fixture(scope="module")
def generator(repo):
    spec = importlib.util.spec_from_file_location("llmtwin_dashboards", repo / "deploy/grafana/dashboards.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dashboards(generator) -> dict[str, dict]:
    return {name: json.loads(text) for name, text in generator.render().items()}


def panel_queries(dashboards: dict[str, dict]) -> dict[str, str]:
    """'file / panel title / refId' -> expr, for every query of every panel."""
    return {f"{name} / {panel['title']} / {target['refId']}": target["expr"]
            for name, dashboard in dashboards.items() for panel in dashboard["panels"]
            for target in panel["targets"]}


def test_the_json_in_the_repository_is_what_the_generator_writes(repo, generator):
    folder = repo / "deploy/grafana/dashboards"
    rendered = generator.render()
    on_disk = {path.name: path.read_text(encoding="utf-8") for path in folder.glob("*.json")}
    assert sorted(on_disk) == sorted(rendered), "run: python deploy/grafana/dashboards.py"
    stale = [name for name, text in rendered.items() if on_disk[name] != text]
    assert not stale, f"{stale} differ from the generator: run python deploy/grafana/dashboards.py"


def test_the_issue_s_dashboards_are_all_there(dashboards):
    titles = " | ".join(d["title"] for d in dashboards.values()).lower()
    for topic in ("pipeline throughput and lag", "crawl health", "training runs",
                  "inference latency, tokens and errors"):
        assert topic in titles


def test_panels_are_well_formed_and_use_the_provisioned_data_source(repo, dashboards):
    provisioned = yaml.safe_load((repo / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    assert len({d["uid"] for d in dashboards.values()}) == len(dashboards)
    for name, dashboard in dashboards.items():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        cells = set()
        for panel in dashboard["panels"]:
            assert panel["targets"], f"{name} / {panel['title']}: no query"
            assert panel["datasource"]["uid"] in uids
            assert all(t["datasource"]["uid"] in uids for t in panel["targets"])
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
            pos = panel["gridPos"]
            area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
            assert not area & cells, f"{name} / {panel['title']} overlaps another panel"
            assert pos["x"] + pos["w"] <= 24
            cells |= area


def test_the_provider_serves_the_folder_compose_mounts(repo):
    provider = yaml.safe_load((repo / "deploy/grafana/provisioning/dashboards/llmtwin.yml").read_text())
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text())
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_every_panel_query_is_valid_promql(dashboards, check_promql):
    queries = panel_queries(dashboards)
    records = {f"panel:q{i}": expr for i, expr in enumerate(queries.values())}
    result = check_promql(records)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(records)} rules found" in result.stdout


def test_promtool_rejects_a_broken_query(check_promql):
    # The check above means something only if promtool really parses each expression.
    result = check_promql({"panel:ok": "sum(rate(twin_stage_messages_total[5m]))",
                           "panel:broken": "sum by (stage (rate(twin_stage_messages_total[5m]))"})
    assert result.returncode != 0


def test_every_panel_query_names_exported_series_and_labels(dashboards, promql):
    problems = {where: found for where, expr in panel_queries(dashboards).items() if (found := promql.problems(expr))}
    assert not problems, json.dumps(problems, indent=2)


def test_every_exported_metric_is_on_a_dashboard(dashboards, promql, exported_metrics):
    """A metric a service adds shows up somewhere, or this says where it is declared."""
    shown = {exported_metrics[name].name for expr in panel_queries(dashboards).values()
             for name in promql.metric_names(expr) if name in exported_metrics}
    missing = {m.name: str(m.source) for m in exported_metrics.values() if m.name not in shown}
    assert not missing, json.dumps(missing, indent=2)


def test_the_name_check_catches_unknown_series_labels_and_values(promql):
    assert promql.problems('sum by (stage) (rate(twin_stage_messages_total{outcome="processed"}[5m]))') == []
    assert any("no service exports" in p for p in promql.problems("rate(twin_stage_messages[5m])"))
    assert any("'platform'" in p for p in promql.problems("sum by (platform) (twin_stage_consumer_lag)"))
    assert any("'le'" in p for p in promql.problems(
        "histogram_quantile(0.9, sum by (le) (rate(twin_stage_messages_total[5m])))"))
    assert any("never uses" in p for p in promql.problems('twin_stage_messages_total{outcome="exploded"}'))
    assert any("never uses" in p for p in promql.problems('twin_stage_consumer_lag{stage="trainer"}'))
    assert promql.problems('twin_stage_consumer_lag{stage="trainer-trigger"}') == []
    assert any("never uses" in p for p in promql.problems('up{job="nginx"}'))
