"""The memory bound of the Redis that holds the feature cache.

Redis enforces memory bounds itself (maxmemory + an eviction policy); a client-side
count would cost a round trip per write and still not see other clients' keys. So the
worker either sets the server's bound (`redis.max_memory_mb`) or checks it and says
plainly when the cache can grow without limit. Managed Redis often disables CONFIG:
then the bound has to be set in the provider's console, and the log says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

logger = logging.getLogger(__name__)

# A full Redis with this policy refuses writes instead of evicting: the cache stops filling
# (writes fail, counted as cache errors) rather than making room. The volatile-* policies
# do evict cache entries: every one has a TTL.
NON_EVICTING = "noeviction"


@dataclass(frozen=True, slots=True)
class MemoryBound:
    max_memory_bytes: int  # 0 = unbounded
    policy: str
    applied: bool  # True when this worker set it

    def describe(self) -> str:
        size = "unbounded" if not self.max_memory_bytes else f"{self.max_memory_bytes >> 20} MiB"
        return f"maxmemory {size}, maxmemory-policy {self.policy}"


def ensure_memory_bound(
    client: redis.Redis[bytes], max_memory_mb: int | None, eviction_policy: str
) -> MemoryBound | None:
    """Set (when asked) and report the server's bound; None when Redis can't be asked."""
    applied = False
    try:
        if max_memory_mb is not None:
            client.config_set("maxmemory", f"{max_memory_mb}mb")
            client.config_set("maxmemory-policy", eviction_policy)
            applied = True
        config = client.config_get("maxmemory")
        config |= client.config_get("maxmemory-policy")
    except redis.ResponseError as exc:
        # CONFIG renamed or disabled (managed Redis, ACLs): the bound is the operator's job.
        action = "cannot set" if max_memory_mb is not None else "cannot read"
        logger.warning(
            "Redis %s its memory bound (%s); set maxmemory and an allkeys-lru policy on the "
            "server so the feature cache cannot fill it",
            action,
            exc,
        )
        return None
    except redis.RedisError as exc:
        logger.warning("Redis unavailable while checking its memory bound: %s", exc)
        return None
    bound = MemoryBound(int(config["maxmemory"]), str(config["maxmemory-policy"]), applied)
    if not bound.max_memory_bytes:
        logger.warning(
            "Redis has no memory bound (%s): the feature cache grows until entries expire "
            "(redis.feature_ttl_s); set redis.max_memory_mb or the server's maxmemory",
            bound.describe(),
        )
    elif bound.policy == NON_EVICTING:
        logger.warning(
            "Redis %s: when full it refuses new cache entries instead of evicting old ones",
            bound.describe(),
        )
    else:
        logger.info("Redis memory bound: %s", bound.describe())
    return bound
