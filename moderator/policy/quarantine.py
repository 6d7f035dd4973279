"""Flood quarantine: a live rule whose hit rate jumps far above its own baseline goes to shadow.

A bad term-list push or an attack that trips one rule can make it act on a large share of
posts within minutes. Every worker counts, per batch, the posts it decided and the live
rules that fired, into per-bucket hashes in Redis shared by all workers of the consumer
group. Every `check_interval_s` a worker reads the current window (the latest
`current_window_s`) and the baseline window (the `baseline_window_s` before it) and
quarantines a rule when

    fires in the current window >= min_volume, and
    current rate > factor x (baseline fires + 1) / (baseline posts + 1).

The +1 keeps a thin baseline from judging anything: with no history the baseline rate is 1,
which no rate exceeds, while a new rule on a busy stream has a baseline rate near 0.

A quarantine is one Redis key per rule that expires after `cool_off_s`, set with NX so that
one worker logs and counts it. While it exists, every worker moves the rule's fires from
`rules_fired` to `shadow_rules` (`CompiledPolicy.demote`) and stops counting them, so the
flood does not become the rule's baseline and a rule still flooding when the cool-off ends
is quarantined again. One Redis round trip per worker every `check_interval_s` (counts out,
quarantined rules and the windows in; every batch when 0), plus one SET per new quarantine;
between checks a batch costs a set lookup per fired rule. Redis down: nothing is demoted
(fail open), the failure is counted, and Redis is left alone for `retry_after_s`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis

from moderator import metrics
from moderator.cache.client import redis_error
from moderator.policy.document import RuleMode
from moderator.policy.engine import CompiledPolicy
from moderator.quarantine_settings import QuarantineSettings

logger = logging.getLogger(__name__)

POSTS_FIELD = "#posts"
"""The bucket field that counts decided posts (rule ids cannot start with '#')."""


@dataclass(frozen=True, slots=True)
class SyncReply:
    quarantined: frozenset[str]
    """Rules (of those asked about) whose quarantine key exists."""
    buckets: list[dict[str, int]] | None
    """The asked-for buckets' counts, oldest first; None when not asked."""


class QuarantineStore(Protocol):
    """Where the counters and quarantine keys live: Redis, or a test's fake."""

    def sync(
        self,
        writes: Mapping[int, Mapping[str, int]],
        rule_ids: Sequence[str],
        read_buckets: Sequence[int] | None,
    ) -> SyncReply:
        """In one round trip: add `writes` (bucket → field → count), read which of `rule_ids`
        are quarantined and, when given, the counts of `read_buckets`."""
        ...

    def quarantine(self, rule_id: str, details: Mapping[str, Any]) -> bool:
        """Start a quarantine unless one runs; True when this call started it."""
        ...

    def close(self) -> None: ...


