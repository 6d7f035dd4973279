"""``python -m moderator.benchmark.verdict_bench [N]``: verdicts/s through the verdict consumer.

A local broker and redis-server (moderator.local), N verdicts on a 4-partition topic (60%
confirmed blocks, 20% overturned appeals, 20% cleared reviews, each with caption and image
digest, so every effect runs: strikes, corrections, rows fsynced per batch), then the same N
again under a new group, where every verdict is a re-delivery and is skipped.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from moderator.config import KafkaSettings, RedisSettings, Settings
from moderator.io import create_producer, ensure_topics
from moderator.local import LocalBroker, LocalRedis
from moderator.schema import Verdict
from moderator.verdicts.consumer import VerdictStats, build_consumer
from moderator.verdicts.settings import VerdictSettings


def sample_verdict(i: int) -> Verdict:
    kind = i % 10
    action = "block" if kind < 8 else "review"
    base = {
        "verdict_id": f"v{i}",
        "post_id": f"p{i}",
        "author_id": f"a{i % 500}",
        "decision": {
            "post_id": f"p{i}",
            "model_version": "m",
            "policy_version": "p",
            "action": action,
        },
        "reviewer_id": "r",
        "decided_at": datetime.now(UTC).isoformat(),
        "caption": f"caption {i}",
        "image_digest": f"{i:064x}",
    }
    if kind < 6:
        found = {"outcome": "violation", "action": "block", "categories_confirmed": ["hate"]}
    else:
        found = {"outcome": "no_violation", "action": "allow", "categories_rejected": ["hate"]}
        if kind < 8:
            found["appeal_id"] = f"ap{i}"
    return Verdict.model_validate(base | found)


def consume(settings: Settings, count: int) -> tuple[float, VerdictStats]:
    """Seconds from the first verdict handled to the last, and the consumer's stats."""
    consumer = build_consumer(settings)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    stats, first = consumer.stats, None
    while (handled := stats.applied + stats.duplicates + stats.dead_lettered) < count:
        if first is None and handled:
            first = time.perf_counter()
        time.sleep(0.005)
    seconds = time.perf_counter() - (first or time.perf_counter())
    stop.set()
    thread.join()
    consumer.consumer.close(autocommit=False)
    consumer.producer.close()
    return seconds, stats


def main(count: int) -> None:
    with LocalBroker() as broker, LocalRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        tag = uuid.uuid4().hex[:8]
        settings = Settings(
            kafka=KafkaSettings(
                bootstrap_servers=broker.bootstrap_servers,
                decisions_topic=f"decisions-{tag}",
                verdicts_topic=f"verdicts-{tag}",
            ),
            redis=RedisSettings(url=SecretStr(redis.url)),
            verdicts=VerdictSettings(
                group_id=f"bench-{tag}",
                dlq_topic=f"verdicts-{tag}.dlq",
                training_rows_path=Path(tmp) / "rows.jsonl",
                categories=["hate"],
                metrics_port=None,
            ),
        )
        kafka = settings.kafka
        ensure_topics(
            kafka, [kafka.verdicts_topic, kafka.decisions_topic, settings.verdicts.dlq_topic], 4
        )
        producer = create_producer(kafka)
        for i in range(count):
            verdict = sample_verdict(i)
            value = verdict.model_dump_json().encode()
            producer.send(kafka.verdicts_topic, key=verdict.post_id.encode(), value=value)
        producer.flush()
        producer.close()
        seconds, stats = consume(settings, count)
        print(f"applied: {count / seconds:,.0f} verdicts/s ({count} in {seconds:.2f} s; {stats})")
        again = settings.verdicts.model_copy(update={"group_id": f"bench-again-{tag}"})
        seconds, stats = consume(settings.model_copy(update={"verdicts": again}), count)
        print(f"re-delivered: {count / seconds:,.0f} verdicts/s skipped ({stats.duplicates})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
