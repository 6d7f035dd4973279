"""Image and caption embeddings in Redis: reposts skip the encoders.

Keys are the embedding signals' own (moderator.signals.embeddings.embedding_key): the kind
("image_embedding", "text_embedding"), the model version and a content digest, the sha256 of
the image bytes or of the model's text input's UTF-8.
Values are little-endian float32 vectors, or float16 for vectors of more than HALF_ABOVE values
(the single-stream model's grid features, which it rounds to float16 itself, so the round trip
is exact and a repost scores as the original did), checked for size and finiteness on the way
in and out. The cache is an optimisation, never a dependency: any Redis error counts as a miss, is
logged once per outage, and decisions carry on without it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import redis

from moderator import metrics
from moderator.cache.client import redis_client, redis_error
from moderator.signals.embeddings import EmbeddingKind, embedding_key

logger = logging.getLogger(__name__)

# v2: the key below the prefix became the embedding signal's cache key (v1 entries expire).
KEY_PREFIX = "moderator:feat:v2"

FeatureKind = EmbeddingKind
KINDS: tuple[FeatureKind, ...] = ("image", "text")
# Pooled embeddings (at most a few thousand values) stay float32; grid features are stored as
# float16: 125,440 bytes per image at 7x7 cells instead of 250,880.
HALF_ABOVE = 8192


def storage_dtype(dim: int) -> str:
    """The little-endian dtype vectors of `dim` values are stored in."""
    return "<f2" if dim > HALF_ABOVE else "<f4"


class FeatureCache:
    """Embeddings of both kinds, one Redis round trip per batch for reads and one for writes."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        model_version: str,
        dims: Mapping[FeatureKind, int],
        ttl_s: int,
    ) -> None:
        self.client = client
        self.model_version = model_version
        self.dims: dict[FeatureKind, int] = {kind: dims[kind] for kind in KINDS}
        self.dtypes = {kind: storage_dtype(dim) for kind, dim in self.dims.items()}
        self.ttl_s = ttl_s
        self._available = True

    @classmethod
    def from_url(
        cls,
        url: str,
        model_version: str,
        dims: Mapping[FeatureKind, int],
        ttl_s: int,
        socket_timeout_s: float,
        ssl_ca_certs: Path | None = None,
    ) -> FeatureCache:
        """`ssl_ca_certs`: CA bundle for a rediss:// server (RedisSettings.ssl_ca_certs)."""
        client = redis_client(url, socket_timeout_s, ssl_ca_certs)
        return cls(client, model_version, dims, ttl_s)

    def key(self, kind: FeatureKind, digest: str) -> str:
        return f"{KEY_PREFIX}:{embedding_key(kind, self.model_version, digest)}"

    def get_many(
        self, wanted: Mapping[FeatureKind, Sequence[str]]
    ) -> dict[FeatureKind, dict[str, np.ndarray]]:
        """Valid cached embeddings, per kind, for the content hashes that have one."""
        found: dict[FeatureKind, dict[str, np.ndarray]] = {kind: {} for kind in wanted}
        lookups = [(kind, digest) for kind, digests in wanted.items() for digest in digests]
        if not lookups:
            return found
        try:
            values = self.client.mget([self.key(kind, digest) for kind, digest in lookups])
        except redis.RedisError as exc:
            self._mark_down(exc, {kind for kind, _ in lookups})
            return found
        self._mark_up()
        for (kind, digest), raw in zip(lookups, values, strict=True):
            if raw is None:
                metrics.CACHE_REQUESTS.labels(kind=kind, result="miss").inc()
                continue
            vector = self._decode(kind, raw)
            if vector is None:
                metrics.CACHE_REQUESTS.labels(kind=kind, result="corrupt").inc()
                continue
            metrics.CACHE_REQUESTS.labels(kind=kind, result="hit").inc()
            found[kind][digest] = vector
        return found

    def put_many(self, embeddings: Mapping[FeatureKind, Mapping[str, np.ndarray]]) -> None:
        """Store embeddings with the shared TTL; a vector get_many would reject is skipped."""
        items = [
            (kind, digest, vector)
            for kind, vectors in embeddings.items()
            for digest, vector in vectors.items()
            if self._valid(kind, vector)
        ]
        if not items:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for kind, digest, vector in items:
                value = np.asarray(vector, dtype=self.dtypes[kind]).tobytes()
                pipe.set(self.key(kind, digest), value, ex=self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            self._mark_down(exc, {kind for kind, _, _ in items})
            return
        self._mark_up()

    def _valid(self, kind: FeatureKind, vector: np.ndarray) -> bool:
        dim = self.dims[kind]
        ok = (
            vector.shape == (dim,)
            and vector.dtype.kind == "f"
            and bool(np.isfinite(vector.astype(self.dtypes[kind])).all())  # fits its storage
        )
        if not ok:
            logger.warning("not caching a %s embedding of %s %s", kind, vector.dtype, vector.shape)
        return ok

    def _decode(self, kind: FeatureKind, raw: bytes) -> np.ndarray | None:
        # A value of the wrong size or with NaNs is treated as a miss and overwritten later.
        dtype = np.dtype(self.dtypes[kind])
        if len(raw) != self.dims[kind] * dtype.itemsize:
            return None
        vector = np.frombuffer(raw, dtype=dtype)
        if not np.isfinite(vector).all():
            return None
        return vector.astype(np.float32)

    def _mark_down(self, exc: Exception, kinds: set[FeatureKind]) -> None:
        # One error per failed call for each kind it carried.
        for kind in sorted(kinds):
            metrics.CACHE_REQUESTS.labels(kind=kind, result="error").inc()
        metrics.CACHE_AVAILABLE.set(0)
        if self._available:
            logger.warning("feature cache unavailable, deciding without it: %s", redis_error(exc))
        self._available = False

    def _mark_up(self) -> None:
        metrics.CACHE_AVAILABLE.set(1)
        if not self._available:
            logger.info("feature cache available again")
        self._available = True