class RedisQuarantineStore:
    """Counters: hash ``<prefix><scope>:hits:<bucket>``; quarantines: ``<prefix><scope>:rule:<id>``
    with expiry = cool-off, holding what the detector saw (JSON)."""

    def __init__(self, client: redis.Redis[bytes], settings: QuarantineSettings, scope: str):
        self.client = client
        self.settings = settings
        self._base = f"{settings.key_prefix}{scope}:"
        # Counters outlive both windows by a bucket: the oldest baseline bucket is still there.
        self._bucket_ttl = (
            settings.baseline_window_s + settings.current_window_s + 2 * (settings.bucket_s)
        )

    def _bucket_key(self, bucket: int) -> str:
        return f"{self._base}hits:{bucket}"

    def rule_key(self, rule_id: str) -> str:
        return f"{self._base}rule:{rule_id}"

    def sync(
        self,
        writes: Mapping[int, Mapping[str, int]],
        rule_ids: Sequence[str],
        read_buckets: Sequence[int] | None,
    ) -> SyncReply:
        pipe = self.client.pipeline(transaction=False)
        for bucket, counts in writes.items():
            key = self._bucket_key(bucket)
            for name, count in counts.items():
                pipe.hincrby(key, name, count)
            pipe.expire(key, self._bucket_ttl)
        if rule_ids:
            pipe.mget([self.rule_key(rule_id) for rule_id in rule_ids])
        for bucket in read_buckets or ():
            pipe.hgetall(self._bucket_key(bucket))
        replies = pipe.execute()
        reads = len(read_buckets) if read_buckets is not None else 0
        quarantined: frozenset[str] = frozenset()
        if rule_ids:
            flags = replies[len(replies) - reads - 1]
            quarantined = frozenset(r for r, v in zip(rule_ids, flags, strict=True) if v)
        buckets = None
        if read_buckets is not None:
            buckets = [
                {name.decode(): int(count) for name, count in reply.items()}
                for reply in replies[len(replies) - reads :]
            ]
        return SyncReply(quarantined, buckets)

    def quarantine(self, rule_id: str, details: Mapping[str, Any]) -> bool:
        started = self.client.set(
            self.rule_key(rule_id),
            orjson.dumps(dict(details)),
            nx=True,
            ex=self.settings.cool_off_s,
        )
        return bool(started)

    def close(self) -> None:
        self.client.close()


@dataclass(frozen=True, slots=True)
class _Watch:
    """What a policy's quarantine needs, computed once per policy version."""

    policy: CompiledPolicy
    rule_ids: tuple[str, ...]
    """Live rules that may be quarantined (not exempt)."""
    watched: frozenset[str]


