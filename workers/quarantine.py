"""The worker's flood quarantine: built from the settings, shared through Redis."""

from __future__ import annotations

from moderator.cache.client import redis_client
from moderator.config import Settings
from moderator.errors import ConfigError
from moderator.policy.quarantine import FloodQuarantine, RedisQuarantineStore


def build_quarantine(settings: Settings) -> FloodQuarantine | None:
    """Flood quarantine when `quarantine.enabled`, its state in the settings' Redis under the
    consumer group's id (the workers that share the stream share the counts)."""
    if not settings.quarantine.enabled:
        return None
    redis = settings.redis
    if not redis.enabled or redis.url is None:
        raise ConfigError(
            "quarantine.enabled needs Redis (redis.enabled and redis.url): the counters and "
            "quarantines are shared by all workers there"
        )
    client = redis_client(
        redis.url.get_secret_value(), redis.socket_timeout_s, ssl_ca_certs=redis.ssl_ca_certs
    )
    store = RedisQuarantineStore(client, settings.quarantine, settings.kafka.group_id)
    return FloodQuarantine(settings.quarantine, store)
