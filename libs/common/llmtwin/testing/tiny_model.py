"""Fixtures: tiny_model."""
