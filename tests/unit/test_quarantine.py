"""Flood quarantine's detector and its effect on decisions.

The store is `FakeStore`, a small in-memory fake behind the `QuarantineStore` interface (the
Redis one is exercised by tests/faults/test_quarantine.py); clocks are fakes too, so
windows and cool-offs are stepped, never waited for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from moderator import metrics
from moderator.config import Settings
from moderator.policy import PolicyService, load_policy
from moderator.policy.document import RULE_ID_PATTERN
from moderator.policy.quarantine import POSTS_FIELD, FloodQuarantine, SyncReply
from moderator.quarantine_settings import QuarantineSettings
from moderator.schema import Action

POLICY = """\
name: flood
version: "1"
categories: [hate]
rules:
  - id: hate.block
    when: scores.hate >= 0.9
    action: block
    labels: [hate]
  - id: new.review
    when: scores.hate >= 0.0
    action: review
  - id: exempt.label
    when: scores.hate >= 0.0
    action: label
  - id: candidate
    when: scores.hate >= 0.0
    action: block
    mode: shadow
"""


class FakeStore:
    """In-memory QuarantineStore: buckets of counts and quarantine keys with expiry."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.buckets: dict[int, dict[str, int]] = {}
        self.keys: dict[str, tuple[float, Mapping[str, Any]]] = {}
        self.syncs = 0
        self.down = False

    def sync(
        self,
        writes: Mapping[int, Mapping[str, int]],
        rule_ids: Sequence[str],
        read_buckets: Sequence[int] | None,
    ) -> SyncReply:
        if self.down:
            raise redis.ConnectionError("connection refused")
        self.syncs += 1
        for bucket, counts in writes.items():
            target = self.buckets.setdefault(bucket, {})
            for name, count in counts.items():
                target[name] = target.get(name, 0) + count
        live = {rule for rule, (until, _) in self.keys.items() if until > self.clock.now}
        buckets = None
        if read_buckets is not None:
            buckets = [dict(self.buckets.get(bucket, {})) for bucket in read_buckets]
        return SyncReply(frozenset(rule_ids) & live, buckets)

    def quarantine(self, rule_id: str, details: Mapping[str, Any]) -> bool:
        current = self.keys.get(rule_id)
        if current is not None and current[0] > self.clock.now:
            return False
        self.keys[rule_id] = (self.clock.now + details["until"] - details["since"], details)
        return True

    def close(self) -> None:
        pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


SETTINGS = QuarantineSettings(
    enabled=True,
    bucket_s=10,
    current_window_s=30,
    baseline_window_s=300,
    factor=5,
    min_volume=20,
    cool_off_s=120,
    check_interval_s=0,
    exempt_rules=["exempt.label"],
)


@pytest.fixture()
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "flood.yaml"
    path.write_text(POLICY)
    return path


def _service(
    policy_file: Path, settings: QuarantineSettings = SETTINGS
) -> tuple[PolicyService, FakeStore, FakeClock]:
    clock = FakeClock()
    store = FakeStore(clock)
    quarantine = FloodQuarantine(settings, store, clock=clock, monotonic=clock)
    return PolicyService(load_policy(policy_file), quarantine=quarantine), store, clock


def _batch(service: PolicyService, posts: int, hate: float) -> list[Any]:
    service.begin_batch()
    return [service.decide({"hate": hate}) for _ in range(posts)]


