"""cleaner service."""
