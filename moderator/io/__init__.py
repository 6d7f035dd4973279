"""Kafka clients configured from settings."""

from moderator.io.kafka import (
    connection_options,
    create_consumer,
    create_producer,
    ensure_topics,
)

__all__ = ["connection_options", "create_consumer", "create_producer", "ensure_topics"]
