"""API keys: `Authorization: Bearer <key>` on every /v1 endpoint once keys are configured.

`settings.api_keys` (env `TWIN_API_KEYS`, a JSON list) holds entries of two forms:

    "s3cret"            a key for every twin
    "s3cret:ada"        a key for the twin `ada` only (the part after the last ":" is a twin id)

A deployment should store keys hashed: "sha256:<64 hex digits>" and "sha256:<64 hex digits>:ada"
name the key by its SHA-256 (`printf %s "$KEY" | sha256sum`), so settings never hold it in clear.
Plain entries keep working (the embedded demo); either way only digests are kept in memory,
a presented key is hashed and compared with every digest in constant time, and no key is logged.

No keys configured: the API is open (the embedded demo). Health, readiness and metrics
never need a key (probes and Prometheus scrape them).

`settings.api_rate_limit_per_minute` (0: unlimited) gives each key a token bucket holding that
many requests, refilled at that rate: bursts up to a minute's worth, then the steady rate.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import SecretStr


class Unauthorized(PermissionError):
    """No key, or a key that is not configured (401)."""


class Forbidden(PermissionError):
    """A valid key that is bound to another twin (403)."""


class RateLimited(RuntimeError):
    """The key has spent its requests for now (429); `retry_after` seconds until the next one."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limit reached for this API key; try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class KeyScope:
    twin_id: str | None  # None: every twin

    def allows(self, twin_id: str) -> bool:
        return self.twin_id is None or self.twin_id == twin_id

    def require(self, twin_id: str) -> None:
        if not self.allows(twin_id):
            raise Forbidden(f"this API key is limited to the twin {self.twin_id!r}, not {twin_id!r}")


OPEN = KeyScope(None)


HASHED_PREFIX = "sha256:"


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _parse_entry(entry: str) -> tuple[bytes, str | None]:
    """(SHA-256 of the key, bound twin or None) of one settings entry."""
    if entry.startswith(HASHED_PREFIX):
        hex_digest, sep, twin_id = entry.removeprefix(HASHED_PREFIX).partition(":")
        try:
            digest = bytes.fromhex(hex_digest)
        except ValueError:
            digest = b""
        if len(digest) != hashlib.sha256().digest_size:
            raise ValueError("a hashed API key entry must be sha256:<64 hex digits>[:twin]")
        return digest, (twin_id if sep else None)
    secret, sep, twin_id = entry.rpartition(":")
    if not sep:
        secret, twin_id = twin_id, None
    if not secret:
        raise ValueError("an API key entry has an empty key")
    return key_digest(secret), twin_id


@dataclass(frozen=True)
class ApiKeys:
    keys: tuple[tuple[bytes, str | None], ...]  # (SHA-256 of the key, bound twin or None)

    @classmethod
    def from_settings(cls, entries: Sequence[SecretStr]) -> ApiKeys:
        return cls(tuple(_parse_entry(entry.get_secret_value()) for entry in entries))

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
        # Digests have one length, so neither the key's length nor its content shows in the timing.
        presented_digest = key_digest(presented)
        for digest, twin_id in self.keys:
            if hmac.compare_digest(digest, presented_digest):
                scope = KeyScope(twin_id)
        if scope is None:
            raise Unauthorized("the API key is not valid")
        return scope


@dataclass
class TokenBucket:
    tokens: float
    updated: float  # clock reading when `tokens` was last brought up to date


@dataclass
class RateLimiter:
    """One token bucket per caller: `per_minute` requests in a burst, refilled at `per_minute`/60 a second.

    Used on the event loop only, so it needs no lock."""

    per_minute: int  # 0: unlimited
    clock: Callable[[], float] = time.monotonic
    max_idle_buckets: int = 10_000  # past this, buckets that refilled completely are forgotten
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def take(self, caller: str) -> None:
        """Spend one request of `caller`'s bucket, or raise RateLimited."""
        if self.per_minute <= 0:
            return
        now, capacity, per_second = self.clock(), float(self.per_minute), self.per_minute / 60
        bucket = self._buckets.get(caller)
        if bucket is None:
            self._forget_full_buckets(now)
            bucket = self._buckets[caller] = TokenBucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * per_second)
        bucket.updated = now
        if bucket.tokens < 1:
            raise RateLimited(max(1, math.ceil((1 - bucket.tokens) / per_second)))
        bucket.tokens -= 1

    def _forget_full_buckets(self, now: float) -> None:
        # A full bucket is the same as no bucket: dropping it keeps memory bounded when callers
        # are client addresses (an open API) rather than a fixed set of keys.
        if len(self._buckets) < self.max_idle_buckets:
            return
        # An empty bucket is full again a minute after its last request.
        self._buckets = {caller: bucket for caller, bucket in self._buckets.items() if now - bucket.updated < 60}
