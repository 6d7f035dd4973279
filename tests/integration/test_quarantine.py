"""Flood quarantine's state in real Redis: shared by the workers of a consumer group, kept
across a worker restart, expiring with the cool-off; Redis down fails open."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from moderator import metrics
from moderator.cache.client import redis_client
from moderator.local import LocalRedis
from moderator.local.process import free_port
from moderator.policy import PolicyService, load_policy
from moderator.policy.quarantine import POSTS_FIELD, FloodQuarantine, RedisQuarantineStore
from moderator.quarantine_settings import QuarantineSettings
from moderator.schema import Action

pytestmark = pytest.mark.integration

POLICY = """\
name: flood
version: "1"
categories: [hate]
rules:
  - id: hate.block
    when: scores.hate >= 0.9
    action: block
  - id: flood.everything
    when: scores.hate >= 0.0
    action: review
"""
SETTINGS = QuarantineSettings(
    enabled=True,
    bucket_s=10,
    current_window_s=20,
    baseline_window_s=100,
    factor=5,
    min_volume=30,
    cool_off_s=300,
    check_interval_s=0,
)


def _worker(url: str, policy_path: Path, scope: str) -> tuple[PolicyService, RedisQuarantineStore]:
    """What one worker process holds: its policy service and its own Redis connection."""
    store = RedisQuarantineStore(redis_client(url, 0.5), SETTINGS, scope)
    quarantine = FloodQuarantine(SETTINGS, store)
    return PolicyService(load_policy(policy_path), quarantine=quarantine), store


def test_a_quarantine_is_shared_by_the_group_and_kept_across_a_restart(
    redis_server: LocalRedis, tmp_path: Path
) -> None:
    path = tmp_path / "flood.yaml"
    path.write_text(POLICY)
    scope = f"group-{uuid.uuid4().hex[:8]}"
    first, store = _worker(redis_server.url, path, scope)
    # History: 2,000 posts decided earlier in the baseline window, flood.everything never fired.
    old_bucket = int(time.time() // SETTINGS.bucket_s) - 5
    store.sync({old_bucket: {POSTS_FIELD: 2000}}, (), None)
    started = metrics.RULE_QUARANTINES.labels(rule="flood.everything")._value.get()

    first.begin_batch()
    before = [first.decide({"hate": 0.1}) for _ in range(40)]
    assert all(r.action is Action.REVIEW for r in before)
    first.begin_batch()  # sends the 40 fires, judges: quarantined
    assert first.quarantine is not None and first.quarantine.quarantined == {"flood.everything"}
    first.close()  # the worker stops (its Redis connection with it)

    restarted, restarted_store = _worker(redis_server.url, path, scope)
    other_group, _ = _worker(redis_server.url, path, f"other-{scope}")
    restarted.begin_batch()
    other_group.begin_batch()
    after = restarted.decide({"hate": 0.1})
    assert (after.action, after.rules_fired, after.shadow_rules) == (
        Action.ALLOW,
        [],
        ["flood.everything"],
    )
    assert other_group.decide({"hate": 0.1}).action is Action.REVIEW  # keys are per group
    # One quarantine event, counted by the worker that started it.
    assert metrics.RULE_QUARANTINES.labels(rule="flood.everything")._value.get() == started + 1
    key = restarted_store.rule_key("flood.everything")
    assert 0 < restarted_store.client.ttl(key) <= SETTINGS.cool_off_s
    # Lifted early while the window still holds the flood: judged again, quarantined again
    # (to lift it for good, fix the rule or list it in exempt_rules).
    restarted_store.client.delete(key)
    restarted.begin_batch()
    assert restarted.decide({"hate": 0.1}).action is Action.ALLOW
    assert metrics.RULE_QUARANTINES.labels(rule="flood.everything")._value.get() == started + 2
    assert 0 < restarted_store.client.ttl(key) <= SETTINGS.cool_off_s
    restarted.close()
    other_group.close()


def test_redis_down_fails_open_and_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "flood.yaml"
    path.write_text(POLICY)
    nobody = free_port()  # nothing listens there: Redis is down
    service, _ = _worker(f"redis://127.0.0.1:{nobody}", path, "down")
    errors = metrics.QUARANTINE_ERRORS._value.get()
    service.begin_batch()
    assert service.decide({"hate": 0.95}).action is Action.BLOCK
    assert metrics.QUARANTINE_ERRORS._value.get() == errors + 1
    service.close()
