"""`twin-crawler crawl`: one crawl here, counts printed, documents stored, raw_docs events sent."""
from __future__ import annotations

from kafka import KafkaConsumer
from typer.testing import CliRunner

from llmtwin.domain import Platform
from llmtwin.events import Topic, decode
from twin_crawler.__main__ import app
from devstack.demo_sources import prepare_demo


def test_crawl_command_stores_prints_counts_and_publishes(bus_settings, monkeypatch, tmp_path):
    urls = prepare_demo(tmp_path / "demo")
    monkeypatch.setenv("TWIN_DATA_DIR", str(bus_settings.data_dir))
    monkeypatch.setenv("TWIN_KAFKA_BOOTSTRAP", bus_settings.kafka_bootstrap)

    result = CliRunner().invoke(app, ["crawl", "--twin", "ada", "--platform", "github", "--url", urls[Platform.GITHUB]])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "succeeded" in line)
    # found 8 files: 6 stored, the lock file and the vendored file skipped, none failed
    assert [cell.strip() for cell in row.split("│")[2:6]] == ["8", "6", "2", "0"]

    consumer = KafkaConsumer(Topic.RAW_DOCS.value, bootstrap_servers=bus_settings.kafka_bootstrap,
                             auto_offset_reset="earliest", group_id=None, consumer_timeout_ms=3000)
    events = [decode(Topic.RAW_DOCS, record.value) for record in consumer]
    consumer.close()
    assert len(events) == 6 and {e.kind.value for e in events} == {"code"}

    again = CliRunner().invoke(app, ["crawl", "--twin", "ada", "--platform", "github", "--url", urls[Platform.GITHUB]])
    assert "no events sent" in again.output
    refused = CliRunner().invoke(app, ["crawl", "--twin", "ada", "--platform", "linkedin",
                                       "--url", "https://www.linkedin.com/in/ada"])
    assert refused.exit_code == 1 and "upload your data export" in refused.output
