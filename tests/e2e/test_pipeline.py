"""The whole path on real parts: Tansu broker, redis-server, Ray Serve with the real
pretrained encoders, and the worker as its own process (`python -m workers`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderator.config import Settings
from moderator.demo.collect import collect
from moderator.errors import SIGNAL_PROBLEMS
from moderator.local.stack import WorkerProcess, create_topics
from moderator.schema import Decision
from moderator.serving_settings import ServingSettings
from tests.integration.test_worker_delivery import _produce, committed_offsets

pytestmark = pytest.mark.e2e
SIGNAL_PROBLEM_CODES = {code.value for code in SIGNAL_PROBLEMS}


def test_posts_become_decisions_and_offsets_cover_every_record(
    isolated_settings: Settings, ray_serving: ServingSettings, tmp_path: Path
) -> None:
    settings = isolated_settings.model_copy(update={"serving": ray_serving})
    create_topics(settings)
    samples, ends = _produce(settings, 240)
    valid = {s.post_id for s in samples if s.valid}
    expected_reasons = {s.post_id: s.expected_reason for s in samples if not s.valid}
    assert len(expected_reasons) >= 4
    expected_problems = {s.post_id: [p.value for p in s.expected_problems] for s in samples}
    assert sum(bool(p) for p in expected_problems.values()) >= 4

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        collected = collect(
            settings.kafka,
            len(valid),
            len(expected_reasons),
            timeout_s=300,
            still_running=worker.alive,
        )
    finally:
        exit_code = worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert exit_code == 0, log[-3000:]

    # Every valid post has exactly one decision once re-deliveries are collapsed by post_id.
    assert set(collected.decisions) == valid, log[-3000:]
    for decision in collected.decisions.values():
        parsed = Decision.model_validate(decision)
        assert parsed.model_version.startswith("starter")
        assert parsed.policy_version == "default@4"
        # The sample stream predicts the decoder's problems; OCR may add ocr_truncated (its
        # time budget depends on the machine's load), which tests/unit/test_signal_ocr.py covers.
        decoded = [p for p in parsed.problems if p not in SIGNAL_PROBLEM_CODES]
        assert decoded == expected_problems[parsed.post_id]
        assert set(parsed.scores) >= {"hate", "weapons"}
    # Reposted images, and captions seen before (the stream draws from small caption pools),
    # were served from the Redis feature cache at least once.
    assert any("image" in d["cache_hits"] for d in collected.decisions.values())
    assert any("text" in d["cache_hits"] for d in collected.decisions.values())

    # Every malformed record is on the dead-letter topic with the right reason.
    reasons = {key.decode(): letter.reason for letter, key in collected.dead_letters if key}
    assert reasons == expected_reasons

    # The group's committed offsets (after SIGTERM drained the worker) cover every record.
    assert committed_offsets(settings) == ends
