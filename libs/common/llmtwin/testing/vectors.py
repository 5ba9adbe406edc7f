"""Fixtures: vectors."""
