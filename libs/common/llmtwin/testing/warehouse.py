"""Fixtures: warehouse."""
