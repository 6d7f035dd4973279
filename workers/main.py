"""Worker process entry point: wire settings to clients, handle signals, run until told to stop."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from moderator.cache import FeatureCache, ensure_memory_bound
from moderator.config import Settings
from moderator.io import create_consumer, create_producer
from moderator.policy import (
    CompiledPolicy,
    PolicyService,
    PolicyWatcher,
    RedisAuthorStore,
    load_policy,
)
from moderator.serving.runner import get_classifier_handle
from workers.health import WorkerHealth, serve_http
from workers.moderation_worker import ModerationWorker, WorkerStats
from workers.scorer import ServeScorer, WorkerStopping

logger = logging.getLogger(__name__)


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM (Kubernetes) and SIGINT (Ctrl-C) ask the worker to drain and commit."""

    def _handle(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: draining", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)


def build_policy_service(settings: Settings) -> PolicyService:
    """The policy (hot-reloaded unless the interval is 0) plus author state in Redis."""
    source: CompiledPolicy | PolicyWatcher
    if settings.policy_reload_interval_s > 0:
        source = PolicyWatcher(
            settings.policy_path, interval_s=settings.policy_reload_interval_s
        ).start()
    else:
        source = load_policy(settings.policy_path)
    authors = None
    if settings.author_state and settings.redis.enabled and settings.redis.url is not None:
        authors = RedisAuthorStore.from_url(
            settings.redis.url.get_secret_value(),
            settings.authors,
            socket_timeout_s=settings.redis.socket_timeout_s,
            ssl_ca_certs=settings.redis.ssl_ca_certs,
        )
    return PolicyService(source, authors)


def run_worker(
    settings: Settings, stop: threading.Event, handle_signals: bool = True
) -> WorkerStats:
    policy = build_policy_service(settings)
    health = WorkerHealth(
        stall_after_s=settings.serving.request_timeout_s * 2,
        model_unavailable_s=settings.serving.unavailable_restart_s,
    )
    server = None
    if settings.worker.metrics_port:
        server = serve_http(health, settings.worker.metrics_port)
        logger.info("metrics and health on :%s", settings.worker.metrics_port)
    handle = get_classifier_handle(settings.serving)
    if handle_signals:
        # After joining Ray: ray.init installs its own SIGTERM handler, which exits at once.
        install_stop_handlers(stop)
    scorer = ServeScorer(handle, settings.serving.request_timeout_s, stop, health)
    info = scorer.info()
    cache = None
    if settings.redis.enabled and settings.redis.url is not None:
        cache = FeatureCache.from_url(
            settings.redis.url.get_secret_value(),
            info.model_version,
            {"image": info.image_embedding_dim, "text": info.text_embedding_dim},
            settings.redis.feature_ttl_s,
            settings.redis.socket_timeout_s,
            ssl_ca_certs=settings.redis.ssl_ca_certs,
        )
        ensure_memory_bound(
            cache.client, settings.redis.max_memory_mb, settings.redis.eviction_policy
        )
    consumer = create_consumer(settings.kafka)
    producer = create_producer(settings.kafka)
    worker = ModerationWorker(settings, consumer, producer, scorer, policy, cache, health)
    try:
        return worker.run(stop)
    except WorkerStopping:
        logger.info("stopped before the batch in hand was scored; it will be re-delivered")
        return worker.stats
    finally:
        producer.flush(timeout=settings.worker.produce_timeout_s)
        producer.close()
        consumer.close(autocommit=False)
        policy.close()
        if server is not None:
            server.shutdown()
