"""dataset-builder service."""
