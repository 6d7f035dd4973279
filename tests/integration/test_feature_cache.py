"""FeatureCache against a real redis-server, for image and caption embeddings: hit, miss,
corrupt value, Redis down and back."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from moderator import metrics
from moderator.cache import (
    FeatureCache,
    FeatureKind,
    MemoryBound,
    ensure_memory_bound,
)
from moderator.ingest import normalise_caption
from moderator.local import LocalRedis
from moderator.signals.embeddings import text_digest

pytestmark = pytest.mark.integration
DIMS: dict[FeatureKind, int] = {"image": 8, "text": 6}
KINDS: list[FeatureKind] = ["image", "text"]


def _cache(url: str) -> FeatureCache:
    return FeatureCache.from_url(
        url, f"m-{uuid.uuid4().hex[:6]}", DIMS, ttl_s=60, socket_timeout_s=0.2
    )


def _count(kind: FeatureKind, result: str) -> float:
    value: float = metrics.CACHE_REQUESTS.labels(kind=kind, result=result)._value.get()
    return value


@pytest.mark.parametrize("kind", KINDS)
def test_miss_then_hit(redis_server: LocalRedis, kind: FeatureKind) -> None:
    cache = _cache(redis_server.url)
    vector = np.linspace(0, 1, DIMS[kind], dtype=np.float32)
    misses, hits = _count(kind, "miss"), _count(kind, "hit")
    assert cache.get_many({kind: ["a" * 64]}) == {kind: {}}
    cache.put_many({kind: {"a" * 64: vector}})
    found = cache.get_many({kind: ["a" * 64, "b" * 64]})[kind]
    assert list(found) == ["a" * 64]
    np.testing.assert_array_equal(found["a" * 64], vector)
    assert 0 < cache.client.ttl(cache.key(kind, "a" * 64)) <= 60
    assert (_count(kind, "miss"), _count(kind, "hit")) == (misses + 2, hits + 1)


def test_both_kinds_in_one_call_and_kinds_do_not_collide(redis_server: LocalRedis) -> None:
    cache = _cache(redis_server.url)
    digest = text_digest(normalise_caption("spam  wave"))
    image, text = np.ones(DIMS["image"], np.float32), np.full(DIMS["text"], 2.0, np.float32)
    cache.put_many({"image": {"a" * 64: image}, "text": {digest: text}})
    found = cache.get_many({"image": ["a" * 64, digest], "text": [digest, "a" * 64]})
    assert list(found["image"]) == ["a" * 64] and list(found["text"]) == [digest]
    np.testing.assert_array_equal(found["text"][digest], text)
    assert cache.client.exists(cache.key("text", text_digest("spam wave"))) == 1


def test_model_version_is_part_of_the_key(redis_server: LocalRedis) -> None:
    first, second = _cache(redis_server.url), _cache(redis_server.url)
    first.put_many(
        {"image": {"c" * 64: np.ones(8, np.float32)}, "text": {"c" * 64: np.ones(6, np.float32)}}
    )
    assert second.get_many({"image": ["c" * 64], "text": ["c" * 64]}) == {"image": {}, "text": {}}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", ["short", "nan", "other_dim"])
def test_corrupt_values_are_misses(redis_server: LocalRedis, kind: FeatureKind, bad: str) -> None:
    cache = _cache(redis_server.url)
    other = "text" if kind == "image" else "image"
    raw = {
        "short": b"short",
        "nan": np.full(DIMS[kind], np.nan, dtype="<f4").tobytes(),
        "other_dim": np.ones(DIMS[other], dtype="<f4").tobytes(),  # the other kind's shape
    }[bad]
    cache.client.set(cache.key(kind, "d" * 64), raw)
    before = _count(kind, "corrupt")
    assert cache.get_many({kind: ["d" * 64]}) == {kind: {}}
    assert _count(kind, "corrupt") == before + 1


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_vectors_are_not_stored(redis_server: LocalRedis, kind: FeatureKind) -> None:
    cache = _cache(redis_server.url)
    cache.put_many(
        {
            kind: {
                "e" * 64: np.ones(DIMS[kind] + 1, np.float32),
                "f" * 64: np.full(DIMS[kind], np.inf, np.float32),
            }
        }
    )
    assert cache.client.exists(cache.key(kind, "e" * 64), cache.key(kind, "f" * 64)) == 0


def test_redis_down_is_a_miss_and_recovery_is_picked_up() -> None:
    server = LocalRedis().start()
    cache = _cache(server.url)
    image, text = np.ones(DIMS["image"], np.float32), np.ones(DIMS["text"], np.float32)
    both = {"image": {"e" * 64: image}, "text": {"e" * 64: text}}
    try:
        cache.put_many(both)
        port = server.port
        server.stop()
        errors = {kind: _count(kind, "error") for kind in KINDS}
        assert cache.get_many({"image": ["e" * 64], "text": ["e" * 64]}) == {
            "image": {},
            "text": {},
        }
        assert {kind: _count(kind, "error") for kind in KINDS} == {
            kind: errors[kind] + 1 for kind in KINDS
        }
        cache.put_many({"text": {"f" * 64: text}})  # must not raise
        assert _count("text", "error") == errors["text"] + 2
        assert _count("image", "error") == errors["image"] + 1
        assert metrics.CACHE_AVAILABLE._value.get() == 0
        server = LocalRedis(port=port).start()  # empty again: no persistence
        cache.put_many(both)
        found = cache.get_many({"image": ["e" * 64], "text": ["e" * 64]})
        assert (list(found["image"]), list(found["text"])) == (["e" * 64], ["e" * 64])
        assert metrics.CACHE_AVAILABLE._value.get() == 1
    finally:
        server.stop()


def test_memory_bound_is_set_and_evicts_instead_of_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """redis.max_memory_mb: the worker bounds the server; a full cache evicts, writes go on."""
    with LocalRedis(maxmemory_mb=0) as server:  # 0: unbounded, as redis-server ships
        cache = _cache(server.url)
        with caplog.at_level("WARNING", logger="moderator.cache.memory"):
            unbounded = ensure_memory_bound(cache.client, None, "allkeys-lru")
        assert unbounded is not None and unbounded.max_memory_bytes == 0
        assert "no memory bound" in caplog.text

        bound = ensure_memory_bound(cache.client, 4, "allkeys-lru")
        assert bound == MemoryBound(4 << 20, "allkeys-lru", applied=True)
        big = FeatureCache(cache.client, cache.model_version, {"image": 4096, "text": 6}, 60)
        errors = _count("image", "error")
        vector = np.ones(4096, dtype=np.float32)  # 16 KiB per entry: 2,000 entries ≈ 32 MiB
        for start in range(0, 2000, 100):
            big.put_many({"image": {f"{i:064x}": vector for i in range(start, start + 100)}})
        info = cache.client.info("memory")
        assert info["used_memory"] <= (4 << 20) * 1.5
        assert cache.client.info("stats")["evicted_keys"] > 0
        assert _count("image", "error") == errors
        assert big.get_many({"image": [f"{1999:064x}"]})["image"]  # the newest entries stay


def test_memory_bound_when_config_is_disabled(caplog: pytest.LogCaptureFixture) -> None:
    with LocalRedis(extra_args=["--rename-command", "CONFIG", ""]) as server:
        cache = _cache(server.url)
        with caplog.at_level("WARNING", logger="moderator.cache.memory"):
            assert ensure_memory_bound(cache.client, 64, "allkeys-lru") is None
        assert "cannot set its memory bound" in caplog.text
        cache.put_many({"text": {"c" * 64: np.ones(6, dtype=np.float32)}})
        assert cache.get_many({"text": ["c" * 64]})["text"]


def test_grid_features_are_stored_as_float16_and_read_back_exactly(
    redis_server: LocalRedis,
) -> None:
    """Vectors above HALF_ABOVE values (the single-stream model's grid features) take two bytes
    a value in Redis; the model rounds them to float16 itself, so a hit returns the same numbers
    a fresh encode gives. A vector float16 cannot hold is not stored."""
    client = _cache(redis_server.url).client
    dim = 16 * 1280
    cache = FeatureCache(client, f"vb-{uuid.uuid4().hex[:8]}", {"image": dim, "text": 48}, 60)
    vector = np.random.default_rng(0).uniform(0, 6, dim).astype(np.float16).astype(np.float32)
    tokens = np.arange(48, dtype=np.float32)  # token ids: small vectors stay float32
    cache.put_many({"image": {"a" * 64: vector}, "text": {"b" * 64: tokens}})
    assert client.strlen(cache.key("image", "a" * 64)) == dim * 2
    assert client.strlen(cache.key("text", "b" * 64)) == 48 * 4
    found = cache.get_many({"image": ["a" * 64], "text": ["b" * 64]})
    np.testing.assert_array_equal(found["image"]["a" * 64], vector)
    np.testing.assert_array_equal(found["text"]["b" * 64], tokens)
    too_big = np.full(dim, 1e6, dtype=np.float32)
    cache.put_many({"image": {"c" * 64: too_big}})
    assert client.get(cache.key("image", "c" * 64)) is None
