"""Shared contracts of the LLM Twin services. Knows no service."""
