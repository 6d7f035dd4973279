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
from moderator.serving_settings import ClassifierArgs, ServingSettings


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked gpu run only where torch sees a CUDA device (scripts/gpu-check.sh)."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch sees none)")
    for item in gpu_tests:
        item.add_marker(skip)


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
def ray_serving() -> Iterator[ServingSettings]:
    """One Ray instance of the session's own (address="local", a per-run token) with the
    Classifier app (starter model); yields serving settings that join it."""
    import ray
    from ray import serve

    from moderator.serving.runner import deploy_classifier, start_local_ray

    serving = start_local_ray(
        ServingSettings(classifier=ClassifierArgs(torch_threads=1)), num_cpus=2
    )
    try:
        deploy_classifier(serving)
        yield serving
    finally:
        serve.shutdown()
        ray.shutdown()
