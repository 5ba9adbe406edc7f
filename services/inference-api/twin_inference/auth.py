"""API keys: `Authorization: Bearer <key>` on every /v1 endpoint once keys are configured.

`settings.api_keys` (env `TWIN_API_KEYS`, a JSON list) holds entries of two forms:

    "s3cret"            a key for every twin
    "s3cret:ada"        a key for the twin `ada` only (the part after the last ":" is a twin id)

No keys configured: the API is open (the embedded demo). Health, readiness and metrics
never need a key (probes and Prometheus scrape them).
"""
from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import SecretStr


class Unauthorized(PermissionError):
    """No key, or a key that is not configured (401)."""


class Forbidden(PermissionError):
    """A valid key that is bound to another twin (403)."""


@dataclass(frozen=True)
class KeyScope:
    twin_id: str | None  # None: every twin

    def allows(self, twin_id: str) -> bool:
        return self.twin_id is None or self.twin_id == twin_id

    def require(self, twin_id: str) -> None:
        if not self.allows(twin_id):
            raise Forbidden(f"this API key is limited to the twin {self.twin_id!r}, not {twin_id!r}")


OPEN = KeyScope(None)


@dataclass(frozen=True)
class ApiKeys:
    keys: tuple[tuple[str, str | None], ...]  # (secret, bound twin or None)

    @classmethod
    def from_settings(cls, entries: Sequence[SecretStr]) -> ApiKeys:
        keys = []
        for entry in entries:
            secret, sep, twin_id = entry.get_secret_value().rpartition(":")
            keys.append((secret, twin_id) if sep else (twin_id, None))
        if any(not secret for secret, _ in keys):
            raise ValueError("an API key entry has an empty key")
        return cls(tuple(keys))

    @property
    def required(self) -> bool:
        return bool(self.keys)

    def scope_of(self, presented: str | None) -> KeyScope:
        if not self.keys:
            return OPEN
        if not presented:
            raise Unauthorized("an API key is required: send `Authorization: Bearer <key>`")
        scope = None
        # Compare with every key in constant time, so timing does not tell how close a guess was.
        for secret, twin_id in self.keys:
            if hmac.compare_digest(secret.encode(), presented.encode()):
                scope = KeyScope(twin_id)
        if scope is None:
            raise Unauthorized("the API key is not valid")
        return scope
