"""One result row per measured figure; ratios, not absolute times, are what compare across runs."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Result:
    benchmark: str
    metric: str
    value: float
    unit: str
    baseline: float | None = None  # the same work measured the reference way, in the same run
    baseline_label: str = ""
    goal: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.value / self.baseline


def print_table(results: list[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("benchmark", "metric", "value", "baseline", "ratio", "goal", title="LLM Twin benchmarks")
    for r in results:
        table.add_row(r.benchmark, r.metric, f"{r.value:.3g} {r.unit}",
                      f"{r.baseline:.3g} ({r.baseline_label})" if r.baseline else "",
                      f"{r.ratio:.3f}" if r.ratio is not None else "", r.goal)
    Console().print(table)


def save(results: list[Result], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "latest.json"
    path.write_text(json.dumps([{**asdict(r), "ratio": r.ratio} for r in results], indent=2))
    return path