class FloodQuarantine:
    """Per worker: counts fires per post, syncs with Redis and judges every check interval.

    Used from the worker's loop thread only (`begin_batch`, then `count` per post).
    """

    def __init__(
        self,
        settings: QuarantineSettings,
        store: QuarantineStore,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self._clock = clock
        self._monotonic = monotonic
        self._exempt = frozenset(settings.exempt_rules)
        self._watch: _Watch | None = None
        self._fires: Counter[str] = Counter()
        self._posts = 0
        self._quarantined: frozenset[str] = frozenset()
        self._next_check = 0.0
        self._down_until = 0.0
        self._current_buckets = settings.current_window_s // settings.bucket_s
        self._baseline_buckets = settings.baseline_window_s // settings.bucket_s

    @property
    def quarantined(self) -> frozenset[str]:
        """The rules demoted in the batch being decided."""
        return self._quarantined

    def _watch_for(self, policy: CompiledPolicy) -> _Watch:
        if self._watch is None or self._watch.policy is not policy:
            ids = tuple(
                rule.id
                for rule in policy.rules
                if rule.mode is RuleMode.LIVE and rule.id not in self._exempt
            )
            self._watch = _Watch(policy, ids, frozenset(ids))
        return self._watch

    def count(self, rules_fired: Sequence[str]) -> None:
        """One decided post and the live rules that decided it (after demotion)."""
        self._posts += 1
        if rules_fired:
            watched = self._watch.watched if self._watch is not None else frozenset()
            for rule_id in rules_fired:
                if rule_id in watched:
                    self._fires[rule_id] += 1

    def begin_batch(self, policy: CompiledPolicy) -> frozenset[str]:
        """The rules to demote in the batch about to be decided. Every `check_interval_s` (and
        when the policy changed) this is one Redis round trip that sends what was counted
        since, reads the quarantined rules and the windows, and judges; otherwise none."""
        changed = self._watch is None or self._watch.policy is not policy
        watch = self._watch_for(policy)
        now_mono = self._monotonic()
        if now_mono < self._down_until:
            self._take_counts()  # dropped: they would land in a later bucket than they belong
            return self._set_quarantined(frozenset())
        if now_mono < self._next_check and not changed:
            return self._quarantined
        self._next_check = now_mono + self.settings.check_interval_s
        now = self._clock()
        bucket = int(now // self.settings.bucket_s)
        writes = self._take_counts()
        window = self._current_buckets + self._baseline_buckets
        read = list(range(bucket - window + 1, bucket + 1))
        try:
            reply = self.store.sync({bucket: writes} if writes else {}, watch.rule_ids, read)
            quarantined = reply.quarantined
            if reply.buckets is not None:
                quarantined |= self._judge(watch, reply.buckets, quarantined, now)
        except redis.RedisError as exc:
            self._failed(exc)
            return self._set_quarantined(frozenset())
        return self._set_quarantined(quarantined)

    def _take_counts(self) -> dict[str, int]:
        writes: dict[str, int] = dict(self._fires)
        if self._posts:
            writes[POSTS_FIELD] = self._posts
        self._fires.clear()
        self._posts = 0
        return writes

    def _judge(
        self,
        watch: _Watch,
        buckets: list[dict[str, int]],
        quarantined: frozenset[str],
        now: float,
    ) -> set[str]:
        """Rules to quarantine now, from the windows' counts (oldest bucket first)."""
        baseline = _totals(buckets[: self._baseline_buckets])
        current = _totals(buckets[self._baseline_buckets :])
        posts_now, posts_before = current.get(POSTS_FIELD, 0), baseline.get(POSTS_FIELD, 0)
        started: set[str] = set()
        if posts_now == 0:
            return started
        for rule_id in watch.rule_ids:
            fires = current.get(rule_id, 0)
            if rule_id in quarantined or fires < self.settings.min_volume:
                continue
            rate = fires / posts_now
            base_fires = baseline.get(rule_id, 0)
            base_rate = (base_fires + 1) / (posts_before + 1)
            if rate <= self.settings.factor * base_rate:
                continue
            details = {
                "rule": rule_id,
                "policy": watch.policy.qualified_version,
                "since": now,
                "until": now + self.settings.cool_off_s,
                "rate": round(rate, 6),
                "fires": fires,
                "posts": posts_now,
                "baseline_rate": round(base_rate, 6),
                "baseline_fires": base_fires,
                "baseline_posts": posts_before,
            }
            started.add(rule_id)
            if self.store.quarantine(rule_id, details):
                metrics.RULE_QUARANTINES.labels(rule=rule_id).inc()
                logger.warning(
                    "rule %s quarantined for %d s (its fires go to shadow_rules): hit rate "
                    "%.4f (%d of %d posts in the last %d s) against a baseline of %.4f (%d of "
                    "%d posts in the %d s before)",
                    rule_id,
                    self.settings.cool_off_s,
                    rate,
                    fires,
                    posts_now,
                    self.settings.current_window_s,
                    base_rate,
                    base_fires,
                    posts_before,
                    self.settings.baseline_window_s,
                )
        return started

    def _set_quarantined(self, quarantined: frozenset[str]) -> frozenset[str]:
        if quarantined != self._quarantined:
            for rule_id in sorted(self._quarantined - quarantined):
                logger.info("rule %s is out of quarantine: it decides again", rule_id)
            metrics.QUARANTINED_RULES.set(len(quarantined))
            self._quarantined = quarantined
        return quarantined

    def _failed(self, error: Exception) -> None:
        metrics.QUARANTINE_ERRORS.inc()
        self._down_until = self._monotonic() + self.settings.retry_after_s
        logger.warning(
            "flood quarantine unavailable for %.0f s (no rule is quarantined meanwhile): %s",
            self.settings.retry_after_s,
            redis_error(error),
        )

    def close(self) -> None:
        """Send what was counted since the last batch, then close the store."""
        writes = self._take_counts()
        if writes and self._monotonic() >= self._down_until:
            bucket = int(self._clock() // self.settings.bucket_s)
            try:
                self.store.sync({bucket: writes}, (), None)
            except redis.RedisError as exc:
                self._failed(exc)
        self.store.close()


def _totals(buckets: list[dict[str, int]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for bucket in buckets:
        total.update(bucket)
    return total
