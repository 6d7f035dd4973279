"""Multi-frame posts through a real worker and broker (#14): a known-bad image hidden as
frame 5 of an animated GIF and of an MP4 is blocked by a PDQ bank with frame sampling on,
and allowed with `limits.media.sample_frames: false`; records carry the worst frame.

The model is KeywordScorer (a fake behind the BatchScorer interface that scores captions
only): the frames still travel as image rows of the request it receives, and the decision
comes from the hash bank, which is what this test is about."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import orjson
import pytest

from moderator.config import Settings
from moderator.demo.collect import collect
from moderator.io import create_consumer, create_producer
from moderator.local.stack import create_topics
from moderator.media_settings import MediaLimits
from tests import hostile_media as media
from tests.integration.test_worker_delivery import KeywordScorer
from tests.unit.test_animated_frames import banked_policy, later_bad_frames
from workers.moderation_worker import ModerationWorker

pytestmark = pytest.mark.integration


def _posts() -> dict[str, bytes]:
    frames = later_bad_frames(30, 5)
    base = {"author_id": "a", "created_at": "2026-06-01T00:00:00Z", "caption": "look"}
    gif = base64.b64encode(media.animation(frames[:10])).decode()
    mp4 = base64.b64encode(media.video_of(frames)).decode()
    return {
        "gif": orjson.dumps({**base, "post_id": "gif", "image_b64": gif}),
        "mp4": orjson.dumps({**base, "post_id": "mp4", "video_b64": mp4}),
    }


@pytest.mark.parametrize("sample_frames", [True, False])
def test_a_known_bad_later_frame_is_blocked_only_with_sampling(
    isolated_settings: Settings, tmp_path: Path, sample_frames: bool
) -> None:
    limits = isolated_settings.limits.model_copy(
        update={"media": MediaLimits(sample_frames=sample_frames)}
    )
    settings = isolated_settings.model_copy(update={"limits": limits})
    create_topics(settings)
    producer = create_producer(settings.kafka)
    for post_id, value in _posts().items():
        producer.send(settings.kafka.posts_topic, key=post_id.encode(), value=value)
    producer.flush()
    producer.close()

    # The bank hashes the image at the fake model's input size, as the worker hashes frames.
    service = banked_policy(tmp_path, KeywordScorer().info().image_size)
    worker = ModerationWorker(
        settings,
        create_consumer(settings.kafka),
        create_producer(settings.kafka),
        KeywordScorer(),
        service,
        cache=None,
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            worker.consumer.close(autocommit=False)
            worker.producer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    collected = collect(settings.kafka, 2, 0, timeout_s=120)
    stop.set()
    thread.join(timeout=60)
    assert not errors
    decisions = collected.decisions
    assert set(decisions) == {"gif", "mp4"}
    for decision in decisions.values():
        assert decision["problems"] == []
        if sample_frames:
            assert decision["action"] == "block"
            assert decision["rules_fired"] == ["bad"]
            assert decision["worst_frame"]["frames"] >= 3
        else:
            assert decision["action"] == "allow"
            assert decision["worst_frame"] is None
