"""Flood quarantine on the real pipeline: a policy whose new rule fires on every post is pushed
mid-stream; the rule is quarantined, no post is lost, and the posts decided meanwhile carry
the rule in `shadow_rules` (worker process, the session's broker, Redis and Ray Serve)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import redis

from moderator.config import Settings
from moderator.policy.quarantine import POSTS_FIELD
from moderator.quarantine_settings import QuarantineSettings
from moderator.serving_settings import ServingSettings
from tests.faults.harness import FaultRun, fault_run
from tests.paths import REPO

pytestmark = [pytest.mark.integration, pytest.mark.faults]

FLOOD_RULE = """\
  - id: flood.everything
    description: A bad push that matches every post.
    when: scores.hate >= 0.0
    action: review
    notice: "Your post is waiting for a review."
"""
# Windows in seconds, small enough for a test: the rule must reach min_volume within 20 s
# (one post a second: a worker on a loaded machine still does that).
QUARANTINE = QuarantineSettings(
    enabled=True,
    bucket_s=1,
    current_window_s=20,
    baseline_window_s=60,
    factor=5,
    min_volume=20,
    cool_off_s=600,
    check_interval_s=0,
)


def _report(run: FaultRun, **figures: object) -> None:
    """Print the figures, and append them to $MODERATOR_FAULT_FIGURES like test_faults.py."""
    row = {
        "test": "flood-rule",
        "injects": "push a policy whose new rule fires on every post at 30% (reload 0.5 s)",
        "posts": len(run.valid_ids),
        "lost": len(run.lost()),
        "duplicates": run.duplicates(),
        **figures,
    }
    print(f"\n[fault] {row}")
    target = os.environ.get("MODERATOR_FAULT_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")


def _baseline_posts(client: redis.Redis[bytes], settings: Settings) -> int:
    """Posts the workers counted in the baseline window, as the detector reads it."""
    bucket = int(time.time()) // QUARANTINE.bucket_s - QUARANTINE.current_window_s // (
        QUARANTINE.bucket_s
    )
    prefix = f"{QUARANTINE.key_prefix}{settings.kafka.group_id}:hits:"
    oldest = bucket - QUARANTINE.baseline_window_s // QUARANTINE.bucket_s
    counts = [client.hget(f"{prefix}{b}", POSTS_FIELD) for b in range(oldest + 1, bucket + 1)]
    return sum(int(count) for count in counts if count is not None)


@pytest.fixture()
def settings(isolated_settings: Settings, ray_serving: ServingSettings) -> Settings:
    worker = isolated_settings.worker.model_copy(update={"batch_size": 64})
    return isolated_settings.model_copy(
        update={"serving": ray_serving, "worker": worker, "quarantine": QUARANTINE}
    )


def test_a_flooding_rule_pushed_mid_stream_is_quarantined(
    settings: Settings, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    policy = policies / "default.yaml"
    settings = settings.model_copy(update={"policy_path": policy, "policy_reload_interval_s": 0.5})
    run = fault_run(settings, tmp_path)
    half = len(run.samples) // 2
    run.start_worker()
    run.produce(slice(0, half))
    run.start_reader()
    run.wait_for(lambda: run.decided_share() >= 0.3)
    # A rule is judged against the posts of the baseline window (before the current one):
    # push once the worker's counts there are enough to judge by.
    assert settings.redis.url is not None
    client = redis.Redis.from_url(settings.redis.url.get_secret_value())
    run.wait_for(lambda: _baseline_posts(client, settings) >= 100)
    text = policy.read_text().replace('version: "4"', 'version: "4-flood"', 1)
    policy.write_text(text + FLOOD_RULE)
    # The second half goes out once the new policy decides, so posts meet the flood rule
    # however fast the worker got through the first half.
    run.wait_for(lambda: "-> default@4-flood" in run.logs_tail(), timeout_s=60)
    run.produce(slice(half, None))
    run.wait_for(lambda: "rule flood.everything quarantined" in run.logs_tail(), timeout_s=300)
    run.finish()

    flooded = [
        d for d in run.collected.decisions.values() if d["policy_version"] == "default@4-flood"
    ]
    live = [d for d in flooded if "flood.everything" in d["rules_fired"]]
    shadow = [d for d in flooded if "flood.everything" in d["shadow_rules"]]
    _report(run, decided_live=len(live), decided_in_shadow=len(shadow))
    assert not run.lost(), run.logs_tail()
    # Quarantined once the current window held min_volume fires: at most a batch or two
    # later (the fires of a batch are sent with the next one's sync).
    assert 0 < len(live) < QUARANTINE.min_volume + 2 * settings.worker.batch_size
    for decision in live:
        assert "flood.everything" in decision["explanations"]
        if not decision["rules_fired"][0].startswith("bank."):  # no higher-priority bank rule
            assert decision["action"] in ("review", "block")
            assert "Your post is waiting for a review." in decision["notices"]
    assert len(shadow) + len(live) == len(flooded) and shadow
    # In shadow the rule changes nothing: those posts are decided by the other rules alone.
    assert all("flood.everything" not in d["explanations"] for d in shadow)
    assert any(d["action"] == "allow" for d in shadow)
    # The quarantine lives in Redis, shared by all workers, expiring with the cool-off.
    key = f"{QUARANTINE.key_prefix}{settings.kafka.group_id}:rule:flood.everything"
    try:
        assert 0 < client.ttl(key) <= QUARANTINE.cool_off_s
    finally:
        client.close()
