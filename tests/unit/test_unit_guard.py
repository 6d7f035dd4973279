"""The guard in tests/unit/conftest.py: a unit test that starts a service fails, saying so."""

from __future__ import annotations

import pytest
import redis
from kafka import KafkaConsumer

from moderator.local import LocalRedis


def test_ray_is_refused() -> None:
    import ray

    with pytest.raises(RuntimeError, match="a unit test started Ray"):
        ray.init()


def test_kafka_redis_and_local_servers_are_refused() -> None:
    with pytest.raises(RuntimeError, match="a Kafka consumer"):
        KafkaConsumer(bootstrap_servers="127.0.0.1:9")
    with pytest.raises(RuntimeError, match="a Redis connection"):
        redis.Redis(port=9).ping()
    with pytest.raises(RuntimeError, match="a local server process"):
        LocalRedis().start()
