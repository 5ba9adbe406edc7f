"""inference-api service."""
