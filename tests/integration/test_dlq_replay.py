"""`moderator dlq replay` on the session's real broker and real redis-server.

Dead letters are produced here as the worker writes them (original key and bytes, the
DeadLetter headers), to topics of the test's own; the command runs in-process through Typer
with a settings file pointing at the session's broker and Redis. The posts topic is then read
back from the broker to see what was published.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaError
from typer.testing import CliRunner

from moderator import cli
from moderator.cache.client import redis_client
from moderator.config import RedisSettings, Settings
from moderator.errors import ReasonCode
from moderator.io import create_consumer
from moderator.io.replay import (
    HEADER_REPLAYED_FROM,
    RedisReplayGuard,
    ReplayOptions,
    guard_key,
    read_dead_letters,
    replay,
)
from moderator.local.stack import create_topics, write_settings_file
from moderator.schema.deadletter import DeadLetter

pytestmark = pytest.mark.integration
HOUR_MS = 3_600_000


def _dead_letter(
    producer: KafkaProducer,
    settings: Settings,
    reason: ReasonCode,
    key: bytes,
    value: bytes,
    timestamp_ms: int | None = None,
) -> None:
    letter = DeadLetter(reason, "detail", settings.kafka.posts_topic, 0, 0)
    producer.send(
        settings.kafka.dlq_topic,
        key=key,
        value=value,
        headers=letter.headers(),
        timestamp_ms=timestamp_ms,
    )


def _fill(settings: Settings) -> dict[bytes, bytes]:
    """3 invalid_json and 2 schema_violation dead letters; returns key → value."""
    create_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    sent = {}
    for i in range(3):
        key, value = f"bad-json-{i}".encode(), b'{"post_id": "x' + bytes([200 + i])
        _dead_letter(producer, settings, ReasonCode.INVALID_JSON, key, value)
        sent[key] = value
    for i in range(2):
        key, value = f"bad-schema-{i}".encode(), b'{"post_id": %d}' % i
        _dead_letter(producer, settings, ReasonCode.SCHEMA_VIOLATION, key, value)
        sent[key] = value
    producer.flush()
    producer.close()
    return sent


def _posts(settings: Settings) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    """(key, value, headers) of everything on the posts topic now."""
    consumer = create_consumer(settings.kafka, group_id=None)
    try:
        records = list(read_dead_letters(consumer, settings.kafka.posts_topic, 10.0))
    finally:
        consumer.close()
    return [(r.key, r.value, dict(r.headers)) for r in records]


def _replay(settings: Settings, tmp_path: Path, *args: str) -> str:
    config = write_settings_file(settings, tmp_path)
    result = CliRunner().invoke(cli.app, ["dlq", "replay", "--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_dry_run_counts_by_reason_and_publishes_nothing(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    _fill(isolated_settings)
    output = _replay(isolated_settings, tmp_path, "--dry-run")
    assert "5 records read (dry run: nothing published)" in output
    assert "│ invalid_json │ 3 │ 3 │ 3 │ 0 │ 0 │" in output
    assert "│ schema_violation │ 2 │ 2 │ 2 │ 0 │ 0 │" in output
    output = _replay(isolated_settings, tmp_path, "--dry-run", "--reason", "schema_violation")
    assert "│ invalid_json │ 3 │ 0 │ 0 │ 0 │ 0 │" in output
    assert "would replay: 2" in output
    assert _posts(isolated_settings) == []


def test_replay_publishes_original_bytes_and_key_once(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    sent = _fill(isolated_settings)
    output = _replay(isolated_settings, tmp_path, "--reason", "invalid_json")
    assert f"replayed: 3 to {isolated_settings.kafka.posts_topic} (3)" in output
    posts = _posts(isolated_settings)
    assert sorted((key, value) for key, value, _ in posts) == sorted(
        (key, value) for key, value in sent.items() if key.startswith(b"bad-json")
    )
    origins = {headers[HEADER_REPLAYED_FROM].decode() for _, _, headers in posts}
    assert len(origins) == 3
    assert all(o.startswith(f"{isolated_settings.kafka.dlq_topic}/") for o in origins)

    again = _replay(isolated_settings, tmp_path, "--reason", "invalid_json")
    assert "replayed: 0; skipped (already replayed): 3" in again
    assert len(_posts(isolated_settings)) == 3
    dry = _replay(isolated_settings, tmp_path, "--dry-run", "--reason", "invalid_json")
    assert "│ invalid_json │ 3 │ 3 │ 0 │ 3 │ 0 │" in dry


def test_reason_filter_and_limit(isolated_settings: Settings, tmp_path: Path) -> None:
    sent = _fill(isolated_settings)
    first = _replay(isolated_settings, tmp_path, "--reason", "schema_violation", "--limit", "1")
    assert "replayed: 1" in first and "--limit reached" in first
    assert len(_posts(isolated_settings)) == 1
    rest = _replay(isolated_settings, tmp_path, "--reason", "schema_violation")
    assert "replayed: 1" in rest and "skipped (already replayed): 1" in rest
    posts = _posts(isolated_settings)
    assert sorted(key for key, _, _ in posts) == [b"bad-schema-0", b"bad-schema-1"]
    assert all(value == sent[key] for key, value, _ in posts)


def test_since_selects_by_record_timestamp(isolated_settings: Settings, tmp_path: Path) -> None:
    create_topics(isolated_settings)
    producer = KafkaProducer(bootstrap_servers=isolated_settings.kafka.bootstrap_servers)
    now_ms = int(time.time() * 1000)
    _dead_letter(
        producer, isolated_settings, ReasonCode.INVALID_UTF8, b"old", b"\xff", now_ms - 5 * HOUR_MS
    )
    _dead_letter(producer, isolated_settings, ReasonCode.INVALID_UTF8, b"new", b"\xfe", now_ms)
    producer.flush()
    producer.close()
    output = _replay(isolated_settings, tmp_path, "--reason", "invalid_utf8", "--since", "2h")
    assert "replayed: 1" in output and "older than --since: 1" in output
    assert [(key, value) for key, value, _ in _posts(isolated_settings)] == [(b"new", b"\xfe")]


def test_refuses_without_redis_unless_no_guard(isolated_settings: Settings, tmp_path: Path) -> None:
    _fill(isolated_settings)
    no_redis = isolated_settings.model_copy(update={"redis": RedisSettings()})
    config = write_settings_file(no_redis, tmp_path)
    args = ["dlq", "replay", "--config", str(config), "--reason", "invalid_json"]
    refused = CliRunner().invoke(cli.app, args)
    assert refused.exit_code == 2
    assert "redis.url is not set" in refused.output
    assert _posts(isolated_settings) == []
    unguarded = CliRunner().invoke(cli.app, [*args, "--no-guard"])
    assert unguarded.exit_code == 0, unguarded.output
    assert len(_posts(isolated_settings)) == 3


def test_unknown_reason_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["dlq", "replay", "--reason", "invalid_jsn"])
    assert result.exit_code == 2
    assert "--reason invalid_jsn: not a reason code" in result.output


def test_to_overrides_the_source_topic(isolated_settings: Settings, tmp_path: Path) -> None:
    _fill(isolated_settings)
    elsewhere = isolated_settings.model_copy(
        update={
            "kafka": isolated_settings.kafka.model_copy(
                update={"posts_topic": f"{isolated_settings.kafka.posts_topic}-fixed"}
            )
        }
    )
    create_topics(elsewhere)
    output = _replay(
        isolated_settings, tmp_path, "--reason", "invalid_json", "--to", elsewhere.kafka.posts_topic
    )
    assert f"replayed: 3 to {elsewhere.kafka.posts_topic} (3)" in output
    assert _posts(isolated_settings) == [] and len(_posts(elsewhere)) == 3


class _Unacknowledged:
    def get(self, timeout: float | None = None) -> None:
        raise KafkaError("not acknowledged")


class _RefusingProducer:
    """A fake KafkaProducer whose first send is refused at once and the others never
    acknowledged (a broker's refusal cannot be provoked on demand); the consumer and the
    Redis guard are the real ones."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, topic: str, **_: object) -> object:
        self.sent += 1
        if self.sent == 1:
            raise KafkaError("refused before sending")
        return _Unacknowledged()

    def flush(self, timeout: float | None = None) -> None:
        return None


def test_a_failed_publish_frees_the_record_for_a_rerun(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    _fill(isolated_settings)
    redis = isolated_settings.redis
    assert redis.url is not None
    guard = RedisReplayGuard(redis_client(redis.url.get_secret_value(), 5.0))
    options = ReplayOptions(reasons=frozenset({"invalid_json"}))
    consumer = create_consumer(isolated_settings.kafka, group_id=None)
    try:
        summary = replay(isolated_settings, options, consumer, _RefusingProducer(), guard)
    finally:
        consumer.close()
    assert summary.failed["invalid_json"] == 3 and not summary.replayed
    assert not any(
        guard.replayed(guard_key(isolated_settings.kafka.dlq_topic, p, o))
        for p in range(4)
        for o in range(3)
    )
    output = _replay(isolated_settings, tmp_path, "--reason", "invalid_json")
    assert "replayed: 3; skipped (already replayed): 0" in output.replace(
        f" to {isolated_settings.kafka.posts_topic} (3)", ""
    )


def test_another_dead_letter_topic(isolated_settings: Settings, tmp_path: Path) -> None:
    """The verdict consumer's dead letters live on a topic of their own (verdicts.dlq_topic)."""
    kafka = isolated_settings.kafka
    other = isolated_settings.model_copy(
        update={"kafka": kafka.model_copy(update={"dlq_topic": f"{kafka.dlq_topic}-verdicts"})}
    )
    _fill(other)
    output = _replay(
        isolated_settings,
        tmp_path,
        "--reason",
        "invalid_json",
        "--dlq-topic",
        other.kafka.dlq_topic,
    )
    assert f"{other.kafka.dlq_topic}: 5 records read" in output
    assert "replayed: 3" in output and len(_posts(isolated_settings)) == 3
