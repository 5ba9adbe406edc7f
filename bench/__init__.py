"""Benchmarks: `make bench` runs them all and prints ratios against baselines measured in the same run."""
