"""Long-running Kafka worker processes."""
