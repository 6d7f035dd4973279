"""kafka-python clients built from KafkaSettings (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from moderator.config import KafkaSettings
from moderator.errors import ConfigError
from moderator.io.unreadable import guard_unreadable_batches

logger = logging.getLogger(__name__)


def connection_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Bootstrap and security options shared by every client."""
    if not kafka.bootstrap_servers:
        raise ConfigError("kafka.bootstrap_servers is not set (MODERATOR_KAFKA__BOOTSTRAP_SERVERS)")
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "security_protocol": kafka.security_protocol,
        "client_id": kafka.client_id,
    }
    if kafka.security_protocol.startswith("SASL"):
        if not (kafka.sasl_mechanism and kafka.sasl_username and kafka.sasl_password):
            raise ConfigError(
                f"kafka.security_protocol is {kafka.security_protocol}: set kafka.sasl_mechanism, "
                "kafka.sasl_username and kafka.sasl_password"
            )
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    if kafka.security_protocol.endswith("SSL"):
        for key, path in (
            ("ssl_cafile", kafka.ssl_cafile),
            ("ssl_certfile", kafka.ssl_certfile),
            ("ssl_keyfile", kafka.ssl_keyfile),
        ):
            if path is not None:
                options[key] = str(path)
    return options


def create_consumer(kafka: KafkaSettings, **overrides: Any) -> KafkaConsumer:
    """A group consumer that never auto-commits: offsets are committed after delivery.

    A record batch it cannot read (codec library missing, corrupt) raises
    UnreadableBatchError out of poll, naming the partition and offset.
    """
    options = connection_options(kafka) | {
        "group_id": kafka.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": kafka.max_poll_records,
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": kafka.heartbeat_interval_ms,
        "max_poll_interval_ms": kafka.max_poll_interval_ms,
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
    }
    options.update(overrides)
    if options.get("enable_auto_commit"):
        raise ConfigError("auto-commit would acknowledge posts before they are decided")
    consumer = KafkaConsumer(**options)
    guard_unreadable_batches(consumer)
    return consumer


def create_producer(kafka: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer whose acks mean the record is on every in-sync replica."""
    options = connection_options(kafka) | {
        "acks": "all",
        "linger_ms": 5,
        # Large batches: fewer sender wake-ups per decision (decisions are ~1 KB each).
        "batch_size": 512 * 1024,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
        "max_request_size": 16 * 1024 * 1024,
        "compression_type": None if kafka.compression_type == "none" else kafka.compression_type,
    }
    options.update(overrides)
    return KafkaProducer(**options)


def ensure_topics(kafka: KafkaSettings, topics: Iterable[str], partitions: int = 4) -> None:
    """Create missing topics (local broker and tests; production topics come from the operator)."""
    admin = KafkaAdminClient(**connection_options(kafka))
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name=t, num_partitions=partitions, replication_factor=1)
            for t in topics
            if t not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
            logger.info("created topics %s", [t.name for t in missing])
    finally:
        admin.close()
