"""Pytest fixtures shared by every test suite (registered by the root conftest.py).

Each module starts real pieces for tests: the broker, the Mongo-wire server,
the local Qdrant, a tiny language model. Nothing here is used outside tests.
"""
