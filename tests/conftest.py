"""Session-wide real services, started only when a test asks for them.

One broker, one redis-server and one Ray instance per test session; every test
gets its own topics and consumer group through `isolated_settings`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from moderator.config import KafkaSettings, RedisSettings, Settings, WorkerSettings
from moderator.local import LocalBroker, LocalRedis


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as running:
        yield running


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    with LocalRedis() as running:
        yield running


@pytest.fixture()
def isolated_settings(broker: LocalBroker, redis_server: LocalRedis) -> Settings:
    return settings_for(broker, redis_server)


def settings_for(broker: LocalBroker, redis_server: LocalRedis) -> Settings:
    """Settings pointing at the session's broker and Redis, with topics and group of its own."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        kafka=KafkaSettings(
            bootstrap_servers=broker.bootstrap_servers,
            posts_topic=f"posts-{tag}",
            decisions_topic=f"decisions-{tag}",
            review_topic=f"review-{tag}",
            dlq_topic=f"posts-{tag}.dlq",
            group_id=f"moderator-{tag}",
        ),
        redis=RedisSettings(url=SecretStr(redis_server.url)),
        worker=WorkerSettings(metrics_port=None, batch_size=32),
    )


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """One local Ray instance with the Classifier app (starter model) for the whole session."""
    import logging

    import ray
    from ray import serve

    from moderator.config import ServingSettings
    from moderator.serving.runner import deploy_classifier

    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    try:
        deploy_classifier(ServingSettings(torch_threads=1))
        yield ray.get_runtime_context().gcs_address
    finally:
        serve.shutdown()
        ray.shutdown()
