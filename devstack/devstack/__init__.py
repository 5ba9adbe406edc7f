"""The embedded stack: every part of LLM Twin as a real process on one machine (`make run`, e2e tests)."""
