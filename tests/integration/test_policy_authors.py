"""Author state on a real redis-server: sliding windows, strikes with expiry, idempotency."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from moderator.config import RedisSettings, Settings
from moderator.ingest import DecodedPost
from moderator.local import LocalRedis
from moderator.policy.authors import DAY, HOUR, AuthorStateConfig, RedisAuthorStore
from moderator.policy.inputs import NO_HISTORY
from moderator.policy.loader import load_policy
from moderator.policy.service import PolicyService
from moderator.schema import Action, Post
from workers.main import build_policy_service

pytestmark = pytest.mark.integration
T0 = 1_780_000_000.0


@pytest.fixture()
def store(redis_server: LocalRedis) -> RedisAuthorStore:
    config = AuthorStateConfig(key_prefix=f"test:{uuid.uuid4().hex[:8]}:", strike_ttl_s=7 * DAY)
    return RedisAuthorStore.from_url(redis_server.url, config)


def test_windows_count_posts_before_now(store: RedisAuthorStore) -> None:
    for i in range(5):
        store.record("a", f"p{i}", T0 + i * 600, Action.ALLOW)  # every 10 minutes
    later = store.counters("a", T0 + 3000)
    assert later.posts_last_hour == 5
    assert store.counters("a", T0 + 3000 + HOUR).posts_last_hour == 0
    assert store.counters("a", T0 + 3000 + HOUR).posts_last_day == 5
    assert store.counters("a", T0 + 600).posts_last_hour == 1  # only posts strictly before
    assert store.counters("someone-else", T0 + 3000) == NO_HISTORY


def test_blocks_and_strikes_expire(store: RedisAuthorStore) -> None:
    store.record("a", "b1", T0, Action.BLOCK)
    store.record("a", "b2", T0 + 10, Action.BLOCK)
    store.record("a", "r1", T0 + 20, Action.REVIEW)
    now = store.counters("a", T0 + 100)
    assert (now.blocks_last_day, now.strikes) == (2, 2)
    tomorrow = store.counters("a", T0 + DAY + 100)
    assert (tomorrow.blocks_last_day, tomorrow.strikes) == (0, 2)
    assert store.counters("a", T0 + 8 * DAY).strikes == 0


def test_redelivered_posts_count_once(store: RedisAuthorStore) -> None:
    for _ in range(3):
        store.record("a", "same-post", T0, Action.BLOCK)
    counters = store.counters("a", T0 + 1)
    assert (counters.posts_last_hour, counters.blocks_last_day, counters.strikes) == (1, 1, 1)


def test_writes_are_buffered_until_a_read_or_flush(store: RedisAuthorStore) -> None:
    store.record("a", "p1", T0, Action.ALLOW)
    raw = store.client
    assert raw.zcard(f"{store.config.key_prefix}a:posts") == 0
    store.flush()
    assert raw.zcard(f"{store.config.key_prefix}a:posts") == 1


def test_redis_down_reads_zero_and_recovers_later() -> None:
    dead = RedisAuthorStore(
        redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2, socket_connect_timeout=0.2),
        AuthorStateConfig(retry_after_s=60),
    )
    assert dead.counters("a", T0) == NO_HISTORY
    dead.record("a", "p", T0, Action.BLOCK)
    dead.flush()  # skipped while down: no exception


def test_rules_read_counters_kept_by_the_service(store: RedisAuthorStore, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: p\nversion: '1'\ncategories: [hate]\nrules:\n"
        "  - {id: hate, when: 'scores.hate > 0.9', action: block}\n"
        "  - {id: struck, when: 'author.strikes >= 2', action: review}\n"
    )
    service = PolicyService(load_policy(tmp_path / "p.yaml"), store)

    def decoded(post_id: str) -> DecodedPost:
        post = Post.model_validate(
            {"post_id": post_id, "author_id": "x", "created_at": "2026-06-01T00:00:00Z"}
        )
        return DecodedPost(post, pixels=None, image_sha256=None)

    ms = int(T0 * 1000)
    assert service.decide_post(decoded("1"), {"hate": 0.95}, ms).action is Action.BLOCK
    assert service.decide_post(decoded("2"), {"hate": 0.95}, ms + 1000).action is Action.BLOCK
    third = service.decide_post(decoded("3"), {"hate": 0.1}, ms + 2000)
    assert third.rules_fired == ["struck"]
    # Re-delivery of post 3 reads the same counters: the same decision.
    assert service.decide_post(decoded("3"), {"hate": 0.1}, ms + 2000) == third


def test_the_worker_builds_the_store_from_the_settings(redis_server: LocalRedis) -> None:
    authors = AuthorStateConfig(
        key_prefix=f"test:{uuid.uuid4().hex[:8]}:", strike_actions=frozenset({Action.REVIEW})
    )
    settings = Settings(
        redis=RedisSettings(url=SecretStr(redis_server.url)),
        authors=authors,
        policy_reload_interval_s=0,
    )
    service = build_policy_service(settings)
    try:
        assert service.authors is not None and service.authors.config == authors
        service.authors.record("a", "r1", T0, Action.REVIEW)
        service.authors.record("a", "b1", T0 + 1, Action.BLOCK)
        counters = service.authors.counters("a", T0 + 2)
        assert (counters.blocks_last_day, counters.strikes) == (1, 1)  # only review strikes
    finally:
        service.close()
    off = build_policy_service(settings.model_copy(update={"author_state": False}))
    assert off.authors is None
    off.close()
