"""Image embeddings in Redis: reposted images skip the image encoder.

The cache is an optimisation, never a dependency: any Redis error counts as a
miss, is logged once per outage, and decisions carry on without it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import redis

from moderator import metrics

logger = logging.getLogger(__name__)

KEY_PREFIX = "moderator:feat:v1"


class FeatureCache:
    def __init__(self, client: redis.Redis, model_version: str, dim: int, ttl_s: int) -> None:
        self.client = client
        self.model_version = model_version
        self.dim = dim
        self.ttl_s = ttl_s
        self._available = True

    @classmethod
    def from_url(
        cls, url: str, model_version: str, dim: int, ttl_s: int, socket_timeout_s: float
    ) -> FeatureCache:
        client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        return cls(client, model_version, dim, ttl_s)

    def key(self, sha256: str) -> str:
        return f"{KEY_PREFIX}:{self.model_version}:image:{sha256}"

    def get_many(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Valid cached embeddings for the hashes that have one."""
        if not hashes:
            return {}
        try:
            values = self.client.mget([self.key(h) for h in hashes])
        except redis.RedisError as exc:
            self._mark_down(exc)
            return {}
        self._mark_up()
        found: dict[str, np.ndarray] = {}
        for sha, raw in zip(hashes, values, strict=True):
            if raw is None:
                metrics.CACHE_REQUESTS.labels(result="miss").inc()
                continue
            vector = self._decode(raw)
            if vector is None:
                metrics.CACHE_REQUESTS.labels(result="corrupt").inc()
                continue
            metrics.CACHE_REQUESTS.labels(result="hit").inc()
            found[sha] = vector
        return found

    def put_many(self, embeddings: Mapping[str, np.ndarray]) -> None:
        if not embeddings:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for sha, vector in embeddings.items():
                pipe.set(self.key(sha), np.asarray(vector, dtype="<f4").tobytes(), ex=self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            self._mark_down(exc)
            return
        self._mark_up()

    def _decode(self, raw: bytes) -> np.ndarray | None:
        # A value of the wrong size or with NaNs is treated as a miss and overwritten later.
        if len(raw) != self.dim * 4:
            return None
        vector = np.frombuffer(raw, dtype="<f4")
        if not np.isfinite(vector).all():
            return None
        return vector.astype(np.float32)

    def _mark_down(self, exc: Exception) -> None:
        metrics.CACHE_REQUESTS.labels(result="error").inc()
        metrics.CACHE_AVAILABLE.set(0)
        if self._available:
            logger.warning("feature cache unavailable, deciding without it: %s", exc)
        self._available = False

    def _mark_up(self) -> None:
        metrics.CACHE_AVAILABLE.set(1)
        if not self._available:
            logger.info("feature cache available again")
        self._available = True
