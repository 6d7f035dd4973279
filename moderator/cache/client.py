"""The one Redis client factory: the feature cache and the author store both connect here.

Imports flow one way: moderator.policy (the author store) may use moderator.cache, never
the reverse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis


def redis_client(
    url: str, socket_timeout_s: float, ssl_ca_certs: Path | None = None
) -> redis.Redis[bytes]:
    """A client for `url` (redis:// or rediss://) whose calls and connects time out after
    `socket_timeout_s`; `ssl_ca_certs`: CA bundle for a rediss:// server
    (RedisSettings.ssl_ca_certs), unset → the system CAs."""
    # Only for TLS: a plain redis:// connection refuses an ssl_* argument.
    tls: dict[str, Any] = {"ssl_ca_certs": str(ssl_ca_certs)} if ssl_ca_certs else {}
    return redis.Redis.from_url(
        url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s, **tls
    )


def redis_error(exc: Exception) -> str:
    """An error for a log line. AUTH failures say so: Redis' own text for a missing password
    is about HELLO."""
    if isinstance(exc, redis.AuthenticationError):
        return f"Redis refused the credentials in redis.url (AUTH): {exc}"
    return str(exc)
