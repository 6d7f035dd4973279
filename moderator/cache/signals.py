"""Signal outputs in Redis (OCR text, image-safety scores): a repost never reads its image again.

Keys are the signal's own `cache_key` (name, qualified version, image sha256) under one prefix;
values are the outputs as JSON, checked against the signal's declared fields on the way out.
Like the feature cache it is an optimisation: any Redis error is a miss, logged once per outage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import orjson
import redis

from moderator import metrics
from moderator.cache.client import redis_error
from moderator.signals import Signal, SignalOutput, check_output

logger = logging.getLogger(__name__)

KEY_PREFIX = "moderator:signal:v1"


class SignalCache:
    def __init__(self, client: redis.Redis[bytes], ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._available = True

    def get_many(self, signal: Signal, keys: Sequence[str]) -> dict[str, SignalOutput]:
        """Cached outputs of `signal` by cache key, for the keys that have a valid one."""
        if not keys:
            return {}
        try:
            values = self.client.mget([f"{KEY_PREFIX}:{key}" for key in keys])
        except redis.RedisError as exc:
            self._mark_down(signal, exc)
            return {}
        self._mark_up()
        found: dict[str, SignalOutput] = {}
        for key, raw in zip(keys, values, strict=True):
            output = self._decode(signal, raw) if raw is not None else None
            result = "miss" if raw is None else "corrupt" if output is None else "hit"
            metrics.CACHE_REQUESTS.labels(kind=signal.name, result=result).inc()
            if output is not None:
                found[key] = output
        return found

    def put_many(self, outputs: Mapping[str, SignalOutput]) -> None:
        if not outputs:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, output in outputs.items():
                pipe.set(f"{KEY_PREFIX}:{key}", orjson.dumps(output), ex=self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            logger.debug("signal cache write failed: %s", exc)
            self._mark_down(None, exc)
            return
        self._mark_up()

    @staticmethod
    def _decode(signal: Signal, raw: bytes) -> SignalOutput | None:
        try:
            output = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(output, dict) or check_output(signal, output):
            return None  # an older layout or a damaged value: recompute and overwrite
        return output

    def _mark_down(self, signal: Signal | None, exc: Exception) -> None:
        if signal is not None:
            metrics.CACHE_REQUESTS.labels(kind=signal.name, result="error").inc()
        metrics.CACHE_AVAILABLE.set(0)
        if self._available:
            logger.warning("signal cache unavailable, reading images again: %s", redis_error(exc))
        self._available = False

    def _mark_up(self) -> None:
        metrics.CACHE_AVAILABLE.set(1)
        self._available = True
