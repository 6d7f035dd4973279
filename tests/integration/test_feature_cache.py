"""FeatureCache against a real redis-server: hit, miss, corrupt value, Redis down and back."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from moderator import metrics
from moderator.cache import FeatureCache
from moderator.local import LocalRedis

pytestmark = pytest.mark.integration
DIM = 8


def _cache(url: str) -> FeatureCache:
    return FeatureCache.from_url(
        url, f"m-{uuid.uuid4().hex[:6]}", DIM, ttl_s=60, socket_timeout_s=0.2
    )


def test_miss_then_hit(redis_server: LocalRedis) -> None:
    cache = _cache(redis_server.url)
    vector = np.linspace(0, 1, DIM, dtype=np.float32)
    assert cache.get_many(["a" * 64]) == {}
    cache.put_many({"a" * 64: vector})
    found = cache.get_many(["a" * 64, "b" * 64])
    assert list(found) == ["a" * 64]
    np.testing.assert_array_equal(found["a" * 64], vector)
    assert 0 < cache.client.ttl(cache.key("a" * 64)) <= 60


def test_model_version_is_part_of_the_key(redis_server: LocalRedis) -> None:
    first, second = _cache(redis_server.url), _cache(redis_server.url)
    first.put_many({"c" * 64: np.ones(DIM, dtype=np.float32)})
    assert second.get_many(["c" * 64]) == {}


@pytest.mark.parametrize("raw", [b"short", np.full(DIM, np.nan, dtype="<f4").tobytes()])
def test_corrupt_values_are_misses(redis_server: LocalRedis, raw: bytes) -> None:
    cache = _cache(redis_server.url)
    cache.client.set(cache.key("d" * 64), raw)
    before = metrics.CACHE_REQUESTS.labels(result="corrupt")._value.get()
    assert cache.get_many(["d" * 64]) == {}
    assert metrics.CACHE_REQUESTS.labels(result="corrupt")._value.get() == before + 1


def test_redis_down_is_a_miss_and_recovery_is_picked_up() -> None:
    server = LocalRedis().start()
    cache = _cache(server.url)
    vector = np.ones(DIM, dtype=np.float32)
    try:
        cache.put_many({"e" * 64: vector})
        port = server.port
        server.stop()
        assert cache.get_many(["e" * 64]) == {}
        cache.put_many({"f" * 64: vector})  # must not raise
        assert metrics.CACHE_AVAILABLE._value.get() == 0
        server = LocalRedis(port=port).start()  # empty again: no persistence
        cache.put_many({"e" * 64: vector})
        assert list(cache.get_many(["e" * 64])) == ["e" * 64]
        assert metrics.CACHE_AVAILABLE._value.get() == 1
    finally:
        server.stop()
