"""`python -m bench [NAME ...]`: run the benchmarks (all by default) and print one table of ratios."""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from .report import print_table, save

BENCHMARKS = ("ingest", "features", "crawl", "training", "inference")


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = argv or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    results = []
    for name in names:
        print(f"== {name}", flush=True)
        results += importlib.import_module(f"bench.{name}").run()
    print_table(results)
    print(f"saved to {save(results, Path(__file__).parent / 'results')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
