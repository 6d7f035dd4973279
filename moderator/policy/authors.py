"""Author state in Redis: sliding-window counters and strikes with expiry.

Per author, three sorted sets whose members are post ids and scores are the
posts' times: every post, blocked posts, and strikes (posts whose action gives
a strike, block by default). A counter is a ZCOUNT over a window that ends
just before the post being decided, so a re-delivered post reads the same
counters and re-records the same members: decisions stay idempotent.

Writes are buffered and sent in one pipeline with the next read (or every
`flush_every` posts), so a policy that never reads author state costs one
round trip per batch of posts, and one that does costs one per post. When
Redis fails, counters read as zero (rules on author state do not fire), the
failure is counted, and Redis is left alone for `retry_after_s`.

The configuration is the settings' `authors` section (AuthorStateConfig, defined with the
other settings in moderator.config); the worker builds the store from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from moderator import metrics
from moderator.cache.client import redis_client, redis_error
from moderator.config import AuthorStateConfig
from moderator.policy.inputs import NO_HISTORY, AuthorCounters
from moderator.schema.decision import Action

logger = logging.getLogger(__name__)

HOUR = 3600.0
DAY = 86400.0


__all__ = ["DAY", "HOUR", "AuthorStateConfig", "RedisAuthorStore"]


class RedisAuthorStore:
    def __init__(self, client: redis.Redis[bytes], config: AuthorStateConfig | None = None) -> None:
        self.client = client
        self.config = config or AuthorStateConfig()
        self._pending: list[tuple[str, str, float, Action]] = []
        self._lock = threading.Lock()
        self._down_until = 0.0

    @classmethod
    def from_url(
        cls,
        url: str,
        config: AuthorStateConfig | None = None,
        socket_timeout_s: float = 0.5,
        ssl_ca_certs: Path | None = None,
    ) -> RedisAuthorStore:
        """`ssl_ca_certs`: CA bundle for a rediss:// server (RedisSettings.ssl_ca_certs)."""
        return cls(redis_client(url, socket_timeout_s, ssl_ca_certs), config)

    def _keys(self, author_id: str) -> tuple[str, str, str]:
        base = f"{self.config.key_prefix}{author_id}"
        return f"{base}:posts", f"{base}:blocks", f"{base}:strikes"

    def counters(self, author_id: str, now: float) -> AuthorCounters:
        """The author's counters before `now` (pending writes are sent first)."""
        if time.monotonic() < self._down_until:
            return NO_HISTORY
        posts, blocks, strikes = self._keys(author_id)
        before = f"({now!r}"
        with self._lock:
            pending, self._pending = self._pending, []
        try:
            pipe = self.client.pipeline(transaction=False)
            self._queue_writes(pipe, pending)
            pipe.zcount(posts, now - HOUR, before)
            pipe.zcount(posts, now - DAY, before)
            pipe.zcount(blocks, now - DAY, before)
            pipe.zcount(strikes, now - self.config.strike_ttl_s, before)
            replies = pipe.execute()
        except redis.RedisError as exc:
            self._failed(exc)
            return NO_HISTORY
        hour, day, blocked, struck = (int(r) for r in replies[-4:])
        return AuthorCounters(
            posts_last_hour=hour, posts_last_day=day, blocks_last_day=blocked, strikes=struck
        )

    def record(self, author_id: str, post_id: str, now: float, action: Action) -> None:
        """Remember a decided post; sent with the next read or every `flush_every` posts."""
        with self._lock:
            self._pending.append((author_id, post_id, now, action))
            full = len(self._pending) >= self.config.flush_every
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending or time.monotonic() < self._down_until:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            self._queue_writes(pipe, pending)
            pipe.execute()
        except redis.RedisError as exc:
            self._failed(exc)

    def _queue_writes(self, pipe: Any, pending: list[tuple[str, str, float, Action]]) -> None:
        ttl = int(max(DAY, self.config.strike_ttl_s)) + 3600
        for author_id, post_id, now, action in pending:
            posts, blocks, strikes = self._keys(author_id)
            pipe.zadd(posts, {post_id: now})
            pipe.zremrangebyscore(posts, "-inf", now - DAY - HOUR)
            pipe.expire(posts, int(DAY + HOUR))
            if action is Action.BLOCK:
                pipe.zadd(blocks, {post_id: now})
                pipe.zremrangebyscore(blocks, "-inf", now - DAY - HOUR)
                pipe.expire(blocks, int(DAY + HOUR))
            if action in self.config.strike_actions:
                pipe.zadd(strikes, {post_id: now})
                pipe.zremrangebyscore(strikes, "-inf", now - self.config.strike_ttl_s - HOUR)
                pipe.expire(strikes, ttl)

    def change_strikes(self, changes: Sequence[tuple[str, str, float | None]]) -> list[bool]:
        """Reviewers' strike changes (moderator.verdicts), sent in order in one pipeline.

        (author, post, time) adds the post's strike at that time unless the post has one
        already (a worker's strike for the same post is the same member: one strike);
        (author, post, None) removes it. Returns, per change, whether it changed anything.
        Redis errors are raised, not swallowed as in `counters`: a verdict's strike must not
        be dropped, so the caller retries before committing.
        """
        ttl = int(max(DAY, self.config.strike_ttl_s)) + 3600
        pipe = self.client.pipeline(transaction=False)
        reply_index = []
        for author_id, post_id, at in changes:
            strikes = self._keys(author_id)[2]
            reply_index.append(len(pipe))
            if at is None:
                pipe.zrem(strikes, post_id)
            else:
                pipe.zadd(strikes, {post_id: at}, nx=True)
                pipe.expire(strikes, ttl)
        replies = pipe.execute() if changes else []
        return [int(replies[i]) > 0 for i in reply_index]

    def _failed(self, error: Exception) -> None:
        metrics.AUTHOR_STATE_ERRORS.inc()
        self._down_until = time.monotonic() + self.config.retry_after_s
        logger.warning(
            "author state unavailable for %.0f s (counters read as zero): %s",
            self.config.retry_after_s,
            redis_error(error),
        )

    def close(self) -> None:
        self.flush()
        self.client.close()
