"""crawler service."""