def _seed_baseline(store: FakeStore, clock: FakeClock, posts: int, fires: dict[str, int]) -> None:
    """History before the current window: `posts` decided, `fires` per rule."""
    bucket = int(clock.now // SETTINGS.bucket_s) - 10
    store.buckets[bucket] = {POSTS_FIELD: posts, **fires}


def test_a_rule_flooding_above_its_baseline_is_quarantined_and_decides_as_shadow(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service, store, clock = _service(policy_file)
    # new.review fired on 1% of 2,000 posts before; now it fires on every post.
    _seed_baseline(store, clock, 2000, {"new.review": 20, "hate.block": 40})
    before = metrics.RULE_QUARANTINES.labels(rule="new.review")._value.get()
    with caplog.at_level(logging.WARNING, logger="moderator.policy.quarantine"):
        first = _batch(service, 25, hate=0.0)  # counted, sent with the next batch
        second = _batch(service, 5, hate=0.0)
    assert all(r.action is Action.REVIEW and "new.review" in r.rules_fired for r in first)
    assert service.quarantine is not None
    assert service.quarantine.quarantined == {"new.review"}
    for result in second:
        assert result.action is Action.LABEL  # the exempt rule still decides
        assert result.rules_fired == ["exempt.label"]
        assert result.shadow_rules == ["candidate", "new.review"]
    assert metrics.RULE_QUARANTINES.labels(rule="new.review")._value.get() == before + 1
    assert metrics.QUARANTINED_RULES._value.get() == 1
    [line] = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert line.startswith("rule new.review quarantined for 120 s")
    assert "hit rate 1.0000 (25 of 25 posts" in line and "baseline of 0.0105 (20 of 2000" in line
    _, details = store.keys["new.review"]
    assert details["fires"] == 25 and details["baseline_posts"] == 2000


def test_exempt_rules_steady_rules_and_thin_volumes_stay_live(policy_file: Path) -> None:
    service, store, clock = _service(policy_file)
    # exempt.label and hate.block fire at their usual rates; new.review stays under min_volume.
    _seed_baseline(store, clock, 1000, {"exempt.label": 1000, "hate.block": 500})
    for _ in range(4):
        _batch(service, 6, hate=0.95)
    assert service.quarantine is not None and service.quarantine.quarantined == frozenset()
    _batch(service, 6, hate=0.95)  # new.review reaches 24 fires of 24 posts: now it floods
    assert service.quarantine.quarantined == {"new.review"}
    assert "hate.block" not in store.keys and "exempt.label" not in store.keys


def test_no_history_judges_nothing(policy_file: Path) -> None:
    """A fresh deployment: the baseline rate of every rule reads 1, which no rate exceeds."""
    service, store, _ = _service(policy_file)
    for _ in range(5):
        _batch(service, 50, hate=0.95)
    assert store.keys == {}


def test_quarantine_ends_after_the_cool_off_and_its_fires_are_not_counted(
    policy_file: Path,
) -> None:
    service, store, clock = _service(policy_file)
    _seed_baseline(store, clock, 5000, {})
    _batch(service, 25, hate=0.0)
    _batch(service, 1, hate=0.0)
    assert service.quarantine is not None and "new.review" in service.quarantine.quarantined
    counted = sum(b.get("new.review", 0) for b in store.buckets.values())
    _batch(service, 40, hate=0.0)
    _batch(service, 1, hate=0.0)
    # Fires while quarantined are not counted: the flood does not become the baseline.
    assert sum(b.get("new.review", 0) for b in store.buckets.values()) == counted
    clock.now += SETTINGS.cool_off_s + 1
    results = _batch(service, 3, hate=0.0)
    assert service.quarantine.quarantined == frozenset()
    assert all(r.action is Action.REVIEW for r in results)


def test_redis_is_called_once_per_check_interval_not_per_batch(policy_file: Path) -> None:
    settings = SETTINGS.model_copy(update={"check_interval_s": 10.0})
    service, store, clock = _service(policy_file, settings)
    _seed_baseline(store, clock, 5000, {})
    for _ in range(4):
        _batch(service, 10, hate=0.0)
    assert store.syncs == 1  # the first batch (a new policy is always checked at once)
    assert store.keys == {}  # judged before any fire was sent
    clock.now += 10  # due: the 40 fires go out, are judged, and the rule is quarantined
    results = _batch(service, 1, hate=0.0)
    assert store.syncs == 2 and "new.review" in store.keys
    assert results[0].shadow_rules == ["candidate", "new.review"]


def test_redis_down_fails_open_counted_and_backs_off(policy_file: Path) -> None:
    service, store, clock = _service(policy_file)
    _seed_baseline(store, clock, 5000, {})
    _batch(service, 25, hate=0.0)
    _batch(service, 1, hate=0.0)
    assert service.quarantine is not None and service.quarantine.quarantined
    errors = metrics.QUARANTINE_ERRORS._value.get()
    store.down = True
    results = _batch(service, 5, hate=0.0)
    assert all(r.action is Action.REVIEW for r in results)  # not evaluated: rules decide live
    assert metrics.QUARANTINE_ERRORS._value.get() == errors + 1
    _batch(service, 5, hate=0.0)  # within retry_after_s: Redis is left alone
    assert metrics.QUARANTINE_ERRORS._value.get() == errors + 1
    store.down = False
    clock.now += SETTINGS.retry_after_s
    _batch(service, 1, hate=0.0)
    assert service.quarantine.quarantined == {"new.review"}  # the key outlived the outage


def test_settings_reject_windows_off_the_bucket_grid_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="current_window_s must be a multiple of bucket_s"):
        QuarantineSettings(bucket_s=60, current_window_s=90)
    with pytest.raises(ValidationError, match="baseline_window_s must be at least"):
        QuarantineSettings(bucket_s=60, current_window_s=600, baseline_window_s=300)
    with pytest.raises(ValidationError, match="check_interval_s must be at most bucket_s"):
        QuarantineSettings(bucket_s=10, current_window_s=60, check_interval_s=20)
    with pytest.raises(ValidationError, match="exempt_rules"):
        QuarantineSettings(exempt_rules=["not a rule id"])
    with pytest.raises(ValidationError, match="factor"):
        Settings(quarantine={"factor": 1})  # type: ignore[arg-type]
    assert Settings().quarantine.enabled is False


def test_exempt_rule_ids_follow_the_policy_pattern() -> None:
    field = QuarantineSettings.model_fields["exempt_rules"]
    assert RULE_ID_PATTERN in repr(field.annotation) or RULE_ID_PATTERN in str(field.metadata)


def test_the_worker_builds_it_only_when_enabled_and_refuses_it_without_redis() -> None:
    from pydantic import SecretStr

    from moderator.config import RedisSettings
    from moderator.errors import ConfigError
    from workers.quarantine import build_quarantine

    assert build_quarantine(Settings()) is None  # off by default
    enabled = QuarantineSettings(enabled=True)
    with pytest.raises(ConfigError, match=r"quarantine\.enabled needs Redis \(redis\.enabled"):
        build_quarantine(Settings(quarantine=enabled))
    redis_settings = RedisSettings(url=SecretStr("redis://127.0.0.1:6379/0"))
    built = build_quarantine(Settings(quarantine=enabled, redis=redis_settings))
    assert isinstance(built, FloodQuarantine)  # the client connects on first use, not here
    built.store.close()
