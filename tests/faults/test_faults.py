"""Fault injection on the real pipeline: every valid post still gets a decision.

Each test streams a few thousand posts (mostly captions, some images and reposts,
a few malformed) through worker processes on the session's broker, Redis and Ray
Serve, breaks something mid-stream, and checks that no post was lost. Duplicates
are allowed (at-least-once) and reported.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from moderator.config import Settings
from moderator.local import LocalBroker, LocalRedis
from moderator.serving_settings import ServingSettings
from tests.faults.harness import FaultRun, fault_run
from tests.paths import REPO

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.fixture()
def settings(isolated_settings: Settings, ray_serving: ServingSettings) -> Settings:
    worker = isolated_settings.worker.model_copy(update={"batch_size": 64})
    return isolated_settings.model_copy(update={"serving": ray_serving, "worker": worker})


INJECTS = {
    "sigkill-worker": "SIGKILL the only worker at 30% of the stream, start a new one",
    "broker-stall-20s": "SIGSTOP the broker for 20 s at 30%, then SIGCONT",
    "redis-outage": "stop redis-server at 20%, restart it (empty) after 100 more decisions",
    "invalid-policy": "overwrite the policy file with invalid YAML at 20% (reload every 0.5 s)",
    "two-workers-one-killed": "two workers in one group, SIGKILL one at 30%",
    "serve-replica-killed": "SIGKILL the Classifier replica process at 30%",
}


def _report(run: FaultRun, name: str, **figures: object) -> None:
    """Print the figures, and append them to $MODERATOR_FAULT_FIGURES (docs/reliability.md)."""
    row = {
        "test": name,
        "injects": INJECTS[name],
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


def test_worker_killed_with_sigkill_and_restarted(settings: Settings, tmp_path: Path) -> None:
    run = fault_run(settings, tmp_path)
    first = run.start_worker()
    run.produce()
    run.start_reader()
    run.wait_for(lambda: run.decided_share() >= 0.3)
    first.kill()
    killed_at = time.monotonic()
    run.start_worker()
    decided_at_kill = len(run.collected.decisions)
    run.wait_for(lambda: len(run.collected.decisions) > decided_at_kill)
    recovery_s = time.monotonic() - killed_at
    run.finish()
    _report(run, "sigkill-worker", recovery_s=round(recovery_s, 1))
    assert not run.lost(), run.logs_tail()
    # Re-deliveries are bounded by what one worker can hold uncommitted.
    bound = settings.worker.max_in_flight_records + settings.worker.batch_size
    assert run.duplicates() <= bound


def test_broker_stalled_for_20_seconds(
    settings: Settings, broker: LocalBroker, tmp_path: Path
) -> None:
    run = fault_run(settings, tmp_path)
    run.start_worker()
    run.produce()
    run.start_reader()
    run.wait_for(lambda: run.decided_share() >= 0.3)
    os.kill(broker.pid, signal.SIGSTOP)
    try:
        time.sleep(20)
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    resumed = time.monotonic()
    before = len(run.collected.decisions)
    run.wait_for(lambda: len(run.collected.decisions) > before)
    recovery_s = time.monotonic() - resumed
    run.finish()
    _report(run, "broker-stall-20s", recovery_s=round(recovery_s, 1))
    assert all(w.alive() or w.process is None or w.process.returncode == 0 for w in run.workers)
    assert not run.lost(), run.logs_tail()


def test_redis_stopped_then_restarted(settings: Settings, tmp_path: Path) -> None:
    redis = LocalRedis().start()
    port = redis.port
    redis_settings = settings.redis.model_copy(update={"url": SecretStr(redis.url)})
    settings = settings.model_copy(update={"redis": redis_settings})
    run = fault_run(settings, tmp_path, posts=1500, image_share=0.5, repost_share=0.6)
    try:
        run.start_worker()
        run.produce()
        run.start_reader()
        run.wait_for(lambda: run.decided_share() >= 0.2)
        redis.stop()
        stopped_at = len(run.collected.decisions)
        run.wait_for(lambda: len(run.collected.decisions) >= stopped_at + 100)
        decided_without_cache = len(run.collected.decisions) - stopped_at
        redis = LocalRedis(port=port).start()
        restarted_at = len(run.collected.decisions)
        run.finish()
    finally:
        redis.stop()
    after = list(run.collected.decisions.values())[restarted_at:]
    hits_after = sum("image" in d["cache_hits"] for d in after)
    _report(
        run,
        "redis-outage",
        decided_without_cache=decided_without_cache,
        cache_hits_after_restart=hits_after,
    )
    assert not run.lost(), run.logs_tail()
    assert decided_without_cache >= 100
    assert hits_after > 0, "the cache was not picked up again after Redis returned"


def test_invalid_policy_pushed_mid_stream(settings: Settings, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    settings = settings.model_copy(
        update={"policy_path": policies / "default.yaml", "policy_reload_interval_s": 0.5}
    )
    run = fault_run(settings, tmp_path)
    run.start_worker()
    run.produce()
    run.start_reader()
    run.wait_for(lambda: run.decided_share() >= 0.2)
    good = (policies / "default.yaml").read_text()
    (policies / "default.yaml").write_text(good.replace("rules:", "rules: [unclosed", 1))
    run.wait_for(lambda: "rejected" in run.logs_tail().lower(), timeout_s=60)
    run.finish()
    versions = {d["policy_version"] for d in run.collected.decisions.values()}
    _report(run, "invalid-policy", versions=sorted(versions))
    assert not run.lost(), run.logs_tail()
    assert versions == {"default@4"}


def test_two_workers_one_killed(settings: Settings, tmp_path: Path) -> None:
    run = fault_run(settings, tmp_path)
    first = run.start_worker()
    run.start_worker()
    run.produce()
    run.start_reader()
    run.wait_for(lambda: run.decided_share() >= 0.3)
    first.kill()
    killed_at = time.monotonic()
    before = len(run.collected.decisions)
    run.wait_for(lambda: len(run.collected.decisions) > before + 50)
    recovery_s = time.monotonic() - killed_at
    run.finish()
    _report(run, "two-workers-one-killed", recovery_s=round(recovery_s, 1))
    assert not run.lost(), run.logs_tail()


def test_serve_replica_killed(settings: Settings, tmp_path: Path) -> None:
    import psutil

    run = fault_run(settings, tmp_path)
    run.start_worker()
    run.produce()
    run.start_reader()
    run.wait_for(lambda: run.decided_share() >= 0.3)
    # SIGKILL the replica process, as an OOM kill or a lost node would; Serve starts another.
    replicas = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any("ServeReplica:moderator:Classifier" in part for part in p.info["cmdline"] or [])
    ]
    assert replicas
    for replica in replicas:
        replica.kill()
    killed_at = time.monotonic()
    before = len(run.collected.decisions)
    run.wait_for(lambda: len(run.collected.decisions) > before + 50, timeout_s=300)
    recovery_s = time.monotonic() - killed_at
    run.finish()
    _report(run, "serve-replica-killed", recovery_s=round(recovery_s, 1))
    assert not run.lost(), run.logs_tail()
