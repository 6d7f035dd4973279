"""What the worker publishes about itself besides the per-batch metrics.

- Consumer lag per assigned partition: kafka-python's `highwater(tp)` (the high
  watermark carried by the partition's latest fetch response) minus `position(tp)`,
  at most once a second. No extra broker request: it is what the fetcher already
  knows. A partition not fetched yet has no high watermark and no lag series; a
  paused partition is not fetched, so its lag holds its last value until it resumes.
- The model and policy versions as info metrics; the policy's is refreshed when a hot
  reload swaps the policy, together with the 0 series of its rules and labels.
- The optional decision log (`worker.log_decisions`): one JSON line per decision with
  ids, outcome and versions only; never the caption, the image or the author id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from moderator import metrics
from moderator.policy import CompiledPolicy
from workers.decisions import DecisionRecord

logger = logging.getLogger(__name__)
decision_logger = logging.getLogger(f"{__name__}.decisions")


class WorkerTelemetry:
    def __init__(self, consumer: KafkaConsumer, model_version: str, interval_s: float = 1.0):
        self.consumer = consumer
        self.interval_s = interval_s
        self._last = float("-inf")
        self._policy: CompiledPolicy | None = None
        self._lag_series: set[TopicPartition] = set()
        metrics.set_model_info(model_version)

    def tick(self, policy: CompiledPolicy, in_flight_batches: int) -> None:
        """Called every loop; does its work at most once per `interval_s`."""
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        metrics.IN_FLIGHT_BATCHES.set(in_flight_batches)
        if policy is not self._policy:
            self._policy = policy
            publish_policy(policy)
        self._update_lag()

    def _update_lag(self) -> None:
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue  # not fetched yet
            try:
                # Known locally once the partition has been fetched; timeout 0: never block.
                position = self.consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue
            if position is None:
                continue
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(
                max(highwater - position, 0)
            )
            self._lag_series.add(tp)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the lag series of partitions this worker no longer owns."""
        for tp in partitions:
            if tp in self._lag_series:
                self._lag_series.discard(tp)
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))


def publish_policy(policy: CompiledPolicy) -> None:
    metrics.declare_policy(
        policy.name,
        policy.version,
        policy.digest,
        [(rule.id, rule.mode.value) for rule in policy.rules],
        {label for rule in policy.rules for label in rule.labels} | set(policy.categories),
    )


def log_decision(decision: DecisionRecord) -> None:
    """One structured line: what was decided and by which versions (no content, no author)."""
    source = decision["source"]
    line = {
        "post_id": decision["post_id"],
        "action": decision["action"],
        "labels": decision["labels"],
        "rules": decision["rules_fired"],
        "shadow_rules": decision["shadow_rules"],
        "policy_version": decision["policy_version"],
        "model_version": decision["model_version"],
        "source": f"{source['topic']}-{source['partition']}@{source['offset']}",
    }
    decision_logger.info("decision %s", orjson.dumps(line).decode())
